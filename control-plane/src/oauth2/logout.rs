//! RP-initiated logout (`/oauth2/sessions/logout`, OIDC RP-Initiated Logout 1.0) with Hydra's
//! logout challenge: the browser goes to the logout app (`urls.logout?logout_challenge=`),
//! which accepts (`PUT /admin/oauth2/auth/requests/logout/accept`) or rejects; on accept the
//! OAuth2 login session ends, every client with a `backchannel_logout_uri` that holds a consent
//! under that session gets a signed `logout_token`, and the browser lands on the client's
//! registered `post_logout_redirect_uri` (with `state`).
//!
//! `id_token_hint` must be an ID token signed by this server's own keys (an expired one is
//! fine, as the spec allows); `post_logout_redirect_uri` and `state` require it and the URI must
//! exactly match the hinted client's registration, so logout is never an open redirect.
//!
//! Only the browser's own session is ever ended (RP-Initiated Logout 1.0 §2 and §4: the hint
//! says which user the RP means, not who is at the browser). That session is the OAuth2 login
//! session of the browser's `portcullis_oauth2_authentication_session` cookie, or else the login
//! session the hint's `sid` names when it came from the Portcullis session whose cookie this
//! browser holds. Without one, an ID token alone (it travels to clients, logs, histories) ends
//! nothing and tells no client: the browser is only redirected. A hint naming another user than
//! the browser's is refused with a page. This module does not end Portcullis identity
//! sessions; the built-in logout page does. The contract's logic (requests, accept/reject,
//! back-channel logout, hint checks) is [`portcullis_oauth2::logout`], re-exported here; this
//! module reads the browser's cookies and session, redirects and renders pages.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use portcullis_oauth2::logout::*;
use serde_json::json;

use crate::app::AppState;
use crate::crypto;
use crate::error::{ApiError, StoreError, parse_urlencoded};
use crate::identity::session;
use crate::oauth2::OAuthParams;
use crate::oauth2::authorize::{AUTH_SESSION_COOKIE, with_query};
use crate::oauth2::flow;
use crate::store::oauth2_flows::LoginSessionRow;

fn page(state: &AppState, status: StatusCode, error: &'static str, description: &str) -> Response {
    crate::ui::oauth2::error_page(state, status, error, description)
}

fn found(location: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn public(state: &AppState) -> &str {
    state.config.urls.self_.public_base()
}

pub async fn get(State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let pairs = parse_urlencoded(query.as_deref().unwrap_or("").as_bytes());
    handle(&state, OAuthParams::new(pairs), &headers).await
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, form: OAuthParams) -> Response {
    handle(&state, form, &headers).await
}

async fn handle(state: &AppState, p: OAuthParams, headers: &HeaderMap) -> Response {
    let single = |n: &str| p.single(n).map(|v| v.filter(|s| !s.is_empty()).map(str::to_owned));
    let (hint, redirect, st, verifier) =
        match (single("id_token_hint"), single("post_logout_redirect_uri"), single("state"), single("logout_verifier"))
        {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
            _ => {
                return page(state, StatusCode::BAD_REQUEST, "invalid_request", "A parameter was sent more than once.");
            }
        };
    let result = match verifier {
        Some(v) => finish(state, &v).await,
        None => start(state, hint, redirect, st, headers, &p).await,
    };
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "logout: store error");
        page(state, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The logout could not be completed.")
    })
}

fn default_after_logout(state: &AppState) -> String {
    format!("{}/ui/welcome", public(state))
}

async fn start(
    state: &AppState,
    hint: Option<String>,
    redirect: Option<String>,
    st: Option<String>,
    headers: &HeaderMap,
    p: &OAuthParams,
) -> Result<Response, StoreError> {
    let checked = check_request(&state.oauth2(), hint.as_deref(), redirect.as_deref(), st.is_some()).await?;
    let Hinted { client_id, subject_sid: hinted } = match checked {
        Ok(h) => h,
        Err(sentence) => return Ok(page(state, StatusCode::BAD_REQUEST, "invalid_request", sentence)),
    };
    let hinted_sid = hinted.as_ref().map(|(_, sid)| sid.as_str());
    let (subject, sid) = match (browser_login_session(state, headers, hinted_sid).await?, &hinted) {
        (Some(s), Some((sub, _))) if !sub.is_empty() && *sub != s.subject => {
            return Ok(page(
                state,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "id_token_hint: names another user than the one signed in to this browser.",
            ));
        }
        (Some(s), _) => (s.subject, s.id),
        (None, _) => {
            // No session of this browser's to end (an ID token proves nothing about who sent
            // it): go straight on, ending nothing.
            let to = match &redirect {
                Some(uri) => with_query(uri, &st.iter().map(|s| ("state", s.clone())).collect::<Vec<_>>()),
                None => default_after_logout(state),
            };
            return Ok(found(&to));
        }
    };
    let query: Vec<(&str, String)> = p.0.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let body = LogoutBody {
        subject,
        sid,
        client_id,
        post_logout_redirect_uri: redirect,
        state: st,
        rp_initiated: hint.is_some(),
        request_url: with_query(&format!("{}/oauth2/sessions/logout", public(state)), &query),
    };
    let challenge = create(&state.oauth2(), &body).await?;
    let app = logout_app(&state.oauth2());
    Ok(found(&with_query(&app, &[("logout_challenge", challenge)])))
}

/// The OAuth2 login session this browser holds: the one its OAuth2 session cookie names, else
/// the one `hinted_sid` names if it was made from the Portcullis session this browser's own
/// session cookie holds. Never a session the browser only knows the id of.
async fn browser_login_session(
    state: &AppState,
    headers: &HeaderMap,
    hinted_sid: Option<&str>,
) -> Result<Option<LoginSessionRow>, StoreError> {
    if let Some(token) = session::cookie(headers, AUTH_SESSION_COOKIE) {
        if let Some(s) = state.store.get_login_session_by_token(&crypto::token_signature(token)).await? {
            return Ok(Some(s));
        }
    }
    let Some(sid) = hinted_sid.filter(|s| !s.is_empty()) else { return Ok(None) };
    let Some(login) = state.store.get_login_session(sid).await? else { return Ok(None) };
    if login.identity_provider_session_id.is_empty() {
        return Ok(None);
    }
    // Only the cookie: a session token in another header is no browser's.
    let mut cookies = HeaderMap::new();
    for v in headers.get_all(header::COOKIE) {
        cookies.append(header::COOKIE, v.clone());
    }
    let Some(own) = session::authenticate(state, &cookies).await? else { return Ok(None) };
    Ok((own.session.id == login.identity_provider_session_id && own.identity.id == login.subject).then_some(login))
}

async fn finish(state: &AppState, verifier: &str) -> Result<Response, StoreError> {
    let Some(body) = complete(&state.oauth2(), verifier).await? else {
        return Ok(page(
            state,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The logout verifier is unknown or has been used already.",
        ));
    };
    let to = match &body.post_logout_redirect_uri {
        Some(uri) => with_query(uri, &body.state.iter().map(|s| ("state", s.clone())).collect::<Vec<_>>()),
        None => default_after_logout(state),
    };
    let mut r = found(&to);
    let mut clear = format!("{AUTH_SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    if session::secure_cookies(state) {
        clear.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

fn challenge_of(q: Option<&str>) -> Result<String, ApiError> {
    parse_urlencoded(q.unwrap_or("").as_bytes())
        .into_iter()
        .find(|(k, v)| k == "logout_challenge" && !v.is_empty())
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::invalid_request("logout_challenge: the query parameter is required"))
}

pub async fn admin_get(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    match challenge_of(q.as_deref()) {
        Ok(c) => match request_json(&state.oauth2(), &c).await {
            Ok((_, json)) => Json(json).into_response(),
            Err(e) => flow::contract_response(e),
        },
        Err(e) => e.into_response(),
    }
}

pub async fn admin_accept(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    match challenge_of(q.as_deref()) {
        Ok(c) => match accept(&state.oauth2(), &c).await {
            Ok(to) => Json(json!({"redirect_to": to})).into_response(),
            Err(e) => flow::contract_response(e),
        },
        Err(e) => e.into_response(),
    }
}

pub async fn admin_reject(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    match challenge_of(q.as_deref()) {
        Ok(c) => match reject(&state.oauth2(), &c).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => flow::contract_response(e),
        },
        Err(e) => e.into_response(),
    }
}
