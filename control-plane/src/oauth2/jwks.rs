//! The two public key documents on the public listener, public halves only (the active key
//! and keys retired less than a day ago); this module never touches a private key.
//! - `GET /.well-known/jwks.json` (discovery's `jwks_uri`): the OAuth2 server's keys, for ID
//!   tokens, JWT access tokens, logout tokens and whoami tokens.
//! - `GET /.well-known/gateway-jwks.json`: the gateway's keys, for the tokens `id_token`
//!   mutators add to requests; upstreams verify those here. Neither document lists the other's
//!   keys, so a token from one never passes for a token from the other.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use std::sync::Arc;

use crate::app::{GatewayKeys, OAuth2Keys};
use crate::clock::Clock;
use crate::keys::Keys;

/// Short enough that a rotated-in key is picked up quickly, long enough to spare the server.
const CACHE_CONTROL: &str = "public, max-age=300";

fn document(clock: &dyn Clock, keys: &Keys) -> Response {
    let body = keys.jwks(clock.now()).to_string();
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, CACHE_CONTROL)], body).into_response()
}

/// `/.well-known/jwks.json`.
pub async fn handle(State(clock): State<Arc<dyn Clock>>, State(OAuth2Keys(keys)): State<OAuth2Keys>) -> Response {
    document(clock.as_ref(), &keys)
}

/// `/.well-known/gateway-jwks.json`.
pub async fn gateway(State(clock): State<Arc<dyn Clock>>, State(GatewayKeys(keys)): State<GatewayKeys>) -> Response {
    document(clock.as_ref(), &keys)
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

        let r = Harness::send(h.public(), Request::get("/.well-known/gateway-jwks.json").body(Body::empty()).unwrap())
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("cache-control"), "public, max-age=300");
        let gateway = r.json()["keys"].as_array().unwrap().clone();
        assert_eq!(gateway.len(), 1);
        assert_eq!(gateway[0]["kid"], h.state.gateway_keys.signer().kid());
        assert!(gateway[0].get("d").is_none(), "no private part");
        assert_ne!(gateway[0]["kid"], key["kid"], "each document lists its own set only");
    }
}
