//! Serves the discovery document ([`portcullis_oauth2::discovery::document`]) at
//! `/.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`; what it
//! advertises is decided there, not here.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

pub async fn handle(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=3600")],
        portcullis_oauth2::discovery::document(&state.config.urls).to_string(),
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
