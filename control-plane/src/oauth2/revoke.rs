//! RFC 7009 token revocation at `POST /oauth2/revoke` (Hydra's path), client-authenticated.
//! A client may revoke only its own tokens; every outcome but an authentication or request
//! error is 200, so the endpoint does not reveal which tokens exist. The revocation is
//! published at once: filters refuse the token on their next snapshot, cached or not.
//! Revoking a refresh token revokes its whole grant (RFC 7009 §2.1: the access tokens issued
//! under the same authorization grant go with it); revoking an access token revokes only it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::OAuthParams;
use super::client_auth::authenticate;
use crate::app::AppState;
use crate::crypto;
use crate::error::OAuthError;
use crate::store::tokens::{Selector, TokenUse};

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Result<StatusCode, OAuthError> {
    let client = authenticate(&state, &headers, &params).await?;
    let Some(token) = params.single("token")?.filter(|t| !t.is_empty()) else {
        return Err(OAuthError::invalid_request("The request is missing a required parameter: token."));
    };
    // RFC 7009 §2.1: the hint only speeds up the lookup, and one lookup finds both kinds.
    let _ = params.single("token_type_hint")?;
    let Some(row) = state.store.get_token(&crypto::token_signature(token)).await? else {
        return Ok(StatusCode::OK);
    };
    if row.client_id != client.row.client_id || row.expires_at <= state.clock.now() {
        return Ok(StatusCode::OK);
    }
    if row.token_use == TokenUse::RefreshToken {
        let which = if row.family_id.is_empty() {
            Selector::Request(&row.request_id)
        } else {
            Selector::Family(&row.family_id)
        };
        state.store.revoke_tokens(which).await?;
    } else {
        state.store.revoke_token(&row).await?;
    }
    state.rules.refresh_revocations(&state.store, state.clock.now()).await?;
    tracing::info!(client_id = %row.client_id, token_use = %row.token_use, "token revoked");
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
