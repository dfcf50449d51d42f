//! Hydra's JSON Web Key admin API: `POST /admin/keys/{set}` generates a key into a set (the
//! rotation primitive), `GET/PUT/DELETE /admin/keys/{set}` and `/admin/keys/{set}/{kid}` read,
//! import and delete. Unlike Hydra, reads answer public keys only, even on the admin listener:
//! a private key never leaves the server once stored (imported keys are stored AES-256-GCM
//! encrypted under `secrets.system`, which changing a key requires). The two sets this server
//! signs with ([`MANAGED_SETS`]) rotate the same way and independently: the newest written key
//! signs at once and the previous one stays in the set's JWKS for `RETIRED_LISTED_SECONDS`.
//! A change to `portcullis.id-token` (OAuth2) stays in the control plane; a change to
//! `portcullis.gateway` also reaches the decisions API and, with the next snapshot, the
//! filters. This module refuses any change that would leave a managed set without a key able
//! to sign (ES256 only there: the algorithm the filter signs with through Envoy, and the one
//! discovery advertises for ID tokens).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::{ApiError, ApiJson};
use crate::keys::{GATEWAY_SET, KeyMaterial, Keys, MANAGED_SETS, OAUTH2_SET, ReloadError, validate_name};
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

/// The running view of `set` when it is one this server signs with.
fn managed<'a>(state: &'a AppState, set: &str) -> Option<&'a Keys> {
    match set {
        OAUTH2_SET => Some(&state.keys),
        GATEWAY_SET => Some(&state.gateway_keys),
        _ => None,
    }
}

/// What a managed set signs, for error messages.
fn purpose(set: &str) -> &'static str {
    if set == GATEWAY_SET { "the gateway's id_token mutator tokens" } else { "the OAuth2 server's tokens" }
}

/// What a managed set accepts: ES256 signing keys only.
fn fits_managed_set(set: &str, key: &KeyMaterial) -> Result<(), ApiError> {
    if MANAGED_SETS.contains(&set) && (key.alg != "ES256" || key.use_ != "sig") {
        return Err(ApiError::invalid_request(format!(
            "alg: the set {set} signs {}, and takes ES256 signing keys only (got {} with use {:?})",
            purpose(set),
            key.alg,
            key.use_
        )));
    }
    Ok(())
}

/// After a change to `set`: when it is a managed set, load it again. A new gateway signer goes
/// to the decisions API and the filters' snapshot; an OAuth2 signer goes nowhere else.
pub async fn apply_set(state: &AppState, set: &str) -> Result<(), ReloadError> {
    let Some(keys) = managed(state, set) else { return Ok(()) };
    let changed = keys.reload(&state.config.secrets, &state.store).await?;
    if changed && set == GATEWAY_SET {
        state.rules.set_signing_key(keys.snapshot_key()).await;
        state.decider.set_signer(Some(keys.signer()));
    }
    Ok(())
}

fn public_keys(rows: &[KeyRow]) -> Result<Vec<Value>, ApiError> {
    rows.iter()
        .map(|r| serde_json::from_str(&r.public_jwk).map_err(|e| ApiError::internal(&format!("key {}: {e}", r.kid))))
        .collect()
}

/// The public keys of a set; a managed set answers as its published JWKS does.
async fn set_keys(state: &AppState, set: &str) -> Result<Vec<Value>, ApiError> {
    if let Some(keys) = managed(state, set) {
        let jwks = keys.jwks(state.clock.now());
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

/// `POST /admin/keys/{set}`: a new key, kept beside the set's others; in a managed set it
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
    fits_managed_set(&set, &key)?;
    let now = state.clock.now();
    let row = key.row(&set, system_secret(&state)?, now).map_err(|e| ApiError::internal(&e))?;
    if !state.store.rotate_in_signing_key(&row, now).await? {
        return Err(ApiError::conflict(format!("kid: {:?} exists already", key.kid)));
    }
    apply_set(&state, &set).await?;
    Ok((StatusCode::CREATED, Json(json!({ "keys": [key.public_jwk()] }))))
}

/// `PUT /admin/keys/{set}/{kid}`: imports a private JWK as that key (replacing it if present).
/// In a managed set the imported key signs from now on. Answers the public JWK.
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
    fits_managed_set(&set, &key)?;
    let now = state.clock.now();
    let row = key.row(&set, system_secret(&state)?, now).map_err(|e| ApiError::internal(&e))?;
    if !state.store.put_signing_key(&row, now).await? {
        return Err(ApiError::conflict(format!("kid: {kid:?} belongs to another key set")));
    }
    apply_set(&state, &set).await?;
    Ok(Json(key.public_jwk()))
}

/// `PUT /admin/keys/{set}`: the set becomes exactly these private JWKs. In a managed set the
/// first key signs and the others are listed as just retired.
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
        fits_managed_set(&set, &key).map_err(|e| ApiError::invalid_request(format!("keys[{i}].{}", e.description)))?;
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
        if MANAGED_SETS.contains(&set.as_str()) && i > 0 {
            row.retired_at = Some(now);
        }
        rows.push(row);
    }
    if !state.store.replace_signing_key_set(&set, &rows).await? {
        return Err(ApiError::conflict("keys: one of the kids belongs to another key set"));
    }
    apply_set(&state, &set).await?;
    Ok(Json(json!({ "keys": materials.iter().map(KeyMaterial::public_jwk).collect::<Vec<_>>() })))
}

/// `DELETE /admin/keys/{set}`: 204. A managed set cannot be deleted (nothing could sign).
pub async fn delete_set(State(state): State<AppState>, Path(set): Path<String>) -> Result<StatusCode, ApiError> {
    check_set(&set)?;
    if MANAGED_SETS.contains(&set.as_str()) {
        return Err(ApiError::conflict(format!(
            "the set {set} signs {} and cannot be deleted; rotate it with POST /admin/keys/{set}",
            purpose(&set)
        )));
    }
    system_secret(&state)?;
    if state.store.delete_signing_key_set(&set).await? == 0 {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /admin/keys/{set}/{kid}`: 204. In a managed set the last key cannot be deleted;
/// deleting the signing key hands signing to the newest remaining key.
pub async fn delete_key(
    State(state): State<AppState>,
    Path((set, kid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_set(&set)?;
    system_secret(&state)?;
    if MANAGED_SETS.contains(&set.as_str()) {
        let rows = state.store.signing_keys(&set).await?;
        if rows.len() == 1 && rows[0].kid == kid {
            return Err(ApiError::conflict(format!(
                "kid: {kid:?} is the only key of {set}; generate another key first (POST /admin/keys/{set})"
            )));
        }
    }
    if !state.store.delete_signing_key(&set, &kid).await? {
        return Err(ApiError::not_found());
    }
    apply_set(&state, &set).await?;
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
    const GATEWAY: &str = "/admin/keys/portcullis.gateway";

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
    async fn the_managed_sets_are_public_keys_only() {
        let h = Harness::new().await;
        let kid = h.state.keys.signer().kid().to_owned();
        let shipped = h.state.gateway_keys.snapshot_key().unwrap().pkcs8;
        for path in ["/admin/keys/portcullis.id-token", "/keys/portcullis.id-token"] {
            let r = h.admin_json(Method::GET, path, None).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert_eq!(r.json()["keys"][0]["kid"], kid.as_str());
            assert!(r.json()["keys"][0].get("d").is_none());
        }
        let r = h.admin_json(Method::GET, GATEWAY, None).await;
        assert_eq!(r.json()["keys"][0]["kid"], h.state.gateway_keys.signer().kid());
        assert!(r.json()["keys"][0].get("d").is_none());
        assert!(!String::from_utf8_lossy(&r.bytes).contains(&shipped));
        let one = h.admin_json(Method::GET, &format!("/admin/keys/portcullis.id-token/{kid}"), None).await;
        assert_eq!(one.json()["keys"].as_array().unwrap().len(), 1);
        for path in ["/admin/keys/hydra.openid.id-token", "/admin/keys/portcullis.id-token/nope"] {
            assert_eq!(h.admin_json(Method::GET, path, None).await.status, StatusCode::NOT_FOUND, "{path}");
        }
    }

    /// Both managed sets rotate with one POST: the new key signs at once, without a restart,
    /// and the old one stays in the set's JWKS for a day.
    #[tokio::test]
    async fn generating_into_a_managed_set_rotates_its_signer() {
        for (backend, h) in Harness::all_with_config(config()).await {
            for (set, jwks_path) in [(SET, "/.well-known/jwks.json"), (GATEWAY, "/.well-known/gateway-jwks.json")] {
                let keys = if set == SET { &h.state.keys } else { &h.state.gateway_keys };
                let published = async || {
                    let r = Harness::send(
                        h.public(),
                        axum::http::Request::get(jwks_path).body(axum::body::Body::empty()).unwrap(),
                    )
                    .await;
                    r.json()
                };
                let old = keys.signer();
                let filters_before = snapshot_kid(&h);
                let new_kid = format!("{}-2", keys.set());
                let r =
                    h.admin_json(Method::POST, set, Some(json!({"alg": "ES256", "use": "sig", "kid": new_kid}))).await;
                assert_eq!(r.status, StatusCode::CREATED, "{backend}: {}", String::from_utf8_lossy(&r.bytes));
                let created = &r.json()["keys"][0];
                assert_eq!((created["kid"].as_str(), created["alg"].as_str()), (Some(&*new_kid), Some("ES256")));
                assert!(created.get("d").is_none(), "{backend}: no private part");

                assert_eq!(keys.signer().kid(), new_kid, "{backend} {set}");
                let token = keys.signer().sign("e30.e30").unwrap();
                let jwks = published().await;
                assert_eq!(kids(&jwks), [new_kid.as_str(), old.kid()], "{backend}: the old key is still published");
                let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == new_kid.as_str()).unwrap();
                let (input, sig) = token.rsplit_once('.').unwrap();
                let sig = p256::ecdsa::Signature::from_slice(&crate::crypto::b64url_decode(sig).unwrap()).unwrap();
                use p256::ecdsa::signature::Verifier as _;
                crate::keys::testing::verifying_key(jwk).verify(input.as_bytes(), &sig).unwrap();
                let expected_in_filters = if set == GATEWAY { new_kid.clone() } else { filters_before };
                assert_eq!(snapshot_kid(&h), expected_in_filters, "{backend} {set}");

                // The taken kid is a conflict.
                let r = h.admin_json(Method::POST, set, Some(json!({"alg": "ES256", "kid": new_kid}))).await;
                assert_eq!(r.status, StatusCode::CONFLICT, "{backend}");

                // A day later the retired key is gone from the JWKS (and the admin read of the set).
                h.clock.advance(RETIRED_LISTED_SECONDS - 1);
                assert_eq!(kids(&published().await).len(), 2, "{backend}");
                h.clock.advance(1);
                assert_eq!(kids(&published().await), [new_kid.as_str()], "{backend}");
                let r = h.admin_json(Method::GET, &format!("{set}/{}", old.kid()), None).await;
                assert_eq!(r.status, StatusCode::NOT_FOUND, "{backend}");
            }
            assert_eq!(snapshot_kid(&h), "portcullis.gateway-2", "{backend}: filters have the gateway's new key");
        }
    }

    async fn gateway_jwks(h: &Harness) -> Value {
        let r = Harness::send(
            h.public(),
            axum::http::Request::get("/.well-known/gateway-jwks.json").body(axum::body::Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "/.well-known/gateway-jwks.json");
        r.json()
    }

    /// Issue 13 #3 (c): the OAuth2 set and the gateway set rotate independently; neither
    /// rotation reaches the other's signer, JWKS or the filters' snapshot.
    #[tokio::test]
    async fn rotating_one_set_never_touches_the_other() {
        for (backend, h) in Harness::all_with_config(config()).await {
            let oauth2_before = kids(&public_jwks(&h).await);
            let snapshot_before = h.state.rules.current();
            let filters_before = snapshot_kid(&h);

            let r = h.admin_json(Method::POST, SET, Some(json!({"alg": "ES256", "kid": "oauth2-2"}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{backend}: {}", String::from_utf8_lossy(&r.bytes));
            assert_eq!(kids(&public_jwks(&h).await), ["oauth2-2", oauth2_before[0].as_str()], "{backend}");
            assert_eq!(snapshot_kid(&h), filters_before, "{backend}: an OAuth2 key reached the filters");
            assert_eq!(h.state.rules.current().version, snapshot_before.version, "{backend}: filters see no change");
            let gateway_before = kids(&gateway_jwks(&h).await);
            assert_eq!(gateway_before, [filters_before.as_str()], "{backend}: the gateway JWKS lists the filters' key");
            assert!(
                !kids(&public_jwks(&h).await).contains(&filters_before),
                "{backend}: the OAuth2 JWKS lists the gateway key"
            );

            let r = h.admin_json(Method::POST, GATEWAY, Some(json!({"alg": "ES256", "kid": "gateway-2"}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{backend}: {}", String::from_utf8_lossy(&r.bytes));
            assert_eq!(snapshot_kid(&h), "gateway-2", "{backend}: filters get the new gateway key");
            assert_eq!(kids(&gateway_jwks(&h).await), ["gateway-2", gateway_before[0].as_str()], "{backend}");
            assert_eq!(kids(&public_jwks(&h).await), ["oauth2-2", oauth2_before[0].as_str()], "{backend}");

            // Deleting the gateway's signer hands signing back within the gateway set only.
            let r = h.admin_json(Method::DELETE, &format!("{GATEWAY}/gateway-2"), None).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend}");
            assert_eq!(snapshot_kid(&h), gateway_before[0], "{backend}");
            assert_eq!(kids(&public_jwks(&h).await), ["oauth2-2", oauth2_before[0].as_str()], "{backend}");
            // A kid of one set cannot be moved into the other.
            let r = h.admin_json(Method::POST, GATEWAY, Some(json!({"alg": "ES256", "kid": "oauth2-2"}))).await;
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
            (GATEWAY, json!({"alg": "RS256"}), "takes ES256 signing keys only"),
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
            assert!(!kids(&public_jwks(&h).await).contains(&"rsa1".to_owned()), "only the OAuth2 set is published");
            assert!(!kids(&gateway_jwks(&h).await).contains(&"rsa1".to_owned()), "and the gateway set");
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
            for set in [SET, GATEWAY] {
                let keys = if set == SET { &h.state.keys } else { &h.state.gateway_keys };
                let first = keys.signer().kid().to_owned();
                let r = h.admin_json(Method::DELETE, &format!("{set}/{first}"), None).await;
                assert_eq!(r.status, StatusCode::CONFLICT, "{backend} {set}");
                assert!(r.json()["error_description"].as_str().unwrap().contains("only key"), "{backend}");
                let r = h.admin_json(Method::DELETE, set, None).await;
                assert_eq!(r.status, StatusCode::CONFLICT, "{backend} {set}");
                assert!(r.json()["error_description"].as_str().unwrap().contains("cannot be deleted"), "{backend}");
                assert_eq!(keys.signer().kid(), first, "{backend}");

                // With a second key, deleting the signer hands signing back to the remaining key.
                let next = format!("{}-next", keys.set());
                let r = h.admin_json(Method::POST, set, Some(json!({"alg": "ES256", "kid": next}))).await;
                assert_eq!(r.status, StatusCode::CREATED, "{backend}");
                assert_eq!(keys.signer().kid(), next);
                let r = h.admin_json(Method::DELETE, &format!("{set}/{next}"), None).await;
                assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend}");
                assert_eq!(keys.signer().kid(), first, "{backend}");
                assert_eq!(kids(&h.admin_json(Method::GET, set, None).await.json()), [first], "{backend}");
            }
            assert_eq!(snapshot_kid(&h), h.state.gateway_keys.signer().kid(), "{backend}");
            assert_eq!(kids(&public_jwks(&h).await), [h.state.keys.signer().kid()], "{backend}");
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
