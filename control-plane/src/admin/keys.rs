//! Hydra's JSON Web Key admin API: `POST /admin/keys/{set}` generates a key into a set (the
//! rotation primitive), `GET/PUT/DELETE /admin/keys/{set}` and `/admin/keys/{set}/{kid}` read,
//! import and delete. Unlike Hydra, reads answer public keys only, even on the admin listener:
//! a private key never leaves the server once stored (imported keys are stored AES-256-GCM
//! encrypted under `secrets.system`, which changing a key requires). In `portcullis.id-token`
//! the newest written key signs at once (filters get it with the next snapshot) and the
//! previous one stays in `/.well-known/jwks.json` for `RETIRED_LISTED_SECONDS`; this module
//! refuses any change that would leave that set without a key able to sign (ES256 only there,
//! the algorithm the filter signs with through Envoy).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::{ApiError, ApiJson};
use crate::keys::{ID_TOKEN_SET, KeyMaterial, validate_name};
use crate::store::KeyRow;

/// `createJsonWebKeySet`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
pub struct KeySetBody {
    keys: Vec<Value>,
}

fn check_set(set: &str) -> Result<(), ApiError> {
    validate_name("set", set).map_err(ApiError::invalid_request)
}

/// The secret new keys are encrypted under; without one nothing can be stored.
fn system_secret(state: &AppState) -> Result<&str, ApiError> {
    state.config.secrets.system.first().map(String::as_str).ok_or_else(|| {
        ApiError::conflict(
            "secrets.system is not set: keys cannot be stored encrypted, so they cannot be created, imported or deleted",
        )
    })
}

/// What the id_token set accepts: ES256 signing keys only.
fn fits_id_token_set(set: &str, key: &KeyMaterial) -> Result<(), ApiError> {
    if set == ID_TOKEN_SET && (key.alg != "ES256" || key.use_ != "sig") {
        return Err(ApiError::invalid_request(format!(
            "alg: the set {ID_TOKEN_SET} signs id_tokens in the gateway, which takes ES256 signing keys only \
             (got {} with use {:?})",
            key.alg, key.use_
        )));
    }
    Ok(())
}

/// After a change to the id_token set: load it again and hand a new signer to the decisions
/// API and to the filters' snapshot.
pub async fn apply_id_token_set(state: &AppState) -> Result<(), ApiError> {
    let changed = state.keys.reload(&state.config.secrets, &state.store).await.map_err(|e| ApiError::internal(&e))?;
    if changed {
        let signer = state.keys.signer();
        state.rules.set_signing_key(Some(signer.snapshot_key().clone())).await;
        state.decider.set_signer(Some(signer));
    }
    Ok(())
}

fn public_keys(rows: &[KeyRow]) -> Result<Vec<Value>, ApiError> {
    rows.iter()
        .map(|r| serde_json::from_str(&r.public_jwk).map_err(|e| ApiError::internal(&format!("key {}: {e}", r.kid))))
        .collect()
}

/// The public keys of a set; the id_token set answers as `/.well-known/jwks.json` does.
async fn set_keys(state: &AppState, set: &str) -> Result<Vec<Value>, ApiError> {
    if set == ID_TOKEN_SET {
        let jwks = state.keys.jwks(state.clock.now());
        return Ok(jwks["keys"].as_array().cloned().unwrap_or_default());
    }
    public_keys(&state.store.signing_keys(set).await?)
}

pub async fn set(State(state): State<AppState>, Path(set): Path<String>) -> Result<Json<Value>, ApiError> {
    check_set(&set)?;
    let keys = set_keys(&state, &set).await?;
    if keys.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({ "keys": keys })))
}

/// One key, as a set of one (Hydra's `getJsonWebKey` answers a `jsonWebKeySet` too).
pub async fn key(
    State(state): State<AppState>,
    Path((set, kid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_set(&set)?;
    let keys = set_keys(&state, &set).await?;
    let found = keys.into_iter().find(|k| k["kid"] == kid.as_str());
    found.map(|k| Json(json!({"keys": [k]}))).ok_or_else(ApiError::not_found)
}

/// `POST /admin/keys/{set}`: a new key, kept beside the set's others; in the id_token set it
/// becomes the signer. 201 with the new public key as a set of one.
pub async fn create(
    State(state): State<AppState>,
    Path(set): Path<String>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_set(&set)?;
    let alg = body.alg.ok_or_else(|| ApiError::invalid_request("alg: is required (ES256 or RS256)"))?;
    let key = KeyMaterial::generate(&alg, body.use_.as_deref().unwrap_or("sig"), body.kid.as_deref())
        .map_err(ApiError::invalid_request)?;
    fits_id_token_set(&set, &key)?;
    let now = state.clock.now();
    let row = key.row(&set, system_secret(&state)?, now).map_err(|e| ApiError::internal(&e))?;
    if !state.store.rotate_in_signing_key(&row, now).await? {
        return Err(ApiError::conflict(format!("kid: {:?} exists already", key.kid)));
    }
    if set == ID_TOKEN_SET {
        apply_id_token_set(&state).await?;
    }
    Ok((StatusCode::CREATED, Json(json!({ "keys": [key.public_jwk()] }))))
}

/// `PUT /admin/keys/{set}/{kid}`: imports a private JWK as that key (replacing it if present).
/// In the id_token set the imported key signs from now on. Answers the public JWK.
pub async fn put_key(
    State(state): State<AppState>,
    Path((set, kid)): Path<(String, String)>,
    ApiJson(mut jwk): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    check_set(&set)?;
    if let Some(obj) = jwk.as_object_mut() {
        match obj.get("kid") {
            None => {
                obj.insert("kid".into(), json!(kid));
            }
            Some(k) if k == kid.as_str() => {}
            Some(k) => return Err(ApiError::invalid_request(format!("kid: {k} differs from the path's {kid:?}"))),
        }
    }
    let key = KeyMaterial::from_jwk(&jwk).map_err(ApiError::invalid_request)?;
    fits_id_token_set(&set, &key)?;
    let now = state.clock.now();
    let row = key.row(&set, system_secret(&state)?, now).map_err(|e| ApiError::internal(&e))?;
    if !state.store.put_signing_key(&row, now).await? {
        return Err(ApiError::conflict(format!("kid: {kid:?} belongs to another key set")));
    }
    if set == ID_TOKEN_SET {
        apply_id_token_set(&state).await?;
    }
    Ok(Json(key.public_jwk()))
}

/// `PUT /admin/keys/{set}`: the set becomes exactly these private JWKs. In the id_token set
/// the first key signs and the others are listed as just retired.
pub async fn put_set(
    State(state): State<AppState>,
    Path(set): Path<String>,
    ApiJson(body): ApiJson<KeySetBody>,
) -> Result<Json<Value>, ApiError> {
    check_set(&set)?;
    if body.keys.is_empty() {
        return Err(ApiError::invalid_request("keys: at least one key is required"));
    }
    let mut materials = Vec::with_capacity(body.keys.len());
    for (i, jwk) in body.keys.iter().enumerate() {
        let key = KeyMaterial::from_jwk(jwk).map_err(|e| ApiError::invalid_request(format!("keys[{i}].{e}")))?;
        fits_id_token_set(&set, &key).map_err(|e| ApiError::invalid_request(format!("keys[{i}].{}", e.description)))?;
        if materials.iter().any(|m: &KeyMaterial| m.kid == key.kid) {
            return Err(ApiError::invalid_request(format!("keys[{i}].kid: {:?} appears twice", key.kid)));
        }
        materials.push(key);
    }
    let secret = system_secret(&state)?;
    let now = state.clock.now();
    let mut rows = Vec::with_capacity(materials.len());
    for (i, key) in materials.iter().enumerate() {
        let mut row = key.row(&set, secret, now).map_err(|e| ApiError::internal(&e))?;
        if set == ID_TOKEN_SET && i > 0 {
            row.retired_at = Some(now);
        }
        rows.push(row);
    }
    if !state.store.replace_signing_key_set(&set, &rows).await? {
        return Err(ApiError::conflict("keys: one of the kids belongs to another key set"));
    }
    if set == ID_TOKEN_SET {
        apply_id_token_set(&state).await?;
    }
    Ok(Json(json!({ "keys": materials.iter().map(KeyMaterial::public_jwk).collect::<Vec<_>>() })))
}

/// `DELETE /admin/keys/{set}`: 204. The id_token set cannot be deleted (nothing could sign).
pub async fn delete_set(State(state): State<AppState>, Path(set): Path<String>) -> Result<StatusCode, ApiError> {
    check_set(&set)?;
    if set == ID_TOKEN_SET {
        return Err(ApiError::conflict(format!(
            "the set {ID_TOKEN_SET} signs id_tokens and cannot be deleted; rotate it with POST /admin/keys/{ID_TOKEN_SET}"
        )));
    }
    system_secret(&state)?;
    if state.store.delete_signing_key_set(&set).await? == 0 {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /admin/keys/{set}/{kid}`: 204. In the id_token set the last key cannot be deleted;
/// deleting the signing key hands signing to the newest remaining key.
pub async fn delete_key(
    State(state): State<AppState>,
    Path((set, kid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_set(&set)?;
    system_secret(&state)?;
    if set == ID_TOKEN_SET {
        let rows = state.store.signing_keys(&set).await?;
        if rows.len() == 1 && rows[0].kid == kid {
            return Err(ApiError::conflict(format!(
                "kid: {kid:?} is the only key of {ID_TOKEN_SET}; generate another key first (POST /admin/keys/{ID_TOKEN_SET})"
            )));
        }
    }
    if !state.store.delete_signing_key(&set, &kid).await? {
        return Err(ApiError::not_found());
    }
    if set == ID_TOKEN_SET {
        apply_id_token_set(&state).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};

    use crate::config::{Config, Secrets};
    use crate::keys::RETIRED_LISTED_SECONDS;
    use crate::testing::Harness;

    const SET: &str = "/admin/keys/portcullis.id-token";

    fn config() -> Config {
        Config { secrets: Secrets { system: vec!["a-system-secret-of-32-characters".into()] }, ..Config::default() }
    }

    fn kids(v: &Value) -> Vec<String> {
        v["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    }

    fn snapshot_kid(h: &Harness) -> String {
        let snapshot: Value = serde_json::from_slice(&h.state.rules.current().body).unwrap();
        snapshot["signing_key"]["kid"].as_str().unwrap_or_default().to_owned()
    }

    async fn public_jwks(h: &Harness) -> Value {
        let r = Harness::send(
            h.public(),
            axum::http::Request::get("/.well-known/jwks.json").body(axum::body::Body::empty()).unwrap(),
        )
        .await;
        r.json()
    }

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

    #[tokio::test]
    async fn generating_into_the_id_token_set_rotates_the_signer_everywhere() {
        for (backend, h) in Harness::all_with_config(config()).await {
            let old = h.state.keys.signer();
            let r = h.admin_json(Method::POST, SET, Some(json!({"alg": "ES256", "use": "sig", "kid": "k2"}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{backend}: {}", String::from_utf8_lossy(&r.bytes));
            let created = &r.json()["keys"][0];
            assert_eq!((created["kid"].as_str(), created["alg"].as_str()), (Some("k2"), Some("ES256")));
            assert!(created.get("d").is_none(), "{backend}: no private part");

            // The running server signs with the new key, without a restart; filters get it too.
            assert_eq!(h.state.keys.signer().kid(), "k2", "{backend}");
            assert_eq!(snapshot_kid(&h), "k2", "{backend}: filters get the new key");
            let token = h.state.keys.signer().sign("e30.e30").unwrap();
            let jwks = public_jwks(&h).await;
            assert_eq!(kids(&jwks), ["k2", old.kid()], "{backend}: the old key is still published");
            let k2 = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == "k2").unwrap();
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = p256::ecdsa::Signature::from_slice(&crate::crypto::b64url_decode(sig).unwrap()).unwrap();
            use p256::ecdsa::signature::Verifier as _;
            crate::keys::tests::verifying_key(k2).verify(input.as_bytes(), &sig).unwrap();

            // A day later the retired key is gone from the JWKS (and the admin read of the set).
            h.clock.advance(RETIRED_LISTED_SECONDS - 1);
            assert_eq!(kids(&public_jwks(&h).await).len(), 2, "{backend}");
            h.clock.advance(1);
            assert_eq!(kids(&public_jwks(&h).await), ["k2"], "{backend}");
            let r = h.admin_json(Method::GET, &format!("{SET}/{}", old.kid()), None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{backend}");

            // The taken kid is a conflict.
            let r = h.admin_json(Method::POST, SET, Some(json!({"alg": "ES256", "kid": "k2"}))).await;
            assert_eq!(r.status, StatusCode::CONFLICT, "{backend}");
        }
    }

    #[tokio::test]
    async fn unsupported_algorithms_and_bad_input_are_refused_naming_the_field() {
        let h = Harness::with_config(config()).await;
        let cases = [
            (SET, json!({"alg": "HS256"}), "alg: \"HS256\" is not supported"),
            (SET, json!({"alg": "ES512"}), "alg: \"ES512\" is not supported"),
            (SET, json!({}), "alg: is required"),
            (SET, json!({"alg": "RS256"}), "takes ES256 signing keys only"),
            (SET, json!({"alg": "ES256", "use": "enc"}), "takes ES256 signing keys only"),
            ("/admin/keys/other", json!({"alg": "ES256", "use": "wrap"}), "use: \"wrap\""),
            ("/admin/keys/other", json!({"alg": "ES256", "kid": "a b"}), "kid: \"a b\""),
            ("/admin/keys/other", json!({"alg": "ES256", "size": 1}), "unknown field `size`"),
        ];
        for (path, body, want) in cases {
            let r = h.admin_json(Method::POST, path, Some(body.clone())).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
            let got = r.json()["error_description"].as_str().unwrap().to_owned();
            assert!(got.contains(want), "{body}: {got}");
        }
        assert_eq!(kids(&h.admin_json(Method::GET, SET, None).await.json()).len(), 1, "nothing changed");
    }

    #[tokio::test]
    async fn other_sets_hold_es256_and_rs256_keys_and_are_deleted_whole_or_by_kid() {
        for (backend, h) in Harness::all_with_config(config()).await {
            let path = "/admin/keys/my-app";
            assert_eq!(h.admin_json(Method::GET, path, None).await.status, StatusCode::NOT_FOUND, "{backend}");
            let r = h.admin_json(Method::POST, path, Some(json!({"alg": "RS256", "kid": "rsa1"}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{backend}");
            let rsa = &r.json()["keys"][0];
            assert_eq!((rsa["kty"].as_str(), rsa["alg"].as_str()), (Some("RSA"), Some("RS256")));
            assert!(rsa.get("d").is_none() && rsa.get("p").is_none(), "{backend}: public only");
            assert_eq!(crate::crypto::b64url_decode(rsa["n"].as_str().unwrap()).unwrap().len(), 256);
            let r = h.admin_json(Method::POST, path, Some(json!({"alg": "ES256", "use": "enc"}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{backend}");
            let ec_kid = r.json()["keys"][0]["kid"].as_str().unwrap().to_owned();

            let set = h.admin_json(Method::GET, path, None).await.json();
            assert_eq!(kids(&set).len(), 2, "{backend}");
            assert!(!kids(&public_jwks(&h).await).contains(&"rsa1".to_owned()), "only the id_token set is published");
            let one = h.admin_json(Method::GET, &format!("{path}/rsa1"), None).await.json();
            assert_eq!(one["keys"][0]["n"], rsa["n"]);
            assert!(h.state.keys.signer().kid() != "rsa1" && h.state.keys.signer().kid() != ec_kid);

            let r = h.admin_json(Method::DELETE, &format!("{path}/rsa1"), None).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend}");
            let r = h.admin_json(Method::DELETE, &format!("{path}/rsa1"), None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{backend}");
            assert_eq!(h.admin_json(Method::DELETE, path, None).await.status, StatusCode::NO_CONTENT);
            assert_eq!(h.admin_json(Method::GET, path, None).await.status, StatusCode::NOT_FOUND, "{backend}");
            assert_eq!(h.admin_json(Method::DELETE, path, None).await.status, StatusCode::NOT_FOUND, "{backend}");
        }
    }

    #[tokio::test]
    async fn the_signing_key_cannot_be_left_without_a_successor() {
        for (backend, h) in Harness::all_with_config(config()).await {
            let first = h.state.keys.signer().kid().to_owned();
            let r = h.admin_json(Method::DELETE, &format!("{SET}/{first}"), None).await;
            assert_eq!(r.status, StatusCode::CONFLICT, "{backend}");
            assert!(r.json()["error_description"].as_str().unwrap().contains("only key"), "{backend}");
            assert_eq!(h.admin_json(Method::DELETE, SET, None).await.status, StatusCode::CONFLICT, "{backend}");
            assert_eq!(h.state.keys.signer().kid(), first, "{backend}");

            // With a second key, deleting the signer hands signing back to the remaining key.
            let r = h.admin_json(Method::POST, SET, Some(json!({"alg": "ES256", "kid": "next"}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{backend}");
            assert_eq!(h.state.keys.signer().kid(), "next");
            let r = h.admin_json(Method::DELETE, &format!("{SET}/next"), None).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend}");
            assert_eq!(h.state.keys.signer().kid(), first, "{backend}");
            assert_eq!(snapshot_kid(&h), first, "{backend}");
            assert_eq!(kids(&public_jwks(&h).await), [first], "{backend}");
        }
    }

    #[tokio::test]
    async fn imported_private_jwks_sign_and_are_stored_encrypted() {
        for (backend, h) in Harness::all_with_config(config()).await {
            let key = crate::keys::KeyMaterial::generate("ES256", "sig", Some("imported")).unwrap();
            let mut jwk = key.public_jwk();
            // The private scalar, as an exporter would write it.
            let d = {
                let row = key.row("x", "a-system-secret-of-32-characters", 0).unwrap();
                let der =
                    crate::keys::decrypt(&["a-system-secret-of-32-characters".into()], "imported", &row.private_key)
                        .unwrap();
                use p256::pkcs8::DecodePrivateKey as _;
                let sk = p256::ecdsa::SigningKey::from_pkcs8_der(&der).unwrap();
                crate::crypto::b64url(&sk.to_bytes())
            };
            jwk["d"] = json!(d);
            let r = h.admin_json(Method::PUT, &format!("{SET}/imported"), Some(jwk.clone())).await;
            assert_eq!(r.status, StatusCode::OK, "{backend}: {}", String::from_utf8_lossy(&r.bytes));
            assert!(r.json().get("d").is_none());
            assert_eq!(h.state.keys.signer().kid(), "imported", "{backend}: the imported key signs");
            let rows = h.state.store.signing_keys("portcullis.id-token").await.unwrap();
            let stored = rows.iter().find(|r| r.kid == "imported").unwrap();
            assert!(stored.private_key.starts_with("v1:") && !stored.private_key.contains(&d), "{backend}");

            // Errors name the field.
            let mut public_only = jwk.clone();
            public_only.as_object_mut().unwrap().remove("d");
            let mut wrong_x = jwk.clone();
            wrong_x["x"] = json!(crate::crypto::b64url(&[7u8; 32]));
            let cases = [
                (format!("{SET}/imported"), public_only, "d: is required"),
                (format!("{SET}/imported"), wrong_x, "x: does not match"),
                (format!("{SET}/other-kid"), jwk.clone(), "differs from the path"),
                (format!("{SET}/k"), json!({"kty": "oct", "kid": "k", "k": "c2VjcmV0"}), "kty: \"oct\""),
            ];
            for (path, body, want) in cases {
                let r = h.admin_json(Method::PUT, &path, Some(body)).await;
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{backend} {path}");
                let got = r.json()["error_description"].as_str().unwrap().to_owned();
                assert!(got.contains(want), "{backend}: {got}");
            }

            // Replacing the whole set: the first key signs, the rest are listed as retired.
            let second = crate::keys::KeyMaterial::generate("ES256", "sig", Some("second")).unwrap();
            let row = second.row("x", "a-system-secret-of-32-characters", 0).unwrap();
            let der =
                crate::keys::decrypt(&["a-system-secret-of-32-characters".into()], "second", &row.private_key).unwrap();
            use p256::pkcs8::DecodePrivateKey as _;
            let sk = p256::ecdsa::SigningKey::from_pkcs8_der(&der).unwrap();
            let mut second_jwk = second.public_jwk();
            second_jwk["d"] = json!(crate::crypto::b64url(&sk.to_bytes()));
            let r = h.admin_json(Method::PUT, SET, Some(json!({"keys": [second_jwk, jwk]}))).await;
            assert_eq!(r.status, StatusCode::OK, "{backend}: {}", String::from_utf8_lossy(&r.bytes));
            assert_eq!(h.state.keys.signer().kid(), "second", "{backend}");
            assert_eq!(kids(&public_jwks(&h).await), ["second", "imported"], "{backend}");
            let r = h.admin_json(Method::PUT, SET, Some(json!({"keys": []}))).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{backend}");
        }
    }

    #[tokio::test]
    async fn without_system_secrets_keys_cannot_be_changed() {
        let h = Harness::new().await;
        let r = h.admin_json(Method::POST, SET, Some(json!({"alg": "ES256"}))).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.json()["error_description"].as_str().unwrap().contains("secrets.system"));
    }
}
