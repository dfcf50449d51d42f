//! Keyset paging of the admin lists (clients, trust relationships) in Hydra's shape: a
//! `page_size` from 1 to 1000 (250 by default), an opaque `page_token` (the last id shown,
//! base64url) and an RFC 8288 `Link` header with `first` and, when more rows exist, `next`.
//! It reads query pairs and writes strings; it knows no HTTP and no store.

use crate::crypto;

pub const DEFAULT_PAGE_SIZE: i64 = 250;
pub const MAX_PAGE_SIZE: i64 = 1000;

/// Where a page starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    pub page_size: i64,
    /// The id after which the page starts (empty: from the beginning).
    pub after: String,
}

impl Default for Keyset {
    fn default() -> Self {
        Self { page_size: DEFAULT_PAGE_SIZE, after: String::new() }
    }
}

impl Keyset {
    /// Takes `page_size` or `page_token` from one query pair: `Ok(true)` when it was one of
    /// them, an error sentence naming the parameter when its value is bad.
    pub fn read(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "page_size" => {
                self.page_size = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| format!("page_size: must be a number from 1 to {MAX_PAGE_SIZE}"))?;
                Ok(true)
            }
            "page_token" if !value.is_empty() => {
                self.after = crypto::b64url_decode(value)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| "page_token: malformed".to_owned())?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// How many rows to ask the store for: one more than a page, to know whether a next exists.
    pub fn fetch(&self) -> i64 {
        self.page_size.saturating_add(1)
    }

    /// Cuts the store's rows to the page; the next page's token when rows were left over.
    pub fn cut<T>(&self, rows: &mut Vec<T>, id: impl Fn(&T) -> &str) -> Option<String> {
        let size = usize::try_from(self.page_size).unwrap_or(0);
        let more = rows.len() > size;
        rows.truncate(size);
        rows.last().filter(|_| more).map(|last| crypto::b64url(id(last).as_bytes()))
    }

    /// The `Link` header value on `url` (scheme, host and path) with the list's `filters`.
    pub fn link(&self, url: &str, filters: &[(&str, &str)], next: Option<&str>) -> String {
        let mut base = format!("{url}?page_size={}", self.page_size);
        for (name, value) in filters {
            base.push_str(&format!("&{name}={}", portcullis_shared::pipeline::form_encode(value)));
        }
        let mut link = format!("<{base}&page_token=>; rel=\"first\"");
        if let Some(next) = next {
            link.push_str(&format!(",<{base}&page_token={next}>; rel=\"next\""));
        }
        link
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_bounded_a_bad_token_is_refused_and_the_link_keeps_the_filters() {
        let mut k = Keyset::default();
        assert!(k.read("page_size", "0").is_err());
        assert!(k.read("page_size", "1001").is_err());
        assert!(k.read("page_token", "%%%").is_err());
        assert_eq!(k.read("owner", "x"), Ok(false));
        assert_eq!(k.read("page_size", "2"), Ok(true));
        let mut rows = vec!["a", "b", "c"];
        let next = k.cut(&mut rows, |r| r);
        assert_eq!((rows, next.as_deref()), (vec!["a", "b"], Some("Yg")));
        assert_eq!(
            k.link("http://h/p", &[("issuer", "https://i")], Some("Yg")),
            "<http://h/p?page_size=2&issuer=https%3A%2F%2Fi&page_token=>; rel=\"first\",\
             <http://h/p?page_size=2&issuer=https%3A%2F%2Fi&page_token=Yg>; rel=\"next\""
        );
        assert_eq!(k.read("page_token", "Yg"), Ok(true));
        assert_eq!(k.after, "b");
    }
}
