//! Target `cors`: a CORS policy (JSON, before the first NUL) compiled, then a preflight and a
//! real request from `ORIGIN\0METHOD\0REQUESTED-HEADERS` taken from the rest.
//! Asserts: no panic; a preflight is granted (204) only for an allowed origin, method and
//! headers, and refused (403) without any `access-control-*` header; the allowed origin sent
//! back is the request's own or `*`, never `*` with credentials; real requests get CORS
//! headers exactly when the origin is allowed. "Allowed" is the policy's definition: an exact
//! origin (case-insensitive), `*`, or a pattern whose `*` stands for one DNS label.

use portcullis_shared::cors::{CorsPolicy, CorsSpec};

use crate::split_nul;

pub fn run(data: &[u8]) {
    let (spec, rest) = split_nul(data);
    let Ok(spec) = serde_json::from_slice::<CorsSpec>(spec) else { return };
    let Ok(Some(policy)) = CorsPolicy::compile(&spec) else { return };
    let (origin, rest) = split_nul(rest);
    let (method, requested) = split_nul(rest);
    let (origin, method) = (String::from_utf8_lossy(origin), String::from_utf8_lossy(method));
    let requested = String::from_utf8_lossy(requested);
    let requested = (!requested.is_empty()).then_some(requested.as_ref());

    let allowed = spec.allowed_origins.iter().any(|a| origin_allowed(a, &origin));
    let header =
        |headers: &[(String, String)], name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let response = policy.preflight(&origin, &method, requested);
    match response.status {
        204 => {
            assert!(allowed, "preflight granted to {origin:?}");
            assert!(spec.allowed_methods.iter().any(|m| m.eq_ignore_ascii_case(&method)), "method {method:?}");
            let allow = header(&response.headers, "access-control-allow-origin");
            assert!(allow.as_deref() == Some(origin.as_ref()) || allow.as_deref() == Some("*"), "{allow:?}");
            if spec.allow_credentials {
                assert_ne!(allow.as_deref(), Some("*"), "wildcard origin with credentials");
            }
        }
        403 => assert!(response.headers.iter().all(|(n, _)| !n.starts_with("access-control-")), "refusal with CORS"),
        other => panic!("preflight answered {other}"),
    }
    let real = policy.response_headers(&origin);
    assert_eq!(!real.is_empty(), allowed, "real request from {origin:?}");
}

/// One entry of `allowed_origins` against a request's `Origin`.
fn origin_allowed(allowed: &str, origin: &str) -> bool {
    if allowed == "*" || allowed.eq_ignore_ascii_case(origin) {
        return true;
    }
    let Some((prefix, suffix)) = allowed.split_once('*') else { return false };
    let (origin, prefix, suffix) =
        (origin.to_ascii_lowercase(), prefix.to_ascii_lowercase(), suffix.to_ascii_lowercase());
    let Some(label) = origin.strip_prefix(&prefix).and_then(|o| o.strip_suffix(&suffix)) else { return false };
    // strip_prefix and strip_suffix may overlap on a short origin: the label must be real.
    origin.len() > prefix.len() + suffix.len() && !label.is_empty() && !label.contains(['.', '/', ':'])
}
