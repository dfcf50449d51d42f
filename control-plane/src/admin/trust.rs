//! `/admin/trust/grants/jwt-bearer/issuers`: the HTTP side of RFC 7523 trust relationships
//! (create, list, get, delete). The validation, storing and rendering are
//! [`portcullis_oauth2::trust`]'s; these handlers extract the request, call it and map
//! [`TrustError`] to admin error bodies once.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_oauth2::trust::{self, ListQuery, TrustError};
use serde_json::{Map, Value};

use crate::app::AppState;
use crate::error::{ApiError, ApiJson, parse_urlencoded};

const PATH: &str = "/admin/trust/grants/jwt-bearer/issuers";

impl From<TrustError> for ApiError {
    fn from(e: TrustError) -> Self {
        match e {
            TrustError::Invalid(m) => ApiError::invalid_request(m),
            TrustError::Conflict(m) => ApiError::conflict(m),
            TrustError::Store(e) => e.into(),
            e @ TrustError::Internal(_) => ApiError::internal(&e),
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    ApiJson(map): ApiJson<Map<String, Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = trust::create(&state.store, state.clock.now(), &map).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(&parse_urlencoded(query.unwrap_or_default().as_bytes()))?;
    let (items, next) = trust::list(&state.store, &q).await?;
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let link = q.link(&format!("http://{host}{PATH}"), next.as_deref());
    let mut res = Json(items).into_response();
    if let Ok(v) = HeaderValue::from_str(&link) {
        res.headers_mut().insert(header::LINK, v);
    }
    Ok(res)
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(trust::get(&state.store, &id).await?.ok_or_else(ApiError::not_found)?))
}

pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if state.store.delete_trust(&id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found()) }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};

    use crate::keys::Signer;
    use crate::testing::{Harness, T0};

    const PATH: &str = "/admin/trust/grants/jwt-bearer/issuers";

    fn request(key: &Signer, subject: Value) -> Value {
        json!({
            "issuer": "https://idp.example",
            "subject": subject,
            "scope": ["read", "write"],
            "jwk": key.public_jwk(),
            "expires_at": "2030-01-01T00:00:00Z",
        })
    }

    #[tokio::test]
    async fn create_get_list_delete_in_hydra_shape() {
        let h = Harness::new().await;
        let key = Signer::generate().unwrap();
        let reply = h.admin_json(Method::POST, PATH, Some(request(&key, json!("alice")))).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json());
        let created = reply.json();
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["issuer"], "https://idp.example");
        assert_eq!(created["subject"], "alice");
        assert_eq!(created["allow_any_subject"], false);
        assert_eq!(created["scope"], json!(["read", "write"]));
        assert_eq!(created["public_key"], json!({"set": "https://idp.example", "kid": key.kid()}));
        assert_eq!(created["expires_at"], "2030-01-01T00:00:00Z");
        assert_eq!(created["created_at"], crate::rfc3339(T0));

        let dup = h.admin_json(Method::POST, PATH, Some(request(&key, json!("alice")))).await;
        assert_eq!(dup.status, StatusCode::CONFLICT);
        let mut any = request(&key, Value::Null);
        any["allow_any_subject"] = json!(true);
        let any = h.admin_json(Method::POST, PATH, Some(any)).await;
        assert_eq!(any.status, StatusCode::CREATED, "{}", any.json());

        assert_eq!(h.admin_json(Method::GET, &format!("{PATH}/{id}"), None).await.json(), created);
        let v1 = h.admin_json(Method::GET, &format!("/trust/grants/jwt-bearer/issuers/{id}"), None).await;
        assert_eq!(v1.json(), created, "Hydra v1 path without /admin");
        let listed = h.admin_json(Method::GET, &format!("{PATH}?page_size=1"), None).await;
        assert_eq!(listed.json().as_array().unwrap().len(), 1);
        assert!(listed.header("link").contains("rel=\"next\""), "{}", listed.header("link"));
        let all = h.admin_json(Method::GET, &format!("{PATH}?issuer=https%3A%2F%2Fidp.example"), None).await;
        assert_eq!(all.json().as_array().unwrap().len(), 2);
        let none = h.admin_json(Method::GET, &format!("{PATH}?issuer=https%3A%2F%2Fother"), None).await;
        assert_eq!(none.json(), json!([]));

        assert_eq!(h.admin_json(Method::DELETE, &format!("{PATH}/{id}"), None).await.status, StatusCode::NO_CONTENT);
        assert_eq!(h.admin_json(Method::GET, &format!("{PATH}/{id}"), None).await.status, StatusCode::NOT_FOUND);
        assert_eq!(h.admin_json(Method::DELETE, &format!("{PATH}/{id}"), None).await.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn invalid_requests_name_the_field_and_private_keys_are_refused() {
        let h = Harness::new().await;
        let key = Signer::generate().unwrap();
        let with = |field: &str, value: Value| {
            let mut r = request(&key, json!("alice"));
            r[field] = value;
            r
        };
        let mut private = key.public_jwk();
        private["d"] = json!("c2VjcmV0");
        let mut no_kid = key.public_jwk();
        no_kid.as_object_mut().unwrap().remove("kid");
        let mut both = request(&key, json!("alice"));
        both["allow_any_subject"] = json!(true);
        let cases = [
            (with("issuer", json!("")), "issuer:"),
            (with("subject", Value::Null), "subject:"),
            (both, "subject:"),
            (with("scope", Value::Null), "scope:"),
            (with("scope", json!(["a b"])), "scope:"),
            (with("jwk", Value::Null), "jwk:"),
            (with("jwk", private), "jwk:"),
            (with("jwk", no_kid), "jwk:"),
            (with("jwk", json!({"kty": "oct", "kid": "x"})), "jwk:"),
            (with("expires_at", Value::Null), "expires_at:"),
            (with("expires_at", json!("tomorrow")), "expires_at:"),
            (with("expires_at", json!("2020-01-01T00:00:00Z")), "expires_at:"),
            (with("extra", json!(1)), "unknown field `extra`"),
        ];
        for (body, field) in cases {
            let reply = h.admin_json(Method::POST, PATH, Some(body.clone())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
            let text = reply.json()["error_description"].as_str().unwrap().to_owned();
            assert!(text.starts_with(field), "{body}: {text}");
        }
        assert_eq!(h.admin_json(Method::GET, PATH, None).await.json(), json!([]), "nothing stored");
    }
}
