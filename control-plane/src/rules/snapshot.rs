//! `GET /admin/snapshot`: what filters poll. Guarded by the bearer tokens in
//! `filters.tokens` (compared in constant time), because the snapshot carries the gateway's
//! private signing key (set `portcullis.gateway`; never an OAuth2 key, which no filter token
//! may reach); no other endpoint serves its body. Supports long-polling: with
//! `If-None-Match: "<version>"` and `wait=<seconds>` the request parks on the watch channel
//! until the snapshot changes, the wait elapses (304) or the server shuts down (304). It never
//! re-serializes: the published bytes are sent as they are.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::crypto::secret_eq;
use crate::error::{ApiError, parse_urlencoded};
use crate::rules::Published;

const MAX_WAIT_SECONDS: u64 = 60;

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let mut wait = 0;
    for (key, value) in parse_urlencoded(query.unwrap_or_default().as_bytes()) {
        if key == "wait" {
            wait = value.parse::<u64>().ok().filter(|w| *w <= MAX_WAIT_SECONDS).ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "wait: must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}"
                ))
            })?;
        }
    }
    let mut rx = state.rules.subscribe();
    let current = rx.borrow_and_update().clone();
    let known = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::trim);
    if known != Some(current.etag.as_str()) {
        return Ok(full(&current));
    }
    if wait == 0 {
        return Ok(not_modified(&current));
    }
    let mut shutdown = state.shutdown.subscribe();
    let changed = async {
        // The sender only signals real changes (send_if_modified), so one wake-up suffices.
        rx.changed().await.ok().map(|()| rx.borrow_and_update().clone())
    };
    tokio::select! {
        next = tokio::time::timeout(Duration::from_secs(wait), changed) => match next {
            Ok(Some(next)) => Ok(full(&next)),
            _ => Ok(not_modified(&current)),
        },
        _ = shutdown.wait_for(|stop| *stop) => Ok(not_modified(&current)),
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let tokens = &state.config.filters.tokens;
    if tokens.is_empty() {
        return Err(ApiError::unauthorized(
            "No filter tokens are configured (filters.tokens); the snapshot endpoint is disabled.",
        ));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::unauthorized("A filter bearer token is required."))?;
    // Compare against every configured token so timing does not reveal which one matched.
    let matched = tokens.iter().fold(false, |acc, t| acc | secret_eq(t, presented));
    if matched { Ok(()) } else { Err(ApiError::unauthorized("The filter bearer token is not valid.")) }
}

fn full(p: &Published) -> Response {
    let mut res = (StatusCode::OK, p.body.clone()).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    insert_etag(h, p);
    res
}

fn not_modified(p: &Published) -> Response {
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    insert_etag(res.headers_mut(), p);
    res
}

fn insert_etag(h: &mut HeaderMap, p: &Published) {
    if let Ok(v) = HeaderValue::from_str(&p.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use portcullis_shared::snapshot::Snapshot;
    use serde_json::json;

    use crate::testing::{FILTER_TOKEN, Harness, Reply};
    use portcullis_rules::testing::rule;

    async fn get(h: &Harness, query: &str, auth: Option<&str>, etag: Option<&str>) -> Reply {
        let mut req = Request::get(format!("/admin/snapshot{query}"));
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, format!("Bearer {a}"));
        }
        if let Some(e) = etag {
            req = req.header(header::IF_NONE_MATCH, e);
        }
        Harness::send(h.admin(), req.body(Body::empty()).unwrap()).await
    }

    #[tokio::test]
    async fn requires_a_filter_token() {
        let h = Harness::new().await;
        for auth in [None, Some("wrong")] {
            let reply = get(&h, "", auth, None).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            assert_eq!(reply.json()["error"], "unauthorized");
        }
        let reply = get(&h, "?wait=61", Some(FILTER_TOKEN), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn serves_the_snapshot_with_etag_and_304_when_unchanged() {
        let h = Harness::new().await;
        h.admin_json(Method::PUT, "/admin/rules", Some(json!([rule("r1", "http://a/")]))).await;
        let reply = get(&h, "", Some(FILTER_TOKEN), None).await;
        assert_eq!(reply.status, StatusCode::OK);
        let snap: Snapshot = serde_json::from_slice(&reply.bytes).unwrap();
        assert_eq!(snap.rules[0].id, "r1");
        assert_eq!(reply.header("etag"), format!("\"{}\"", snap.version));
        snap.compile().unwrap();

        let etag = reply.header("etag").to_owned();
        let again = get(&h, "", Some(FILTER_TOKEN), Some(&etag)).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert_eq!(again.header("etag"), etag);
        assert!(again.bytes.is_empty());
        let start = Instant::now();
        let waited = get(&h, "?wait=1", Some(FILTER_TOKEN), Some(&etag)).await;
        assert_eq!(waited.status, StatusCode::NOT_MODIFIED);
        assert!(start.elapsed() >= Duration::from_millis(900));
        let stale = get(&h, "?wait=5", Some(FILTER_TOKEN), Some("\"old\"")).await;
        assert_eq!(stale.status, StatusCode::OK, "a stale etag gets the snapshot at once");
    }

    #[tokio::test]
    async fn the_snapshot_carries_the_gateway_key_and_nothing_else_echoes_it() {
        let h = Harness::new().await;
        h.admin_json(Method::PUT, "/admin/rules", Some(json!([rule("r1", "http://a/")]))).await;
        let signer = h.state.gateway_keys.signer();
        let reply = get(&h, "", Some(FILTER_TOKEN), None).await;
        let snap: Snapshot = serde_json::from_slice(&reply.bytes).unwrap();
        let key = snap.signing_key.as_ref().expect("the snapshot carries the signing key");
        assert_eq!(Some(key), h.state.gateway_keys.snapshot_key().as_ref());
        assert_eq!(snap.compile().unwrap().rules.signing_kid(), Some(signer.kid()), "filters compile its kid in");
        assert_eq!(h.state.rules.rule_set().signing_kid(), Some(signer.kid()), "and so does the decisions API");

        for (path, status) in [("/admin/rules", StatusCode::OK), ("/admin/rules/r1", StatusCode::OK)] {
            let r = h.admin_json(Method::GET, path, None).await;
            assert_eq!(r.status, status, "{path}");
            assert!(!String::from_utf8_lossy(&r.bytes).contains(&key.pkcs8), "{path} leaks the private key");
        }
        assert!(!format!("{:?} {:?}", h.state.rules, h.state.rules.current()).contains(&key.pkcs8));
    }

    /// Issue 13 #3 (a): a filter token is enough to read the snapshot, so the key in it must
    /// not be one that OAuth2 relying parties trust.
    #[tokio::test]
    async fn a_filter_token_holder_gets_no_key_that_oauth2_relying_parties_trust() {
        use crate::keys::testing::{sign_with_snapshot_key, verifies_with_any};
        let h = Harness::new().await;
        let reply = get(&h, "", Some(FILTER_TOKEN), None).await;
        let snap: Snapshot = serde_json::from_slice(&reply.bytes).unwrap();
        let key = snap.signing_key.expect("the snapshot carries the gateway's signing key");
        // An ID token for a victim, addressed to a client, as the OAuth2 server would mint it.
        let forged = sign_with_snapshot_key(
            &key,
            &json!({"iss": h.state.config.urls.self_.issuer, "sub": "victim", "aud": ["web"], "sid": "s",
                    "iat": crate::testing::T0, "exp": crate::testing::T0 + 600}),
        );
        let oauth2_jwks = h.get("/.well-known/jwks.json", &[]).await.json();
        assert!(!verifies_with_any(&oauth2_jwks, &forged), "the snapshot's key signs tokens the OAuth2 JWKS accepts");
        assert!(
            crate::oauth2::logout::verify_own_id_token(&h.state.oauth2(), &forged).is_none(),
            "the control plane takes the forged token for its own ID token"
        );
        let gateway_jwks = h.get("/.well-known/gateway-jwks.json", &[]).await.json();
        assert!(verifies_with_any(&gateway_jwks, &forged), "the gateway JWKS publishes the snapshot's key");
    }

    #[tokio::test]
    async fn long_poll_wakes_up_when_rules_change() {
        let h = Harness::new().await;
        let etag = get(&h, "", Some(FILTER_TOKEN), None).await.header("etag").to_owned();
        let admin = h.admin();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let req = Request::put("/admin/rules")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!([rule("new", "http://n/")]).to_string()))
                .unwrap();
            Harness::send(admin, req).await.status
        });
        let start = Instant::now();
        let reply = get(&h, "?wait=30", Some(FILTER_TOKEN), Some(&etag)).await;
        assert_eq!(reply.status, StatusCode::OK);
        // Woken by the change, not by the 30 s wait running out; the margin is for a busy
        // machine running the suite in parallel, not a latency target.
        assert!(start.elapsed() < Duration::from_secs(20), "{:?}", start.elapsed());
        assert_ne!(reply.header("etag"), etag);
        assert_eq!(reply.json()["rules"][0]["id"], "new");
        assert_eq!(writer.await.unwrap(), StatusCode::OK);
    }
}
