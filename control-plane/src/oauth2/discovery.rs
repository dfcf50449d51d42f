//! OpenID Connect Discovery 1.0 (`/.well-known/openid-configuration`) and RFC 8414
//! (`/.well-known/oauth-authorization-server`): one document, derived from the
//! configured URLs. It advertises only what this server implements — a client that trusts it
//! never meets an "unsupported" surprise — so a new feature adds its line here with its code.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::client::AUTH_METHODS;

pub const GRANT_TYPES: [&str; 4] =
    ["authorization_code", "refresh_token", "client_credentials", super::jwt_bearer::GRANT_TYPE];

/// The discovery document for `state`'s configuration.
pub fn document(state: &AppState) -> Value {
    let base = state.config.urls.self_.public_base();
    let url = |path: &str| format!("{base}{path}");
    json!({
        "issuer": state.config.urls.self_.issuer,
        "authorization_endpoint": url("/oauth2/auth"),
        "token_endpoint": url("/oauth2/token"),
        "userinfo_endpoint": url("/userinfo"),
        "jwks_uri": url("/.well-known/jwks.json"),
        "revocation_endpoint": url("/oauth2/revoke"),
        "introspection_endpoint": url("/oauth2/introspect"),
        "end_session_endpoint": url("/oauth2/sessions/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": super::assertion::ALGORITHM_NAMES,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "offline_access", "offline", "email", "profile"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "rat", "auth_time", "nonce", "at_hash", "acr", "amr", "sid",
            "jti", "email", "email_verified", "name"
        ],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    })
}

pub async fn handle(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=3600")],
        document(&state).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::testing::Harness;

    #[tokio::test]
    async fn both_documents_advertise_the_same_endpoints_that_exist() {
        let h = Harness::new().await;
        let oidc = h.get("/.well-known/openid-configuration", &[]).await;
        assert_eq!(oidc.status, 200);
        let doc = oidc.json();
        assert_eq!(h.get("/.well-known/oauth-authorization-server", &[]).await.json(), doc);
        assert_eq!(doc["issuer"], "http://127.0.0.1:4444/");
        assert_eq!(doc["token_endpoint"], "http://127.0.0.1:4444/oauth2/token");
        assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        // Every advertised endpoint answers something other than 404 on the public router.
        for key in [
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
            "jwks_uri",
            "revocation_endpoint",
            "introspection_endpoint",
            "end_session_endpoint",
        ] {
            let path = doc[key].as_str().unwrap().trim_start_matches("http://127.0.0.1:4444");
            let reply = h.get(path, &[]).await;
            assert_ne!(reply.status, 404, "{key} {path}");
        }
        let grants: Vec<&str> =
            doc["grant_types_supported"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(!grants.contains(&"implicit") && grants.contains(&"refresh_token"));
    }
}
