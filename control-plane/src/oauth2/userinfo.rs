//! OpenID Connect UserInfo (`GET`/`POST /userinfo`, OIDC Core §5.3) for an access token issued
//! under a user grant that holds `openid`. The answer is `sub`, the consent's
//! `session.id_token` claims, and — when the subject is a Portcullis identity — standard claims
//! from its traits by granted scope: `email` (+ `email_verified` from its verifiable
//! addresses) and `profile` (`name`). Errors are RFC 6750 §3 bearer errors with
//! `WWW-Authenticate`; a store failure stays a 500, never "invalid token". The claims are
//! [`portcullis_oauth2::userinfo::claims`]'; this handler reads the bearer token and writes the answer.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use portcullis_oauth2::userinfo::{self, BearerRefusal};

use crate::error::OAuthError;

/// An RFC 6750 error: status, code, description, in the body and in `WWW-Authenticate`.
struct BearerError(StatusCode, &'static str, &'static str);

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let BearerError(status, error, description) = self;
        let challenge = format!("Bearer error=\"{error}\", error_description=\"{description}\"");
        let mut res = (status, Json(json!({"error": error, "error_description": description}))).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

impl From<BearerRefusal> for BearerError {
    fn from(r: BearerRefusal) -> Self {
        match r {
            BearerRefusal::Missing => {
                BearerError(StatusCode::UNAUTHORIZED, "invalid_request", "No bearer access token was sent.")
            }
            BearerRefusal::Invalid => BearerError(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The access token is missing, malformed, expired or revoked.",
            ),
            BearerRefusal::InsufficientScope => BearerError(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "The access token was not granted the openid scope.",
            ),
        }
    }
}

pub async fn handle(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t);
    match userinfo::claims(&state.oauth2(), token).await {
        Ok(Ok(claims)) => {
            let mut res = Json(claims).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Ok(Err(e)) => BearerError::from(e).into_response(),
        Err(e) => OAuthError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use crate::testing::{Harness, PKCE_VERIFIER, WEB_REDIRECT, user_grant};

    async fn access_token(h: &Harness, grant: &crate::oauth2::code::Grant) -> String {
        let code = h.code(grant).await;
        let body = h
            .web_token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_REDIRECT),
                ("code_verifier", PKCE_VERIFIER),
            ])
            .await
            .json();
        body["access_token"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn claims_come_from_the_identity_by_scope_and_from_consent() {
        let h = Harness::new().await;
        h.web_client(json!({})).await;
        let identity = h
            .admin_json(
                Method::POST,
                "/admin/identities",
                Some(json!({"schema_id": "default", "traits": {"email": "Ada@Example.org", "name": "Ada Lovelace"},
                    "verifiable_addresses": [{"value": "ada@example.org", "verified": true, "via": "email", "status": "completed"}]})),
            )
            .await;
        assert_eq!(identity.status, StatusCode::CREATED, "{}", identity.json());
        let id = identity.json()["id"].as_str().unwrap().to_owned();

        let mut grant = user_grant("openid email profile");
        grant.subject = id.clone();
        grant.id_token_claims.insert("tenant".into(), json!("acme"));
        let token = access_token(&h, &grant).await;
        let bearer = format!("Bearer {token}");
        let info = h.get("/userinfo", &[("authorization", &bearer)]).await;
        assert_eq!(info.status, StatusCode::OK, "{}", info.json());
        assert_eq!(
            info.json(),
            json!({"sub": id, "email": "Ada@Example.org", "email_verified": true, "name": "Ada Lovelace", "tenant": "acme"})
        );
        let post = h.form(false, "/userinfo", &[], &[("authorization", &bearer)]).await;
        assert_eq!(post.json(), info.json(), "POST answers the same");

        grant.scope = vec!["openid".into()];
        let narrow = access_token(&h, &grant).await;
        let info = h.get("/userinfo", &[("authorization", &format!("Bearer {narrow}"))]).await.json();
        assert_eq!(info, json!({"sub": id, "tenant": "acme"}), "no email or profile scope, no such claims");
    }

    #[tokio::test]
    async fn bearer_errors_follow_rfc_6750() {
        let h = Harness::new().await;
        h.web_client(json!({})).await;
        let missing = h.get("/userinfo", &[]).await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert!(missing.header("www-authenticate").starts_with("Bearer error=\"invalid_request\""));

        let bogus = h.get("/userinfo", &[("authorization", "Bearer pc_at_nope")]).await;
        assert_eq!(bogus.status, StatusCode::UNAUTHORIZED);
        assert_eq!(bogus.json()["error"], "invalid_token");
        assert!(bogus.header("www-authenticate").contains("error=\"invalid_token\""));

        let no_openid = access_token(&h, &user_grant("read")).await;
        let reply = h.get("/userinfo", &[("authorization", &format!("Bearer {no_openid}"))]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(reply.json()["error"], "insufficient_scope");

        let token = access_token(&h, &user_grant("openid")).await;
        h.clock.advance(3600);
        let expired = h.get("/userinfo", &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(expired.json()["error"], "invalid_token");
    }
}
