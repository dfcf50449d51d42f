//! Self-service flows with Kratos's endpoints and flow object: `/self-service/{kind}/browser`
//! (303 to the UI, or the flow as JSON for `Accept: application/json`), `/self-service/{kind}/api`
//! (native apps: JSON, no cookies, no CSRF), `/self-service/{kind}/flows?id=` and
//! `POST /self-service/{kind}?flow=` (form or JSON). This module is their HTTP side: starting a
//! flow (CSRF double submit: a per-browser cookie and the flow's token must match), reading
//! the body, running the kind's step and turning its [`Outcome`] or [`FlowError`] into the
//! right answer for a browser form, a browser SPA, or a native app. The stored flow, the
//! `return_to` check and the kinds' state machines live in `portcullis_identity::flow`
//! (re-exported here); flow logic must not be added here.

pub use portcullis_identity::flow::*;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::identity::View;
use crate::identity::session;
use crate::rfc3339;
use ui::UiNode;

/// A flow as the HTTP side shows it: its nodes (built by the kinds, still here) and Kratos's
/// flow JSON. A trait because [`Flow`] is the identity crate's type.
pub(crate) trait FlowView {
    async fn nodes(&self, state: &AppState) -> Vec<UiNode>;
    async fn to_json(&self, state: &AppState) -> Value;
}

impl FlowView for Flow {
    /// The nodes for this flow's kind and step, with messages and sticky values applied.
    async fn nodes(&self, state: &AppState) -> Vec<UiNode> {
        let mut nodes = vec![];
        if !self.is_api() {
            nodes.push(ui::hidden("default", "csrf_token", &self.csrf_token));
        }
        nodes.extend(match self.kind {
            Kind::Login => login::nodes(&state.identities, self),
            Kind::Registration => registration::nodes(&state.identities, self),
            Kind::Settings => settings::nodes(&state.identities, self).await,
            Kind::Recovery | Kind::Verification => recovery::nodes(&state.identities, self),
        });
        for node in &mut nodes {
            let name = node.name().to_owned();
            if let Some(m) = self.field_messages.get(&name) {
                node.messages.extend(m.iter().cloned());
            }
            if let Some(v) = self.values.get(&name) {
                if node.attributes["type"] != "submit" && node.attributes["type"] != "hidden" {
                    node.attributes["value"] = json!(v);
                }
            }
        }
        nodes
    }

    /// Kratos's flow JSON.
    async fn to_json(&self, state: &AppState) -> Value {
        let mut o = json!({
            "id": self.id,
            "type": self.flow_type,
            "expires_at": rfc3339(self.expires_at),
            "issued_at": rfc3339(self.issued_at),
            "request_url": self.request_url,
            "state": self.state,
            "ui": {
                "action": self.action(&state.identities),
                "method": "POST",
                "nodes": self.nodes(state).await,
                "messages": self.messages,
            },
        });
        if let Some(r) = &self.return_to {
            o["return_to"] = json!(r);
        }
        if let Some(a) = &self.active {
            o["active"] = json!(a);
        }
        if self.kind == Kind::Login {
            o["refresh"] = json!(self.refresh);
            o["requested_aal"] = json!("aal1");
        }
        if let Some(c) = &self.oauth2_login_challenge {
            o["oauth2_login_challenge"] = json!(c);
        }
        if self.kind == Kind::Settings {
            if let Some(id) = &self.identity_id {
                if let Ok(Some(i)) = state.store.get_identity(id).await {
                    o["identity"] = i.to_json(state.config.urls.self_.public_base(), View::Owner, None);
                }
            }
        }
        o
    }
}

/// A [`FlowError`] as an answer: the error page for a browser navigating, Kratos's generic
/// error JSON otherwise. A trait because [`FlowError`] is the identity crate's type.
pub(crate) trait Respond {
    fn respond(self, state: &AppState, html: bool) -> Response;
}

impl Respond for FlowError {
    fn respond(self, state: &AppState, html: bool) -> Response {
        let mut response = if html {
            let target = self
                .redirect
                .clone()
                .unwrap_or_else(|| format!("{}/ui/error?id={}", state.config.urls.self_.public_base(), self.id));
            see_other(&target)
        } else {
            (self.status, axum::Json(self.body())).into_response()
        };
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

impl From<crate::error::ApiError> for FlowError {
    fn from(e: crate::error::ApiError) -> Self {
        Self::new(e.status, "internal_server_error", e.description)
    }
}

pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

// --- request context --------------------------------------------------------------------

/// Whether the caller wants JSON (an SPA or a native app) rather than a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let content = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("application/json") || content.starts_with("application/json")
}

// --- handlers ---------------------------------------------------------------------------

fn parse_kind(kind: &str) -> Result<Kind, FlowError> {
    Kind::parse(kind).ok_or_else(FlowError::not_found)
}

/// `GET /self-service/{kind}/browser`.
pub async fn init_browser(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Query(q): Query<InitQuery>,
    headers: HeaderMap,
) -> Response {
    let html = !wants_json(&headers);
    match init(&state, &kind, q, &headers, false).await {
        Ok((flow, cookie)) => {
            let mut response = if html {
                see_other(&flow.ui_url(&state.identities))
            } else {
                axum::Json(flow.to_json(&state).await).into_response()
            };
            if let Some(c) = cookie {
                response.headers_mut().append(header::SET_COOKIE, c);
            }
            response
        }
        Err(e) => e.respond(&state, html),
    }
}

/// `GET /self-service/{kind}/api`.
pub async fn init_api(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Query(q): Query<InitQuery>,
    headers: HeaderMap,
) -> Response {
    match init(&state, &kind, q, &headers, true).await {
        Ok((flow, _)) => axum::Json(flow.to_json(&state).await).into_response(),
        Err(e) => e.respond(&state, false),
    }
}

async fn init(
    state: &AppState,
    kind: &str,
    q: InitQuery,
    headers: &HeaderMap,
    api: bool,
) -> Result<(Flow, Option<HeaderValue>), FlowError> {
    start(&state.identities, parse_kind(kind)?, q, headers, api).await
}

#[derive(Deserialize)]
pub struct FlowQuery {
    pub id: Option<String>,
    pub flow: Option<String>,
}

/// `GET /self-service/{kind}/flows?id=`.
pub async fn get(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Query(q): Query<FlowQuery>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let kind = parse_kind(&kind)?;
        let id =
            q.id.or(q.flow).ok_or_else(|| FlowError::new(StatusCode::BAD_REQUEST, "bad_request", "id is required"))?;
        let flow = load(&state.store, &id, kind).await?;
        if !flow.is_api() && !csrf_cookie_matches(&state, &headers, &flow) {
            return Err(FlowError::csrf());
        }
        if flow.expires_at <= state.clock.now() {
            return Err(expired(&state, &flow));
        }
        Ok(flow.to_json(&state).await)
    }
    .await;
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.respond(&state, false),
    }
}

/// An API flow carries no CSRF protection, so a browser must not submit it (Kratos's
/// `EnsureCSRF` for API flows): a request with an `Origin` header or a cookie (Cloudflare's
/// own excepted) comes from a browser, possibly driven by another site.
pub fn csrf_cookie_matches(state: &AppState, headers: &HeaderMap, flow: &Flow) -> bool {
    submit::csrf_cookie_matches(&state.identities, headers, flow)
}

fn expired(state: &AppState, flow: &Flow) -> FlowError {
    submit::expired(&state.identities, flow)
}

/// `POST /self-service/{kind}?flow=`.
pub async fn submit(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Query(q): Query<FlowQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let result = async {
        let kind = parse_kind(&kind)?;
        let id = q
            .flow
            .or(q.id)
            .ok_or_else(|| FlowError::new(StatusCode::BAD_REQUEST, "bad_request", "flow is required"))?;
        submit::submit(&state.identities, kind, &id, &headers, &body).await
    }
    .await;
    match result {
        Ok(outcome) => respond(&state, outcome, json).await,
        Err(e) => {
            let html = !json && !e.redirect.as_deref().is_some_and(str::is_empty);
            e.respond(&state, html)
        }
    }
}

async fn respond(state: &AppState, outcome: Outcome, json: bool) -> Response {
    match outcome {
        Outcome::Again(flow) => {
            if flow.is_api() || json {
                let status = if flow.has_errors() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
                (status, axum::Json(flow.to_json(state).await)).into_response()
            } else {
                see_other(&flow.ui_url(&state.identities))
            }
        }
        Outcome::SignedIn { flow, identity, issued } => {
            let (flow, identity, issued) = (*flow, *identity, *issued);
            let after = crate::identity::flow::login::after_sign_in(&state.identities, &flow, &identity).await;
            let session = session::session_json(state, &issued.row, Some(&identity));
            if flow.is_api() {
                let mut body = json!({"session": session, "session_token": issued.token, "continue_with": [
                    {"action": "set_ory_session_token", "ory_session_token": issued.token}
                ]});
                if flow.kind == Kind::Registration {
                    body["identity"] = identity.to_json(state.config.urls.self_.public_base(), View::Owner, None);
                }
                return axum::Json(body).into_response();
            }
            let cookie = session::session_cookie(state, &issued.token, issued.row.expires_at);
            let mut response = if json {
                let mut body = json!({"session": session, "continue_with": [
                    {"action": "redirect_browser_to", "redirect_browser_to": after}
                ]});
                if flow.kind == Kind::Registration {
                    body["identity"] = identity.to_json(state.config.urls.self_.public_base(), View::Owner, None);
                }
                axum::Json(body).into_response()
            } else {
                see_other(&after)
            };
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Outcome::Registered { flow, identity } => {
            let login = format!("{}/self-service/login/browser", state.config.urls.self_.public_base());
            if flow.is_api() || json {
                axum::Json(json!({
                    "identity": identity.to_json(state.config.urls.self_.public_base(), View::Owner, None),
                    "continue_with": [],
                }))
                .into_response()
            } else {
                see_other(&login)
            }
        }
        Outcome::Continue { flow, to, cookies, session_token, settings_id } => {
            if flow.is_api() {
                // Never a cookie for a native app: a browser posting an API flow (no CSRF token)
                // must not come away with someone's session.
                return axum::Json(json!({"continue_with": [
                    {"action": "set_ory_session_token", "ory_session_token": session_token},
                    {"action": "show_settings_ui", "flow": {"id": settings_id, "url": to}},
                ]}))
                .into_response();
            }
            let mut response = if json {
                let e = FlowError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    id: "browser_location_change_required",
                    reason: "Continue in the browser.".into(),
                    redirect: Some(to.clone()),
                    retry_after: None,
                };
                e.respond(state, false)
            } else {
                see_other(&to)
            };
            for c in cookies {
                response.headers_mut().append(header::SET_COOKIE, c);
            }
            response
        }
    }
}

/// Deletes expired flows hourly.
pub fn spawn_janitor(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = state.clock.now();
            if let Err(e) = state.store.purge_expired_flows(now - 3600).await {
                tracing::warn!(error = %e, "could not purge expired self-service flows");
            }
            if let Err(e) = state.store.purge_expired_sessions(now, 7 * 24 * 3600).await {
                tracing::warn!(error = %e, "could not purge expired sessions");
            }
            // A counter whose window ended counts nothing any more.
            let longest =
                state.config.selfservice.methods.password.lockout_window.max(state.config.session.rate_limit.window);
            let horizon = i64::try_from(longest.as_secs()).unwrap_or(i64::MAX / 2);
            if let Err(e) = state.store.purge_attempts(now.saturating_sub(horizon)).await {
                tracing::warn!(error = %e, "could not purge old sign-in attempt counters");
            }
        }
    })
}

#[cfg(test)]
mod tests;
