//! `POST /oauth2/token`. This version implements the `client_credentials` grant only; any
//! other grant is `unsupported_grant_type`. Tokens are opaque (`pc_at_…`) and stored only as
//! their SHA-256, so a database leak yields nothing usable.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use portcullis_shared::scope::{self, ScopeStrategy};
use serde_json::json;

use super::OAuthParams;
use super::client_auth::authenticate;
use crate::app::AppState;
use crate::client::lifespan_seconds;
use crate::crypto;
use crate::error::OAuthError;
use crate::store::TokenRow;

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Result<Response, OAuthError> {
    match params.single("grant_type")? {
        None | Some("") => {
            return Err(OAuthError::invalid_request("The request is missing a required parameter: grant_type."));
        }
        Some("client_credentials") => {}
        Some(super::jwt_bearer::GRANT_TYPE) => return super::jwt_bearer::handle(&state, &headers, &params).await,
        Some(other) => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "The authorization grant type '{other}' is not supported by this server; supported: client_credentials."
            )));
        }
    }
    let client = authenticate(&state, &headers, &params).await?;
    let body = &client.body;
    if !body.grant_types.iter().any(|g| g == "client_credentials") {
        return Err(OAuthError::unauthorized_client(
            "The OAuth 2.0 Client is not allowed to use authorization grant 'client_credentials'.",
        ));
    }

    let allowed: Vec<&str> = scope::split(&body.scope).collect();
    let mut granted: Vec<&str> = Vec::new();
    for s in scope::split(params.single("scope")?.unwrap_or("")) {
        if !ScopeStrategy::Wildcard.covers(allowed.iter().copied(), s) {
            return Err(OAuthError::invalid_scope(format!(
                "The OAuth 2.0 Client is not allowed to request scope '{s}'."
            )));
        }
        if !granted.contains(&s) {
            granted.push(s);
        }
    }

    let mut audience: Vec<&str> = Vec::new();
    for a in params.all("audience").flat_map(scope::split) {
        if !body.audience.iter().any(|allowed| allowed == a) {
            return Err(OAuthError::invalid_request(format!(
                "Requested audience '{a}' has not been whitelisted by the OAuth 2.0 Client."
            )));
        }
        if !audience.contains(&a) {
            audience.push(a);
        }
    }

    let lifespan = match &body.client_credentials_grant_access_token_lifespan {
        Some(text) => lifespan_seconds(text).map_err(|e| OAuthError::server_error(&e))?,
        None => i64::try_from(state.config.ttl.access_token.as_secs()).unwrap_or(i64::MAX),
    };
    let now = state.clock.now();
    let token = crypto::generate_access_token();
    let scope = granted.join(" ");
    state
        .store
        .insert_token(&TokenRow {
            signature: crypto::token_signature(&token),
            client_id: client.row.client_id.clone(),
            // client_credentials: the client acts on its own behalf.
            subject: client.row.client_id.clone(),
            scope: scope.clone(),
            audience: serde_json::to_string(&audience).unwrap_or_else(|_| "[]".into()),
            issued_at: now,
            expires_at: now.saturating_add(lifespan),
        })
        .await?;
    let mut res = Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": lifespan,
        "scope": scope,
    }))
    .into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::testing::{Harness, T0, basic};

    async fn harness() -> (Harness, String) {
        let h = Harness::new().await;
        let c = h
            .client(json!({"client_id": "svc", "grant_types": ["client_credentials"], "scope": "read orders.*", "audience": ["https://api.example/"]}))
            .await;
        (h, c["client_secret"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn basic_auth_issues_a_bearer_token() {
        let (h, secret) = harness().await;
        let reply = h
            .form(
                false,
                "/oauth2/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "read orders.list"),
                    ("audience", "https://api.example/"),
                ],
                &[("authorization", &basic("svc", &secret))],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        assert_eq!(reply.header("cache-control"), "no-store");
        assert_eq!(reply.header("pragma"), "no-cache");
        let body = reply.json();
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "read orders.list");
        let token = body["access_token"].as_str().unwrap();
        assert!(token.starts_with("pc_at_"));

        let info = h.form(true, "/admin/oauth2/introspect", &[("token", token)], &[]).await.json();
        assert_eq!(info["active"], true);
        assert_eq!(info["client_id"], "svc");
        assert_eq!(info["sub"], "svc");
        assert_eq!(info["aud"], json!(["https://api.example/"]));
        assert_eq!(info["iat"], T0);
        assert_eq!(info["nbf"], T0);
        assert_eq!(info["exp"], T0 + 3600);
        assert_eq!(info["iss"], "http://127.0.0.1:4444/");
        assert_eq!(info["token_type"], "Bearer");
        assert_eq!(info["token_use"], "access_token");

        // At rest: only the hash.
        let sig = crate::crypto::token_signature(token);
        let row = h.state.store.get_token(&sig).await.unwrap().unwrap();
        assert_eq!(row.signature, sig);
        assert_ne!(row.signature, token);
    }

    #[tokio::test]
    async fn wrong_secret_and_unknown_client_are_the_same_401() {
        let (h, _) = harness().await;
        let wrong = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("svc", "nope-nope"))],
            )
            .await;
        let unknown = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("ghost", "nope-nope"))],
            )
            .await;
        for reply in [&wrong, &unknown] {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            assert_eq!(reply.header("www-authenticate"), "Basic realm=\"portcullis\"");
            assert_eq!(reply.json()["error"], "invalid_client");
        }
        assert_eq!(wrong.json(), unknown.json());
        let none = h.form(false, "/oauth2/token", &[("grant_type", "client_credentials")], &[]).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn auth_method_must_match_the_registration() {
        let (h, secret) = harness().await;
        let reply = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials"), ("client_id", "svc"), ("client_secret", &secret)],
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let text = reply.json()["error_description"].as_str().unwrap().to_owned();
        assert!(text.contains("supports client authentication method 'client_secret_basic', but method 'client_secret_post' was requested"), "{text}");

        let both = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials"), ("client_id", "svc"), ("client_secret", &secret)],
                &[("authorization", &basic("svc", &secret))],
            )
            .await;
        assert_eq!(both.status, StatusCode::BAD_REQUEST);
        assert_eq!(both.json()["error"], "invalid_request");
    }

    #[tokio::test]
    async fn client_secret_post_and_percent_encoded_basic_credentials() {
        let h = Harness::new().await;
        h.client(json!({"client_id": "p:st@x", "client_secret": "sec ret:+/%", "grant_types": ["client_credentials"]}))
            .await;
        let reply = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("p:st@x", "sec ret:+/%"))],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        assert_eq!(reply.json()["scope"], "", "no scope requested, none granted");

        h.client(json!({"client_id": "poster", "client_secret": "posted-secret", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"})).await;
        h.token("poster", "posted-secret", "").await;
    }

    #[tokio::test]
    async fn grant_scope_audience_and_client_grant_checks() {
        let (h, secret) = harness().await;
        let auth = basic("svc", &secret);
        type Case<'a> = (&'a [(&'a str, &'a str)], StatusCode, &'a str, &'a str);
        let cases: [Case; 6] = [
            (&[], StatusCode::BAD_REQUEST, "invalid_request", "grant_type"),
            (&[("grant_type", "password")], StatusCode::BAD_REQUEST, "unsupported_grant_type", "'password'"),
            (
                &[("grant_type", "client_credentials"), ("scope", "read admin")],
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "'admin'",
            ),
            (&[("grant_type", "client_credentials"), ("scope", "orders")], StatusCode::OK, "", ""),
            (
                &[("grant_type", "client_credentials"), ("audience", "https://evil/")],
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "https://evil/",
            ),
            (
                &[("grant_type", "client_credentials"), ("grant_type", "client_credentials")],
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than once",
            ),
        ];
        for (params, status, error, mention) in cases {
            let reply = h.form(false, "/oauth2/token", params, &[("authorization", &auth)]).await;
            assert_eq!(reply.status, status, "{params:?}: {}", reply.json());
            if !error.is_empty() {
                assert_eq!(reply.json()["error"], error, "{params:?}");
                assert!(reply.json()["error_description"].as_str().unwrap().contains(mention), "{}", reply.json());
            }
        }

        let c = h.client(json!({"client_id": "web", "grant_types": ["authorization_code"]})).await;
        let reply = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("web", c["client_secret"].as_str().unwrap()))],
            )
            .await;
        assert_eq!(reply.json()["error"], "unauthorized_client");
    }

    #[tokio::test]
    async fn lifespan_from_client_and_expiry_by_the_clock() {
        let h = Harness::new().await;
        h.client(json!({"client_id": "short", "client_secret": "short-lived", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "client_credentials_grant_access_token_lifespan": "1m30s"})).await;
        let token = h.token("short", "short-lived", "").await;
        assert_eq!(token["expires_in"], 90);
        let t = token["access_token"].as_str().unwrap();
        h.clock.advance(89);
        assert_eq!(h.form(true, "/admin/oauth2/introspect", &[("token", t)], &[]).await.json()["active"], true);
        h.clock.advance(1);
        assert_eq!(
            h.form(true, "/admin/oauth2/introspect", &[("token", t)], &[]).await.json(),
            json!({"active": false})
        );
    }

    #[tokio::test]
    async fn public_body_limit_is_64k_and_json() {
        let (h, _) = harness().await;
        let reply = h
            .form(false, "/oauth2/token", &[("grant_type", "client_credentials"), ("pad", &"x".repeat(70 * 1024))], &[])
            .await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(reply.json()["error"], "invalid_request");
    }
}
