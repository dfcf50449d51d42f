//! `GET /.well-known/jwks.json` on the public listener: the public keys id_tokens minted by
//! `id_token` mutators verify with (the active key and keys retired less than a day ago), so
//! upstreams can check them. Public halves only; this module never touches a private key.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

/// Short enough that a rotated-in key is picked up quickly, long enough to spare the server.
const CACHE_CONTROL: &str = "public, max-age=300";

pub async fn handle(State(state): State<AppState>) -> Response {
    let body = state.keys.jwks(state.clock.now()).to_string();
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, CACHE_CONTROL)], body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};

    use crate::testing::Harness;

    #[tokio::test]
    async fn lists_the_public_signing_key_only() {
        let h = Harness::new().await;
        let r = Harness::send(h.public(), Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("cache-control"), "public, max-age=300");
        assert_eq!(r.header("content-type"), "application/json");
        let keys = r.json()["keys"].as_array().unwrap().clone();
        assert_eq!(keys.len(), 1);
        let key = keys[0].as_object().unwrap();
        let mut fields: Vec<&str> = key.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["alg", "crv", "kid", "kty", "use", "x", "y"], "no private part");
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
            (Some("EC"), Some("P-256"), Some("ES256"))
        );
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], h.state.keys.signer().kid());
        let admin = Harness::send(h.admin(), Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap()).await;
        assert_eq!(admin.status, StatusCode::NOT_FOUND, "the admin listener serves it under /admin/keys");
    }
}
