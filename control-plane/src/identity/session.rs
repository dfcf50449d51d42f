//! Sessions: issuing one after a successful flow, reading it from a request (`X-Session-Token`,
//! the session cookie, `Authorization: Bearer`), Kratos's session JSON, the session cookie,
//! sliding refresh, `/sessions/whoami` (with `?tokenize_as=` → a signed JWT), the user's own
//! session list, logout, and the admin session API. Tokens are random 256-bit strings stored
//! only as SHA-256 digests; revoking a session pushes its digest to every Envoy filter.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::crypto;
use crate::error::{ApiError, StoreError};
use crate::identity::flow::FlowError;
use crate::identity::{Identity, View};
use crate::rfc3339;
use crate::rules::Rules;
use crate::store::Store;
use crate::store::sessions::{Deactivate, SessionFilter, SessionRow};

pub const SESSION_TOKEN_PREFIX: &str = "pc_st_";
pub const LOGOUT_TOKEN_PREFIX: &str = "pc_lo_";

/// A session just issued: the row and the token only its holder ever sees.
pub struct Issued {
    pub row: SessionRow,
    pub token: String,
}

/// How the user proved who they are (Kratos's `authentication_methods[].method`).
pub fn method_entry(method: &str, now: i64) -> Value {
    json!({"method": method, "aal": "aal1", "completed_at": rfc3339(now)})
}

/// Creates and stores a session for `identity`, within `session.rate_limit` and while the
/// revocation list is below `session.revocation_list.max_entries`.
pub async fn issue(
    state: &AppState,
    identity: &Identity,
    method: &str,
    headers: &HeaderMap,
) -> Result<Issued, FlowError> {
    let now = state.clock.now();
    let ip = client_ip(headers);
    may_issue(state, identity, &ip, now).await?;
    let token = format!("{SESSION_TOKEN_PREFIX}{}", crypto::b64url(&crypto::random_bytes::<32>()));
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let row = SessionRow {
        id: crypto::uuid_v4(),
        token_hash: crypto::sha256_hex(token.as_bytes()),
        identity_id: identity.id.clone(),
        active: true,
        aal: "aal1".into(),
        methods: json!([method_entry(method, now)]),
        devices: json!([{"id": crypto::uuid_v4(), "ip_address": ip, "user_agent": truncate(user_agent, 512)}]),
        issued_at: now,
        authenticated_at: now,
        expires_at: now + lifespan(state),
    };
    state.store.insert_session(&row).await?;
    tracing::info!(session_id = %row.id, identity_id = %identity.id, method, "session issued");
    Ok(Issued { row, token })
}

/// Refuses a new session beyond the per-identity and per-address rates, or while the
/// revocation list is full. Every session may end in a revocation that filters keep until the
/// session would have expired, so this is what bounds that list: a live revocation is never
/// dropped to make room (that would let a signed-out session back in wherever a filter still
/// caches it); new sign-ins wait for old revocations to expire instead.
async fn may_issue(state: &AppState, identity: &Identity, ip: &str, now: i64) -> Result<(), FlowError> {
    let cap = state.config.session.revocation_list.max_entries;
    if cap > 0 {
        let (live, first_expiry) = state.store.revocation_stats(now).await?;
        if usize::try_from(live).unwrap_or(usize::MAX) >= cap {
            tracing::error!(
                live,
                cap,
                "session refused: the revocation list is full (session.revocation_list.max_entries); new sessions \
                 resume as revocations expire"
            );
            let mut e = FlowError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "session_revocation_list_full",
                "Signing in is paused for a moment: too many sessions were ended recently. Try again later.",
            );
            e.retry_after = first_expiry.and_then(|t| u64::try_from((t - now).clamp(1, 3600)).ok());
            return Err(e);
        }
    }
    let limits = &state.config.session.rate_limit;
    let window = i64::try_from(limits.window.as_secs()).unwrap_or(3600);
    let buckets = [
        (limits.per_identity, format!("session:id:{}", identity.id), "this account"),
        (limits.per_address, format!("session:ip:{ip}"), "this address"),
    ];
    for (limit, bucket, whom) in buckets {
        if limit == 0 || (bucket.starts_with("session:ip:") && ip.is_empty()) {
            continue;
        }
        let (taken, started) = state.store.reserve_attempt(&bucket, now, window).await?;
        if taken > i64::from(limit) {
            tracing::warn!(identity_id = %identity.id, limit, "session refused: too many sign-ins for {whom}");
            let wait = (started + window - now).max(1);
            let mut e = FlowError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "self_service_flow_rate_limited",
                format!("Too many sign-ins for {whom} in a short time; try again in {} minute(s).", (wait + 59) / 60),
            );
            e.retry_after = u64::try_from(wait).ok();
            return Err(e);
        }
    }
    Ok(())
}

fn lifespan(state: &AppState) -> i64 {
    i64::try_from(state.config.session.lifespan.as_secs()).unwrap_or(i64::MAX / 4)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The address Envoy saw (`X-Forwarded-For`'s last hop is the one our proxy added), or empty.
pub fn client_ip(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// Whether cookies must carry `Secure` (the public URL is https).
pub fn secure_cookies(state: &AppState) -> bool {
    state.config.urls.self_.public_base().starts_with("https://")
}

/// `Set-Cookie` for a fresh session.
pub fn session_cookie(state: &AppState, token: &str, expires_at: i64) -> HeaderValue {
    let c = &state.config.session.cookie;
    let mut v = format!("{}={token}; Path={}; HttpOnly; SameSite={}", c.name, c.path, c.same_site);
    if c.persistent {
        v.push_str(&format!("; Max-Age={}", (expires_at - state.clock.now()).max(0)));
    }
    if let Some(d) = &c.domain {
        v.push_str(&format!("; Domain={d}"));
    }
    if secure_cookies(state) {
        v.push_str("; Secure");
    }
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(state: &AppState) -> HeaderValue {
    let c = &state.config.session.cookie;
    let mut v = format!("{}=; Path={}; HttpOnly; SameSite={}; Max-Age=0", c.name, c.path, c.same_site);
    if let Some(d) = &c.domain {
        v.push_str(&format!("; Domain={d}"));
    }
    if secure_cookies(state) {
        v.push_str("; Secure");
    }
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The session token the request carries: `X-Session-Token`, then the cookie, then
/// `Authorization: Bearer` (Kratos's order).
pub fn presented_token(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers.get("x-session-token").and_then(|v| v.to_str().ok()) {
        return Some(t.trim().to_owned());
    }
    if let Some(t) = cookie(headers, &state.config.session.cookie.name) {
        return Some(t.to_owned());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// An active session and its identity.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session: SessionRow,
    pub identity: Identity,
    /// Set when the sliding refresh moved `expires_at`: the cookie should be re-issued.
    pub refreshed: bool,
}

/// The request's session if it is active, unexpired and its identity active; slides the
/// expiry forward when less than half the lifespan is left.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Authenticated>, StoreError> {
    let Some(token) = presented_token(state, headers) else {
        return Ok(None);
    };
    if !token.starts_with(SESSION_TOKEN_PREFIX) {
        return Ok(None);
    }
    let Some(mut session) = state.store.get_session_by_token(&crypto::sha256_hex(token.as_bytes())).await? else {
        return Ok(None);
    };
    let now = state.clock.now();
    if !session.active || session.expires_at <= now {
        return Ok(None);
    }
    let Some(identity) = state.store.get_identity(&session.identity_id).await? else {
        return Ok(None);
    };
    if !identity.is_active() {
        return Ok(None);
    }
    let mut refreshed = false;
    let span = lifespan(state);
    if state.config.session.sliding && session.expires_at - now < span / 2 {
        session.expires_at = now + span;
        state.store.set_session_expiry(&session.id, session.expires_at).await?;
        refreshed = true;
    }
    Ok(Some(Authenticated { session, identity, refreshed }))
}

/// Kratos's session JSON.
pub fn session_json(state: &AppState, s: &SessionRow, identity: Option<&Identity>) -> Value {
    let now = state.clock.now();
    let mut o = json!({
        "id": s.id,
        "active": s.active && s.expires_at > now && identity.is_none_or(Identity::is_active),
        "expires_at": rfc3339(s.expires_at),
        "authenticated_at": rfc3339(s.authenticated_at),
        "issued_at": rfc3339(s.issued_at),
        "authenticator_assurance_level": s.aal,
        "authentication_methods": s.methods,
        "devices": s.devices,
    });
    if let Some(i) = identity {
        o["identity"] = i.to_json(state.config.urls.self_.public_base(), View::Owner, None);
    }
    o
}

fn session_inactive() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "session_inactive", "No valid session credentials found in the request.")
}

#[derive(Deserialize)]
pub struct WhoamiQuery {
    tokenize_as: Option<String>,
}

/// `GET /sessions/whoami`.
pub async fn whoami(
    State(state): State<AppState>,
    Query(q): Query<WhoamiQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(auth) = authenticate(&state, &headers).await? else {
        return Err(session_inactive());
    };
    let mut body = session_json(&state, &auth.session, Some(&auth.identity));
    if let Some(name) = q.tokenize_as.filter(|n| !n.is_empty()) {
        body["tokenized"] = json!(tokenize(&state, &name, &auth.session, &body)?);
    }
    let mut response = Json(body).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&auth.identity.id) {
        h.insert("x-kratos-authenticated-identity-id", v);
    }
    // The answer is per-user: shared caches must not keep it.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if auth.refreshed && cookie(&headers, &state.config.session.cookie.name).is_some() {
        if let Some(token) = presented_token(&state, &headers) {
            h.append(header::SET_COOKIE, session_cookie(&state, &token, auth.session.expires_at));
        }
    }
    Ok(response)
}

/// A short-lived JWT for the session, from template `name` (`session.whoami.tokenizer`).
fn tokenize(state: &AppState, name: &str, s: &SessionRow, session: &Value) -> Result<String, ApiError> {
    let Some(t) = state.config.session.whoami.tokenizer.templates.get(name) else {
        return Err(ApiError::invalid_request(format!(
            "tokenize_as: there is no template {name:?} in session.whoami.tokenizer.templates"
        )));
    };
    let now = state.clock.now();
    let ttl = i64::try_from(t.ttl.as_secs()).unwrap_or(60).max(1);
    let sub = match t.subject_source.as_deref() {
        Some("external_id") => session["identity"]["external_id"].as_str().unwrap_or_default().to_owned(),
        _ => s.identity_id.clone(),
    };
    let extra = session.as_object().cloned().unwrap_or_default();
    let mut claims = Map::new();
    for (k, v) in &t.claims {
        let value = match v {
            Value::String(src) => {
                let template = portcullis_shared::template::Template::compile(src)
                    .map_err(|e| ApiError::internal(&format!("tokenizer template {name}, claim {k}: {e}")))?;
                let ctx =
                    portcullis_shared::template::Context { subject: &sub, extra: &extra, captures: &[], headers: &[] };
                Value::String(
                    template
                        .render(&ctx)
                        .map_err(|e| ApiError::internal(&format!("tokenizer template {name}, claim {k}: {e}")))?,
                )
            }
            other => other.clone(),
        };
        claims.insert(k.clone(), value);
    }
    // Registered claims last: a template cannot override them (Kratos protects `sub` too);
    // `iat`, `nbf` and `exp` are the library's, set by `issue`, which drops any of the template's.
    for (k, v) in [
        ("jti", json!(crypto::uuid_v4())),
        ("iss", json!(state.config.urls.self_.public_base())),
        ("sub", json!(sub)),
        ("sid", json!(s.id)),
    ] {
        claims.insert(k.into(), v);
    }
    crate::jwt::issue(claims, now, ttl, true)
        .and_then(|claims| state.keys.signer().sign_jwt("JWT", &claims))
        .ok_or_else(|| ApiError::internal(&"could not sign the session token"))
}

/// Deactivates sessions at `now` and tells every filter at once (through `rules`, which
/// publishes the revoked tokens). Takes only what it uses, so it is callable without a server.
pub async fn revoke(store: &Store, rules: &Arc<Rules>, now: i64, which: Deactivate<'_>) -> Result<u64, StoreError> {
    let n = store.deactivate_sessions(which, now).await?;
    if n > 0 {
        rules.refresh_revocations(store, now).await?;
    }
    Ok(n)
}

#[derive(Deserialize)]
pub struct PageQuery {
    page_size: Option<i64>,
    page_token: Option<String>,
    active: Option<bool>,
    expand: Option<String>,
}

fn page_bounds(q: &PageQuery) -> Result<(i64, Option<(i64, String)>), ApiError> {
    let size = q.page_size.unwrap_or(250);
    if !(1..=1000).contains(&size) {
        return Err(ApiError::invalid_request("page_size: must be between 1 and 1000"));
    }
    let before = q.page_token.as_deref().map(crate::paging::parse_token).transpose()?;
    Ok((size, before))
}

/// A JSON array with Kratos's `Link: <…>; rel="next"` when there may be more.
fn paged(state: &AppState, path: &str, rows: Vec<SessionRow>, size: i64, identities: &[Identity]) -> Response {
    let next =
        (rows.len() as i64 == size).then(|| rows.last().map(|s| crate::paging::token(s.issued_at, &s.id))).flatten();
    let items: Vec<Value> =
        rows.iter().map(|s| session_json(state, s, identities.iter().find(|i| i.id == s.identity_id))).collect();
    let mut response = Json(items).into_response();
    if let Some(n) = next {
        let link = format!("<{path}?page_size={size}&page_token={n}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

/// `GET /sessions`: the caller's other active sessions.
pub async fn list_mine(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = authenticate(&state, &headers).await?.ok_or_else(session_inactive)?;
    let (size, before) = page_bounds(&q)?;
    let filter =
        SessionFilter { identity_id: Some(auth.identity.id.clone()), active: Some(true), now: state.clock.now() };
    let mut rows = state.store.list_sessions(&filter, before, size).await?;
    rows.retain(|s| s.id != auth.session.id);
    Ok(paged(&state, "/sessions", rows, size, &[]))
}

/// `DELETE /sessions`: revokes all the caller's sessions but this one; `{"count": n}`.
pub async fn revoke_others(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let auth = authenticate(&state, &headers).await?.ok_or_else(session_inactive)?;
    let n = revoke(
        &state.store,
        &state.rules,
        state.clock.now(),
        Deactivate::Identity { identity_id: &auth.identity.id, except: &auth.session.id },
    )
    .await?;
    Ok(Json(json!({"count": n})))
}

/// `DELETE /sessions/{id}`: one of the caller's other sessions (not the current one: that is logout).
pub async fn revoke_mine(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let auth = authenticate(&state, &headers).await?.ok_or_else(session_inactive)?;
    if id == auth.session.id {
        return Err(ApiError::invalid_request("This is the current session: use logout to end it."));
    }
    match state.store.get_session(&id).await? {
        Some(s) if s.identity_id == auth.identity.id => {
            revoke(&state.store, &state.rules, state.clock.now(), Deactivate::One(&id)).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::not_found()),
    }
}

// --- logout ----------------------------------------------------------------------------

/// `GET /self-service/logout/browser`: `{logout_url, logout_token}` for the cookie's session.
/// The logout token is derived from the session token, so nothing extra is stored.
pub async fn logout_browser(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let token = cookie(&headers, &state.config.session.cookie.name).map(str::to_owned);
    let Some(auth) = authenticate(&state, &headers).await?.filter(|_| token.is_some()) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "session_inactive", "There is no browser session to end."));
    };
    let logout_token = logout_token_for(&auth.session, token.as_deref().unwrap_or(""));
    let url = format!("{}/self-service/logout?token={logout_token}", state.config.urls.self_.public_base());
    Ok(Json(json!({"logout_url": url, "logout_token": logout_token})))
}

/// A logout token for the browser holding `session_token`: an HMAC-like digest of the session
/// token, so only that browser (or whoever saw this URL) can end the session, and a cross-site
/// request cannot forge it.
pub fn logout_token_for(session: &SessionRow, session_token: &str) -> String {
    let digest = crypto::sha256(format!("logout:{}:{session_token}", session.id).as_bytes());
    format!("{LOGOUT_TOKEN_PREFIX}{}.{}", session.id, crypto::b64url(&digest))
}

#[derive(Deserialize)]
pub struct LogoutQuery {
    token: Option<String>,
    return_to: Option<String>,
}

/// `GET /self-service/logout?token=&return_to=`: ends the session, clears the cookie, 303.
pub async fn logout(
    State(state): State<AppState>,
    Query(q): Query<LogoutQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = q.token.unwrap_or_default();
    let session = match token.strip_prefix(LOGOUT_TOKEN_PREFIX).and_then(|t| t.split_once('.')) {
        Some((id, _)) => state.store.get_session(id).await?,
        None => None,
    };
    let presented = cookie(&headers, &state.config.session.cookie.name).unwrap_or("");
    let valid = session.as_ref().is_some_and(|s| crypto::secret_eq(&logout_token_for(s, presented), &token));
    let Some(session) = session.filter(|_| valid) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "self_service_flow_logout_token_invalid",
            "The logout token is not valid for this browser.",
        ));
    };
    // Checked before anything ends: a refused return_to must not cost the user their session.
    let target = match q.return_to.as_deref() {
        Some(r) => crate::identity::flow::allowed_return_to(&state, r).ok_or_else(|| {
            ApiError::invalid_request("return_to: this URL is not in selfservice.allowed_return_urls")
        })?,
        None => format!("{}/ui/login", state.config.urls.self_.public_base()),
    };
    revoke(&state.store, &state.rules, state.clock.now(), Deactivate::One(&session.id)).await?;
    tracing::info!(session_id = %session.id, "signed out");
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response();
    response.headers_mut().append(header::SET_COOKIE, clear_session_cookie(&state));
    Ok(response)
}

#[derive(Deserialize)]
pub struct ApiLogout {
    session_token: String,
}

/// `DELETE /self-service/logout/api {"session_token": …}` → 204.
pub async fn logout_api(
    State(state): State<AppState>,
    crate::error::ApiJson(body): crate::error::ApiJson<ApiLogout>,
) -> Result<StatusCode, ApiError> {
    let hash = crypto::sha256_hex(body.session_token.as_bytes());
    match state.store.get_session_by_token(&hash).await? {
        Some(s) if s.active => {
            revoke(&state.store, &state.rules, state.clock.now(), Deactivate::One(&s.id)).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::new(StatusCode::FORBIDDEN, "session_inactive", "The session token is not active.")),
    }
}

// --- admin ----------------------------------------------------------------------------

async fn identities_for(state: &AppState, rows: &[SessionRow], expand: bool) -> Result<Vec<Identity>, ApiError> {
    let mut out: Vec<Identity> = Vec::new();
    if expand {
        for r in rows {
            if !out.iter().any(|i| i.id == r.identity_id) {
                if let Some(i) = state.store.get_identity(&r.identity_id).await? {
                    out.push(i);
                }
            }
        }
    }
    Ok(out)
}

fn expands_identity(q: &PageQuery) -> bool {
    q.expand.as_deref().is_some_and(|e| e.split(',').any(|x| x.trim() == "identity"))
}

/// `GET /admin/sessions?active=&expand=identity`.
pub async fn admin_list(State(state): State<AppState>, Query(q): Query<PageQuery>) -> Result<Response, ApiError> {
    let (size, before) = page_bounds(&q)?;
    let filter = SessionFilter { identity_id: None, active: q.active, now: state.clock.now() };
    let rows = state.store.list_sessions(&filter, before, size).await?;
    let identities = identities_for(&state, &rows, expands_identity(&q)).await?;
    Ok(paged(&state, "/admin/sessions", rows, size, &identities))
}

/// `GET /admin/identities/{id}/sessions?active=`.
pub async fn admin_list_for_identity(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let identity = state.store.get_identity(&id).await?.ok_or_else(ApiError::not_found)?;
    let (size, before) = page_bounds(&q)?;
    let filter = SessionFilter { identity_id: Some(id.clone()), active: q.active, now: state.clock.now() };
    let rows = state.store.list_sessions(&filter, before, size).await?;
    let identities = if expands_identity(&q) { vec![identity] } else { vec![] };
    Ok(paged(
        &state,
        &format!("/admin/identities/{}/sessions", crate::identity::url_segment(&id)),
        rows,
        size,
        &identities,
    ))
}

/// `DELETE /admin/identities/{id}/sessions` → 204.
pub async fn admin_delete_for_identity(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.get_identity(&id).await?.is_none() {
        return Err(ApiError::not_found());
    }
    let now = state.clock.now();
    state.store.delete_identity_sessions(&id, now).await?;
    state.rules.refresh_revocations(&state.store, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct ExpandQuery {
    expand: Option<String>,
}

/// `GET /admin/sessions/{id}?expand=identity`.
pub async fn admin_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ExpandQuery>,
) -> Result<Json<Value>, ApiError> {
    let s = state.store.get_session(&id).await?.ok_or_else(ApiError::not_found)?;
    let identity = if q.expand.as_deref().is_some_and(|e| e.contains("identity")) {
        state.store.get_identity(&s.identity_id).await?
    } else {
        None
    };
    Ok(Json(session_json(&state, &s, identity.as_ref())))
}

/// `DELETE /admin/sessions/{id}`: deactivates → 204.
pub async fn admin_disable(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if state.store.get_session(&id).await?.is_none() {
        return Err(ApiError::not_found());
    }
    revoke(&state.store, &state.rules, state.clock.now(), Deactivate::One(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /admin/sessions/{id}/extend`: a full lifespan from now → 200 with the session.
pub async fn admin_extend(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let mut s = state.store.get_session(&id).await?.ok_or_else(ApiError::not_found)?;
    if !s.active {
        return Err(ApiError::not_found());
    }
    s.expires_at = state.clock.now() + lifespan(&state);
    state.store.set_session_expiry(&s.id, s.expires_at).await?;
    Ok(Json(session_json(&state, &s, None)))
}
