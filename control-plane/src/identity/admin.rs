//! Kratos's admin identity API on the admin listener: create (with password import), list
//! (keyset pages, `Link: rel="next"`), get, replace (`PUT`), JSON Patch (`PATCH`), delete,
//! credential removal, batch create, and admin recovery codes (invites and resets).
//!
//! The handlers extract, call `portcullis_identity::admin` (re-exported here), map its
//! `IdentityError` to `ApiError` once, below, and render; identity logic (validation, paging,
//! patching, the batch loop, recovery flows) must not be added here. Deactivating or deleting
//! an identity revokes its sessions and pushes their digests to the filters at once.
//! Passwords and hashes come in but never go out: not in responses, not in logs, not in `Debug`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::{ApiError, ApiJson, parse_urlencoded};
pub use portcullis_identity::admin::*;

/// A batch body may be this large (the rest of the admin API: 1 MiB): 1000 imported identities
/// with hashes, addresses and metadata need several MiB, and about 16 KiB each still fits.
pub(crate) const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;

fn query_pairs(query: Option<String>) -> Vec<(String, String)> {
    parse_urlencoded(query.unwrap_or_default().as_bytes())
}

/// The identity admin errors as the admin API answers them.
impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid(text) => ApiError::invalid_request(text),
            IdentityError::Conflict(text) => ApiError::conflict(text),
            IdentityError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "Every password hashing slot is busy; retry in a moment, or import hashed_password.",
            ),
            IdentityError::Hashing(e) => ApiError::internal(&e),
            IdentityError::NotFound => ApiError::not_found(),
            IdentityError::NoCredential(kind) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("You tried to remove a {kind} but this user has no {kind} set up."),
            ),
            IdentityError::Internal(text) => ApiError::internal(&text),
            IdentityError::Flow(e) => ApiError::new(e.status, "internal", e.reason),
            IdentityError::Store(e) => ApiError::from(e),
        }
    }
}

// --- handlers -------------------------------------------------------------------------------

/// `POST /admin/identities` → 201.
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(portcullis_identity::admin::create(&state.identities, body).await?)))
}

/// `GET /admin/identities?page_size=&page_token=&ids=&credentials_identifier=&include_credential=`.
pub async fn list(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let page = portcullis_identity::admin::list(&state.identities, &query_pairs(query)).await?;
    let mut response = Json(page.items).into_response();
    if let Ok(v) = HeaderValue::from_str(&page.link) {
        response.headers_mut().insert(header::LINK, v);
    }
    Ok(response)
}

/// `GET /admin/identities/{id}?include_credential=`.
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let include = include_list(&query_pairs(query));
    Ok(Json(get(&state.identities, &id, &include).await?))
}

/// `PUT /admin/identities/{id}`: `schema_id`, `traits` and `state` required.
pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(portcullis_identity::admin::replace(&state.identities, &state.rules, &id, body).await?))
}

/// `PATCH /admin/identities/{id}`: RFC 6902 against the admin JSON, then validated as a `PUT`.
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(portcullis_identity::admin::patch(&state.identities, &state.rules, &id, body).await?))
}

/// `DELETE /admin/identities/{id}` → 204; its sessions are revoked (and pushed) first.
pub async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    delete(&state.identities, &state.rules, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /admin/identities/{id}/credentials/{type}` → 204 (password only).
pub async fn remove_credential(
    State(state): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_credential(&state.identities, &id, &kind).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn error_json(e: &ApiError) -> Value {
    json!({
        "code": e.status.as_u16(),
        "status": e.status.canonical_reason().unwrap_or(""),
        "id": e.error,
        "reason": e.description,
        "message": e.description,
    })
}

/// `PATCH /admin/identities {identities: [{patch_id?, create}]}` → 200 with one result per item.
pub async fn batch(
    State(state): State<AppState>,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let ApiJson(body) = body.map_err(|mut e| {
        if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            e.description = format!(
                "The request body is larger than the {} MiB a batch may be; split the identities into several \
                 requests.",
                BATCH_BODY_LIMIT / (1024 * 1024)
            );
        }
        e
    })?;
    let mut results = Vec::new();
    for (i, item) in portcullis_identity::admin::batch(&state.identities, body).await?.into_iter().enumerate() {
        let mut r = match item.outcome {
            Ok(id) => json!({"action": "create", "identity": id}),
            Err(e) => {
                let e = ApiError::from(e);
                tracing::info!(item = i, error = e.error, "batch identity create failed");
                json!({"action": "error", "error": error_json(&e)})
            }
        };
        if let Some(pid) = item.patch_id {
            r["patch_id"] = json!(pid);
        }
        results.push(r);
    }
    Ok(Json(json!({ "identities": results })))
}

/// `POST /admin/recovery/code {identity_id, expires_in?, flow_type?}` → 201
/// `{recovery_link, recovery_code, expires_at}`. Nothing is e-mailed.
pub async fn recovery_code(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(portcullis_identity::admin::recovery_code(&state.identities, body).await?)))
}

#[cfg(test)]
mod tests {
    use axum::body::Body as HttpBody;
    use axum::http::{Method, Request, StatusCode, header};
    use serde_json::{Value, json};

    use crate::crypto;
    use crate::testing::{FILTER_TOKEN, Harness, Reply};

    const PW: &str = "violet-tractor-umbrella";

    async fn create(h: &Harness, body: Value) -> Reply {
        h.admin_json(Method::POST, "/admin/identities", Some(body)).await
    }

    async fn created(h: &Harness, email: &str) -> Value {
        let r = create(h, json!({"traits": {"email": email}})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
        r.json()
    }

    async fn public(h: &Harness, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::builder().method(method).uri(path).header(header::ACCEPT, "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                HttpBody::from(v.to_string())
            }
            None => HttpBody::empty(),
        };
        Harness::send(h.public(), req.body(body).unwrap()).await
    }

    /// The part of an absolute flow URL this router serves (`/self-service/…?flow=…`).
    fn local(url: &str) -> String {
        url[url.find("/self-service/").or_else(|| url.find("/ui/")).unwrap()..].to_owned()
    }

    /// Signs in through Kratos's native login flow: `GET /self-service/login/api`, then the
    /// password method posted as JSON to the flow's `ui.action`.
    async fn login(h: &Harness, identifier: &str, password: &str) -> Reply {
        let flow = public(h, Method::GET, "/self-service/login/api", None, &[]).await;
        assert_eq!(flow.status, StatusCode::OK, "{}", flow.json());
        let action = local(flow.json()["ui"]["action"].as_str().unwrap());
        let body = json!({"method": "password", "identifier": identifier, "password": password});
        public(h, Method::POST, &action, Some(body), &[]).await
    }

    async fn session_token(h: &Harness, identifier: &str, password: &str) -> String {
        let r = login(h, identifier, password).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        r.json()["session_token"].as_str().unwrap().to_owned()
    }

    async fn whoami(h: &Harness, token: &str) -> Reply {
        public(h, Method::GET, "/sessions/whoami", None, &[("x-session-token", token)]).await
    }

    async fn revoked(h: &Harness) -> Vec<String> {
        let req = Request::get("/admin/snapshot")
            .header(header::AUTHORIZATION, format!("Bearer {FILTER_TOKEN}"))
            .body(HttpBody::empty())
            .unwrap();
        let r = Harness::send(h.admin(), req).await;
        assert_eq!(r.status, StatusCode::OK);
        // An empty list is left out of the snapshot.
        r.json()["revoked"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    fn description(r: &Reply) -> String {
        r.json()["error_description"].as_str().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn create_get_and_list_with_keyset_pages() {
        for (backend, h) in Harness::all().await {
            eprintln!("backend: {backend}");
            let mut ids = Vec::new();
            for email in ["a@example.com", "B@Example.com", "c@example.com"] {
                let v = created(&h, email).await;
                assert_eq!(v["schema_id"], "default");
                assert_eq!(v["state"], "active");
                assert_eq!(v["traits"]["email"], email);
                assert_eq!(v["verifiable_addresses"][0]["value"], email.to_lowercase());
                assert_eq!(v["verifiable_addresses"][0]["verified"], false);
                assert_eq!(v["recovery_addresses"][0]["value"], email.to_lowercase());
                assert!(v["schema_url"].as_str().unwrap().ends_with("/schemas/default"));
                assert!(v.get("metadata_admin").is_some(), "the admin view has admin metadata");
                ids.push(v["id"].as_str().unwrap().to_owned());
                h.clock.advance(1);
            }

            let got = h.admin_json(Method::GET, &format!("/admin/identities/{}", ids[1]), None).await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.json()["traits"]["email"], "B@Example.com");
            assert_eq!(h.admin_json(Method::GET, "/admin/identities/nope", None).await.status, StatusCode::NOT_FOUND);

            let page1 = h.admin_json(Method::GET, "/admin/identities?page_size=2", None).await;
            assert_eq!(page1.status, StatusCode::OK);
            let items: Vec<String> =
                page1.json().as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
            assert_eq!(items, ids[..2]);
            let link = page1.header("link").to_owned();
            let next = link
                .split(',')
                .find(|l| l.contains("rel=\"next\""))
                .and_then(|l| l.split(['<', '>']).nth(1))
                .expect("a next link")
                .to_owned();
            assert!(next.starts_with("/admin/identities?page_size=2&page_token="), "{next}");
            let page2 = h.admin_json(Method::GET, &next, None).await;
            assert_eq!(page2.json().as_array().unwrap().len(), 1);
            assert_eq!(page2.json()[0]["id"], ids[2].as_str());
            assert!(!page2.header("link").contains("rel=\"next\""), "the last page has no next link");

            let by_ids =
                h.admin_json(Method::GET, &format!("/admin/identities?ids={}&ids={}", ids[0], ids[2]), None).await;
            assert_eq!(by_ids.json().as_array().unwrap().len(), 2);
            let by_identifier = h
                .admin_json(
                    Method::GET,
                    "/admin/identities?credentials_identifier=b%40example.com&include_credential=code",
                    None,
                )
                .await;
            let found = by_identifier.json();
            assert_eq!(found.as_array().unwrap().len(), 1);
            assert_eq!(found[0]["id"], ids[1].as_str());
            assert_eq!(found[0]["credentials"]["code"]["identifiers"], json!(["b@example.com"]));
            assert_eq!(found[0]["credentials"]["code"]["config"]["addresses"][0]["address"], "b@example.com");
            let v1 = h.admin_json(Method::GET, "/identities?page_size=500", None).await;
            assert_eq!(v1.json().as_array().unwrap().len(), 3, "Kratos's unprefixed path works on the admin listener");

            for bad in
                ["page_size=0", "page_size=501", "page_size=x", "page_token=%25%25", "ids=a&credentials_identifier=b"]
            {
                let r = h.admin_json(Method::GET, &format!("/admin/identities?{bad}"), None).await;
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
            }
        }
    }

    #[tokio::test]
    async fn a_duplicate_identifier_is_409_with_kratos_message() {
        for (backend, h) in Harness::all().await {
            eprintln!("backend: {backend}");
            created(&h, "ann@example.com").await;
            let r = create(&h, json!({"traits": {"email": "Ann@Example.com"}})).await;
            assert_eq!(r.status, StatusCode::CONFLICT);
            assert_eq!(
                description(&r),
                "An account with the same identifier (email, phone, username, ...) exists already."
            );
            let all = h.admin_json(Method::GET, "/admin/identities", None).await;
            assert_eq!(all.json().as_array().unwrap().len(), 1, "the refused identity left nothing behind");
        }
    }

    #[tokio::test]
    async fn external_id_is_unique_on_create_replace_and_patch() {
        for (backend, h) in Harness::all().await {
            eprintln!("backend: {backend}");
            let first = create(&h, json!({"traits": {"email": "one@example.com"}, "external_id": "crm-1"})).await;
            assert_eq!(first.status, StatusCode::CREATED, "{}", first.json());
            let r = create(&h, json!({"traits": {"email": "two@example.com"}, "external_id": "crm-1"})).await;
            assert_eq!(r.status, StatusCode::CONFLICT);
            assert!(description(&r).starts_with("external_id:"), "{}", description(&r));
            let all = h.admin_json(Method::GET, "/admin/identities", None).await;
            assert_eq!(all.json().as_array().unwrap().len(), 1, "the refused identity left nothing behind");

            let second = create(&h, json!({"traits": {"email": "two@example.com"}, "external_id": "crm-2"})).await;
            let id = second.json()["id"].as_str().unwrap().to_owned();
            let put = json!({"schema_id": "default", "state": "active", "traits": {"email": "two@example.com"},
                "external_id": "crm-1"});
            let r = h.admin_json(Method::PUT, &format!("/admin/identities/{id}"), Some(put)).await;
            assert_eq!(r.status, StatusCode::CONFLICT);
            assert!(description(&r).contains("external_id"), "{}", description(&r));
            let patch = json!([{"op": "replace", "path": "/external_id", "value": "crm-1"}]);
            let r = h.admin_json(Method::PATCH, &format!("/admin/identities/{id}"), Some(patch)).await;
            assert_eq!(r.status, StatusCode::CONFLICT);
            let got = h.admin_json(Method::GET, &format!("/admin/identities/{id}"), None).await.json();
            assert_eq!(got["external_id"], "crm-2", "the refused update changed nothing");

            // Freed ids can be taken: by a change, and by deleting the identity that had one.
            let first_id = first.json()["id"].as_str().unwrap().to_owned();
            let patch = json!([{"op": "replace", "path": "/external_id", "value": "crm-9"}]);
            let r = h.admin_json(Method::PATCH, &format!("/admin/identities/{first_id}"), Some(patch)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json());
            let patch = json!([{"op": "replace", "path": "/external_id", "value": "crm-1"}]);
            let r = h.admin_json(Method::PATCH, &format!("/admin/identities/{id}"), Some(patch)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json());
            let d = h.admin_json(Method::DELETE, &format!("/admin/identities/{id}"), None).await;
            assert_eq!(d.status, StatusCode::NO_CONTENT);
            let r = create(&h, json!({"traits": {"email": "three@example.com"}, "external_id": "crm-1"})).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
        }
    }

    #[tokio::test]
    async fn bad_traits_and_unknown_schemas_are_400_naming_the_field() {
        let h = Harness::new().await;
        let missing = create(&h, json!({"traits": {"name": "Ann"}})).await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        assert!(description(&missing).contains("traits.email"), "{}", description(&missing));
        let malformed = create(&h, json!({"traits": {"email": "not-an-address"}})).await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
        assert_eq!(description(&malformed), "traits.email: is not a valid e-mail address");
        let schema = create(&h, json!({"schema_id": "nope", "traits": {"email": "a@example.com"}})).await;
        assert_eq!(schema.status, StatusCode::BAD_REQUEST);
        assert!(description(&schema).starts_with("schema_id:"), "{}", description(&schema));
        let state = create(&h, json!({"traits": {"email": "a@example.com"}, "state": "sleeping"})).await;
        assert_eq!(state.status, StatusCode::BAD_REQUEST);
        assert!(description(&state).starts_with("state:"), "{}", description(&state));
        let no_traits = create(&h, json!({})).await;
        assert_eq!(description(&no_traits), "traits: required");
    }

    #[tokio::test]
    async fn imported_bcrypt_and_argon2_hashes_sign_in_through_the_login_api() {
        let h = Harness::new().await;
        let bcrypt_hash = bcrypt::hash("bcrypt-import-pass", 4).unwrap();
        let argon_hash = crate::identity::password::hash("argon-import-pass").unwrap();
        let cases = [
            ("bc@example.com", json!({"hashed_password": bcrypt_hash}), "bcrypt-import-pass"),
            ("ar@example.com", json!({"hashed_password": argon_hash}), "argon-import-pass"),
            ("pl@example.com", json!({"password": "123456"}), "123456"),
        ];
        for (email, config, pw) in &cases {
            let r = create(
                &h,
                json!({
                    "traits": {"email": email},
                    "credentials": {"password": {"config": config}},
                    "verifiable_addresses": [{"value": email, "verified": true, "via": "email", "status": "completed"}],
                    "metadata_public": {"plan": "pro"},
                    "external_id": format!("legacy-{email}"),
                }),
            )
            .await;
            assert_eq!(r.status, StatusCode::CREATED, "{email}: {}", r.json());
            let text = String::from_utf8_lossy(&r.bytes).into_owned();
            assert!(!text.contains("$2b$") && !text.contains("$argon2") && !text.contains(pw), "{email}: {text}");
            let v = r.json();
            assert_eq!(v["credentials"]["password"]["identifiers"], json!([email]), "{email}");
            assert_eq!(v["verifiable_addresses"][0]["verified"], true, "{email}: imported as verified");
            assert_eq!(v["verifiable_addresses"][0]["status"], "completed");
            assert_eq!(v["external_id"], format!("legacy-{email}"));

            let token = session_token(&h, email, pw).await;
            let me = whoami(&h, &token).await;
            assert_eq!(me.status, StatusCode::OK);
            assert_eq!(me.json()["identity"]["id"], v["id"]);
            assert_eq!(me.json()["identity"]["metadata_public"]["plan"], "pro");

            let id = v["id"].as_str().unwrap();
            let stored = h.state.store.get_credential(id, "password").await.unwrap().unwrap();
            let stored = stored.config["hashed_password"].as_str().unwrap().to_owned();
            assert!(stored.starts_with("$argon2id$"), "{email}: the import was re-hashed with argon2id at sign-in");
            let got =
                h.admin_json(Method::GET, &format!("/admin/identities/{id}?include_credential=password"), None).await;
            let text = String::from_utf8_lossy(&got.bytes).into_owned();
            assert!(!text.contains(&stored) && !text.contains("hashed_password"), "{text}");
            assert_eq!(got.json()["credentials"]["password"]["config"], json!({}));
        }
        let wrong = login(&h, "bc@example.com", "not-the-password").await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "a wrong password still fails");
    }

    #[tokio::test]
    async fn unsupported_hashes_and_credential_types_are_400_naming_the_field() {
        let h = Harness::new().await;
        for hash in ["$md5$abc", "{SSHA}deadbeef", "plain", "$2b$04$tooshort"] {
            let r = create(
                &h,
                json!({"traits": {"email": "a@example.com"}, "credentials": {"password": {"config": {"hashed_password": hash}}}}),
            )
            .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{hash}");
            assert!(description(&r).starts_with("credentials.password.config.hashed_password:"), "{}", description(&r));
            assert!(!description(&r).contains(hash), "the hash is not echoed");
        }
        let both = create(
            &h,
            json!({"traits": {"email": "a@example.com"}, "credentials": {"password": {"config": {"password": "x", "hashed_password": "y"}}}}),
        )
        .await;
        assert_eq!(both.status, StatusCode::BAD_REQUEST);
        let oidc =
            create(&h, json!({"traits": {"email": "a@example.com"}, "credentials": {"oidc": {"config": {}}}})).await;
        assert_eq!(oidc.status, StatusCode::BAD_REQUEST);
        assert!(description(&oidc).starts_with("credentials.oidc:"));
        assert!(h.admin_json(Method::GET, "/admin/identities", None).await.json().as_array().unwrap().is_empty());
    }

    #[tokio::test]
    async fn deactivating_revokes_sessions_for_whoami_and_filters() {
        for (backend, h) in Harness::all().await {
            eprintln!("backend: {backend}");
            let r = create(
                &h,
                json!({"traits": {"email": "dee@example.com"}, "credentials": {"password": {"config": {"password": PW}}}}),
            )
            .await;
            let v = r.json();
            let id = v["id"].as_str().unwrap().to_owned();
            let token = session_token(&h, "dee@example.com", PW).await;
            assert_eq!(whoami(&h, &token).await.status, StatusCode::OK);
            assert!(!revoked(&h).await.contains(&crypto::sha256_hex(token.as_bytes())));

            h.clock.advance(10);
            let missing_state = h
                .admin_json(
                    Method::PUT,
                    &format!("/admin/identities/{id}"),
                    Some(json!({"schema_id": "default", "traits": v["traits"]})),
                )
                .await;
            assert_eq!(missing_state.status, StatusCode::BAD_REQUEST);
            assert_eq!(description(&missing_state), "state: required when replacing an identity");
            let put = h
                .admin_json(
                    Method::PUT,
                    &format!("/admin/identities/{id}"),
                    Some(json!({"schema_id": "default", "traits": {"email": "dee@example.com", "name": "Dee"}, "state": "inactive"})),
                )
                .await;
            assert_eq!(put.status, StatusCode::OK, "{}", put.json());
            let after = put.json();
            assert_eq!(after["state"], "inactive");
            assert_eq!(after["traits"]["name"], "Dee");
            assert_ne!(after["state_changed_at"], v["state_changed_at"]);
            assert_eq!(after["created_at"], v["created_at"]);
            assert_eq!(
                after["credentials"]["password"]["identifiers"],
                json!(["dee@example.com"]),
                "credentials are kept"
            );

            assert_eq!(whoami(&h, &token).await.status, StatusCode::UNAUTHORIZED);
            assert!(
                revoked(&h).await.contains(&crypto::sha256_hex(token.as_bytes())),
                "filters refuse the cookie at once"
            );
            assert_eq!(login(&h, "dee@example.com", PW).await.status, StatusCode::BAD_REQUEST, "and it cannot sign in");

            let put = h
                .admin_json(
                    Method::PUT,
                    &format!("/admin/identities/{id}"),
                    Some(json!({"schema_id": "default", "traits": {"email": "dee@example.com"}, "state": "active"})),
                )
                .await;
            assert_eq!(put.json()["state"], "active");
            session_token(&h, "dee@example.com", PW).await;
            let unknown = h
                .admin_json(
                    Method::PUT,
                    "/admin/identities/nope",
                    Some(json!({"schema_id": "default", "traits": {"email": "x@example.com"}, "state": "active"})),
                )
                .await;
            assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        }
    }

    #[tokio::test]
    async fn json_patch_edits_traits_and_metadata_but_not_the_id() {
        for (backend, h) in Harness::all().await {
            eprintln!("backend: {backend}");
            let v = created(&h, "pat@example.com").await;
            created(&h, "taken@example.com").await;
            let id = v["id"].as_str().unwrap();
            let path = format!("/admin/identities/{id}");
            let r = h
                .admin_json(
                    Method::PATCH,
                    &path,
                    Some(json!([
                        {"op": "add", "path": "/traits/name", "value": "Pat"},
                        {"op": "replace", "path": "/metadata_public", "value": {"tier": 2}},
                        {"op": "replace", "path": "/metadata_admin", "value": {"note": "vip"}},
                        {"op": "replace", "path": "/verifiable_addresses/0/verified", "value": true},
                    ])),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json());
            let p = r.json();
            assert_eq!(p["traits"], json!({"email": "pat@example.com", "name": "Pat"}));
            assert_eq!(p["metadata_public"], json!({"tier": 2}));
            assert_eq!(p["metadata_admin"], json!({"note": "vip"}));
            assert_eq!(p["verifiable_addresses"][0]["verified"], true);
            assert_eq!(p["verifiable_addresses"][0]["status"], "completed");
            assert_eq!(p["id"], id);

            let moved = h
                .admin_json(
                    Method::PATCH,
                    &path,
                    Some(json!([{"op": "replace", "path": "/traits/email", "value": "pat2@example.com"}])),
                )
                .await;
            assert_eq!(moved.status, StatusCode::OK);
            assert_eq!(moved.json()["verifiable_addresses"][0]["value"], "pat2@example.com");
            assert_eq!(moved.json()["verifiable_addresses"][0]["verified"], false, "a new address starts unverified");
            let find = |who: &'static str| {
                let h = &h;
                async move {
                    h.admin_json(Method::GET, &format!("/admin/identities?credentials_identifier={who}"), None)
                        .await
                        .json()
                        .as_array()
                        .unwrap()
                        .len()
                }
            };
            assert_eq!(find("pat2@example.com").await, 1, "identifiers follow the traits");
            assert_eq!(find("pat@example.com").await, 0);

            for (op, why) in [
                (json!({"op": "replace", "path": "/id", "value": "mine"}), "/id"),
                (json!({"op": "add", "path": "/credentials/password", "value": {}}), "/credentials"),
                (json!({"op": "remove", "path": "/state_changed_at"}), "/state_changed_at"),
                (json!({"op": "replace", "path": "/created_at", "value": "2000-01-01T00:00:00Z"}), "/created_at"),
                (json!({"op": "move", "from": "/id", "path": "/external_id"}), "/id"),
                (json!({"op": "replace", "path": "", "value": {}}), "whole"),
            ] {
                let r = h.admin_json(Method::PATCH, &path, Some(json!([op]))).await;
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}");
                assert!(description(&r).contains(why), "{why}: {}", description(&r));
            }
            let bad = h
                .admin_json(
                    Method::PATCH,
                    &path,
                    Some(json!([{"op": "replace", "path": "/traits/email", "value": "nope"}])),
                )
                .await;
            assert_eq!(bad.status, StatusCode::BAD_REQUEST);
            assert!(description(&bad).starts_with("traits.email:"));
            let dup = h
                .admin_json(
                    Method::PATCH,
                    &path,
                    Some(json!([{"op": "replace", "path": "/traits/email", "value": "taken@example.com"}])),
                )
                .await;
            assert_eq!(dup.status, StatusCode::CONFLICT);
            let no_state = h.admin_json(Method::PATCH, &path, Some(json!([{"op": "remove", "path": "/state"}]))).await;
            assert_eq!(no_state.status, StatusCode::BAD_REQUEST, "the result must still be a whole identity");
            let failed_test = h
                .admin_json(Method::PATCH, &path, Some(json!([{"op": "test", "path": "/id", "value": "other"}])))
                .await;
            assert_eq!(failed_test.status, StatusCode::BAD_REQUEST);
            let unchanged = h.admin_json(Method::GET, &path, None).await.json();
            assert_eq!(unchanged["traits"]["email"], "pat2@example.com", "refused patches changed nothing");
            let ghost = h.admin_json(Method::PATCH, "/admin/identities/nope", Some(json!([]))).await;
            assert_eq!(ghost.status, StatusCode::NOT_FOUND);
        }
    }

    #[tokio::test]
    async fn delete_identity_and_its_password() {
        for (backend, h) in Harness::all().await {
            eprintln!("backend: {backend}");
            let mk = |email: &'static str| json!({"traits": {"email": email}, "credentials": {"password": {"config": {"password": PW}}}});
            let gone = create(&h, mk("gone@example.com")).await.json();
            let gone_id = gone["id"].as_str().unwrap();
            let token = session_token(&h, "gone@example.com", PW).await;
            let r = h.admin_json(Method::DELETE, &format!("/admin/identities/{gone_id}"), None).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT);
            assert_eq!(
                h.admin_json(Method::GET, &format!("/admin/identities/{gone_id}"), None).await.status,
                StatusCode::NOT_FOUND
            );
            assert_eq!(
                h.admin_json(Method::DELETE, &format!("/admin/identities/{gone_id}"), None).await.status,
                StatusCode::NOT_FOUND
            );
            assert_eq!(whoami(&h, &token).await.status, StatusCode::UNAUTHORIZED);
            assert!(
                revoked(&h).await.contains(&crypto::sha256_hex(token.as_bytes())),
                "its sessions were pushed as revoked"
            );
            created(&h, "gone@example.com").await;

            let kept = create(&h, mk("kept@example.com")).await.json();
            let kept_id = kept["id"].as_str().unwrap();
            let creds = format!("/admin/identities/{kept_id}/credentials");
            for kind in ["passkey", "code"] {
                let r = h.admin_json(Method::DELETE, &format!("{creds}/{kind}"), None).await;
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{kind}");
            }
            assert_eq!(
                h.admin_json(Method::DELETE, &format!("{creds}/password"), None).await.status,
                StatusCode::NO_CONTENT
            );
            assert_eq!(
                h.admin_json(Method::DELETE, &format!("{creds}/password"), None).await.status,
                StatusCode::NOT_FOUND
            );
            assert_eq!(
                h.admin_json(Method::DELETE, &format!("{creds}/totp"), None).await.status,
                StatusCode::NOT_FOUND
            );
            assert_eq!(
                h.admin_json(Method::DELETE, "/admin/identities/nope/credentials/password", None).await.status,
                StatusCode::NOT_FOUND
            );
            assert_eq!(login(&h, "kept@example.com", PW).await.status, StatusCode::BAD_REQUEST, "no password any more");
            let got = h.admin_json(Method::GET, &format!("/admin/identities/{kept_id}"), None).await.json();
            assert!(got["credentials"].get("password").is_none());
            assert!(got["credentials"].get("code").is_some(), "other credentials stay");
        }
    }

    #[tokio::test]
    async fn batch_create_reports_each_item_and_enforces_kratos_limits() {
        for (backend, h) in Harness::all().await {
            eprintln!("backend: {backend}");
            created(&h, "old@example.com").await;
            let hash = bcrypt::hash("batch-import-pass", 4).unwrap();
            let r = h
                .admin_json(
                    Method::PATCH,
                    "/admin/identities",
                    Some(json!({"identities": [
                        {"patch_id": "p1", "create": {"traits": {"email": "new@example.com"}, "credentials": {"password": {"config": {"hashed_password": hash}}}}},
                        {"patch_id": "p2", "create": {"traits": {"email": "OLD@example.com"}}},
                        {"create": {"traits": {"email": "bad"}}},
                        {"patch_id": "p4"},
                    ]})),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json());
            let items = r.json()["identities"].clone();
            assert_eq!(items[0]["action"], "create");
            assert_eq!(items[0]["patch_id"], "p1");
            let new_id = items[0]["identity"].as_str().unwrap();
            assert_eq!(items[1]["action"], "error");
            assert_eq!(items[1]["patch_id"], "p2");
            assert_eq!(items[1]["error"]["code"], 409);
            assert_eq!(items[2]["action"], "error");
            assert!(items[2].get("patch_id").is_none());
            assert!(items[2]["error"]["reason"].as_str().unwrap().contains("traits.email"));
            assert_eq!(items[3]["error"]["code"], 400);
            session_token(&h, "new@example.com", "batch-import-pass").await;
            assert_eq!(
                h.admin_json(Method::GET, &format!("/admin/identities/{new_id}"), None).await.json()["traits"]["email"],
                "new@example.com"
            );

            let item = |i: usize| json!({"create": {"traits": {"email": format!("u{i}@example.com")}}});
            let mut many: Vec<Value> = (0..201).map(item).collect();
            many[7]["create"]["credentials"] = json!({"password": {"config": {"password": PW}}});
            let r = h.admin_json(Method::PATCH, "/admin/identities", Some(json!({"identities": many}))).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert!(description(&r).contains("200"), "{}", description(&r));
            let too_many: Vec<Value> = (0..1001).map(item).collect();
            let r = h.admin_json(Method::PATCH, "/admin/identities", Some(json!({"identities": too_many}))).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert!(description(&r).contains("1000"), "{}", description(&r));
            assert_eq!(h.admin_json(Method::GET, "/admin/identities", None).await.json().as_array().unwrap().len(), 2);

            // Kratos's largest batch, as an importer sends it, fits the body limit...
            let import = |i: usize| {
                json!({"patch_id": format!("legacy-{i}"), "create": {
                    "schema_id": "default", "state": "active", "external_id": format!("legacy-user-{i:06}"),
                    "traits": {"email": format!("imported-user-{i:06}@customers.example.com"), "name": "A. N. Example-Importee"},
                    "credentials": {"password": {"config": {"hashed_password": hash}}},
                    "verifiable_addresses": [{"value": format!("imported-user-{i:06}@customers.example.com"), "verified": true, "via": "email", "status": "completed"}],
                    "metadata_public": {"plan": "enterprise", "locale": "en-GB"},
                    "metadata_admin": {"crm_id": format!("0013000000{i:06}"), "imported_from": "legacy-auth", "notes": "x".repeat(1500)},
                }})
            };
            let batch = json!({"identities": (0..1000).map(import).collect::<Vec<_>>()});
            assert!(batch.to_string().len() > 1024 * 1024, "more than the rest of the admin API accepts");
            let r = h.admin_json(Method::PATCH, "/admin/identities", Some(batch)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", description(&r));
            let items = r.json()["identities"].as_array().unwrap().clone();
            assert_eq!(items.len(), 1000);
            assert!(
                items.iter().all(|i| i["action"] == "create"),
                "{:?}",
                items.iter().find(|i| i["action"] != "create")
            );
            // ...and a larger body is a 413 that names the limit.
            let huge = json!({"identities": [{"create": {"traits": {"email": "big@example.com"}, "metadata_admin": {"blob": "x".repeat(17 * 1024 * 1024)}}}]});
            let r = h.admin_json(Method::PATCH, "/admin/identities", Some(huge)).await;
            assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
            assert!(description(&r).contains("16 MiB"), "{}", description(&r));
        }
    }

    #[tokio::test]
    async fn an_admin_recovery_code_signs_the_user_in() {
        for (backend, h) in Harness::all().await {
            eprintln!("backend: {backend}");
            let v = created(&h, "invitee@example.com").await;
            let id = v["id"].as_str().unwrap();

            let browser = h
                .admin_json(
                    Method::POST,
                    "/admin/recovery/code",
                    Some(json!({"identity_id": id, "expires_in": "1h30m"})),
                )
                .await;
            assert_eq!(browser.status, StatusCode::CREATED, "{}", browser.json());
            let b = browser.json();
            assert!(b["recovery_link"].as_str().unwrap().contains("/ui/recovery?flow="), "{b}");
            assert_eq!(b["expires_at"], crate::rfc3339(crate::testing::T0 + 5400));
            assert_eq!(b["recovery_code"].as_str().unwrap().len(), 6);

            let r = h
                .admin_json(Method::POST, "/admin/recovery/code", Some(json!({"identity_id": id, "flow_type": "api"})))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
            let body = r.json();
            let code = body["recovery_code"].as_str().unwrap();
            let flow_id = body["recovery_link"].as_str().unwrap().split("flow=").nth(1).unwrap().to_owned();
            let flow = public(&h, Method::GET, &format!("/self-service/recovery/flows?id={flow_id}"), None, &[]).await;
            assert_eq!(flow.json()["state"], "sent_email", "the flow waits for the code");
            let submit = format!("/self-service/recovery?flow={flow_id}");
            let wrong = if code == "000000" { "111111" } else { "000000" };
            let bad = public(&h, Method::POST, &submit, Some(json!({"method": "code", "code": wrong})), &[]).await;
            assert_eq!(bad.status, StatusCode::BAD_REQUEST);
            let ok = public(&h, Method::POST, &submit, Some(json!({"method": "code", "code": code})), &[]).await;
            assert_eq!(ok.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ok.bytes));
            assert_eq!(ok.json()["continue_with"][0]["action"], "set_ory_session_token");
            assert_eq!(ok.json()["continue_with"][1]["action"], "show_settings_ui");
            assert!(ok.headers.get("set-cookie").is_none(), "a native app gets a token, never a cookie");
            let token = ok.json()["continue_with"][0]["ory_session_token"].as_str().unwrap().to_owned();
            let me = whoami(&h, &token).await;
            assert_eq!(me.status, StatusCode::OK);
            assert_eq!(me.json()["identity"]["id"], id);
            let again = public(&h, Method::POST, &submit, Some(json!({"method": "code", "code": code})), &[]).await;
            assert_ne!(again.status, StatusCode::OK, "a code works once");

            for (body, status) in [
                (json!({"identity_id": "nope"}), StatusCode::NOT_FOUND),
                (json!({"identity_id": id, "expires_in": "soon"}), StatusCode::BAD_REQUEST),
                (json!({"identity_id": id, "expires_in": "0s"}), StatusCode::BAD_REQUEST),
                (json!({"identity_id": id, "flow_type": "carrier-pigeon"}), StatusCode::BAD_REQUEST),
                (json!({}), StatusCode::BAD_REQUEST),
            ] {
                let r = h.admin_json(Method::POST, "/admin/recovery/code", Some(body.clone())).await;
                assert_eq!(r.status, status, "{body}");
            }
        }
    }
}
