//! `application/x-www-form-urlencoded` bodies and queries (WHATWG parsing: `+` is a space,
//! `%XX` a byte, invalid UTF-8 replaced), and the parameter list OAuth2 endpoints read, in
//! order and with repeats (`audience=a&audience=b`). Pure: the HTTP layer extracts the bytes.

/// A parameter given more than once where RFC 6749 §3.1 allows one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The request parameter '{0}' must not be included more than once.")]
pub struct Repeated(pub String);

/// Form or query parameters in the order they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The single value of `name`; a repeated parameter is a malformed request.
    pub fn single(&self, name: &str) -> Result<Option<&str>, Repeated> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(Repeated(name.to_owned()));
        }
        Ok(first)
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// `application/x-www-form-urlencoded` parsing (WHATWG): `+` is a space, `%XX` a byte.
pub fn parse_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut kv = part.splitn(2, |&b| b == b'=');
            let k = form_decode(kv.next().unwrap_or_default());
            let v = form_decode(kv.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

pub fn form_decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => {
                let hi = (input[i + 1] as char).to_digit(16);
                let lo = (input[i + 2] as char).to_digit(16);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_decoding() {
        assert_eq!(
            parse_urlencoded(b"a=1+2&b=%3A%2f&a=&c"),
            vec![
                ("a".into(), "1 2".into()),
                ("b".into(), ":/".into()),
                ("a".into(), "".into()),
                ("c".into(), "".into())
            ]
        );
        assert_eq!(form_decode(b"100%"), "100%");
        assert_eq!(form_decode(b"%4"), "%4");
    }

    #[test]
    fn a_repeated_parameter_is_refused_by_name() {
        let p = Params(parse_urlencoded(b"scope=a&audience=x&audience=y"));
        assert_eq!(p.single("scope"), Ok(Some("a")));
        assert_eq!(p.single("state"), Ok(None));
        assert_eq!(p.single("audience"), Err(Repeated("audience".into())));
        assert_eq!(p.all("audience").collect::<Vec<_>>(), ["x", "y"]);
    }
}
