//! `GET /admin/keys/{set}` and `GET /admin/keys/{set}/{kid}` (Hydra's paths): the public JWKS
//! of a signing key set. Only the set `portcullis.id-token` exists; rotation endpoints are not
//! offered yet. Never returns a private part, even on the admin listener.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::ApiError;
use crate::keys::ID_TOKEN_SET;

pub async fn set(State(state): State<AppState>, Path(set): Path<String>) -> Result<Json<Value>, ApiError> {
    if set != ID_TOKEN_SET {
        return Err(ApiError::not_found());
    }
    Ok(Json(state.keys.jwks(state.clock.now())))
}

/// One key, as a set of one (Hydra's `getJsonWebKey` answers a `jsonWebKeySet` too).
pub async fn key(
    State(state): State<AppState>,
    Path((set, kid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if set != ID_TOKEN_SET {
        return Err(ApiError::not_found());
    }
    let jwks = state.keys.jwks(state.clock.now());
    let found = jwks["keys"].as_array().and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()).cloned());
    found.map(|k| Json(json!({"keys": [k]}))).ok_or_else(ApiError::not_found)
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::testing::Harness;

    #[tokio::test]
    async fn the_id_token_set_is_public_keys_only() {
        let h = Harness::new().await;
        let kid = h.state.keys.signer().kid().to_owned();
        for path in ["/admin/keys/portcullis.id-token", "/keys/portcullis.id-token"] {
            let r = h.admin_json(Method::GET, path, None).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert_eq!(r.json()["keys"][0]["kid"], kid.as_str());
            assert!(r.json()["keys"][0].get("d").is_none());
            assert!(!String::from_utf8_lossy(&r.bytes).contains(&h.state.keys.signer().snapshot_key().pkcs8));
        }
        let one = h.admin_json(Method::GET, &format!("/admin/keys/portcullis.id-token/{kid}"), None).await;
        assert_eq!(one.json()["keys"].as_array().unwrap().len(), 1);
        for path in ["/admin/keys/hydra.openid.id-token", "/admin/keys/portcullis.id-token/nope"] {
            assert_eq!(h.admin_json(Method::GET, path, None).await.status, StatusCode::NOT_FOUND, "{path}");
        }
    }
}
