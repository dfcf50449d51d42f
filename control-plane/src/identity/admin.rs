//! Kratos's admin identity API on the admin listener: create (with password import), list
//! (keyset pages, `Link: rel="next"`), get, replace (`PUT`), JSON Patch (`PATCH`), delete,
//! credential removal, batch create, and admin recovery codes (invites and resets).
//!
//! Every write validates `traits` against the identity's schema and recomputes the login
//! identifiers from them (`portcullis_identity::admin`, re-exported here, whose
//! `IdentityError` is mapped to `ApiError` once, below), so what the admin API stores is what a
//! self-service flow would have stored; building identities must not be added here. Deactivating or deleting an identity revokes its sessions and pushes their digests
//! to the filters at once. Passwords and hashes come in but never go out: not in responses,
//! not in logs, not in `Debug`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::crypto;
use crate::error::{ApiError, ApiJson, parse_urlencoded};
use crate::identity::flow::{self, CodeState, Kind};
use crate::identity::session::revoke;
use crate::identity::{CODE, PASSKEY, PASSWORD, View};
use crate::rfc3339;
use crate::store::identities::IdentityFilter;
use crate::store::sessions::Deactivate;
pub use portcullis_identity::admin::*;

const DEFAULT_PAGE_SIZE: i64 = 250;
const MAX_PAGE_SIZE: i64 = 500;
/// More ids than this in one list request would exceed what every SQL backend binds.
const MAX_IDS: usize = 500;
/// Kratos's batch limits: hashing a plaintext password costs ~50 ms of CPU, a hash costs nothing.
const MAX_BATCH: usize = 1000;
const MAX_BATCH_PLAINTEXT: usize = 200;
/// A batch body may be this large (the rest of the admin API: 1 MiB): 1000 imported identities
/// with hashes, addresses and metadata need several MiB, and about 16 KiB each still fits.
pub(crate) const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// What a JSON Patch may not touch (Kratos refuses `id`, `credentials` and `state_changed_at`;
/// `created_at` is history, not data).
const FROZEN: &[&str] = &["/id", "/credentials", "/state_changed_at", "/created_at"];

fn query_pairs(query: Option<String>) -> Vec<(String, String)> {
    parse_urlencoded(query.unwrap_or_default().as_bytes())
}

fn include_list(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "include_credential")
        .flat_map(|(_, v)| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
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
    let input: IdentityIn = parse(body, "")?;
    let p = prepare(&state.identities, input, None).await?;
    insert(&state.identities, &p).await?;
    Ok((StatusCode::CREATED, Json(render(&state.identities, &p.identity, Some(&p.credentials), &[]))))
}

/// `GET /admin/identities?page_size=&page_token=&ids=&credentials_identifier=&include_credential=`.
pub async fn list(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let pairs = query_pairs(query);
    let mut page_size = DEFAULT_PAGE_SIZE;
    let mut after = None;
    let mut filter = IdentityFilter::default();
    for (key, value) in &pairs {
        match key.as_str() {
            "page_size" => {
                page_size = value.parse::<i64>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
                    ApiError::invalid_request(format!("page_size: must be a number from 1 to {MAX_PAGE_SIZE}"))
                })?;
            }
            "page_token" if !value.is_empty() => after = Some(crate::paging::parse_token(value)?),
            "ids" if !value.is_empty() => filter.ids.push(value.clone()),
            "credentials_identifier" if !value.is_empty() => {
                // Identifiers are stored normalised; e-mail addresses lower-cased.
                let v = value.trim();
                filter.credentials_identifier = Some(if v.contains('@') { v.to_lowercase() } else { v.to_owned() });
            }
            _ => {}
        }
    }
    if filter.ids.len() > MAX_IDS {
        return Err(ApiError::invalid_request(format!("ids: at most {MAX_IDS} per request")));
    }
    if !filter.ids.is_empty() && filter.credentials_identifier.is_some() {
        return Err(ApiError::invalid_request("ids and credentials_identifier cannot be combined (as in Kratos)"));
    }
    let include = include_list(&pairs);
    let mut rows = state.store.list_identities(&filter, after, page_size + 1).await?;
    let more = rows.len() as i64 > page_size;
    rows.truncate(usize::try_from(page_size).unwrap_or(0));
    let mut items = Vec::with_capacity(rows.len());
    for i in &rows {
        let creds = if include.is_empty() { None } else { Some(state.store.get_credentials(&i.id).await?) };
        items.push(render(&state.identities, i, creds.as_deref(), &include));
    }
    let mut base = format!("/admin/identities?page_size={page_size}");
    for id in &filter.ids {
        base.push_str(&format!("&ids={}", crate::identity::url_segment(id)));
    }
    if let Some(c) = &filter.credentials_identifier {
        base.push_str(&format!("&credentials_identifier={}", crate::identity::url_segment(c)));
    }
    for k in &include {
        base.push_str(&format!("&include_credential={}", crate::identity::url_segment(k)));
    }
    let mut link = format!("<{base}>; rel=\"first\"");
    if let (true, Some(last)) = (more, rows.last()) {
        let token = crate::paging::token(last.created_at, &last.id);
        link.push_str(&format!(",<{base}&page_token={token}>; rel=\"next\""));
    }
    let mut response = Json(items).into_response();
    if let Ok(v) = HeaderValue::from_str(&link) {
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
    let identity = state.store.get_identity(&id).await?.ok_or_else(ApiError::not_found)?;
    let creds = state.store.get_credentials(&id).await?;
    Ok(Json(render(&state.identities, &identity, Some(&creds), &include)))
}

/// `PUT /admin/identities/{id}`: `schema_id`, `traits` and `state` required.
pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let input: IdentityIn = parse(body, "")?;
    let old = state.store.get_identity(&id).await?.ok_or_else(ApiError::not_found)?;
    let old_credentials = state.store.get_credentials(&id).await?;
    let p = prepare(&state.identities, input, Some((&old, &old_credentials))).await?;
    let creds = store_replacement(&state.identities, &state.rules, &old_credentials, &p).await?;
    Ok(Json(render(&state.identities, &p.identity, Some(&creds), &[])))
}

/// `PATCH /admin/identities/{id}`: RFC 6902 against the admin JSON, then validated as a `PUT`.
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let ops: json_patch::Patch = parse(body, "")?;
    for (i, op) in ops.0.iter().enumerate() {
        let mut touched = Vec::new();
        match op {
            json_patch::PatchOperation::Test(_) => {}
            json_patch::PatchOperation::Move(m) => {
                touched.push(m.from.as_str());
                touched.push(m.path.as_str());
            }
            other => touched.push(other.path().as_str()),
        }
        for path in touched {
            let frozen = path.is_empty() || FROZEN.iter().any(|f| path == *f || path.starts_with(&format!("{f}/")));
            if frozen {
                let what = if path.is_empty() { "the whole identity" } else { path };
                return Err(ApiError::invalid_request(format!("[{i}].path: {what} cannot be patched")));
            }
        }
    }
    let old = state.store.get_identity(&id).await?.ok_or_else(ApiError::not_found)?;
    let old_credentials = state.store.get_credentials(&id).await?;
    let mut doc = old.to_json(state.config.urls.self_.public_base(), View::Admin, None);
    json_patch::patch(&mut doc, &ops.0)
        .map_err(|e| ApiError::invalid_request(format!("the patch does not apply: {e}")))?;
    let input: IdentityIn = parse(doc, "")?;
    let p = prepare(&state.identities, input, Some((&old, &old_credentials))).await?;
    let creds = store_replacement(&state.identities, &state.rules, &old_credentials, &p).await?;
    Ok(Json(render(&state.identities, &p.identity, Some(&creds), &[])))
}

/// `DELETE /admin/identities/{id}` → 204; its sessions are revoked (and pushed) first.
pub async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if state.store.get_identity(&id).await?.is_none() {
        return Err(ApiError::not_found());
    }
    revoke(&state.store, &state.rules, state.clock.now(), Deactivate::Identity { identity_id: &id, except: "" })
        .await?;
    if !state.store.delete_identity(&id).await? {
        return Err(ApiError::not_found());
    }
    tracing::info!(identity_id = %id, "identity deleted through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /admin/identities/{id}/credentials/{type}` → 204 (password only, as Kratos refuses
/// passkeys and codes here).
pub async fn remove_credential(
    State(state): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if kind == PASSKEY || kind == CODE {
        return Err(ApiError::invalid_request(format!(
            "You cannot remove {kind} credentials using this API: they follow the identity's traits or belong to \
             the user's devices."
        )));
    }
    if state.store.get_identity(&id).await?.is_none() {
        return Err(ApiError::not_found());
    }
    if kind != PASSWORD || !state.store.delete_credential(&id, &kind).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("You tried to remove a {kind} but this user has no {kind} set up."),
        ));
    }
    tracing::info!(identity_id = %id, kind = %kind, "credential removed through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct BatchItem {
    #[serde(default)]
    patch_id: Option<String>,
    #[serde(default)]
    create: Option<Value>,
}

#[derive(Deserialize)]
struct BatchIn {
    identities: Vec<BatchItem>,
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
    let input: BatchIn = parse(body, "")?;
    let n = input.identities.len();
    let plaintext = input.identities.iter().any(|i| {
        i.create.as_ref().is_some_and(|c| c["credentials"].as_object().is_some_and(|m| plaintext_in(Some(m))))
    });
    let limit = if plaintext { MAX_BATCH_PLAINTEXT } else { MAX_BATCH };
    if n > limit {
        return Err(ApiError::invalid_request(format!(
            "identities: at most {limit} per request{} (got {n})",
            if plaintext { " when any password is in plaintext" } else { "" }
        )));
    }
    let mut results = Vec::with_capacity(n);
    for (i, item) in input.identities.into_iter().enumerate() {
        let outcome = async {
            let create = item.create.ok_or_else(|| ApiError::invalid_request("create: required"))?;
            let parsed: IdentityIn = parse(create, "create")?;
            let p = prepare(&state.identities, parsed, None).await?;
            insert(&state.identities, &p).await?;
            Ok::<_, ApiError>(p.identity.id)
        }
        .await;
        let mut r = match outcome {
            Ok(id) => json!({"action": "create", "identity": id}),
            Err(e) => {
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

#[derive(Deserialize)]
struct RecoveryCodeIn {
    identity_id: String,
    #[serde(default)]
    expires_in: Option<String>,
    #[serde(default)]
    flow_type: Option<String>,
}

/// Go's duration syntax as Kratos takes it (`1h`, `30m`, `1h30m`, `90s`).
fn parse_expires_in(s: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::invalid_request(format!(
            "expires_in: {s:?} is not a duration like 1h, 30m or 1h30m; it must be in the future"
        ))
    };
    let d: Duration = humantime_serde::re::humantime::parse_duration(s.trim()).map_err(|_| bad())?;
    let secs = i64::try_from(d.as_secs()).map_err(|_| bad())?;
    // A year is longer than any invitation should live; the cap also keeps the sum in range.
    if secs == 0 || secs > 366 * 24 * 3600 { Err(bad()) } else { Ok(secs) }
}

/// `POST /admin/recovery/code {identity_id, expires_in?, flow_type?}` → 201
/// `{recovery_link, recovery_code, expires_at}`: a recovery flow already waiting for this
/// code, for an operator to hand to the user (an invite, or a reset). Nothing is e-mailed.
pub async fn recovery_code(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: RecoveryCodeIn = parse(body, "")?;
    if !state.config.selfservice.flows.recovery.enabled {
        return Err(ApiError::invalid_request("Recovery is not enabled (selfservice.flows.recovery.enabled)."));
    }
    let api = match input.flow_type.as_deref().unwrap_or("browser") {
        "browser" => false,
        "api" => true,
        other => return Err(ApiError::invalid_request(format!("flow_type: must be browser or api, not {other:?}"))),
    };
    let lifespan = match input.expires_in.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => parse_expires_in(s)?,
        None => i64::try_from(state.config.selfservice.methods.code.lifespan.as_secs()).unwrap_or(900),
    };
    let identity = state.store.get_identity(&input.identity_id).await?.ok_or_else(ApiError::not_found)?;
    if !identity.is_active() {
        return Err(ApiError::invalid_request(
            "identity_id: the identity is inactive, so a recovery code could not sign it in; activate it first",
        ));
    }
    let now = state.clock.now();
    let public = state.config.urls.self_.public_base();
    let csrf = if api { String::new() } else { crypto::b64url(&crypto::random_bytes::<32>()) };
    let request_url = format!("{public}/self-service/recovery/{}", if api { "api" } else { "browser" });
    let mut f = flow::new_flow(&state.identities, Kind::Recovery, api, request_url, None, &csrf);
    f.skip_csrf = !api;
    f.expires_at = now + lifespan;
    f.state = "sent_email".into();
    f.active = Some(CODE.into());
    f.identity_id = Some(identity.id.clone());
    let code = crate::identity::code::generate();
    // No address: the operator, not a mailbox, delivered this code, so entering it proves
    // nothing about any address.
    f.code = Some(CodeState {
        address: String::new(),
        hash: crate::identity::code::hash(&state.identities, &f.id, &code),
        expires_at: f.expires_at,
        attempts: 0,
        sent: 1,
        identity_id: Some(identity.id.clone()),
        used: false,
    });
    flow::create(&state.store, &f).await.map_err(|e| ApiError::new(e.status, "internal", e.reason))?;
    tracing::info!(identity_id = %identity.id, flow_id = %f.id, "admin recovery code created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "recovery_link": f.ui_url(&state.identities),
            "recovery_code": code,
            "expires_at": rfc3339(f.expires_at),
        })),
    ))
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

    #[test]
    fn expires_in_takes_go_durations() {
        assert_eq!(super::parse_expires_in("1h").unwrap(), 3600);
        assert_eq!(super::parse_expires_in("1h30m").unwrap(), 5400);
        assert_eq!(super::parse_expires_in("90s").unwrap(), 90);
        assert!(super::parse_expires_in("-1h").is_err());
        assert!(super::parse_expires_in("9000h").is_err());
    }
}
