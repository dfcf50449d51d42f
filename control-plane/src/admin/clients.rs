//! `/admin/clients`: create, list (keyset pagination with a Hydra `Link` header), get, replace,
//! JSON-Patch, set lifespans, rotate secrets and delete OAuth2 clients. Secrets are hashed before they reach the store and shown only in
//! the response that set or generated them. What a write does to the store and to secrets is
//! [`portcullis_oauth2::clients`]; these handlers parse, call it and answer.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use portcullis_oauth2::clients::{self, ClientError, ListQuery};

use crate::app::AppState;
use crate::client::ClientRequest;
use crate::error::{ApiError, ApiJson, parse_urlencoded};

pub async fn create(
    State(state): State<AppState>,
    ApiJson(map): ApiJson<Map<String, Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = ClientRequest::parse(map)?;
    Ok((StatusCode::CREATED, Json(clients::create(&state.oauth2(), &req).await?)))
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(&parse_urlencoded(query.unwrap_or_default().as_bytes()))?;
    let (items, next) = clients::list(&state.store, &q).await?;
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let scheme =
        headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).filter(|p| *p == "https").unwrap_or("http");
    let link = q.link(&format!("{scheme}://{host}/admin/clients"), next.as_deref());
    let mut res = Json(items).into_response();
    if let Ok(v) = HeaderValue::from_str(&link) {
        res.headers_mut().insert(header::LINK, v);
    }
    Ok(res)
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(clients::get(&state.store, &id).await?))
}

pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(map): ApiJson<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(clients::replace_with(&state.oauth2(), &id, map).await?))
}

/// `PATCH /admin/clients/{id}`: an RFC 6902 JSON Patch ([`clients::patch`]).
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(ops): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(clients::patch(&state.oauth2(), &id, ops).await?))
}

/// `PUT /admin/clients/{id}/lifespans` ([`clients::set_lifespans`]).
pub async fn set_lifespans(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(clients::set_lifespans(&state.oauth2(), &id, &input).await?))
}

/// `POST /admin/clients/{id}/secrets/rotate`: a new generated secret, shown once; the
/// previous one (and up to four before it) keeps working until dropped, so a deployment can
/// switch over without downtime.
pub async fn rotate_secret(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(clients::rotate_secret(&state.oauth2(), &id).await?))
}

/// `DELETE /admin/clients/{id}/secrets/rotate`: only the current secret works from now on.
pub async fn drop_rotated_secrets(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    clients::drop_rotated_secrets(&state.store, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if clients::delete(&state.oauth2(), &id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found()) }
}

/// The one mapping of client operations' errors to admin API answers.
impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::NotFound => ApiError::not_found(),
            ClientError::Conflict(m) => ApiError::conflict(m),
            ClientError::Invalid(m) => ApiError::invalid_request(m),
            ClientError::Store(e) => e.into(),
            e @ ClientError::Internal(_) => ApiError::internal(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use serde_json::{Value, json};

    use crate::testing::{Harness, basic};

    #[tokio::test]
    async fn create_returns_hydra_shape_and_the_secret_once() {
        let h = Harness::new().await;
        let created = h
            .client(json!({"client_name": "svc", "grant_types": ["client_credentials"], "scope": "read write", "jwks_uri": "https://keys"}))
            .await;
        let id = created["client_id"].as_str().unwrap();
        assert_eq!(id.len(), 36, "generated UUIDv4 id: {id}");
        let secret = created["client_secret"].as_str().unwrap();
        assert_eq!(crate::crypto::b64url_decode(secret).unwrap().len(), 32);
        for (k, v) in [
            ("client_name", json!("svc")),
            ("client_secret_expires_at", json!(0)),
            ("redirect_uris", json!([])),
            ("response_types", json!(["code"])),
            ("audience", json!([])),
            ("owner", json!("")),
            ("token_endpoint_auth_method", json!("client_secret_basic")),
            ("metadata", json!({})),
            ("skip_consent", json!(false)),
            ("client_credentials_grant_access_token_lifespan", json!(null)),
            ("jwks_uri", json!("https://keys")),
            ("created_at", json!("2023-11-14T22:13:20Z")),
        ] {
            assert_eq!(created[k], v, "{k}");
        }
        // Never again: GET and list do not show the secret.
        let got = h.admin_json(Method::GET, &format!("/admin/clients/{id}"), None).await;
        assert_eq!(got.status, StatusCode::OK);
        assert!(got.json().get("client_secret").is_none());
        assert_eq!(got.json()["scope"], "read write");
        let listed = h.admin_json(Method::GET, "/admin/clients", None).await.json();
        assert!(listed[0].get("client_secret").is_none());
        // At rest only a hash.
        let row = h.state.store.get_client(id).await.unwrap().unwrap();
        let hash = row.secret_hash.unwrap();
        assert!(hash.starts_with("sha256$") && !hash.contains(secret));
        assert!(!row.body.contains(secret));
    }

    #[tokio::test]
    async fn operator_secret_is_argon2_at_rest_and_works() {
        let h = Harness::new().await;
        let created = h
            .client(
                json!({"client_id": "ops", "client_secret": "chosen-secret", "grant_types": ["client_credentials"]}),
            )
            .await;
        assert_eq!(created["client_secret"], "chosen-secret");
        let row = h.state.store.get_client("ops").await.unwrap().unwrap();
        let hash = row.secret_hash.unwrap();
        assert!(hash.starts_with("$argon2id$") && !hash.contains("chosen-secret"));
        let reply = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("ops", "chosen-secret"))],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn duplicate_malformed_unknown_and_invalid_are_clear_errors() {
        let h = Harness::new().await;
        h.client(json!({"client_id": "dup"})).await;
        let reply = h.admin_json(Method::POST, "/admin/clients", Some(json!({"client_id": "dup"}))).await;
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert_eq!(reply.json()["error"], "conflict");
        assert_eq!(reply.json()["status_code"], 409);

        let req = Request::post("/admin/clients")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"client_name\": "))
            .unwrap();
        let reply = Harness::send(h.admin(), req).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.json()["error"], "invalid_request");
        assert!(reply.json()["error_description"].as_str().unwrap().contains("EOF"), "{}", reply.json());

        let req = Request::post("/admin/clients").body(Body::from("{}")).unwrap();
        let reply = Harness::send(h.admin(), req).await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(reply.json()["error"], "unsupported_media_type");

        let reply =
            h.admin_json(Method::POST, "/admin/clients", Some(json!({"grant_type": ["client_credentials"]}))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(reply.json()["error_description"].as_str().unwrap().contains("`grant_type`"));

        let reply = h.admin_json(Method::POST, "/admin/clients", Some(json!({"client_secret": "short"}))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(reply.json()["error_description"].as_str().unwrap().starts_with("client_secret:"));

        let reply = h.admin_json(Method::POST, "/admin/clients", Some(json!({"audience": "not-a-list"}))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(reply.json()["error_description"].as_str().unwrap().contains("audience"));
    }

    #[tokio::test]
    async fn oversized_body_is_413_json() {
        let h = Harness::new().await;
        let big = json!({"client_name": "x".repeat(1024 * 1024 + 10)});
        let reply = h.admin_json(Method::POST, "/admin/clients", Some(big)).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(reply.json()["error"], "request_too_large");
        assert_eq!(reply.json()["status_code"], 413);
    }

    #[tokio::test]
    async fn list_paginates_with_link_headers_and_filters() {
        let h = Harness::new().await;
        for id in ["c1", "c2", "c3"] {
            h.client(json!({"client_id": id, "owner": if id == "c2" { "team-b" } else { "team-a" }})).await;
        }
        let req = Request::get("/admin/clients?page_size=2")
            .header(header::HOST, "admin.local:4445")
            .body(Body::empty())
            .unwrap();
        let first = Harness::send(h.admin(), req).await;
        assert_eq!(first.status, StatusCode::OK);
        let ids: Vec<_> = first.json().as_array().unwrap().iter().map(|c| c["client_id"].clone()).collect();
        assert_eq!(ids, [json!("c1"), json!("c2")]);
        let link = first.header("link");
        assert!(
            link.starts_with("<http://admin.local:4445/admin/clients?page_size=2&page_token=>; rel=\"first\""),
            "{link}"
        );
        let next = link.split(',').find(|l| l.contains("rel=\"next\"")).expect("next link");
        let next_url = next.trim().trim_start_matches('<').split('>').next().unwrap();
        let path = next_url.trim_start_matches("http://admin.local:4445");
        let second = h.admin_json(Method::GET, path, None).await;
        let ids: Vec<_> = second.json().as_array().unwrap().iter().map(|c| c["client_id"].clone()).collect();
        assert_eq!(ids, [json!("c3")]);
        assert!(!second.header("link").contains("rel=\"next\""));

        let v1 = h.admin_json(Method::GET, "/clients?page_size=1", None).await;
        assert_eq!(v1.json().as_array().unwrap().len(), 1, "v1 path keeps its query");
        assert!(v1.header("link").contains("page_size=1"));
        let owned = h.admin_json(Method::GET, "/admin/clients?owner=team-b", None).await.json();
        assert_eq!(owned.as_array().unwrap().len(), 1);
        assert_eq!(owned[0]["client_id"], "c2");
        for bad in ["page_size=0", "page_size=1001", "page_size=x", "page_token=%%%"] {
            let reply = h.admin_json(Method::GET, &format!("/admin/clients?{bad}"), None).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[tokio::test]
    async fn get_put_delete_and_v1_paths() {
        let h = Harness::new().await;
        let created = h.client(json!({"client_id": "app", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"})).await;
        let secret = created["client_secret"].as_str().unwrap().to_owned();

        // Hydra v1 path without /admin.
        let v1 = h.admin_json(Method::GET, "/clients/app", None).await;
        assert_eq!(v1.status, StatusCode::OK);
        let v1 = h.admin_json(Method::GET, "/clients", None).await;
        assert_eq!(v1.json()[0]["client_id"], "app");

        h.clock.advance(60);
        let put = h
            .admin_json(Method::PUT, "/admin/clients/app", Some(json!({"client_name": "renamed", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"})))
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.json());
        assert_eq!(put.json()["client_name"], "renamed");
        assert!(put.json().get("client_secret").is_none(), "secret kept, not echoed");
        assert_ne!(put.json()["updated_at"], put.json()["created_at"]);
        h.token("app", &secret, "").await;

        let put = h
            .admin_json(Method::PUT, "/admin/clients/app", Some(json!({"client_secret": "brand-new-secret", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"})))
            .await;
        assert_eq!(put.json()["client_secret"], "brand-new-secret");
        let old = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials"), ("client_id", "app"), ("client_secret", &secret)],
                &[],
            )
            .await;
        assert_eq!(old.status, StatusCode::UNAUTHORIZED);
        let token = h.token("app", "brand-new-secret", "").await;

        let mismatch = h.admin_json(Method::PUT, "/admin/clients/app", Some(json!({"client_id": "other"}))).await;
        assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
        let missing = h.admin_json(Method::PUT, "/admin/clients/nope", Some(json!({}))).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.json()["error_description"], "Unable to locate the requested resource");

        let del = h.admin_json(Method::DELETE, "/admin/clients/app", None).await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        assert_eq!(h.admin_json(Method::GET, "/admin/clients/app", None).await.status, StatusCode::NOT_FOUND);
        assert_eq!(h.admin_json(Method::DELETE, "/clients/app", None).await.status, StatusCode::NOT_FOUND);
        // Its tokens died with it.
        let introspected =
            h.form(true, "/admin/oauth2/introspect", &[("token", token["access_token"].as_str().unwrap())], &[]).await;
        assert_eq!(introspected.json()["active"], false);
    }

    #[tokio::test]
    async fn unknown_admin_routes_are_json() {
        let h = Harness::new().await;
        let reply = h.admin_json(Method::GET, "/admin/nothing", None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.json()["error"], "not_found");
        let reply = h.admin_json(Method::PATCH, "/admin/rules", None).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.json()["status_code"], 405);
        let reply = h.admin_json(Method::GET, "/version", None).await;
        assert_eq!(reply.json()["version"], env!("CARGO_PKG_VERSION"));
        let reply = h.admin_json(Method::GET, "/health/ready", None).await;
        assert_eq!(reply.json()["status"], "ok");
    }

    /// The status of a client_credentials request with `secret` (client_secret_post).
    async fn try_secret(h: &Harness, id: &str, secret: &str) -> StatusCode {
        let pairs = [("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)];
        h.form(false, "/oauth2/token", &pairs, &[]).await.status
    }

    #[tokio::test]
    async fn rotated_secrets_work_until_dropped_or_replaced() {
        let h = Harness::new().await;
        let created = h.client(json!({"client_id": "rot", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"})).await;
        let mut secrets = vec![created["client_secret"].as_str().unwrap().to_owned()];
        for _ in 0..6 {
            let reply = h.admin_json(Method::POST, "/admin/clients/rot/secrets/rotate", None).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
            assert_eq!(reply.json()["client_id"], "rot");
            let secret = reply.json()["client_secret"].as_str().unwrap().to_owned();
            assert!(!secrets.contains(&secret));
            secrets.push(secret);
        }
        // Current plus the five before it; the oldest fell off.
        assert_eq!(try_secret(&h, "rot", &secrets[0]).await, StatusCode::UNAUTHORIZED);
        for s in &secrets[1..] {
            assert_eq!(try_secret(&h, "rot", s).await, StatusCode::OK);
        }
        assert!(h.admin_json(Method::GET, "/admin/clients/rot", None).await.json().get("client_secret").is_none());
        let row = h.state.store.get_client("rot").await.unwrap().unwrap();
        assert!(row.secret_hash.unwrap().starts_with("sha256$"), "rotated-in secret hashed at rest");

        let dropped = h.admin_json(Method::DELETE, "/admin/clients/rot/secrets/rotate", None).await;
        assert_eq!(dropped.status, StatusCode::NO_CONTENT);
        assert_eq!(try_secret(&h, "rot", &secrets[5]).await, StatusCode::UNAUTHORIZED);
        assert_eq!(try_secret(&h, "rot", &secrets[6]).await, StatusCode::OK);

        // A PUT that sets a new secret ends the rotated ones too; one that keeps it does not.
        let rotated = h.admin_json(Method::POST, "/admin/clients/rot/secrets/rotate", None).await.json();
        let newest = rotated["client_secret"].as_str().unwrap().to_owned();
        let keep = json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "client_name": "kept"});
        assert_eq!(h.admin_json(Method::PUT, "/admin/clients/rot", Some(keep)).await.status, StatusCode::OK);
        assert_eq!(try_secret(&h, "rot", &secrets[6]).await, StatusCode::OK, "PUT without a secret keeps rotated");
        let set = json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "client_secret": "operator-set"});
        assert_eq!(h.admin_json(Method::PUT, "/admin/clients/rot", Some(set)).await.status, StatusCode::OK);
        assert_eq!(try_secret(&h, "rot", &secrets[6]).await, StatusCode::UNAUTHORIZED);
        assert_eq!(try_secret(&h, "rot", &newest).await, StatusCode::UNAUTHORIZED);
        assert_eq!(try_secret(&h, "rot", "operator-set").await, StatusCode::OK);

        h.client(json!({"client_id": "pub", "token_endpoint_auth_method": "none"})).await;
        let public = h.admin_json(Method::POST, "/admin/clients/pub/secrets/rotate", None).await;
        assert_eq!(public.status, StatusCode::BAD_REQUEST);
        assert!(public.json()["error_description"].as_str().unwrap().starts_with("token_endpoint_auth_method:"));
        for method in [Method::POST, Method::DELETE] {
            let missing = h.admin_json(method, "/admin/clients/ghost/secrets/rotate", None).await;
            assert_eq!(missing.status, StatusCode::NOT_FOUND);
        }
    }

    #[tokio::test]
    async fn patch_applies_json_patch_but_not_to_the_id_or_creation_time() {
        let h = Harness::new().await;
        let created = h.client(json!({"client_id": "pat", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "scope": "a"})).await;
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        h.clock.advance(5);
        let ops = json!([
            {"op": "replace", "path": "/client_name", "value": "patched"},
            {"op": "add", "path": "/redirect_uris/-", "value": "https://app.example/cb"},
            {"op": "replace", "path": "/scope", "value": "a b"},
        ]);
        let reply = h.admin_json(Method::PATCH, "/admin/clients/pat", Some(ops)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        let got = reply.json();
        assert_eq!((got["client_name"].as_str(), got["scope"].as_str()), (Some("patched"), Some("a b")));
        assert_eq!(got["redirect_uris"], json!(["https://app.example/cb"]));
        assert!(got.get("client_secret").is_none(), "secret kept, not shown");
        assert_ne!(got["updated_at"], created["updated_at"]);
        assert_eq!(try_secret(&h, "pat", &secret).await, StatusCode::OK);

        for (ops, field) in [
            (json!([{"op": "replace", "path": "/client_id", "value": "other"}]), "client_id:"),
            (json!([{"op": "remove", "path": "/created_at"}]), "created_at:"),
            (json!([{"op": "replace", "path": "/grant_types", "value": ["password"]}]), "grant_types:"),
            (json!([{"op": "test", "path": "/client_name", "value": "nope"}]), "patch:"),
            (json!({"op": "replace"}), "body:"),
            (json!([{"op": "frobnicate", "path": "/scope"}]), "body:"),
        ] {
            let reply = h.admin_json(Method::PATCH, "/admin/clients/pat", Some(ops.clone())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{ops}");
            let text = reply.json()["error_description"].as_str().unwrap().to_owned();
            assert!(text.starts_with(field), "{ops}: {text}");
        }
        assert_eq!(h.admin_json(Method::GET, "/admin/clients/pat", None).await.json()["client_name"], "patched");

        // Setting the secret by patch: shown once, the old one and rotated ones stop working.
        let rotated = h.admin_json(Method::POST, "/admin/clients/pat/secrets/rotate", None).await.json();
        let ops = json!([{"op": "add", "path": "/client_secret", "value": "patched-secret"}]);
        let reply = h.admin_json(Method::PATCH, "/admin/clients/pat", Some(ops)).await;
        assert_eq!(reply.json()["client_secret"], "patched-secret");
        assert_eq!(try_secret(&h, "pat", &secret).await, StatusCode::UNAUTHORIZED);
        assert_eq!(try_secret(&h, "pat", rotated["client_secret"].as_str().unwrap()).await, StatusCode::UNAUTHORIZED);
        assert_eq!(try_secret(&h, "pat", "patched-secret").await, StatusCode::OK);

        let missing = h.admin_json(Method::PATCH, "/admin/clients/ghost", Some(json!([]))).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn lifespans_put_sets_only_lifespans_and_they_take_effect() {
        let h = Harness::new().await;
        let created = h.client(json!({"client_id": "life", "client_name": "keep-me", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "implicit_grant_id_token_lifespan": "2h"})).await;
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        let body = json!({"client_credentials_grant_access_token_lifespan": "1m", "jwt_bearer_grant_access_token_lifespan": "30m0s"});
        let reply = h.admin_json(Method::PUT, "/admin/clients/life/lifespans", Some(body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        let got = reply.json();
        assert_eq!(got["client_credentials_grant_access_token_lifespan"], "1m");
        assert_eq!(got["jwt_bearer_grant_access_token_lifespan"], "30m0s");
        assert_eq!(got["implicit_grant_id_token_lifespan"], Value::Null, "absent lifespans reset");
        assert_eq!(got["client_name"], "keep-me");
        assert!(got.get("client_secret").is_none());
        assert_eq!(h.token("life", &secret, "").await["expires_in"], 60);

        for (body, field) in [
            (json!({"client_name": "x"}), "unknown field `client_name`"),
            (json!({"jwt_bearer_grant_access_token_lifespan": "forever"}), "jwt_bearer_grant_access_token_lifespan:"),
            (json!({"implicit_grant_access_token_lifespan": 5}), "implicit_grant_access_token_lifespan:"),
        ] {
            let reply = h.admin_json(Method::PUT, "/admin/clients/life/lifespans", Some(body.clone())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
            let text = reply.json()["error_description"].as_str().unwrap().to_owned();
            assert!(text.starts_with(field), "{body}: {text}");
        }
        let missing = h.admin_json(Method::PUT, "/admin/clients/ghost/lifespans", Some(json!({}))).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }
}
