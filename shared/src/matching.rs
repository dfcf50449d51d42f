//! Which rule judges a request. A request is reduced to Oathkeeper's matched string,
//! `scheme://host/path`, with the path percent-decoded once, and only when no upstream could
//! read that path as another one: a path with encoded separators, dot segments, `;`
//! parameters, backslashes, double escapes or look-alike characters is refused ([`PathError`],
//! a 400), never resolved into a guess, so `/ratings/..%2Fpublic/x` cannot be judged by the
//! `/public/` rule while an upstream serves it under `/ratings/`. It must never pick one reading
//! of a path that upstreams read in several ways.
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
                    // Compiled on its own: only a fragment whose groups all close inside it
                    // stays inside the group it gets below. `a)|(.*` compiles wrapped in
                    // parentheses, and would turn the whole pattern into an alternation that
                    // matches every URL.
                    Regex::new(fragment).map_err(|e| format!("invalid regular expression <{fragment}>: {e}"))?;
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

/// Why a request cannot be judged. The caller answers 400 with [`PathError::reason`]: a path
/// we cannot read, or one an upstream could read differently, is a path we must not guess
/// about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path: `*`, an absolute URL, or nothing.
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// The decoded path is not UTF-8 (invalid or overlong sequences such as `%c0%af`).
    InvalidUtf8,
    /// A control character, raw or encoded (`%00`, `%0a`, `%7f`, `%c2%85`).
    ControlCharacter,
    /// `%2F` or `%5C`: a separator to routers that decode first, a character to the others.
    EncodedSeparator,
    /// An escape of a character that needs none (`%2e`, `%41`): a router that matches the raw
    /// path and one that decodes it see different paths, and `%2e%2e` is a dot segment only
    /// to the second.
    EncodedUnreserved,
    /// An escape left after one decoding (`%252e`, `%25u002e`): a second decoder sees another
    /// path.
    DoubleEncoded,
    /// A raw `.` or `..` segment, which the gateway should have resolved.
    DotSegment,
    /// An empty segment (`//`), which the gateway should have merged.
    EmptySegment,
    /// A raw backslash, a separator to IIS, some frameworks and Envoy's own normalisation.
    Backslash,
    /// `;` (raw or `%3B`): Tomcat, Jetty and Spring strip `;...` from a segment.
    PathParameter,
    /// `#` in the path.
    Fragment,
    /// A character some upstreams fold into `/`, `\`, `.`, `;` or ASCII (fullwidth and other
    /// compatibility forms, invisible characters, non-ASCII spaces).
    Lookalike,
    /// A segment starting or ending with a space, which some upstreams trim.
    PaddedSegment,
    /// A scheme or host with characters no URL authority has (`@`, `%`, `;`, ...).
    BadAuthority,
}

impl PathError {
    /// The reason code of the 400 denial: `unreadable_path` for what no upstream can read
    /// either, `ambiguous_path` for what upstreams read in different ways, `unreadable_host`
    /// for a scheme or host that cannot be part of a URL.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute
            | PathError::BadPercentEncoding
            | PathError::InvalidUtf8
            | PathError::ControlCharacter => "unreadable_path",
            PathError::BadAuthority => "unreadable_host",
            _ => "ambiguous_path",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the request path must start with '/'",
            PathError::BadPercentEncoding => "the request path has an invalid percent-encoding",
            PathError::InvalidUtf8 => "the request path does not decode to valid UTF-8",
            PathError::ControlCharacter => "the request path has a control character",
            PathError::EncodedSeparator => {
                "the request path has an encoded '/' or '\\' (%2F, %5C), which upstreams read in different ways"
            }
            PathError::EncodedUnreserved => {
                "the request path percent-encodes a character that needs no encoding (such as %2e or %41), \
                 which upstreams read in different ways"
            }
            PathError::DoubleEncoded => {
                "the request path still holds a percent-escape once decoded (such as %252e), which an upstream \
                 that decodes twice reads differently"
            }
            PathError::DotSegment => {
                "the request path has a '.' or '..' segment; the gateway must resolve them (Envoy: normalize_path)"
            }
            PathError::EmptySegment => {
                "the request path has an empty segment ('//'); the gateway must merge slashes (Envoy: merge_slashes)"
            }
            PathError::Backslash => "the request path has a backslash, which some upstreams read as '/'",
            PathError::PathParameter => {
                "the request path has a ';' (raw or %3B), which some upstreams read as the start of path parameters"
            }
            PathError::Fragment => "the request path has a '#' fragment",
            PathError::Lookalike => {
                "the request path has a character that some upstreams fold into '/', '.', ';' or ASCII \
                 (fullwidth or compatibility forms, invisible or non-ASCII space characters)"
            }
            PathError::PaddedSegment => {
                "a segment of the request path starts or ends with a space, which some upstreams trim"
            }
            PathError::BadAuthority => "the request scheme or host has characters a URL authority cannot have",
        })
    }
}

/// The path rules are matched against, from a request target (`/caf%C3%A9?q=1` gives
/// `/café`): the query dropped and percent-escapes decoded once. It refuses, rather than
/// resolves, every path an upstream could read as another path ([`PathError`]): encoded
/// separators, dot segments (raw or encoded), empty segments, `;` parameters, backslashes,
/// escapes of unreserved characters or left after decoding, control characters, invalid
/// UTF-8 and characters that fold to ASCII. So the path judged is the path every upstream
/// serves, decoded or not. Envoy with `normalize_path`, `merge_slashes` and
/// `path_with_escaped_slashes_action: REJECT_REQUEST` resolves or refuses most of these first;
/// this holds without them too.
pub fn normalise_path(target: &str) -> Result<String, PathError> {
    let raw = target.split('?').next().unwrap_or("");
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let byte = if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadPercentEncoding)?;
            let decoded = hex_pair(hex).ok_or(PathError::BadPercentEncoding)?;
            i += 3;
            match decoded {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                d if d.is_ascii_alphanumeric() || b"-._~".contains(&d) => return Err(PathError::EncodedUnreserved),
                d => d,
            }
        } else {
            i += 1;
            match b {
                b'\\' => return Err(PathError::Backslash),
                b'#' => return Err(PathError::Fragment),
                b => b,
            }
        };
        match byte {
            b';' => return Err(PathError::PathParameter),
            b if b.is_ascii_control() => return Err(PathError::ControlCharacter),
            b => out.push(b),
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)?;
    if has_escape(&decoded) {
        return Err(PathError::DoubleEncoded);
    }
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let last = segments.len() - 1;
    for (n, segment) in segments.iter().enumerate() {
        match *segment {
            // The last segment is empty for `/` and for a trailing slash, which stays.
            "" if n != last => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            s if s.starts_with(' ') || s.ends_with(' ') => return Err(PathError::PaddedSegment),
            _ => {}
        }
    }
    for c in decoded.chars().filter(|c| !c.is_ascii()) {
        if c.is_control() {
            return Err(PathError::ControlCharacter);
        }
        if is_lookalike(c) {
            return Err(PathError::Lookalike);
        }
    }
    Ok(decoded)
}

fn hex_pair(hex: &[u8]) -> Option<u8> {
    Some(hex_value(*hex.first()?)? << 4 | hex_value(*hex.get(1)?)?)
}

/// Whether decoding `text` again would change it: `%` and two hex digits, or IIS's `%u` and
/// four.
fn has_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().filter(|(_, b)| **b == b'%').any(|(i, _)| {
        let hex = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        hex(i + 1..i + 3) || (matches!(bytes.get(i + 1), Some(b'u' | b'U')) && hex(i + 2..i + 6))
    })
}

/// Non-ASCII characters that some upstream reads as ASCII: Unicode compatibility forms
/// (NFKC maps `．` U+FF0E to `.`, `／` U+FF0F to `/`, `ａ` to `a`, `;` U+037E to `;`), the
/// slash and dot look-alikes Windows "best fit" and confusable folding map to `/` and `.`
/// (U+2215, U+2044, U+29F8), invisible format characters some stacks drop (U+200B, U+FEFF,
/// bidi controls) and non-ASCII spaces some trim. Inclusive ranges, ascending.
const LOOKALIKES: &[(u32, u32)] = &[
    (0x00A0, 0x00A0),   // no-break space
    (0x00AA, 0x00AA),   // ª
    (0x00AD, 0x00AD),   // soft hyphen
    (0x00B2, 0x00B3),   // ² ³
    (0x00B9, 0x00BA),   // ¹ º
    (0x00BC, 0x00BE),   // ¼ ½ ¾
    (0x017F, 0x017F),   // ſ (long s, NFKC "s")
    (0x02B0, 0x02B8),   // modifier letters ʰ..ʸ
    (0x02E0, 0x02E4),   // modifier letters ˠ..ˤ
    (0x034F, 0x034F),   // combining grapheme joiner
    (0x037E, 0x037E),   // Greek question mark, NFC ";"
    (0x061C, 0x061C),   // Arabic letter mark
    (0x115F, 0x1160),   // Hangul fillers
    (0x1680, 0x1680),   // Ogham space
    (0x17B4, 0x17B5),   // Khmer invisible vowels
    (0x180B, 0x180F),   // Mongolian variation selectors, vowel separator
    (0x1D2C, 0x1D6A),   // modifier letters ᴬ..ᵪ
    (0x2000, 0x200F),   // spaces, zero-width characters, direction marks
    (0x2024, 0x2026),   // ․ ‥ … (NFKC "." ".." "...")
    (0x2028, 0x202F),   // line/paragraph separators, bidi embeddings, narrow no-break space
    (0x2044, 0x2044),   // fraction slash
    (0x205F, 0x206F),   // medium space, word joiner, invisible operators, bidi isolates
    (0x2070, 0x209F),   // superscripts and subscripts
    (0x2100, 0x218F),   // letterlike symbols (℀ is "a/c"), number forms (Ⅰ, ⅟)
    (0x2215, 0x2216),   // division slash, set minus
    (0x2460, 0x24FF),   // enclosed alphanumerics (⒈ is "1.")
    (0x2571, 0x2572),   // box-drawing diagonals
    (0x29F5, 0x29F5),   // reverse solidus operator
    (0x29F8, 0x29F9),   // big solidus, big reverse solidus
    (0x2A74, 0x2A76),   // ::= == ===
    (0x3000, 0x3002),   // ideographic space, comma, full stop
    (0x3164, 0x3164),   // Hangul filler
    (0xFB00, 0xFB06),   // Latin ligatures (ﬀ is "ff")
    (0xFE00, 0xFE19),   // variation selectors, vertical forms
    (0xFE30, 0xFE6F),   // CJK compatibility and small forms (﹒ is ".", ﹨ is "\")
    (0xFEFF, 0xFEFF),   // byte order mark
    (0xFF00, 0xFFEF),   // halfwidth and fullwidth forms (／ ． ； ＼ ａ ...)
    (0xFFF0, 0xFFFF),   // specials
    (0x1BCA0, 0x1BCA3), // shorthand format controls
    (0x1D173, 0x1D17A), // musical format controls
    (0x1D400, 0x1D7FF), // mathematical alphanumerics (𝐚 is "a")
    (0x1F100, 0x1F1FF), // enclosed alphanumeric supplement (🄁 is "0,")
    (0xE0000, 0xE0FFF), // tags, variation selectors supplement
];

fn is_lookalike(c: char) -> bool {
    let c = c as u32;
    LOOKALIKES
        .binary_search_by(|(low, high)| {
            if *high < c {
                std::cmp::Ordering::Less
            } else if *low > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The host part rules are matched against: lower-cased, without a trailing dot, and without
/// the scheme's default port, so `API.example.com.:443` over https is judged as
/// `api.example.com` and cannot fall through to a weaker rule. A host with anything but
/// letters, digits, `-._~`, a `:port` and IPv6 brackets is refused: `@`, `%` or `;` in it
/// could make the matched URL say something the upstream's `Host` does not.
pub fn normalise_host(scheme: &str, host: &str) -> Result<String, PathError> {
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:[]".contains(&b)) {
        return Err(PathError::BadAuthority);
    }
    let mut host = host.to_ascii_lowercase();
    let default_port = match scheme {
        "http" => Some(":80"),
        "https" => Some(":443"),
        _ => None,
    };
    if let Some(port) = default_port {
        // Not for IPv6 literals without brackets, which have no port to strip anyway; after a
        // bracketed one, only a port that follows the `]`.
        let rest = &host[..host.len().saturating_sub(port.len())];
        if host.ends_with(port) && ((host.starts_with('[') && rest.ends_with(']')) || host.matches(':').count() == 1) {
            host.truncate(host.len() - port.len());
        }
    }
    // Every trailing dot: `api.example.com..` must not dodge the rules for `api.example.com`.
    match host.rfind(':').filter(|_| !host.ends_with(']')) {
        Some(colon) if host[..colon].ends_with('.') && !host.starts_with('[') => {
            let name = host[..colon].trim_end_matches('.').len();
            host.replace_range(name..colon, "");
        }
        None => host.truncate(host.trim_end_matches('.').len()),
        _ => {}
    }
    Ok(host)
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

/// The matched string of a request, `scheme://host/path`, from its `:scheme`, `:authority`
/// and `:path`, or the error to answer with a 400 ([`PathError::reason`]). The filter and
/// the decisions API both go through here, so they judge the same way.
pub fn request_url(scheme: &str, host: &str, target: &str) -> Result<String, PathError> {
    let path = normalise_path(target)?;
    let scheme = scheme.to_ascii_lowercase();
    let mut chars = scheme.bytes();
    let valid_scheme = chars.next().is_some_and(|b| b.is_ascii_lowercase())
        && chars.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !valid_scheme {
        return Err(PathError::BadAuthority);
    }
    Ok(matched_url(&scheme, &normalise_host(&scheme, host)?, &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_cannot_close_its_group_and_escape_the_anchors() {
        // `<a)|(.*>` would become `^http://api\.example/(a)|(.*)$`: a top-level alternative
        // that matches every URL of every host, under a rule written for one host. Found by
        // the `index` fuzz target (the index filed the rule under its host, the regex matched
        // `ftp://a.example`).
        for pattern in ["http://api.example/<a)|(.*>", "http://api.example/<x)|(>", "<a)|(b>/c", "http://h/<a))|((b>"] {
            let err = UrlPattern::compile(pattern).err();
            assert!(err.as_deref().is_some_and(|e| e.contains("invalid regular expression")), "{pattern}: {err:?}");
        }
        // Balanced alternatives stay inside their group.
        let p = UrlPattern::compile("http://api.example/<a|b>").unwrap();
        assert!(p.is_match("http://api.example/b"));
        assert!(!p.is_match("ftp://other.example/b"));
    }

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
    fn a_pattern_can_be_case_insensitive_for_case_insensitive_upstreams() {
        // README, "Paths the filter judges": rules are case-sensitive; `(?i)` opts a part out.
        let p = UrlPattern::compile("<http|https>://<[^/]+>/<(?i)admin>/<.*>").unwrap();
        assert!(p.is_match("http://h/ADMIN/x") && p.is_match("http://h/Admin/x") && p.is_match("http://h/admin/x"));
        assert!(!p.is_match("http://h/public/x"));
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
    fn paths_are_decoded_once_and_keep_their_shape() {
        assert_eq!(
            normalise_path("/ratings/1?x=1&next=/../admin").unwrap(),
            "/ratings/1",
            "the query is never matched"
        );
        assert_eq!(normalise_path("/").unwrap(), "/");
        assert_eq!(normalise_path("/?x").unwrap(), "/");
        assert_eq!(normalise_path("/api/").unwrap(), "/api/", "a trailing slash stays");
        assert_eq!(normalise_path("/api").unwrap(), "/api");
        assert_eq!(normalise_path("/caf%C3%A9").unwrap(), "/café");
        assert_eq!(normalise_path("/caf%c3%a9/").unwrap(), "/café/");
        assert_eq!(normalise_path("/files/my%20doc.pdf").unwrap(), "/files/my doc.pdf");
        assert_eq!(normalise_path("/tags/c%23/q%3F").unwrap(), "/tags/c#/q?");
        assert_eq!(normalise_path("/discount/50%25").unwrap(), "/discount/50%", "a lone % is no escape");
        assert_eq!(normalise_path("/a%25zz").unwrap(), "/a%zz");
        assert_eq!(normalise_path("/a%22b%3C%3E").unwrap(), "/a\"b<>", "what Envoy escapes is decoded");
        assert_eq!(normalise_path("/..a/b..").unwrap(), "/..a/b..", "dots inside a segment are no dot segment");
        assert_eq!(normalise_path("/c++/x.y.z").unwrap(), "/c++/x.y.z");
        assert_eq!(normalise_path("/日本/é").unwrap(), "/日本/é", "non-ASCII that folds to nothing ASCII");
        assert_eq!(normalise_path("/a%E2%80%93b").unwrap(), "/a–b", "an en dash is not a look-alike of '-'");
    }

    /// Paths an upstream may read differently from the gateway. Each must be refused: judging
    /// any reading of them lets some upstream serve a resource another rule protects.
    const AMBIGUOUS: &[&str] = &[
        // Encoded separators: `/ratings/..%2Fpublic/x` is `/ratings/...` to a router that
        // splits before decoding and `/public/x` to one that decodes first.
        "/ratings/..%2Fpublic/x",
        "/ratings/..%2fpublic/x",
        "/public/..%2Fratings/1",
        "/ratings%2Fx",
        "/public/..%5Cratings/1",
        "/ratings/..%5cpublic/x",
        // Encoded dot segments, in every case mix.
        "/ratings/%2e%2e/public/x",
        "/ratings/%2E%2e/public/x",
        "/ratings/.%2e/public/x",
        "/ratings/%2e./public/x",
        "/ratings/%2e/x",
        // Escapes left after one decoding: a second decoder sees `..`, `/` or `\`.
        "/ratings/%252e%252e/public/x",
        "/ratings/..%252Fpublic/x",
        "/ratings/..%255cpublic/x",
        // Escapes of unreserved characters: a router matching the raw path sees `%70ublic`,
        // a decoding one `public`.
        "/%70ublic/x",
        "/publi%63/x",
        "/public%2Dx",
        // `;` path parameters: Tomcat, Jetty and Spring drop `;...` from a segment.
        "/public/..;/admin",
        "/admin;x=1",
        "/public;/../admin",
        "/admin;/x",
        "/admin%3Bx=1/y",
        "/admin%3bx",
        // Backslashes, raw: IIS, some frameworks and Envoy itself read them as `/`.
        "/public\\..\\admin",
        "/public\\x",
        // Raw dot segments and empty segments: Envoy with normalize_path/merge_slashes never
        // forwards them; without, upstreams disagree (Express routes them as written, Go
        // redirects, `//host/path` is a network-path reference to URL parsers).
        "/public/../admin",
        "/public/./x",
        "/public/..",
        "/public/.",
        "/..",
        "/.",
        "//admin",
        "/public//x",
        "//public/x",
        // NUL and control characters, raw or encoded.
        "/public/%00/x",
        "/public/x%00",
        "/public/%0a",
        "/public/%7f",
        "/public/%c2%85",
        // Invalid or overlong UTF-8 (`%c0%af` is an overlong `/`, `%e0%80%ae` an overlong `.`).
        "/public/%c0%af..%c0%afadmin",
        "/public/%e0%80%ae%e0%80%ae/admin",
        "/public/%ff",
        "/public/%ed%a0%80",
        // Characters that fold to `/`, `\\`, `.` or `;` (NFKC, best-fit mappings), and invisible ones.
        "/public/%EF%BC%8E%EF%BC%8E/admin",
        "/public/%ef%bc%8f..%ef%bc%8fadmin",
        "/public/..%E2%88%95admin",
        "/public/%E2%81%84x",
        "/public/%EF%BC%BCx",
        "/public/%E2%80%A5/admin",
        "/public/%CD%BEx",
        "/%EF%BD%81dmin",
        "/ad%E2%80%8Bmin",
        "/admin%C2%A0/x",
        // A segment with leading or trailing spaces (trimmed by some Spring versions).
        "/admin%20/x",
        "/%20admin/x",
        // A fragment in the path: Envoy refuses it; anything else may strip it or not.
        "/public#/../admin",
        "/public/x#y",
        // Not an origin-form path.
        "http://gw/admin",
        "*",
        "",
    ];

    #[test]
    fn ambiguous_paths_are_refused() {
        let judged: Vec<String> = AMBIGUOUS
            .iter()
            .filter_map(|p| normalise_path(p).ok().map(|judged| format!("{p:?} judged as {judged:?}")))
            .collect();
        assert!(judged.is_empty(), "{} ambiguous paths were judged:\n{}", judged.len(), judged.join("\n"));
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let refused = |p: &str| normalise_path(p).map_err(|e| (e, e.reason()));
        use PathError::*;
        assert_eq!(refused("/ratings/..%2Fpublic/x"), Err((EncodedSeparator, "ambiguous_path")));
        assert_eq!(refused("/a%5cb"), Err((EncodedSeparator, "ambiguous_path")));
        assert_eq!(refused("/a/%2e%2e/b"), Err((EncodedUnreserved, "ambiguous_path")));
        assert_eq!(refused("/%41dmin"), Err((EncodedUnreserved, "ambiguous_path")));
        assert_eq!(refused("/a/%252e%252e/b"), Err((DoubleEncoded, "ambiguous_path")));
        assert_eq!(refused("/a/%25u002e"), Err((DoubleEncoded, "ambiguous_path")));
        assert_eq!(refused("/a/../b"), Err((DotSegment, "ambiguous_path")));
        assert_eq!(refused("/a//b"), Err((EmptySegment, "ambiguous_path")));
        assert_eq!(refused("/a\\b"), Err((Backslash, "ambiguous_path")));
        assert_eq!(refused("/a;b"), Err((PathParameter, "ambiguous_path")));
        assert_eq!(refused("/a%3Bb"), Err((PathParameter, "ambiguous_path")));
        assert_eq!(refused("/a#b"), Err((Fragment, "ambiguous_path")));
        assert_eq!(refused("/a%EF%BC%8Fb"), Err((Lookalike, "ambiguous_path")));
        assert_eq!(refused("/a%20/b"), Err((PaddedSegment, "ambiguous_path")));
        assert_eq!(refused("/a%zz"), Err((BadPercentEncoding, "unreadable_path")));
        assert_eq!(refused("/a%2"), Err((BadPercentEncoding, "unreadable_path")));
        assert_eq!(refused("/a%00b"), Err((ControlCharacter, "unreadable_path")));
        assert_eq!(refused("/a\tb"), Err((ControlCharacter, "unreadable_path")));
        assert_eq!(refused("/a%ff"), Err((InvalidUtf8, "unreadable_path")));
        assert_eq!(refused("/a%c0%ae"), Err((InvalidUtf8, "unreadable_path")));
        assert_eq!(refused("a/b"), Err((NotAbsolute, "unreadable_path")));
        assert!(EncodedSeparator.to_string().contains("%2F"), "the message names what was refused");
    }

    #[test]
    fn every_lookalike_range_is_ordered_and_refused() {
        for pair in LOOKALIKES.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{pair:x?} out of order");
        }
        for (low, high) in LOOKALIKES {
            assert!(low <= high);
            for c in [*low, *high].into_iter().filter_map(char::from_u32) {
                assert!(is_lookalike(c), "U+{:04X}", c as u32);
            }
        }
        for c in ['é', 'ß', '日', '–', 'Ω', '\u{00A1}', '\u{FEFE}'] {
            assert!(!is_lookalike(c), "{c:?} is no look-alike");
        }
    }

    #[test]
    fn hosts_are_normalised_so_a_rule_cannot_be_dodged() {
        let host = |scheme: &str, host: &str| normalise_host(scheme, host).unwrap();
        assert_eq!(host("https", "API.Example.com"), "api.example.com");
        assert_eq!(host("https", "api.example.com."), "api.example.com");
        assert_eq!(host("https", "api.example.com:443"), "api.example.com");
        assert_eq!(host("https", "api.example.com.:443"), "api.example.com");
        assert_eq!(host("http", "api.example.com:80"), "api.example.com");
        assert_eq!(host("http", "api.example.com.:8080"), "api.example.com:8080");
        assert_eq!(host("http", "api.example.com:443"), "api.example.com:443", "not http's default");
        assert_eq!(host("https", "[::1]:443"), "[::1]");
        assert_eq!(host("http", "127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(host("http", "my_host"), "my_host");
        for bad in ["h/public", "user@h", "h%2fx", "h;x", "h x", "h?x", "h#x", "h\\x"] {
            assert_eq!(normalise_host("http", bad), Err(PathError::BadAuthority), "{bad}");
        }
    }

    #[test]
    fn every_trailing_dot_of_a_host_is_removed() {
        // Found by the `path` fuzz target (host normalisation was not idempotent): only one
        // dot was removed, so `api.example.com..` was judged as `api.example.com.` and missed
        // the rules written for `api.example.com`.
        let host = |scheme: &str, host: &str| normalise_host(scheme, host).unwrap();
        assert_eq!(host("https", "API.example.com.."), "api.example.com");
        assert_eq!(host("https", "api.example.com...:443"), "api.example.com");
        assert_eq!(host("http", "api.example.com..:8080"), "api.example.com:8080");
    }

    #[test]
    fn only_a_port_after_an_ipv6_literal_is_stripped() {
        // Caught by the `path` fuzz target (host normalisation was not idempotent): each call
        // stripped one more default port from `[::1]:80:80`.
        let once = normalise_host("http", "[::1]:80:80").unwrap();
        assert_eq!(normalise_host("http", &once).unwrap(), once);
        assert_eq!(normalise_host("http", "[::1]:80").unwrap(), "[::1]");
    }

    #[test]
    fn the_request_url_is_scheme_host_and_path() {
        assert_eq!(
            request_url("HTTPS", "API.example.com:443", "/caf%C3%A9?q").unwrap(),
            "https://api.example.com/café"
        );
        assert_eq!(request_url("http", "h", "/a/../b"), Err(PathError::DotSegment));
        assert_eq!(request_url("http", "h/public", "/admin"), Err(PathError::BadAuthority));
        assert_eq!(request_url("ht:tp", "h", "/"), Err(PathError::BadAuthority));
        assert_eq!(request_url("", "h", "/"), Err(PathError::BadAuthority));
    }
}

/// What the index needs to know about a `match.url` pattern without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternInfo {
    /// Literal text before the first `<...>`: every URL the pattern matches starts with it.
    pub literal_prefix: String,
    /// The literal start of the path (`/ratings` in `<http|https>://<[^/]+>/ratings<.*>`), when
    /// the scheme and host parts provably cannot contain a `/`, so every matched URL's path
    /// starts with it.
    pub path_prefix: Option<String>,
    /// Literal characters in the pattern: more means more specific.
    pub specificity: usize,
    /// Path segments written literally between slashes (`tenants` in `/v2/tenants/<t>/`):
    /// every URL the pattern matches has each of them as a whole segment of its path.
    pub segments: Vec<String>,
}

impl PatternInfo {
    pub fn analyse(pattern: &str, strategy: Strategy) -> PatternInfo {
        let parts = split_delimited(pattern).unwrap_or_else(|_| vec![(pattern, None)]);
        let literal_prefix = parts.first().map_or("", |(l, _)| l).to_owned();
        let specificity = parts.iter().map(|(l, _)| l.len()).sum();
        PatternInfo {
            literal_prefix,
            path_prefix: path_prefix(&parts, strategy),
            specificity,
            segments: segments(&parts),
        }
    }

    /// Whether the literal prefix names a host (`https://api.example.com/...`): the most
    /// selective thing to index on.
    fn has_literal_host(&self) -> bool {
        self.literal_prefix.find("://").is_some_and(|i| self.literal_prefix.len() > i + 3)
    }
}

/// Whole literal segments after the scheme separator. A segment counts only when slashes
/// bound it inside the same literal, so no fragment can extend it.
fn segments(parts: &[(&str, Option<&str>)]) -> Vec<String> {
    let mut after_scheme = false;
    let mut out = Vec::new();
    for (literal, _) in parts {
        let text = if after_scheme {
            *literal
        } else if let Some(i) = literal.find("://") {
            after_scheme = true;
            // The host follows the separator: skip up to the first slash.
            match literal[i + 3..].find('/') {
                Some(j) => &literal[i + 3 + j..],
                None => continue,
            }
        } else {
            continue;
        };
        let pieces: Vec<&str> = text.split('/').collect();
        // Interior pieces are bounded by slashes on both sides.
        if pieces.len() > 2 {
            out.extend(pieces[1..pieces.len() - 1].iter().filter(|p| !p.is_empty()).map(|p| (*p).to_owned()));
        }
    }
    out
}

fn path_prefix(parts: &[(&str, Option<&str>)], strategy: Strategy) -> Option<String> {
    let mut seen_scheme_separator = false;
    for (literal, fragment) in parts {
        let search_from = if seen_scheme_separator {
            0
        } else if let Some(i) = literal.find("://") {
            seen_scheme_separator = true;
            i + 3
        } else {
            literal.len()
        };
        if seen_scheme_separator {
            if let Some(slash) = literal[search_from..].find('/') {
                return Some(literal[search_from + slash..].to_owned());
            }
        }
        // A fragment that could contain '/' or "://" makes where the path starts unknowable.
        if let Some(fragment) = fragment {
            if !slash_free(fragment, strategy) {
                return None;
            }
        }
    }
    None
}

/// Conservatively: can this fragment never match a string containing `/`?
fn slash_free(fragment: &str, strategy: Strategy) -> bool {
    match strategy {
        Strategy::Glob => !fragment.contains("**") && !fragment.contains('[') && !fragment.contains('/'),
        Strategy::Regexp => {
            let mut rest = fragment;
            loop {
                let open = rest.find('[').unwrap_or(rest.len());
                // Outside classes: any-character, escapes (\S, \W, ...) and '/' itself can match '/'.
                if rest[..open].contains(['.', '\\', '/']) {
                    return false;
                }
                if open == rest.len() {
                    return true;
                }
                let Some(close) = rest[open + 1..].find(']') else { return false };
                let class = &rest[open + 1..open + 1 + close];
                let ok = match class.strip_prefix('^') {
                    Some(negated) => negated.contains('/'),
                    None => {
                        !class.is_empty() && class.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
                    }
                };
                if !ok {
                    return false;
                }
                rest = &rest[open + 1 + close + 1..];
            }
        }
    }
}

/// Which rules could match a URL: a byte trie over literal prefixes of the whole URL, another
/// over literal path prefixes, and the rules neither applies to. Candidates come back in rank
/// order so the caller runs the fewest regexes; selection cost stays nearly flat in the
/// number of rules.
#[derive(Debug, Default)]
pub struct RuleIndex {
    url_trie: Trie,
    /// Rarest literal path segment → rules that contain it.
    by_segment: std::collections::HashMap<String, Vec<u32>>,
    path_trie: Trie,
    always: Vec<u32>,
}

#[derive(Debug, Default)]
struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Default)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    ranks: Vec<u32>,
}

impl Trie {
    fn insert(&mut self, key: &str, rank: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut node = 0usize;
        for &b in key.as_bytes() {
            let next = match self.nodes[node].children.binary_search_by_key(&b, |(c, _)| *c) {
                Ok(i) => self.nodes[node].children[i].1 as usize,
                Err(i) => {
                    let id = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[node].children.insert(i, (b, id as u32));
                    id
                }
            };
            node = next;
        }
        self.nodes[node].ranks.push(rank);
    }

    /// Ranks of every key that is a prefix of `text`.
    fn prefixes_of(&self, text: &str, out: &mut Vec<u32>) {
        let Some(mut node) = self.nodes.first() else { return };
        out.extend_from_slice(&node.ranks);
        for &b in text.as_bytes() {
            match node.children.binary_search_by_key(&b, |(c, _)| *c) {
                Ok(i) => node = &self.nodes[node.children[i].1 as usize],
                Err(_) => return,
            }
            out.extend_from_slice(&node.ranks);
        }
    }
}

impl RuleIndex {
    /// Builds the index from each rule's analysis, given in rank order (rank = position). Each
    /// rule goes where it is most selective: a literal host, else its rarest literal path
    /// segment, else its literal path prefix, else the always-tried list.
    pub fn build<'a>(infos: impl IntoIterator<Item = &'a PatternInfo> + Clone) -> Self {
        let mut frequency: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for info in infos.clone() {
            for segment in &info.segments {
                *frequency.entry(segment.as_str()).or_default() += 1;
            }
        }
        let mut index = RuleIndex::default();
        for (rank, info) in infos.into_iter().enumerate() {
            let rank = rank as u32;
            let rarest = info.segments.iter().min_by_key(|s| frequency.get(s.as_str()).copied().unwrap_or(0));
            if info.has_literal_host() {
                index.url_trie.insert(&info.literal_prefix, rank);
            } else if let Some(segment) = rarest {
                index.by_segment.entry(segment.clone()).or_default().push(rank);
            } else if let Some(p) = &info.path_prefix {
                index.path_trie.insert(p, rank);
            } else if !info.literal_prefix.is_empty() {
                index.url_trie.insert(&info.literal_prefix, rank);
            } else {
                index.always.push(rank);
            }
        }
        index
    }

    /// Ranks of the rules that could match `url` (`scheme://host/path`), ascending.
    pub fn candidates(&self, url: &str) -> Vec<u32> {
        let mut out = self.always.clone();
        self.url_trie.prefixes_of(url, &mut out);
        if let Some(path) = url.find("://").and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..])) {
            self.path_trie.prefixes_of(path, &mut out);
            if !self.by_segment.is_empty() {
                for segment in path.split('/').filter(|s| !s.is_empty()) {
                    if let Some(ranks) = self.by_segment.get(segment) {
                        out.extend_from_slice(ranks);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    fn info(p: &str) -> PatternInfo {
        PatternInfo::analyse(p, Strategy::Regexp)
    }

    #[test]
    fn analysis_finds_literal_and_path_prefixes() {
        let i = info("<http|https>://<[^/]+>/ratings<(/.*)?>");
        assert_eq!((i.literal_prefix.as_str(), i.path_prefix.as_deref()), ("", Some("/ratings")));
        assert_eq!(info("https://api.example.com/v1/<.*>").path_prefix.as_deref(), Some("/v1/"));
        assert_eq!(info("https://api.example.com/v1/<.*>").literal_prefix, "https://api.example.com/v1/");
        // A host fragment that may contain '/' hides where the path starts.
        assert_eq!(info("http://<.*>/admin").path_prefix, None);
        assert_eq!(info("http://<[a-z/]+>/admin").path_prefix, None);
        assert_eq!(info("http://<[a-z0-9-]+>.example.com/admin").path_prefix.as_deref(), Some("/admin"));
        assert_eq!(info("<.*>").path_prefix, None);
        assert_eq!(PatternInfo::analyse("http://<**>/x", Strategy::Glob).path_prefix, None);
        assert_eq!(PatternInfo::analyse("http://<*>/x", Strategy::Glob).path_prefix.as_deref(), Some("/x"));
        assert!(info("http://h/a/1").specificity > info("http://h/a/<.*>").specificity);
        assert_eq!(
            info("<http|https>://<[^/]+>/v2/tenants/<[a-z]+>/items9/<.*>").segments,
            ["v2", "tenants", "items9"]
        );
        assert_eq!(
            info("https://h/api/v1").segments,
            ["api"],
            "a trailing literal is not a whole segment: a fragment could extend it"
        );
        assert!(info("<.*>/x/y").segments.is_empty(), "no scheme separator in a literal");
    }

    #[test]
    fn candidates_are_the_rules_whose_prefixes_fit() {
        let patterns = [
            "<http|https>://<[^/]+>/ratings<(/.*)?>",
            "https://api.example.com/v1/<.*>",
            "<.*>",
            "<http|https>://<[^/]+>/public/<.*>",
            "https://other.example.com<.*>",
        ];
        let infos: Vec<PatternInfo> = patterns.iter().map(|p| info(p)).collect();
        let index = RuleIndex::build(&infos);
        assert_eq!(index.candidates("http://gw/ratings/1"), vec![0, 2]);
        assert_eq!(index.candidates("https://api.example.com/v1/x"), vec![1, 2]);
        assert_eq!(index.candidates("https://other.example.com/ratings"), vec![0, 2, 4]);
        assert_eq!(index.candidates("http://gw/nothing"), vec![2]);
        assert_eq!(index.candidates("http://gw/public/a"), vec![2, 3], "indexed by its literal segment");
    }
}
