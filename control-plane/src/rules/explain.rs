//! `POST /admin/rules/explain`: judges a described request exactly as the decisions API
//! would (same rule set, same driver, same call-outs and cache) and answers with why: the rule,
//! the verdict, the denial reason and every call-out made. Credential header values are never
//! echoed back. It validates its input strictly and never changes any state but the call cache.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderName;
use portcullis_shared::matching::request_url;
use portcullis_shared::pipeline::Verdict;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::error::{ApiError, ApiJson};
use crate::rules::decider::{CallRecord, Judged, forwarded_client, redact};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    #[serde(default = "get")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn get() -> String {
    "GET".into()
}

pub async fn handle(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ExplainRequest>,
) -> Result<Json<Value>, ApiError> {
    let judged = judged(&body).map_err(ApiError::invalid_request)?;
    let rules = state.rules.rule_set();
    let mut calls = Vec::new();
    let decision = state.decider.decide(&rules, &judged, state.clock.as_ref(), Some(&mut calls)).await;
    let calls: Vec<Value> = calls.iter().map(call_json).collect();
    let out = match decision.verdict {
        Verdict::Preflight(response) => json!({
            "rule": decision.rule_id,
            "decision": "preflight",
            "status": response.status,
            "reason": null,
            "message": "A CORS preflight, answered from the CORS policy without authentication",
            "calls": calls,
            "response": {"status": response.status, "headers": headers_json(&response.headers), "body": response.body},
        }),
        Verdict::Allow { rule_id, subject, headers, .. } => json!({
            "rule": rule_id,
            "decision": "allow",
            "status": 200,
            "reason": null,
            "message": format!("Access granted to subject {subject:?}"),
            "subject": subject,
            "calls": calls,
            "upstream_headers": headers_json(&redact(&headers)),
        }),
        Verdict::Deny { denial, response } => {
            // A denial reached without any call-out carries no evaluation; find the rule the
            // same way the pipeline did.
            let rule = decision.rule_id.or_else(|| {
                let req = &judged;
                let url = request_url(&req.scheme, &req.host, &req.target).ok()?;
                rules.select(&req.method, &url).map(|(r, _)| r.id.clone())
            });
            json!({
                "rule": rule,
                "decision": "deny",
                "status": response.status,
                "reason": (!denial.reason.is_empty()).then_some(denial.reason),
                "message": denial.message,
                "calls": calls,
                "response": {
                    "status": response.status,
                    "headers": headers_json(&response.headers),
                    "body": response.body,
                },
            })
        }
    };
    Ok(Json(out))
}

fn call_json(c: &CallRecord) -> Value {
    let mut o = Map::new();
    o.insert("method".into(), json!(c.method));
    o.insert("url".into(), json!(c.url));
    o.insert("headers".into(), headers_json(&c.headers));
    match &c.outcome {
        Ok(status) => o.insert("status".into(), json!(status)),
        Err(e) => o.insert("error".into(), json!(e)),
    };
    o.insert("cached".into(), json!(c.cached));
    Value::Object(o)
}

fn headers_json(headers: &[(String, String)]) -> Value {
    let mut o = Map::new();
    for (n, v) in headers {
        // Repeated headers are joined as HTTP allows for most headers.
        match o.get_mut(n) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(v);
            }
            _ => {
                o.insert(n.clone(), json!(v));
            }
        }
    }
    Value::Object(o)
}

/// Checks the described request and turns it into what the pipeline judges.
pub fn judged(body: &ExplainRequest) -> Result<Judged, String> {
    let method = body.method.trim();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
        return Err(format!("method: {:?} is not an HTTP method", body.method));
    }
    let (scheme, host, target) = split_url(&body.url).map_err(|e| format!("url: {e}"))?;
    let mut headers = Vec::with_capacity(body.headers.len() + 1);
    for (name, value) in &body.headers {
        let n =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("headers: {name:?} is not a header name"))?;
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("headers.{name}: must not contain line breaks"));
        }
        headers.push((n.as_str().to_owned(), value.clone()));
    }
    if !headers.iter().any(|(n, _)| n == "host") {
        headers.push(("host".into(), host.clone()));
    }
    let remote_addr = forwarded_client(headers.iter().filter(|(n, _)| n == "x-forwarded-for").map(|(_, v)| v.as_str()));
    Ok(Judged { method: method.to_ascii_uppercase(), scheme, host, target, headers, remote_addr })
}

/// `http(s)://host[:port][/path][?query]` → (scheme, host, target). The fragment is dropped, as
/// a client never sends it.
fn split_url(url: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or("must be an absolute http:// or https:// URL")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    if rest.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, target) = rest.split_at(end);
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.contains('@') {
        return Err("must not contain user information".into());
    }
    let target = if target.is_empty() {
        "/".to_owned()
    } else if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_owned()
    };
    Ok((scheme, host.to_owned(), target))
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use crate::rules::decisions::tests::harness;

    #[tokio::test]
    async fn explains_an_allow_with_its_calls_and_hides_credentials() {
        let (h, _) = harness().await;
        let body = json!({"method": "GET", "url": "https://api.test/private/x?y=1",
                          "headers": {"Authorization": "Bearer good", "Cookie": "sid=secret"}});
        let r = h.admin_json(Method::POST, "/admin/rules/explain", Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        let a = r.json();
        assert_eq!(a["rule"], "private");
        assert_eq!(a["decision"], "allow");
        assert_eq!(a["status"], 200);
        assert_eq!(a["reason"], json!(null));
        assert_eq!(a["upstream_headers"]["x-user"], "alice");
        assert_eq!(a["calls"][0]["method"], "GET");
        assert_eq!(a["calls"][0]["status"], 200);
        assert_eq!(a["calls"][0]["cached"], false);
        assert_eq!(a["calls"][0]["headers"]["authorization"], "<redacted>");
        let text = a.to_string();
        assert!(!text.contains("Bearer good") && !text.contains("secret"), "{text}");

        // The same path as /decisions: the answer to the same call (the cookie is forwarded
        // too, so it is part of the question) is now cached.
        let again = json!({"url": "https://api.test/private/x", "headers": {"authorization": "Bearer good", "cookie": "sid=secret"}});
        let a = h.admin_json(Method::POST, "/admin/rules/explain", Some(again)).await.json();
        assert_eq!(a["calls"][0]["cached"], true);
    }

    #[tokio::test]
    async fn explains_a_deny_with_the_response() {
        let (h, _) = harness().await;
        let r =
            h.admin_json(Method::POST, "/admin/rules/explain", Some(json!({"url": "http://api.test/private/x"}))).await;
        let a = r.json();
        assert_eq!(a["rule"], "private", "named even though no call was made");
        assert_eq!(a["decision"], "deny");
        assert_eq!(a["status"], 401);
        assert_eq!(a["reason"], "no_credentials");
        assert_eq!(a["calls"], json!([]));
        assert_eq!(a["response"]["headers"]["www-authenticate"], "Bearer");
        assert!(a["response"]["body"].as_str().unwrap().contains("401"));
        assert!(a.get("upstream_headers").is_none());

        let down = json!({"url": "http://api.test/down/x", "headers": {"authorization": "Bearer good"}});
        let a = h.admin_json(Method::POST, "/admin/rules/explain", Some(down)).await.json();
        assert_eq!(a["status"], 503);
        assert_eq!(a["reason"], "upstream_unavailable");
        assert!(a["calls"][0]["error"].is_string(), "{a}");

        let a =
            h.admin_json(Method::POST, "/admin/rules/explain", Some(json!({"url": "http://nowhere/"}))).await.json();
        assert_eq!(
            (a["rule"].clone(), a["status"].clone(), a["reason"].clone()),
            (json!(null), json!(404), json!("no_rule"))
        );
    }

    #[tokio::test]
    async fn bad_input_is_400_in_the_admin_format() {
        let (h, _) = harness().await;
        for (body, field) in [
            (json!({"url": "/relative"}), "url"),
            (json!({"url": "ftp://a/"}), "url"),
            (json!({"url": "http:///x"}), "url"),
            (json!({"url": "http://a/", "method": "GE T"}), "method"),
            (json!({"url": "http://a/", "headers": {"bad name": "x"}}), "headers"),
            (json!({"url": "http://a/", "extra": 1}), "extra"),
            (json!({"method": "GET"}), "url"),
        ] {
            let r = h.admin_json(Method::POST, "/admin/rules/explain", Some(body.clone())).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(r.json()["error"], "invalid_request", "{body}");
            assert!(r.json()["error_description"].as_str().unwrap().contains(field), "{body}: {}", r.json());
        }
        let raw = axum::http::Request::post("/admin/rules/explain")
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{not json"))
            .unwrap();
        let r = crate::testing::Harness::send(h.admin(), raw).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["status_code"], 400);
    }
}
