//! Which rule judges a request. A request is reduced to Oathkeeper's matched string,
//! `scheme://host/path`, with the path percent-decoded and its dot segments and repeated
//! slashes resolved, so `/public/..%2Fadmin` is judged as `/admin` and cannot slip past a rule.
//! Unlike Oathkeeper, a trailing slash is kept (`/api/` stays distinct from `/api`), and when
//! several rules match, the first in rule-set order wins instead of failing with a 500.

use regex_lite::Regex;
use serde::{Deserialize, Serialize};

/// How the `<...>` parts of a `match.url` are read: Oathkeeper's two strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Regexp,
    Glob,
}

/// A URL pattern in Oathkeeper's `regexp` strategy: literal text with regular expressions
/// between first-level `<` `>` delimiters, anchored on the whole matched string.
#[derive(Debug, Clone)]
pub struct UrlPattern {
    regex: Regex,
}

impl UrlPattern {
    /// Compiles a `match.url`: text outside first-level `<` `>` is literal, each fragment
    /// inside is read with `strategy`, and the whole URL is anchored. Every fragment is checked
    /// alone so an error names the fragment that is wrong.
    pub fn compile_with(pattern: &str, strategy: Strategy) -> Result<Self, String> {
        let mut out = String::with_capacity(pattern.len() + 8);
        out.push('^');
        for (literal, fragment) in split_delimited(pattern)? {
            out.push_str(&regex_lite::escape(literal));
            let Some(fragment) = fragment else { continue };
            match strategy {
                Strategy::Regexp => {
                    Regex::new(&format!("^(?:{fragment})$"))
                        .map_err(|e| format!("invalid regular expression <{fragment}>: {e}"))?;
                    out.push('(');
                    out.push_str(fragment);
                    out.push(')');
                }
                Strategy::Glob => out.push_str(&glob_to_regex(fragment)?),
            }
        }
        out.push('$');
        let regex = Regex::new(&out).map_err(|e| format!("invalid pattern: {e}"))?;
        Ok(Self { regex })
    }

    /// Oathkeeper's `regexp` strategy: `lit<re>lit` becomes `^lit(re)lit$`, each `<...>` one
    /// capture group.
    pub fn compile(pattern: &str) -> Result<Self, String> {
        Self::compile_with(pattern, Strategy::Regexp)
    }

    /// Oathkeeper's `glob` strategy: inside `<...>`, `*` is any run without a separator (`.` or
    /// `/`), `**` any run, `?` one non-separator character, `[a-z]`/`[!a]` one character and
    /// `{a,b}` alternatives. Unlike gobwas/glob (Oathkeeper issue #963), separators stay
    /// separators inside alternatives. Glob patterns have no capture groups.
    pub fn compile_glob(pattern: &str) -> Result<Self, String> {
        Self::compile_with(pattern, Strategy::Glob)
    }

    /// Matches the whole URL; on success returns the capture groups in order (a group that did
    /// not take part is `""`, as in Oathkeeper).
    pub fn captures(&self, url: &str) -> Option<Vec<String>> {
        let caps = self.regex.captures(url)?;
        Some(caps.iter().skip(1).map(|m| m.map(|m| m.as_str().to_owned()).unwrap_or_default()).collect())
    }

    pub fn is_match(&self, url: &str) -> bool {
        self.regex.is_match(url)
    }
}

/// Splits a pattern into (literal, fragment) pairs at first-level `<` `>` delimiters; the last
/// pair has no fragment.
fn split_delimited(pattern: &str) -> Result<Vec<(&str, Option<&str>)>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let (mut literal_start, mut start) = (0usize, 0usize);
    for (i, c) in pattern.char_indices() {
        match c {
            '<' => {
                if depth == 0 {
                    start = i + 1;
                }
                depth += 1;
            }
            '>' if depth == 0 => {
                return Err(format!("unbalanced pattern: '>' at byte {i} has no matching '<'"));
            }
            '>' => {
                depth -= 1;
                if depth == 0 {
                    parts.push((&pattern[literal_start..start - 1], Some(&pattern[start..i])));
                    literal_start = i + 1;
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced pattern: '<' at byte {} is never closed", start.saturating_sub(1)));
    }
    parts.push((&pattern[literal_start..], None));
    Ok(parts)
}

/// Translates one glob fragment to a regular expression (no capture groups).
fn glob_to_regex(glob: &str) -> Result<String, String> {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut alternatives = 0usize;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                out.push_str(".*");
                i += 1;
            }
            '*' => out.push_str("[^./]*"),
            '?' => out.push_str("[^./]"),
            '[' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|c| *c == ']')
                    .map(|p| i + 1 + p)
                    .ok_or_else(|| format!("invalid glob <{glob}>: '[' is never closed"))?;
                let mut class: String = chars[i + 1..end].iter().collect();
                if class.is_empty() {
                    return Err(format!("invalid glob <{glob}>: empty character class"));
                }
                if let Some(rest) = class.strip_prefix('!') {
                    class = format!("^{rest}");
                }
                out.push('[');
                out.push_str(&class.replace('\\', "\\\\").replace('[', "\\["));
                out.push(']');
                i = end;
            }
            '{' => {
                alternatives += 1;
                out.push_str("(?:");
            }
            ',' if alternatives > 0 => out.push('|'),
            '}' if alternatives > 0 => {
                alternatives -= 1;
                out.push(')');
            }
            '\\' => {
                i += 1;
                let c = chars.get(i).ok_or_else(|| format!("invalid glob <{glob}>: trailing '\\'"))?;
                out.push_str(&regex_lite::escape(&c.to_string()));
            }
            c => out.push_str(&regex_lite::escape(&c.to_string())),
        }
        i += 1;
    }
    if alternatives > 0 {
        return Err(format!("invalid glob <{glob}>: '{{' is never closed"));
    }
    Ok(out)
}

/// Why a request path cannot be judged. The caller answers 400: a path we cannot read is a
/// path we must not guess about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    BadPercentEncoding,
    ControlCharacter,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the request path must start with '/'",
            PathError::BadPercentEncoding => "the request path has an invalid percent-encoding",
            PathError::ControlCharacter => "the request path decodes to a control character",
        })
    }
}

/// Reduces a request target (`/a/%2e%2e/b?q=1`) to the path rules are matched against
/// (`/b`): the query and fragment dropped, percent-escapes decoded once, then `.` and `..`
/// segments resolved and repeated slashes merged. `..` never climbs above the root.
pub fn normalise_path(target: &str) -> Result<String, PathError> {
    let raw = target.split(['?', '#']).next().unwrap_or("");
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = percent_decode(raw)?;
    let trailing_slash = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing_slash && !segments.is_empty()) {
        out.push('/');
    }
    Ok(out)
}

fn percent_decode(input: &str) -> Result<String, PathError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadPercentEncoding)?;
            let hi = hex_value(hex[0]).ok_or(PathError::BadPercentEncoding)?;
            let lo = hex_value(hex[1]).ok_or(PathError::BadPercentEncoding)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.iter().any(|b| b.is_ascii_control()) {
        return Err(PathError::ControlCharacter);
    }
    String::from_utf8(out).map_err(|_| PathError::BadPercentEncoding)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The string a rule's `match.url` is matched against.
pub fn matched_url(scheme: &str, host: &str, normalised_path: &str) -> String {
    let mut url = String::with_capacity(scheme.len() + host.len() + normalised_path.len() + 3);
    url.push_str(scheme);
    url.push_str("://");
    url.push_str(host);
    url.push_str(normalised_path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexp_pattern_is_anchored_and_literal_outside_delimiters() {
        let p = UrlPattern::compile("http://<[^/]+>/ratings/<[0-9]+>").unwrap();
        assert_eq!(
            p.captures("http://example.com:8080/ratings/42"),
            Some(vec!["example.com:8080".to_owned(), "42".to_owned()])
        );
        assert!(!p.is_match("http://example.com/ratings/42/extra"));
        assert!(!p.is_match("xhttp://example.com/ratings/42"));
        // A '.' outside the delimiters is a literal dot, not "any character".
        let dotted = UrlPattern::compile("http://a.b/x").unwrap();
        assert!(!dotted.is_match("http://aXb/x"));
    }

    #[test]
    fn nested_groups_and_non_participating_captures() {
        let p = UrlPattern::compile("<http|https>://localhost/<(foo|bar)?>").unwrap();
        assert_eq!(p.captures("http://localhost/"), Some(vec!["http".into(), "".into(), "".into()]));
    }

    #[test]
    fn pattern_errors_name_the_problem() {
        assert!(UrlPattern::compile("http://x/<[0-9]+").unwrap_err().contains("never closed"));
        assert!(UrlPattern::compile("http://x/>").unwrap_err().contains("no matching '<'"));
        assert!(UrlPattern::compile("http://x/<[0-9+>").unwrap_err().contains("<[0-9+>"));
    }

    #[test]
    fn glob_strategy_follows_oathkeeper_with_separators_respected() {
        let g = |p: &str| UrlPattern::compile_glob(p).unwrap();
        let p = g("https://example.com/<*>");
        assert!(p.is_match("https://example.com/"));
        assert!(p.is_match("https://example.com/abc"));
        assert!(!p.is_match("https://example.com/file.txt"), "'.' is a separator");
        assert!(!p.is_match("https://example.com/foo/bar"));
        assert!(g("https://example.com/<**>").is_match("https://example.com/foo/bar.txt"));
        assert!(!g("https://<*>.example.com/").is_match("https://a.b.example.com/"));
        assert!(g("<{http,https}>://h/<?>").is_match("https://h/x"));
        assert!(!g("<{http,https}>://h/<?>").is_match("ftp://h/x"));
        assert!(g("<http|https>://h/").is_match("http|https://h/"), "'|' is literal in glob");
        assert!(g("http://h/<[0-9]*>").is_match("http://h/1abc"));
        assert!(g("http://h/<[!a]>").is_match("http://h/b"));
        assert!(!g("http://h/<[!a]>").is_match("http://h/a"));
        assert!(!g("http://h/<{,????*}>").is_match("http://h/123/4"), "Oathkeeper #963 fixed");
        assert_eq!(g("http://h/<*>").captures("http://h/x"), Some(vec![]), "glob has no captures");
        assert!(UrlPattern::compile_glob("http://h/<[a>").unwrap_err().contains("never closed"));
        assert!(UrlPattern::compile_glob("http://h/<{a,b>").unwrap_err().contains("never closed"));
    }

    #[test]
    fn paths_are_decoded_and_dot_segments_resolved() {
        assert_eq!(normalise_path("/public/../ratings/1?x=1").unwrap(), "/ratings/1");
        assert_eq!(normalise_path("/public/..%2Fratings/1").unwrap(), "/ratings/1");
        assert_eq!(normalise_path("/public/%2e%2e/ratings").unwrap(), "/ratings");
        assert_eq!(normalise_path("//a///b").unwrap(), "/a/b");
        assert_eq!(normalise_path("/../../etc").unwrap(), "/etc");
        assert_eq!(normalise_path("/").unwrap(), "/");
        assert_eq!(normalise_path("/api/").unwrap(), "/api/");
        assert_eq!(normalise_path("/api/x/..").unwrap(), "/api/");
        assert_eq!(normalise_path("/caf%C3%A9").unwrap(), "/café");
    }

    #[test]
    fn unreadable_paths_are_refused() {
        assert_eq!(normalise_path("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalise_path("/a%2"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalise_path("/a%00b"), Err(PathError::ControlCharacter));
        assert_eq!(normalise_path("/a%ff"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalise_path("a/b"), Err(PathError::NotAbsolute));
    }
}
