//! Submitting a step of a self-service flow (`POST /self-service/{kind}?flow=`): the flow must
//! exist and be alive; an API flow must come from a program (no `Origin`, no cookies but a
//! CDN's), a browser flow must carry its CSRF token in the form (or `X-CSRF-Token`) and the
//! matching cookie; then the kind's state machine runs. The caller answers HTTP with the
//! [`Outcome`] or [`FlowError`]; this module must not.

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use super::{Flow, FlowError, Form, Kind, Outcome, csrf_cookie_name, load, login, recovery, registration, settings};
use crate::context::Identities;
use crate::crypto;
use crate::session;

/// Refuses an API flow's request that a browser sent: Kratos's check against CSRF on native flows.
fn api_flow_from_a_program(headers: &HeaderMap) -> Result<(), FlowError> {
    const HINT: &str = "The flow however was initiated as an API request. To prevent potential misuse and mitigate \
                        several attack vectors including CSRF, the request has been blocked; browsers use the \
                        /self-service/{kind}/browser flows.";
    if headers.contains_key(header::ORIGIN) {
        return Err(FlowError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("The HTTP Request Header included the \"Origin\" key, indicating a browser. {HINT}"),
        ));
    }
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.trim()))
        .any(|name| !name.is_empty() && !["__cf", "_cf", "cf_"].iter().any(|p| name.starts_with(p)));
    if cookies {
        return Err(FlowError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("The HTTP Request Header included the \"Cookie\" key, indicating a browser. {HINT}"),
        ));
    }
    Ok(())
}

/// Whether the browser's CSRF cookie matches the flow's token (constant time).
pub fn csrf_cookie_matches(state: &Identities, headers: &HeaderMap, flow: &Flow) -> bool {
    flow.skip_csrf
        || session::cookie(headers, &csrf_cookie_name(state)).is_some_and(|c| crypto::secret_eq(c, &flow.csrf_token))
}

/// Kratos's 410 for an expired flow; a browser is sent to start a new one.
pub fn expired(state: &Identities, flow: &Flow) -> FlowError {
    let mut e = FlowError::new(StatusCode::GONE, "self_service_flow_expired", "The flow expired; start a new one.");
    if !flow.is_api() {
        e.redirect = Some(format!("{}/self-service/{}/browser", state.config.public_base, flow.kind.as_str()));
    }
    e
}

/// Runs one submitted step of flow `id` (of `kind`) with the request's headers and body.
pub async fn submit(
    state: &Identities,
    kind: Kind,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Outcome, FlowError> {
    let mut flow = load(&state.store, id, kind).await?;
    if flow.expires_at <= state.clock.now() {
        return Err(expired(state, &flow));
    }
    let form = Form::parse(headers, body)?;
    if flow.is_api() {
        api_flow_from_a_program(headers)?;
    }
    if !flow.is_api() && !flow.skip_csrf {
        let sent = form.get("csrf_token").or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
        let form_ok = sent.is_some_and(|t| crypto::secret_eq(t, &flow.csrf_token));
        if !form_ok || !csrf_cookie_matches(state, headers, &flow) {
            return Err(FlowError::csrf());
        }
    }
    flow.clear_messages();
    match kind {
        Kind::Login => login::submit(state, flow, &form, headers).await,
        Kind::Registration => registration::submit(state, flow, &form, headers).await,
        Kind::Settings => settings::submit(state, flow, &form, headers).await,
        Kind::Recovery => recovery::submit_recovery(state, flow, &form, headers).await,
        Kind::Verification => recovery::submit_verification(state, flow, &form).await,
    }
}
