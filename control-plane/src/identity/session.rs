//! Sessions over HTTP: `/sessions/whoami` (with `?tokenize_as=` → a signed JWT), the user's own
//! session list, logout, and the admin session API, over `portcullis_identity::session` (issuing,
//! reading a request's session, cookies, Kratos's JSON) and `portcullis_identity::sessions`
//! (lists and pages, extend, whoami's tokenizer, given the OAuth2 signer). Revoking a session pushes its digest
//! to every Envoy filter. Session logic must not be added here.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::crypto;
use crate::error::{ApiError, StoreError};
use crate::identity::Identity;
use crate::identity::flow::FlowError;
use crate::store::sessions::{Deactivate, SessionRow};
use portcullis_identity::session as core;
use portcullis_identity::sessions::{self, PageQuery};

pub use portcullis_identity::session::{
    Authenticated, Issued, LOGOUT_TOKEN_PREFIX, SESSION_TOKEN_PREFIX, client_ip, cookie, logout_token_for,
    method_entry, revoke,
};

// The session logic lives in `portcullis_identity::session`; these keep the signatures the
// handlers (here, in `ui` and in `oauth2`) call with the whole state.

/// See [`portcullis_identity::session::issue`].
pub async fn issue(
    state: &AppState,
    identity: &Identity,
    method: &str,
    headers: &HeaderMap,
) -> Result<Issued, FlowError> {
    core::issue(&state.identities, identity, method, headers).await
}

/// Whether cookies must carry `Secure` (the public URL is https).
pub fn secure_cookies(state: &AppState) -> bool {
    core::secure_cookies(&state.identities)
}

/// `Set-Cookie` for a fresh session.
pub fn session_cookie(state: &AppState, token: &str, expires_at: i64) -> HeaderValue {
    core::session_cookie(&state.identities, token, expires_at)
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(state: &AppState) -> HeaderValue {
    core::clear_session_cookie(&state.identities)
}

/// The session token the request carries (see [`core::presented_token`]).
pub fn presented_token(state: &AppState, headers: &HeaderMap) -> Option<String> {
    core::presented_token(&state.identities, headers)
}

/// The request's active session (see [`core::authenticate`]).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Authenticated>, StoreError> {
    core::authenticate(&state.identities, headers).await
}

/// Kratos's session JSON.
pub fn session_json(state: &AppState, s: &SessionRow, identity: Option<&Identity>) -> Value {
    core::session_json(&state.identities, s, identity)
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
        body["tokenized"] =
            json!(sessions::tokenize(&state.identities, &state.keys.signer(), &name, &auth.session, &body)?);
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

/// A session page as a JSON array with Kratos's `Link: <…>; rel="next"` when there may be more.
fn paged(page: sessions::SessionPage) -> Response {
    let mut response = Json(page.items).into_response();
    if let Some(v) = page.link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, v);
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
    Ok(paged(sessions::list_mine(&state.identities, &auth, &q).await?))
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
        Some(r) => crate::identity::flow::allowed_return_to(&state.identities, r).ok_or_else(|| {
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

/// `GET /admin/sessions?active=&expand=identity`.
pub async fn admin_list(State(state): State<AppState>, Query(q): Query<PageQuery>) -> Result<Response, ApiError> {
    Ok(paged(sessions::admin_list(&state.identities, &q).await?))
}

/// `GET /admin/identities/{id}/sessions?active=`.
pub async fn admin_list_for_identity(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(paged(sessions::admin_list_for_identity(&state.identities, &id, &q).await?))
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
    Ok(Json(sessions::admin_get(&state.identities, &id, q.expand.as_deref()).await?))
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
    Ok(Json(sessions::extend(&state.identities, &id).await?))
}
