//! The Oathkeeper-compatible decisions API (`/decisions[/*]` on the admin listener, any
//! method), for Envoy `ext_authz`, nginx `auth_request` and Traefik `forwardAuth` users. The
//! request judged is rebuilt from `X-Forwarded-{Method,Proto,Host,Uri}` (always trusted, as in
//! Oathkeeper) or from the request itself; [`portcullis_rules::decider::Decider`] drives the
//! shared pipeline. An allow is `200` with the mutation headers as response headers; a deny is
//! the pipeline's local response as it is. Nothing here decides.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_rules::decider::{Judged, forwarded_client};
use portcullis_shared::denial::{Denial, DenialKind};
use portcullis_shared::pipeline::Verdict;

use crate::app::AppState;

/// `any /decisions[/*]` and `any /admin/decisions[/*]`.
pub async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let judged = match from_request(request.uri(), request.method().as_str(), request.headers()) {
        Ok(j) => j,
        Err(denial) => return local_response(denial.to_response()),
    };
    let rules = state.rules.rule_set();
    let decision = state.decider.decide(&rules, &judged, state.clock.as_ref(), None).await;
    match decision.verdict {
        // CORS response headers are the gateway's to add; ext_authz has no place for them on 200.
        Verdict::Allow { rule_id, subject, headers, .. } => {
            tracing::debug!(rule_id = %rule_id, subject = %subject, granted = true, "decision");
            allowed(&headers)
        }
        // A preflight answer goes back to the client as it is, like a denial would.
        Verdict::Preflight(response) => local_response(response),
        Verdict::Deny { denial, response } => {
            tracing::debug!(
                rule_id = decision.rule_id.as_deref().unwrap_or(""),
                reason = denial.reason,
                status = response.status,
                granted = false,
                "decision"
            );
            local_response(response)
        }
    }
}

/// The request to judge, per Oathkeeper's decision API: `X-Forwarded-*` first, else the
/// request itself with the `/decisions` prefix removed from its path. A 400 when the forwarded
/// headers do not describe a request, or when a header value is not UTF-8: a value the rules
/// cannot read is not an absent one (the upstream still gets it), as in the filter.
pub fn from_request(uri: &axum::http::Uri, method: &str, headers: &HeaderMap) -> Result<Judged, Denial> {
    let bad = |message: String| Denial::new(DenialKind::BadRequest, message).with_reason("bad_forwarded_headers");
    let text = |name: &str, value: &HeaderValue| -> Result<String, Denial> {
        std::str::from_utf8(value.as_bytes()).map(str::to_owned).map_err(|_| {
            Denial::new(DenialKind::BadRequest, format!("The value of the request header {name} is not valid UTF-8"))
                .with_reason("header_not_utf8")
        })
    };
    let header = |name: &str| -> Result<Option<String>, Denial> {
        headers.get(name).map(|v| text(name, v).map(|s| s.trim().to_owned())).transpose()
    };
    let method = header("x-forwarded-method")?.filter(|m| !m.is_empty()).unwrap_or_else(|| method.to_owned());
    if !method.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
        return Err(bad("X-Forwarded-Method is not an HTTP method".into()));
    }
    let scheme = match header("x-forwarded-proto")? {
        Some(p) if p.eq_ignore_ascii_case("https") => "https".to_owned(),
        Some(p) if p.eq_ignore_ascii_case("http") || p.is_empty() => "http".to_owned(),
        Some(_) => return Err(bad("X-Forwarded-Proto must be http or https".into())),
        None => "http".to_owned(),
    };
    let host = match header("x-forwarded-host")?.filter(|h| !h.is_empty()) {
        Some(h) => h,
        None => header("host")?.or_else(|| uri.authority().map(|a| a.to_string())).unwrap_or_default(),
    };
    let target = match header("x-forwarded-uri")?.filter(|u| !u.is_empty()) {
        Some(u) => u,
        None => {
            let path = uri.path();
            let rest =
                ["/admin/decisions", "/decisions"].iter().find_map(|prefix| path.strip_prefix(prefix)).unwrap_or(path);
            let rest = if rest.is_empty() { "/" } else { rest };
            match uri.query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_owned(),
            }
        }
    };
    let headers = headers
        .iter()
        .map(|(n, v)| Ok((n.as_str().to_owned(), text(n.as_str(), v)?)))
        .collect::<Result<Vec<_>, Denial>>()?;
    let remote_addr = forwarded_client(headers.iter().filter(|(n, _)| n == "x-forwarded-for").map(|(_, v)| v.as_str()));
    Ok(Judged { method: method.to_ascii_uppercase(), scheme, host, target, headers, remote_addr })
}

fn allowed(headers: &[(String, String)]) -> Response {
    let mut response = StatusCode::OK.into_response();
    for (name, value) in headers {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(n), Ok(v)) => {
                response.headers_mut().append(n, v);
            }
            _ => {
                // Dropping the header would forward the request without the identity the
                // upstream relies on; failing closed is the safe answer.
                tracing::error!(header = %name, "a mutator produced a header that cannot be sent; denying");
                let denial = Denial::new(DenialKind::Internal, "A mutator produced an invalid header")
                    .with_reason("invalid_mutation");
                return local_response(denial.to_response());
            }
        }
    }
    response
}

fn local_response(local: portcullis_shared::denial::LocalResponse) -> Response {
    let status = StatusCode::from_u16(local.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Body::from(local.body)).into_response();
    for (name, value) in &local.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().append(n, v);
        }
    }
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{HeaderValue, Method, Request, StatusCode};
    use serde_json::{Value, json};

    use crate::crypto;
    use crate::testing::{Harness, Reply};

    /// A stand-in session endpoint: `Bearer good` is alice, anything else 401. Counts calls.
    pub(crate) async fn session_server() -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = axum::Router::new().route(
            "/session",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                        Some("Bearer good") => (StatusCode::OK, axum::Json(json!({"sub": "alice"}))),
                        _ => (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "no"}))),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/session"), calls)
    }

    /// A URL nothing listens on.
    pub(crate) async fn closed_url() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/session")
    }

    fn header_mutator() -> Value {
        json!([{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}])
    }

    fn session_rule(id: &str, path: &str, url: &str) -> Value {
        json!({"id": id, "match": {"url": format!("<http|https>://api.test/{path}/<.*>"), "methods": ["GET", "POST"]},
               "authenticators": [{"handler": "bearer_token", "config": {
                   "check_session_url": url, "preserve_path": true, "cache": {"enabled": true, "ttl": "30s"}}}],
               "authorizer": {"handler": "allow"}, "mutators": header_mutator()})
    }

    /// A harness with an open rule, a session-checked rule and one whose endpoint is down.
    pub(crate) async fn harness() -> (Harness, Arc<AtomicUsize>) {
        let h = Harness::new().await;
        let (url, calls) = session_server().await;
        let open = json!({"id": "open", "match": {"url": "http://api.test/public/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"}, "mutators": header_mutator()});
        let rules =
            json!([open, session_rule("private", "private", &url), session_rule("down", "down", &closed_url().await)]);
        h.state.rules.replace_admin(&h.state.store, rules).await.unwrap();
        (h, calls)
    }

    pub(crate) async fn get(h: &Harness, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::builder().method(Method::GET).uri(path);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        Harness::send(h.admin(), req.body(axum::body::Body::empty()).unwrap()).await
    }

    #[tokio::test]
    async fn allow_from_forwarded_headers_sets_the_mutation_headers() {
        let (h, _) = harness().await;
        let forwarded = [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "api.test"),
            ("x-forwarded-uri", "/public/a?b=1"),
            ("host", "127.0.0.1:4445"),
        ];
        // The forwarded headers win over the request's own method and path.
        let r = get(&h, "/decisions/elsewhere", &forwarded).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-user"), "anonymous");
        assert!(r.bytes.is_empty());

        let wrong_method = [("x-forwarded-method", "DELETE"), ("host", "api.test")];
        assert_eq!(get(&h, "/decisions/public/a", &wrong_method).await.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn allow_from_the_decisions_path_prefix() {
        let (h, _) = harness().await;
        for path in ["/decisions/public/x?y=1", "/admin/decisions/public/x"] {
            let r = get(&h, path, &[("host", "api.test")]).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert_eq!(r.header("x-user"), "anonymous", "{path}");
        }
        // `/decisions` alone judges `/`, which no rule covers.
        let r = get(&h, "/decisions", &[("host", "api.test")]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json()["error"]["code"], 404);
        // Other admin paths still get the `/admin` prefix.
        assert_eq!(get(&h, "/version", &[]).await.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn deny_is_the_pipeline_response_as_is() {
        let (h, calls) = harness().await;
        let r = get(&h, "/decisions/private/x", &[("host", "api.test")]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.header("www-authenticate"), "Bearer");
        assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
        assert_eq!(r.json()["error"]["code"], 401);
        assert_eq!(calls.load(Ordering::SeqCst), 0, "no credential, no call");

        let r = get(&h, "/decisions/private/x", &[("host", "api.test"), ("authorization", "Bearer bad")]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_503() {
        let (h, _) = harness().await;
        let r = get(&h, "/decisions/down/x", &[("host", "api.test"), ("authorization", "Bearer good")]).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.json()["error"]["code"], 503);
    }

    #[tokio::test]
    async fn a_cached_answer_is_reused_until_it_expires() {
        let (h, calls) = harness().await;
        let auth = [("host", "api.test"), ("authorization", "Bearer good")];
        for _ in 0..2 {
            let r = get(&h, "/decisions/private/x", &auth).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.header("x-user"), "alice");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the second request is answered from the cache");
        h.clock.advance(31);
        assert_eq!(get(&h, "/decisions/private/x", &auth).await.status, StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "an expired answer is fetched again");
    }

    #[tokio::test]
    async fn bad_forwarded_headers_are_400() {
        let (h, _) = harness().await;
        let r = get(&h, "/decisions/public/x", &[("host", "api.test"), ("x-forwarded-proto", "gopher")]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("X-Forwarded-Proto"));
    }

    #[tokio::test]
    async fn a_header_value_that_is_not_utf8_is_400_not_judged_as_absent() {
        let (h, _) = harness().await;
        // The public rule is anonymous: it is responsible only when no Authorization is sent.
        // A value the API cannot read is not "no value": the upstream still gets the header.
        let req = Request::builder()
            .method(Method::GET)
            .uri("/decisions/public/x")
            .header("host", "api.test")
            .header("authorization", HeaderValue::from_bytes(b"Bearer caf\xe9").unwrap())
            .body(axum::body::Body::empty())
            .unwrap();
        let r = Harness::send(h.admin(), req).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["error"]["reason"], "header_not_utf8");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("authorization"));
        // UTF-8 beyond ASCII is text: judged as sent.
        let r = get(&h, "/decisions/public/x", &[("host", "api.test"), ("x-name", "café")]).await;
        assert_eq!(r.status, StatusCode::OK);
    }

    fn id_token_rule() -> Value {
        json!([{"id": "minted", "match": {"url": "http://api.test/minted/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "id_token", "config": {
                "issuer_url": "http://127.0.0.1:4444/",
                "claims": "{\"aud\": [\"api\"], \"email\": \"{{ .Extra.email }}\"}"}}]}])
    }

    fn bearer(r: &Reply) -> String {
        r.header("authorization").strip_prefix("Bearer ").expect("a bearer id_token").to_owned()
    }

    #[tokio::test]
    async fn id_tokens_are_signed_with_the_key_the_gateway_jwks_publishes_and_reused() {
        use p256::ecdsa::signature::Verifier as _;
        let h = Harness::new().await;
        h.state.rules.replace_admin(&h.state.store, id_token_rule()).await.unwrap();
        let r = get(&h, "/decisions/minted/x", &[("host", "api.test")]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.bytes));
        let token = bearer(&r);

        let jwks = Harness::send(
            h.public(),
            axum::http::Request::get("/.well-known/gateway-jwks.json").body(axum::body::Body::empty()).unwrap(),
        )
        .await
        .json();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| -> Value { serde_json::from_slice(&crypto::b64url_decode(part).unwrap()).unwrap() };
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "ES256");
        let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("kid in the JWKS");
        let signature = p256::ecdsa::Signature::from_slice(&crypto::b64url_decode(parts[2]).unwrap()).unwrap();
        crate::keys::testing::verifying_key(jwk)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the id_token verifies with the published key");

        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], "http://127.0.0.1:4444/");
        assert_eq!(claims["sub"], "anonymous");
        assert_eq!(claims["aud"], json!(["api"]));
        assert_eq!(claims["iat"], crate::testing::T0);
        assert!(claims["exp"].as_i64().unwrap() > crate::testing::T0);
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

        h.clock.advance(5);
        let again = get(&h, "/decisions/minted/y", &[("host", "api.test")]).await;
        assert_eq!(bearer(&again), token, "the same subject and claims reuse the minted token");
        h.clock.advance(24 * 3600);
        let later = get(&h, "/decisions/minted/y", &[("host", "api.test")]).await;
        assert_ne!(bearer(&later), token, "an expiring token is not handed out again");
    }

    /// Issue 13 #3 (b): a `rules:write` key writes an `id_token` rule claiming the OAuth2
    /// issuer and a client's audience; what `/decisions` mints must not pass for an ID token.
    #[tokio::test]
    async fn a_rules_writer_cannot_mint_tokens_oauth2_relying_parties_accept() {
        use crate::admin::auth::{Scopes, new_key};
        use crate::keys::testing::verifies_with_any;
        let h = Harness::secured().await;
        let (key, row) = new_key("attacker", &Scopes::parse(["rules:write"]).unwrap(), crate::testing::T0).unwrap();
        h.state.store.insert_api_key(&row).await.unwrap();
        let issuer = h.state.config.urls.self_.issuer.clone();
        let rule = json!([{"id": "forge", "match": {"url": "http://api.test/forge/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous", "config": {"subject": "victim"}}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "id_token", "config": {"issuer_url": issuer,
                "claims": "{\"aud\": [\"web\"], \"sid\": \"victim-session\"}"}}]}]);
        let put = Request::put("/admin/rules")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(rule.to_string()))
            .unwrap();
        assert_eq!(Harness::send(h.admin(), put).await.status, StatusCode::OK, "rules:write may write rules");
        let r = get(&h, "/decisions/forge/x", &[("host", "api.test")]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.bytes));
        let minted = bearer(&r);

        let oauth2_jwks = h.get("/.well-known/jwks.json", &[]).await.json();
        assert!(!verifies_with_any(&oauth2_jwks, &minted), "a gateway token verifies with the OAuth2 JWKS");
        assert!(
            crate::oauth2::logout::verify_own_id_token(&h.state.oauth2(), &minted).is_none(),
            "the control plane takes a gateway token for its own ID token"
        );
        let gateway_jwks = h.get("/.well-known/gateway-jwks.json", &[]).await.json();
        assert!(verifies_with_any(&gateway_jwks, &minted), "the gateway JWKS verifies what the gateway mints");
    }

    /// Issue 13 #3 (b), the other way: an ID token from the token endpoint does not verify
    /// with the keys published for gateway tokens.
    #[tokio::test]
    async fn an_oauth2_id_token_does_not_verify_with_the_gateway_jwks() {
        use crate::keys::testing::verifies_with_any;
        let h = Harness::new().await;
        let answer = crate::oauth2::refresh::tests::first(&h, "openid").await;
        let id_token = answer["id_token"].as_str().unwrap().to_owned();
        let oauth2_jwks = h.get("/.well-known/jwks.json", &[]).await.json();
        assert!(verifies_with_any(&oauth2_jwks, &id_token), "the ID token verifies with the OAuth2 JWKS");
        let gateway_jwks = h.get("/.well-known/gateway-jwks.json", &[]).await.json();
        assert!(!gateway_jwks["keys"].as_array().unwrap().is_empty(), "the gateway JWKS lists its key");
        assert!(!verifies_with_any(&gateway_jwks, &id_token), "an ID token verifies with the gateway JWKS");
    }

    #[tokio::test]
    async fn without_a_signing_key_an_id_token_rule_is_503() {
        let h = Harness::new().await;
        h.state.decider.set_signer(None);
        h.state.rules.replace_admin(&h.state.store, id_token_rule()).await.unwrap();
        let r = get(&h, "/decisions/minted/x", &[("host", "api.test")]).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.header("authorization").is_empty());
    }
}
