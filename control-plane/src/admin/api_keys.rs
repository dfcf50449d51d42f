//! `/admin/api-keys`: list, create and revoke the admin API's own keys. A key is shown once,
//! in the answer that created it; listings show names, scopes and times, never a key or its
//! hash. A key may only create keys within its own scopes, so `api-keys:write` cannot mint an
//! `admin` key. Revocation evicts the key from this node's cache at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::auth::{self, Caller, Scopes};
use crate::app::AppState;
use crate::error::{ApiError, ApiJson};
use crate::rfc3339;
use crate::store::api_keys::ApiKeyRow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    name: String,
    scopes: Vec<String>,
}

/// A key as the API shows it; `key` only in the answer that created it.
pub fn render(row: &ApiKeyRow, key: Option<&str>) -> Value {
    let mut out = json!({
        "id": row.id,
        "name": row.name,
        "scopes": Scopes::from_stored(&row.scopes).names(),
        "created_at": rfc3339(row.created_at),
        "last_used_at": row.last_used_at.map(rfc3339),
        "revoked_at": row.revoked_at.map(rfc3339),
    });
    if let Some(key) = key {
        out["key"] = json!(key);
    }
    out
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows = state.store.list_api_keys().await?;
    Ok(Json(Value::Array(rows.iter().map(|r| render(r, None)).collect())))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let scopes = Scopes::parse(req.scopes.iter().map(String::as_str)).map_err(ApiError::invalid_request)?;
    let (key, row) = auth::new_key(&req.name, &scopes, state.clock.now()).map_err(ApiError::invalid_request)?;
    if let Some(Extension(caller)) = caller {
        if let Some(beyond) = scopes.iter().find(|s| !caller.scopes.grants(*s)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("An API key cannot create a key with the scope \"{beyond}\", which it does not hold itself."),
            ));
        }
    }
    state.store.insert_api_key(&row).await?;
    tracing::info!(key_id = %row.id, name = %row.name, scopes = %row.scopes, "created an API key");
    Ok((StatusCode::CREATED, Json(render(&row, Some(&key)))))
}

pub async fn revoke(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let revoked = state.store.revoke_api_key(&id, state.clock.now()).await?;
    // Evict even when nothing was revoked here: another node may have revoked it a moment ago.
    state.api_keys.evict(&id);
    if !revoked {
        return Err(ApiError::not_found());
    }
    tracing::info!(key_id = %id, "revoked an API key");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Method, Request, header};

    use super::*;
    use crate::testing::{Harness, Reply, T0};

    async fn call(h: &Harness, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        Harness::send(h.admin(), req.body(body).unwrap()).await
    }

    async fn stored(h: &Harness, scopes: &[&str]) -> String {
        let (key, row) = auth::new_key("seed", &Scopes::parse(scopes.iter().copied()).unwrap(), T0).unwrap();
        h.state.store.insert_api_key(&row).await.unwrap();
        key
    }

    #[tokio::test]
    async fn keys_are_created_shown_once_listed_without_secrets_and_revoked() {
        let h = Harness::secured().await;
        let admin = stored(&h, &["admin"]).await;
        let created = call(
            &h,
            Method::POST,
            "/admin/api-keys",
            Some(&admin),
            Some(json!({"name": "ci", "scopes": ["identities:read", "clients:write"]})),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json());
        let body = created.json();
        let key = body["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("pc_ak_") && key.len() == 6 + 43, "{key}");
        assert_eq!(body["name"], "ci");
        assert_eq!(body["scopes"], json!(["identities:read", "clients:write"]));
        assert_eq!(body["created_at"], rfc3339(T0));
        assert_eq!(body["revoked_at"], Value::Null);
        let id = body["id"].as_str().unwrap().to_owned();

        let listed = call(&h, Method::GET, "/admin/api-keys", Some(&key), None).await;
        assert_eq!(listed.status, StatusCode::FORBIDDEN, "the new key has no api-keys scope");
        let listed = call(&h, Method::GET, "/api-keys", Some(&admin), None).await;
        assert_eq!(listed.status, StatusCode::OK);
        let list = listed.json();
        let ours = list.as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
        assert_eq!(ours["name"], "ci");
        assert!(ours.get("key").is_none() && ours.get("key_hash").is_none(), "{ours}");
        assert_eq!(ours["last_used_at"], rfc3339(T0), "its one use (the 403 above) is recorded");

        let gone = call(&h, Method::DELETE, &format!("/admin/api-keys/{id}"), Some(&admin), None).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        let again = call(&h, Method::DELETE, &format!("/admin/api-keys/{id}"), Some(&admin), None).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "already revoked");
        assert_eq!(call(&h, Method::GET, "/admin/clients", Some(&key), None).await.status, StatusCode::UNAUTHORIZED);
        let list = call(&h, Method::GET, "/admin/api-keys", Some(&admin), None).await.json();
        let ours = list.as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
        assert_eq!(ours["revoked_at"], rfc3339(T0), "revoked keys stay listed");
    }

    #[tokio::test]
    async fn bad_requests_name_the_field_or_the_scope() {
        let h = Harness::new().await;
        for (body, needle) in [
            (json!({"name": "ci", "scopes": ["clients:read", "clients:delete"]}), "\"clients:delete\""),
            (json!({"name": "ci", "scopes": []}), "at least one scope"),
            (json!({"name": " ", "scopes": ["admin"]}), "name"),
            (json!({"name": "ci"}), "scopes"),
            (json!({"name": "ci", "scopes": ["admin"], "key": "pc_ak_mine"}), "key"),
        ] {
            let reply = h.admin_json(Method::POST, "/admin/api-keys", Some(body.clone())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
            let why = reply.json()["error_description"].as_str().unwrap().to_owned();
            assert!(why.contains(needle), "{body}: {why}");
        }
        assert!(h.state.store.list_api_keys().await.unwrap().is_empty());
        let missing = h.admin_json(Method::DELETE, "/admin/api-keys/nope", None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_key_cannot_create_a_key_more_powerful_than_itself() {
        let h = Harness::secured().await;
        let manager = stored(&h, &["api-keys:write", "clients:read"]).await;
        let ask = async |scopes: Value| {
            call(&h, Method::POST, "/admin/api-keys", Some(&manager), Some(json!({"name": "n", "scopes": scopes})))
                .await
        };
        for (scopes, beyond) in [(json!(["admin"]), "admin"), (json!(["clients:write"]), "clients:write")] {
            let reply = ask(scopes).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN);
            assert!(reply.json()["error_description"].as_str().unwrap().contains(&format!("\"{beyond}\"")));
        }
        assert_eq!(ask(json!(["clients:read", "api-keys:read"])).await.status, StatusCode::CREATED);
        // Under --dev there is no caller to compare with: anything goes.
        let dev = Harness::new().await;
        let reply =
            dev.admin_json(Method::POST, "/admin/api-keys", Some(json!({"name": "n", "scopes": ["admin"]}))).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
}
