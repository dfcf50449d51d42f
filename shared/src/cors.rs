//! CORS, decided in the gateway: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered from the policy of the rule that would judge
//! the real request — or the global policy — before any authentication, so browsers never see
//! Oathkeeper's "no rule"/401 on a preflight. Real requests from an allowed origin get the
//! `Access-Control-Allow-*` response headers, on denials too, so a browser app can read its 401.

use serde::{Deserialize, Serialize};

use crate::denial::LocalResponse;

/// The policy as written (Oathkeeper's `serve.proxy.cors` keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Exact origins, `*`, or one wildcard label: `https://*.example.com`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default = "default_headers")]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub exposed_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    /// Seconds a browser may cache the preflight answer.
    #[serde(default)]
    pub max_age: u32,
}

fn enabled() -> bool {
    true
}
fn default_methods() -> Vec<String> {
    ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].map(String::from).to_vec()
}
fn default_headers() -> Vec<String> {
    ["Authorization", "Content-Type"].map(String::from).to_vec()
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsPolicy {
    origins: Vec<String>,
    methods: Vec<String>,
    /// Lower-cased.
    headers: Vec<String>,
    exposed: String,
    credentials: bool,
    max_age: u32,
}

impl CorsPolicy {
    /// `None` when the policy is disabled.
    pub fn compile(spec: &CorsSpec) -> Result<Option<CorsPolicy>, (String, String)> {
        if !spec.enabled {
            return Ok(None);
        }
        for (i, origin) in spec.allowed_origins.iter().enumerate() {
            let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            let valid = origin == "*"
                || host.is_some_and(|h| !h.is_empty() && !h.contains(['/', ' ']) && h.matches('*').count() <= 1);
            if !valid {
                return Err((
                    format!("cors.allowed_origins[{i}]"),
                    format!("{origin:?} is not an origin (scheme://host[:port], * or https://*.domain)"),
                ));
            }
        }
        if spec.allow_credentials && spec.allowed_origins.iter().any(|o| o == "*") {
            return Err(("cors.allow_credentials".into(), "cannot be combined with allowed_origins \"*\"".into()));
        }
        Ok(Some(CorsPolicy {
            origins: spec.allowed_origins.clone(),
            methods: spec.allowed_methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            headers: spec.allowed_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            exposed: spec.exposed_headers.join(", "),
            credentials: spec.allow_credentials,
            max_age: spec.max_age,
        }))
    }

    fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|allowed| {
            allowed == "*"
                || allowed.eq_ignore_ascii_case(origin)
                || allowed.split_once('*').is_some_and(|(prefix, suffix)| {
                    // `get`, not indexing: a client's Origin may put a multibyte character
                    // across either boundary, and that is a mismatch, not a panic.
                    let end = origin.len().saturating_sub(suffix.len());
                    let (Some(head), Some(label), Some(tail)) =
                        (origin.get(..prefix.len()), origin.get(prefix.len()..end), origin.get(end..))
                    else {
                        return false;
                    };
                    origin.len() > prefix.len() + suffix.len()
                        && head.eq_ignore_ascii_case(prefix)
                        && tail.eq_ignore_ascii_case(suffix)
                        // The wildcard stands for one DNS label, not "anything".
                        && !label.contains(['.', '/', ':'])
                })
        })
    }

    fn allow_origin_value(&self, origin: &str) -> String {
        if self.origins.iter().any(|o| o == "*") && !self.credentials { "*".into() } else { origin.to_owned() }
    }

    /// The answer to a preflight from `origin` asking for `method` and `headers`.
    pub fn preflight(&self, origin: &str, method: &str, requested_headers: Option<&str>) -> LocalResponse {
        let requested: Vec<String> = requested_headers
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let allowed = self.allows_origin(origin)
            && self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            && requested.iter().all(|h| self.headers.iter().any(|a| a == h || a == "*"));
        if !allowed {
            // No CORS headers: the browser refuses the real request, and says why in its console.
            return LocalResponse { status: 403, headers: vec![("vary".into(), "Origin".into())], body: String::new() };
        }
        let mut headers = self.common_headers(origin);
        headers.push(("access-control-allow-methods".into(), self.methods.join(", ")));
        if !requested.is_empty() {
            headers.push(("access-control-allow-headers".into(), requested.join(", ")));
        }
        if self.max_age > 0 {
            headers.push(("access-control-max-age".into(), self.max_age.to_string()));
        }
        LocalResponse { status: 204, headers, body: String::new() }
    }

    /// Response headers for a real (non-preflight) request from `origin`; empty when the origin
    /// is not allowed.
    pub fn response_headers(&self, origin: &str) -> Vec<(String, String)> {
        if !self.allows_origin(origin) {
            return Vec::new();
        }
        let mut headers = self.common_headers(origin);
        if !self.exposed.is_empty() {
            headers.push(("access-control-expose-headers".into(), self.exposed.clone()));
        }
        headers
    }

    fn common_headers(&self, origin: &str) -> Vec<(String, String)> {
        let mut headers = vec![
            ("access-control-allow-origin".into(), self.allow_origin_value(origin)),
            ("vary".into(), "Origin".into()),
        ];
        if self.credentials {
            headers.push(("access-control-allow-credentials".into(), "true".into()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(spec: serde_json::Value) -> CorsPolicy {
        CorsPolicy::compile(&serde_json::from_value(spec).unwrap()).unwrap().unwrap()
    }

    fn header<'a>(r: &'a [(String, String)], name: &str) -> Option<&'a str> {
        r.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn preflights_from_allowed_origins_get_the_policy() {
        let p = policy(json!({"allowed_origins": ["https://app.example.com", "https://*.example.org"],
            "allow_credentials": true, "max_age": 600, "allowed_headers": ["Authorization", "Content-Type", "X-Trace"]}));
        let r = p.preflight("https://app.example.com", "PUT", Some("authorization, x-trace"));
        assert_eq!(r.status, 204);
        assert_eq!(header(&r.headers, "access-control-allow-origin"), Some("https://app.example.com"));
        assert_eq!(header(&r.headers, "access-control-allow-credentials"), Some("true"));
        assert_eq!(header(&r.headers, "access-control-allow-headers"), Some("authorization, x-trace"));
        assert_eq!(header(&r.headers, "access-control-max-age"), Some("600"));
        assert_eq!(p.preflight("https://eu.example.org", "GET", None).status, 204);
        assert_eq!(p.preflight("https://a.b.example.org", "GET", None).status, 403, "one label only");
        assert_eq!(p.preflight("https://evil.com", "GET", None).status, 403);
        assert_eq!(p.preflight("https://app.example.com", "TRACE", None).status, 403);
        assert_eq!(p.preflight("https://app.example.com", "GET", Some("x-secret")).status, 403);
    }

    #[test]
    fn real_requests_get_allow_origin_and_exposed_headers() {
        let p = policy(json!({"allowed_origins": ["*"], "exposed_headers": ["X-Request-Id"]}));
        let h = p.response_headers("https://any.example");
        assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(header(&h, "access-control-expose-headers"), Some("X-Request-Id"));
        let strict = policy(json!({"allowed_origins": ["https://a.example"]}));
        assert!(strict.response_headers("https://b.example").is_empty());
    }

    #[test]
    fn a_multibyte_origin_at_the_wildcard_boundary_is_refused_without_a_panic() {
        // Caught by the `cors` fuzz target: 'é' straddles the end of the "https://" prefix, and
        // slicing the origin there panicked (in the filter, a trap on a client's request).
        let p = policy(json!({"allowed_origins": ["https://*.example.org"]}));
        assert_eq!(p.preflight("https:/\u{e9}x.example.org", "GET", None).status, 403);
        assert!(p.response_headers("https:/\u{e9}x.example.org").is_empty());
        assert!(p.response_headers("https://x.example.or\u{e9}g").is_empty());
        assert_eq!(p.preflight("https://eu.example.org", "GET", None).status, 204);
    }

    #[test]
    fn bad_policies_are_refused() {
        let bad = |spec| CorsPolicy::compile(&serde_json::from_value(spec).unwrap()).unwrap_err().0;
        assert_eq!(bad(json!({"allowed_origins": ["*"], "allow_credentials": true})), "cors.allow_credentials");
        assert_eq!(bad(json!({"allowed_origins": ["app.example.com"]})), "cors.allowed_origins[0]");
        assert_eq!(bad(json!({"allowed_origins": ["https://a.example/path"]})), "cors.allowed_origins[0]");
        assert!(CorsPolicy::compile(&serde_json::from_value(json!({"enabled": false})).unwrap()).unwrap().is_none());
    }
}
