//! The admin side of the login and consent contract over HTTP
//! (`/admin/oauth2/auth/requests/{login,consent}[/accept|/reject]`, the remembered consents and
//! login sessions under `/admin/oauth2/auth/sessions/...`): extract, call
//! [`portcullis_oauth2::flow`], and map a [`ContractError`] to the admin API's answer once. The
//! contract's logic is all there; it is re-exported here under the old paths.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use portcullis_oauth2::flow::*;
use serde_json::json;

use crate::app::AppState;
use crate::error::{ApiError, ApiJson, parse_urlencoded};

/// A contract failure as the admin API answers it (Hydra's shapes).
pub fn contract_response(e: ContractError) -> Response {
    match e {
        ContractError::NotFound => ApiError::not_found().into_response(),
        // Hydra answers 410 with where to send the browser instead.
        ContractError::Handled(to) => (StatusCode::GONE, Json(json!({"redirect_to": to}))).into_response(),
        ContractError::Expired => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "request_unauthorized",
            "The request has expired (ttl.login_consent_request). Please try again.",
        )
        .into_response(),
        ContractError::Invalid(m) => ApiError::invalid_request(m).into_response(),
        ContractError::Store(e) => ApiError::from(e).into_response(),
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    parse_urlencoded(query.unwrap_or("").as_bytes()).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn required(query: Option<&str>, name: &str) -> Result<String, ApiError> {
    query_param(query, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid_request(format!("{name}: the query parameter is required")))
}

fn redirect_to(to: Result<String, ContractError>) -> Response {
    match to {
        Ok(to) => Json(json!({"redirect_to": to})).into_response(),
        Err(e) => contract_response(e),
    }
}

pub async fn admin_get_login(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let challenge = match required(q.as_deref(), "login_challenge") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match login_request(&state.oauth2(), &challenge).await {
        Ok((_, json)) => Json(json).into_response(),
        Err(e) => contract_response(e),
    }
}

pub async fn admin_accept_login(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ApiJson(body): ApiJson<LoginAccept>,
) -> Response {
    match required(q.as_deref(), "login_challenge") {
        Ok(c) => redirect_to(accept_login(&state.oauth2(), &c, body, None, false).await),
        Err(e) => e.into_response(),
    }
}

pub async fn admin_reject_login(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ApiJson(body): ApiJson<Reject>,
) -> Response {
    match required(q.as_deref(), "login_challenge") {
        Ok(c) => redirect_to(reject_login(&state.oauth2(), &c, body).await),
        Err(e) => e.into_response(),
    }
}

pub async fn admin_get_consent(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let challenge = match required(q.as_deref(), "consent_challenge") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match consent_request(&state.oauth2(), &challenge).await {
        Ok((_, json)) => Json(json).into_response(),
        Err(e) => contract_response(e),
    }
}

pub async fn admin_accept_consent(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ApiJson(body): ApiJson<ConsentAccept>,
) -> Response {
    match required(q.as_deref(), "consent_challenge") {
        Ok(c) => redirect_to(accept_consent(&state.oauth2(), &c, body).await),
        Err(e) => e.into_response(),
    }
}

pub async fn admin_reject_consent(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ApiJson(body): ApiJson<Reject>,
) -> Response {
    match required(q.as_deref(), "consent_challenge") {
        Ok(c) => redirect_to(reject_consent(&state.oauth2(), &c, body).await),
        Err(e) => e.into_response(),
    }
}

/// `GET /admin/oauth2/auth/sessions/consent?subject=`: `[oAuth2ConsentSession]`, newest first.
pub async fn admin_list_consents(State(state): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = match ConsentList::parse(&parse_urlencoded(q.unwrap_or_default().as_bytes())) {
        Ok(q) => q,
        Err(e) => return contract_response(e),
    };
    let (items, next) = match list_consent_sessions(&state.oauth2(), &q).await {
        Ok(page) => page,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let link = q.link(&format!("http://{host}/admin/oauth2/auth/sessions/consent"), next.as_deref());
    let mut res = Json(items).into_response();
    if let Ok(v) = HeaderValue::from_str(&link) {
        res.headers_mut().insert(header::LINK, v);
    }
    res
}

/// `DELETE /admin/oauth2/auth/sessions/consent?subject=&client=|consent_request_id=|all=true`: 204.
pub async fn admin_revoke_consents(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let q = q.as_deref();
    let subject = required(q, "subject")?;
    let client = query_param(q, "client").filter(|v| !v.is_empty());
    let all = match query_param(q, "all").as_deref() {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::invalid_request(format!("all: must be true or false, not {other:?}"))),
    };
    let consent_id = query_param(q, "consent_request_id").filter(|v| !v.is_empty());
    if client.is_none() && consent_id.is_none() && !all {
        return Err(ApiError::invalid_request(
            "client: name a client (or a consent_request_id), or set all=true to revoke every consent",
        ));
    }
    let client = if all { None } else { client.as_deref() };
    revoke_consents(&state.oauth2(), &subject, client, consent_id.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /admin/oauth2/auth/sessions/login?subject=|sid=`: 204. The next authorization
/// request from those browsers shows the login app again; tokens are not revoked. By `sid`,
/// clients with a `backchannel_logout_uri` are told, as Hydra does.
pub async fn admin_revoke_login_sessions(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let q = q.as_deref();
    let subject = query_param(q, "subject").filter(|v| !v.is_empty());
    let sid = query_param(q, "sid").filter(|v| !v.is_empty());
    if subject.is_none() && sid.is_none() {
        return Err(ApiError::invalid_request("subject: give subject or sid"));
    }
    match (&subject, &sid) {
        // Hydra: by sid, the clients are told over the back channel; by subject, they are not.
        (None, Some(sid)) => {
            if let Some(s) = state.store.get_login_session(sid).await? {
                crate::oauth2::logout::end_login_session(&state.oauth2(), &s.subject, sid).await?;
            }
        }
        _ => {
            state.store.delete_login_sessions(subject.as_deref(), sid.as_deref()).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
