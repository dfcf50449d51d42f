//! `POST /oauth2/revoke` (RFC 7009): extracts the request, runs
//! [`portcullis_oauth2::revoke::revoke`] and answers 200 or the RFC 6749 error. No revocation
//! logic lives here.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use portcullis_oauth2::Params;

use super::OAuthParams;
use super::client_auth::authorization;
use crate::app::AppState;
use crate::error::OAuthError;

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Result<StatusCode, OAuthError> {
    portcullis_oauth2::revoke::revoke(&state.oauth2(), authorization(&headers), &Params(&params.0)).await?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::{Value, json};

    use crate::testing::Harness;

    async fn introspect(h: &Harness, token: &str) -> Value {
        h.form(true, "/admin/oauth2/introspect", &[("token", token)], &[]).await.json()
    }

    async fn snapshot_revoked(h: &Harness) -> Vec<Value> {
        let body: Value = serde_json::from_slice(&h.state.rules.current().body).unwrap();
        body["revoked"].as_array().cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn a_client_revokes_its_token_and_filters_learn_at_once() {
        let h = Harness::new().await;
        for id in ["a", "b"] {
            h.client(json!({"client_id": id, "client_secret": format!("secret-{id}"), "grant_types": ["client_credentials"], "scope": "read", "token_endpoint_auth_method": "client_secret_post"}))
                .await;
        }
        let token = h.token("a", "secret-a", "read").await["access_token"].as_str().unwrap().to_owned();

        // Another client cannot revoke it, and is not told whether it exists.
        let other = h
            .form(false, "/oauth2/revoke", &[("token", &token), ("client_id", "b"), ("client_secret", "secret-b")], &[])
            .await;
        assert_eq!(other.status, 200);
        assert_eq!(introspect(&h, &token).await["active"], true);

        let wrong = h
            .form(false, "/oauth2/revoke", &[("token", &token), ("client_id", "a"), ("client_secret", "nope")], &[])
            .await;
        assert_eq!(wrong.status, 401);
        let missing = h.form(false, "/oauth2/revoke", &[("client_id", "a"), ("client_secret", "secret-a")], &[]).await;
        assert_eq!((missing.status.as_u16(), missing.json()["error"].as_str()), (400, Some("invalid_request")));

        let revoked = h
            .form(
                false,
                "/oauth2/revoke",
                &[
                    ("token", &token),
                    ("token_type_hint", "access_token"),
                    ("client_id", "a"),
                    ("client_secret", "secret-a"),
                ],
                &[],
            )
            .await;
        assert_eq!(revoked.status, 200);
        assert_eq!(introspect(&h, &token).await, json!({"active": false}));
        let digest = crate::crypto::token_signature(&token);
        assert_eq!(snapshot_revoked(&h).await, [json!(digest)], "pushed to filters in the next snapshot");
        assert!(
            !h.state.rules.current().body.windows(token.len()).any(|w| w == token.as_bytes()),
            "never the token itself"
        );

        let unknown = h
            .form(
                false,
                "/oauth2/revoke",
                &[("token", "pc_at_unknown"), ("client_id", "a"), ("client_secret", "secret-a")],
                &[],
            )
            .await;
        assert_eq!(unknown.status, 200, "RFC 7009: unknown tokens are not an error");
    }

    #[tokio::test]
    async fn the_admin_api_revokes_every_token_of_a_client() {
        let h = Harness::new().await;
        h.client(json!({"client_id": "a", "client_secret": "secret-a", "grant_types": ["client_credentials"], "scope": "read", "token_endpoint_auth_method": "client_secret_post"})).await;
        let t1 = h.token("a", "secret-a", "read").await["access_token"].as_str().unwrap().to_owned();
        let t2 = h.token("a", "secret-a", "read").await["access_token"].as_str().unwrap().to_owned();
        let reply = h.admin_json(Method::DELETE, "/admin/oauth2/tokens?client_id=a", None).await;
        assert_eq!(reply.status, 204);
        assert_eq!(introspect(&h, &t1).await["active"], false);
        assert_eq!(introspect(&h, &t2).await["active"], false);
        assert_eq!(snapshot_revoked(&h).await.len(), 2);
        let bad = h.admin_json(Method::DELETE, "/admin/oauth2/tokens", None).await;
        assert_eq!(bad.status, 400);
    }
}
