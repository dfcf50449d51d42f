//! Target `path`: a request (`METHOD SCHEME HOST TARGET`, space-separated) reduced to the
//! string rules match (normalised host and path), then rule selection over a fixed rule set.
//! Asserts: a normalised path is absolute, has no empty, `.` or `..` segment, no backslash and
//! no control character; normalising it again changes nothing (an upstream that decodes once
//! more sees the path that was judged, so `%252e%252e` must not become `%2e%2e`); host
//! normalisation is idempotent; and the rule the index selects is the first rule in
//! precedence order whose method and pattern match (checked by a linear scan over patterns
//! compiled independently).
use std::collections::HashMap;
use std::sync::LazyLock;

use portcullis_shared::matching::{Strategy, UrlPattern, matched_url, normalise_host, normalise_path};
use portcullis_shared::rule::{RuleSet, RuleSpec, parse_rules};
use serde_json::json;

pub struct Fixed {
    pub rules: RuleSet,
    /// Each rule's pattern, by id, compiled apart from the rule set.
    pub patterns: HashMap<String, UrlPattern>,
}

impl Fixed {
    /// Compiles `specs` and, independently, each rule's pattern.
    pub fn new(specs: Vec<RuleSpec>, default: Strategy) -> Option<Self> {
        let rules = RuleSet::compile_with(&specs, default).ok()?;
        let patterns = specs
            .iter()
            .map(|s| {
                let strategy = s.matcher.strategy.unwrap_or(default);
                Some((s.id.clone(), UrlPattern::compile_with(&s.matcher.url, strategy).ok()?))
            })
            .collect::<Option<_>>()?;
        Some(Self { rules, patterns })
    }

    /// The index's choice must be the linear scan's choice, captures included.
    pub fn check_selection(&self, method: &str, url: &str) -> Option<String> {
        let selected = self.rules.select(method, url);
        let linear = self.rules.iter().find_map(|r| {
            if !r.matches_method(method) {
                return None;
            }
            self.patterns[&r.id].captures(url).map(|c| (r.id.clone(), c))
        });
        let selected_id = selected.map(|(r, c)| (r.id.clone(), c));
        assert_eq!(selected_id, linear, "index and linear scan disagree for {method} {url:?}");
        selected_id.map(|(id, _)| id)
    }
}

fn rule(id: &str, url: &str, methods: &[&str], strategy: Option<&str>, priority: i32) -> serde_json::Value {
    let mut m = json!({"url": url, "methods": methods});
    if let Some(s) = strategy {
        m["strategy"] = json!(s);
    }
    json!({"id": id, "priority": priority, "match": m,
           "authenticators": [{"handler": "noop"}], "authorizer": {"handler": "allow"}})
}

/// One rule per way the index files a rule: literal host, rarest literal segment, literal path
/// prefix, literal prefix without a host, and the always-tried list.
static FIXED: LazyLock<Fixed> = LazyLock::new(|| {
    let all = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    let specs = parse_rules(json!([
        rule("admin", "<http|https>://<[^/]+>/admin<(/.*)?>", &all, None, 0),
        rule("public", "<http|https>://<[^/]+>/public/<.*>", &["GET", "HEAD"], None, 0),
        rule("ratings", "<http|https>://<[^/]+>/ratings/<[0-9]+>", &["GET"], None, 0),
        rule("tenant-items", "<http|https>://<[^/]+>/v2/tenants/<[a-z]+>/items/<.*>", &all, None, 0),
        rule("api-host", "https://api.example.com/v1/<.*>", &all, None, 0),
        rule("api-host-admin", "https://api.example.com/v1/admin/<.*>", &all, None, 5),
        rule("static-glob", "<{http,https}>://<*>/static/<**>", &["GET"], Some("glob"), 0),
        rule("one-file-glob", "http://files.example.com/<*.txt>", &["GET"], Some("glob"), 0),
        rule("http-only", "http://<[^/]+>/plain<.*>", &["GET"], None, 0),
        rule("anything-under-docs", "<.*>/docs/<.*>", &["GET"], None, -1),
        rule("root", "<http|https>://<[^/]+>/", &["GET"], None, 0),
    ]))
    .unwrap_or_else(|e| panic!("the fixed rules must parse: {e}"));
    Fixed::new(specs, Strategy::Regexp).unwrap_or_else(|| panic!("the fixed rule set must compile"))
});

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, ' ');
    let (method, scheme, host, target) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );

    let Some(host) = normalise_host(scheme, host).ok() else { return };
    assert_eq!(normalise_host(scheme, &host).ok(), Some(host.clone()), "host normalisation is not idempotent");

    let Ok(path) = normalise_path(target) else { return };
    check_path(&path);
    // The judged path, read again as a request path (its literal `?` and `#` escaped), must
    // come out unchanged: an upstream that decodes once more must see the path we judged.
    if let Ok(again) = normalise_path(&path.replace('?', "%3F").replace('#', "%23")) {
        assert_eq!(again, path, "normalising {target:?} twice changes the path");
    }

    let url = matched_url(scheme, &host, &path);
    FIXED.check_selection(method, &url);
}

/// What every path a rule is matched against looks like.
pub fn check_path(path: &str) {
    assert!(path.starts_with('/'), "{path:?} is not absolute");
    assert!(!path.contains('\\'), "{path:?} keeps a backslash");
    assert!(!path.bytes().any(|b| b.is_ascii_control()), "{path:?} has a control character");
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        assert!(*segment != "." && *segment != "..", "{path:?} keeps a dot segment");
        // Only the last segment may be empty (a trailing slash, or the root).
        assert!(!segment.is_empty() || i == segments.len() - 1, "{path:?} has an empty segment");
    }
}
