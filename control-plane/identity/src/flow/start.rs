//! Starting a self-service flow (`/self-service/{kind}/browser` and `/api`): the `return_to`
//! check, the CSRF token (the browser's existing one, or a new one and its cookie), refusing
//! login or registration over a live session (unless `refresh`), a disabled kind, or settings
//! without a session, then the kind's first nodes and storing the flow. The caller answers
//! HTTP; this module must not.

use portcullis_model::identity::url_segment;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::{
    Flow, FlowError, Kind, after_url, allowed_return_to, create, csrf_cookie, csrf_cookie_name, login, new_flow,
    registration, settings,
};
use crate::context::Identities;
use crate::crypto;
use crate::session;

/// The query a flow is started with.
#[derive(Debug, Deserialize, Default)]
pub struct InitQuery {
    pub return_to: Option<String>,
    #[serde(default)]
    pub refresh: Option<bool>,
    pub login_challenge: Option<String>,
}

/// Starts a `kind` flow for this request: the flow, and a CSRF cookie to set when the browser
/// had none. An `api` flow has no CSRF token and sets no cookie.
pub async fn start(
    state: &Identities,
    kind: Kind,
    q: InitQuery,
    headers: &HeaderMap,
    api: bool,
) -> Result<(Flow, Option<HeaderValue>), FlowError> {
    let return_to = match q.return_to.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => Some(allowed_return_to(state, r).ok_or_else(|| {
            FlowError::new(
                StatusCode::BAD_REQUEST,
                "self_service_flow_return_to_forbidden",
                "The return_to address is not allowed: add its origin to selfservice.allowed_return_urls.",
            )
        })?),
        None => None,
    };
    let public = &state.config.public_base;
    let request_url = format!("{public}/self-service/{}/{}", kind.as_str(), if api { "api" } else { "browser" });
    let (csrf, cookie) = if api {
        (String::new(), None)
    } else {
        match session::cookie(headers, &csrf_cookie_name(state)).filter(|t| t.len() >= 32) {
            Some(existing) => (existing.to_owned(), None),
            None => {
                let token = crypto::b64url(&crypto::random_bytes::<32>());
                let cookie = csrf_cookie(state, &token);
                (token, Some(cookie))
            }
        }
    };
    let mut flow = new_flow(state, kind, api, request_url, return_to, &csrf);
    flow.refresh = q.refresh.unwrap_or(false);
    flow.oauth2_login_challenge = q.login_challenge.filter(|c| !c.is_empty());
    let current = session::authenticate(state, headers).await?;
    match kind {
        Kind::Login | Kind::Registration if current.is_some() && !flow.refresh => {
            let mut e = FlowError::new(
                StatusCode::BAD_REQUEST,
                "session_already_available",
                "A valid session was detected and thus login is not possible. Did you forget to set `?refresh=true`?",
            );
            if !api {
                e.redirect = Some(after_url(state, &flow));
            }
            return Err(e);
        }
        Kind::Registration if !state.config.selfservice.flows.registration.enabled => {
            return Err(FlowError::new(
                StatusCode::BAD_REQUEST,
                "self_service_flow_disabled",
                "Registration is not enabled.",
            ));
        }
        Kind::Recovery if !state.config.selfservice.flows.recovery.enabled => {
            return Err(FlowError::new(
                StatusCode::BAD_REQUEST,
                "self_service_flow_disabled",
                "Recovery is not enabled.",
            ));
        }
        Kind::Verification if !state.config.selfservice.flows.verification.enabled => {
            return Err(FlowError::new(
                StatusCode::BAD_REQUEST,
                "self_service_flow_disabled",
                "Verification is not enabled.",
            ));
        }
        Kind::Settings => {
            let Some(auth) = current else {
                let mut e =
                    FlowError::new(StatusCode::UNAUTHORIZED, "session_inactive", "Sign in to change your settings.");
                if !api {
                    e.redirect = Some(format!(
                        "{public}/self-service/login/browser?return_to={}",
                        url_segment(&format!("{public}/self-service/settings/browser"))
                    ));
                }
                return Err(e);
            };
            flow.identity_id = Some(auth.identity.id.clone());
        }
        _ => {}
    }
    if kind == Kind::Login {
        login::prepare(state, &mut flow);
    }
    if kind == Kind::Registration {
        registration::prepare(state, &mut flow);
    }
    if kind == Kind::Settings {
        settings::prepare(state, &mut flow).await?;
    }
    create(&state.store, &flow).await?;
    Ok((flow, cookie))
}
