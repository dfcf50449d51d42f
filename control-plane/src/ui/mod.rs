//! The built-in UI: server-rendered pages on the public listener, so nobody has to write a
//! login UI before Portcullis is usable (Kratos requires one). `/ui/{login, registration,
//! settings, recovery, verification}?flow=` render a self-service flow loaded in-process,
//! generically from its `ui` nodes as Ory's reference UI does; `/ui/welcome` is the account
//! page, `/ui/logout` the sign-out page, `/ui/error?id=` the error page, `/ui/style.css` the
//! only asset.
//!
//! Pages only read: every form posts to the flow's own `ui.action`, which does all validation,
//! CSRF checking and state changes. No inline script (the CSP forbids it), no external assets,
//! no build step. Every value that reaches HTML goes through [`html::escape`].

pub mod oauth2;

pub use portcullis_ui::{UiConfig, errors, html, layout};

use std::fmt::Write as _;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::Value;

use crate::app::AppState;
use crate::identity::flow::{self, FlowView as _, Kind};
use crate::identity::session::{self, Authenticated};
use crate::identity::{Identity, url_segment};
use html::escape;

/// The route of one self-service flow's page (`/ui/login`, ...).
pub(crate) fn flow_route(kind: Kind) -> MethodRouter<AppState> {
    get(move |State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap| async move {
        flow_page(&state, kind, query.as_deref(), &headers).await
    })
}

/// The first value of `name` in a raw query string. Never rejects: a malformed query is a
/// missing parameter, and the page restarts the flow.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    crate::error::parse_urlencoded(query.unwrap_or("").as_bytes())
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn public(state: &AppState) -> &str {
    state.config.urls.self_.public_base()
}

// --- responses ------------------------------------------------------------------------

/// The origins a form on these pages may be sent to, or redirected to after it is sent
/// (browsers apply `form-action` to the redirects that follow a submission): this server and
/// every `return_to` destination it allows.
fn form_origins(state: &AppState) -> Vec<String> {
    let c = &state.config;
    let mut origins: Vec<String> = Vec::new();
    let candidates =
        [c.urls.self_.public_base(), c.urls.self_.issuer.as_str(), c.selfservice.default_browser_return_url.as_str()]
            .into_iter()
            .chain(c.selfservice.allowed_return_urls.iter().map(String::as_str));
    for u in candidates {
        if let Ok(url) = reqwest::Url::parse(u) {
            let origin = url.origin();
            if origin.is_tuple() {
                let o = origin.ascii_serialization();
                if !origins.contains(&o) {
                    origins.push(o);
                }
            }
        }
    }
    origins
}

fn csp(state: &AppState) -> HeaderValue {
    let form: String = form_origins(state).iter().map(|o| format!(" {o}")).collect();
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; form-action 'self'{form}; frame-ancestors 'none'; \
         base-uri 'none'; object-src 'none'"
    );
    // Serialised origins are plain ASCII, so this never falls back in practice.
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    ))
}

/// Security headers for everything under `/ui/`; a handler's own `Cache-Control` wins.
fn secure(state: &AppState, mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp(state));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

fn redirect(state: &AppState, location: &str) -> Response {
    secure(state, flow::see_other(location))
}

/// A page: `content` is HTML built here with every value escaped.
fn page(state: &AppState, status: StatusCode, title: &str, content: &str) -> Response {
    let ui = &state.config.ui;
    let full_title = if title.is_empty() { ui.title.clone() } else { format!("{title} · {}", ui.title) };
    let content = format!("<p class=\"brand\">{}</p>\n{content}", escape(&ui.title));
    let body = ui.layout().render(&full_title, &content, &format!("{}/ui/style.css", public(state)));
    secure(state, (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

fn init_url(state: &AppState, kind: &str, return_to: Option<&str>) -> String {
    let mut url = format!("{}/self-service/{kind}/browser", public(state));
    if let Some(r) = return_to.filter(|r| !r.is_empty()) {
        let _ = write!(url, "?return_to={}", url_segment(r));
    }
    url
}

fn error_url(state: &AppState, id: &str) -> String {
    format!("{}/ui/error?id={}", public(state), url_segment(id))
}

fn links(items: &[(String, &str)]) -> String {
    let mut out = String::from("<ul class=\"links\">");
    for (href, label) in items {
        let _ = write!(out, "<li><a href=\"{}\">{}</a></li>", escape(href), escape(label));
    }
    out.push_str("</ul>");
    out
}

// --- flow pages -----------------------------------------------------------------------

/// Plain http on anything but loopback: browsers refuse WebAuthn there.
pub fn passkeys_need_https(public_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(public_url) else { return false };
    url.scheme() == "http" && !matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

async fn flow_page(state: &AppState, kind: Kind, query: Option<&str>, headers: &HeaderMap) -> Response {
    let return_to = param(query, "return_to");
    let restart = |return_to: Option<&str>| redirect(state, &init_url(state, kind.as_str(), return_to));
    let Some(id) = param(query, "flow") else {
        return restart(return_to.as_deref());
    };
    let flow = match flow::load(&state.store, &id, kind).await {
        Ok(f) => f,
        Err(e) if e.status == StatusCode::NOT_FOUND => return restart(return_to.as_deref()),
        Err(e) => return redirect(state, &error_url(state, e.id)),
    };
    if flow.is_api() {
        return restart(return_to.as_deref());
    }
    if flow.expires_at <= state.clock.now() {
        return restart(return_to.as_deref().or(flow.return_to.as_deref()));
    }
    // Restarting would loop if the cookie cannot be kept (wrong host, blocked cookies):
    // explain instead.
    if !flow::csrf_cookie_matches(state, headers, &flow) {
        return redirect(state, &error_url(state, "security_csrf_violation"));
    }
    if kind == Kind::Settings {
        // The settings form shows the identity's traits: only to that identity's browser.
        match session::authenticate(state, headers).await {
            Ok(Some(auth)) if flow.identity_id.as_deref() == Some(auth.identity.id.as_str()) => {}
            Ok(_) => return restart(return_to.as_deref().or(flow.return_to.as_deref())),
            Err(e) => return internal(state, &e),
        }
    }
    let json = flow.to_json(state).await;
    let title = match kind {
        Kind::Login if flow.refresh => "Confirm it is you",
        Kind::Login => "Sign in",
        Kind::Registration => "Create an account",
        Kind::Settings => "Account settings",
        Kind::Recovery => "Recover your account",
        Kind::Verification => "Verify your e-mail address",
    };
    let view = html::FlowView { passkeys_need_https: passkeys_need_https(public(state)) };
    let mut content = format!("<h1>{}</h1>\n{}", escape(title), html::flow(&json, &view));
    content.push_str(&flow_links(state, kind, &flow, &json));
    page(state, StatusCode::OK, title, &content)
}

fn flow_links(state: &AppState, kind: Kind, flow: &flow::Flow, json: &Value) -> String {
    let base = public(state);
    let flows = &state.config.selfservice.flows;
    let rt = flow.return_to.as_deref();
    let mut items: Vec<(String, &str)> = Vec::new();
    match kind {
        Kind::Login => {
            if flows.registration.enabled && !flow.refresh {
                items.push((init_url(state, "registration", rt), "No account yet? Create one"));
            }
            if flows.recovery.enabled && state.config.selfservice.methods.password.enabled {
                items.push((init_url(state, "recovery", rt), "Forgot your password?"));
            }
        }
        Kind::Registration => items.push((init_url(state, "login", rt), "Already have an account? Sign in")),
        Kind::Settings => {
            items.push((format!("{base}/ui/welcome"), "Back to your account"));
            items.push((format!("{base}/ui/logout"), "Sign out"));
        }
        Kind::Recovery | Kind::Verification => {
            if json["state"] == "passed_challenge" {
                items.push((flow.return_to.clone().unwrap_or_else(|| format!("{base}/ui/welcome")), "Continue"));
            }
            items.push((init_url(state, "login", None), "Back to sign in"));
        }
    }
    links(&items)
}

// --- account pages --------------------------------------------------------------------

/// The browser's session (from its cookie only: these pages are for browsers) and the
/// cookie's token.
async fn browser_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Authenticated, String)>, crate::error::StoreError> {
    let Some(token) = session::cookie(headers, &state.config.session.cookie.name) else {
        return Ok(None);
    };
    let mut cookies = HeaderMap::new();
    for v in headers.get_all(header::COOKIE) {
        cookies.append(header::COOKIE, v.clone());
    }
    Ok(session::authenticate(state, &cookies).await?.map(|a| (a, token.to_owned())))
}

/// What to call the user: their e-mail address if they have one.
fn display_name(identity: &Identity) -> &str {
    let traits = &identity.body.traits;
    traits["email"]
        .as_str()
        .or_else(|| identity.body.verifiable_addresses.first().map(|a| a.value.as_str()))
        .or_else(|| traits.as_object().and_then(|o| o.values().find_map(Value::as_str)))
        .unwrap_or(&identity.id)
}

fn internal(state: &AppState, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "built-in UI: store error");
    error_page(state, "internal_server_error", StatusCode::INTERNAL_SERVER_ERROR)
}

/// Re-issues the session cookie when the sliding refresh moved the expiry.
fn with_refreshed_cookie(state: &AppState, auth: &Authenticated, token: &str, mut response: Response) -> Response {
    if auth.refreshed {
        response
            .headers_mut()
            .append(header::SET_COOKIE, session::session_cookie(state, token, auth.session.expires_at));
    }
    response
}

/// `GET /ui/welcome`: the account page.
pub(crate) async fn welcome(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (auth, token) = match browser_session(&state, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return redirect(&state, &init_url(&state, "login", None)),
        Err(e) => return internal(&state, &e),
    };
    let base = public(&state);
    let mut content = format!(
        "<h1>Your account</h1>\n<p>Signed in as <strong>{}</strong>.</p>",
        escape(display_name(&auth.identity))
    );
    let unverified = auth.identity.body.verifiable_addresses.iter().any(|a| !a.verified);
    if unverified && state.config.selfservice.flows.verification.enabled {
        let _ = write!(
            content,
            "<p class=\"msg msg-info\" role=\"status\">Your e-mail address is not verified yet. <a href=\"{}\">Verify it now</a>.</p>",
            escape(&init_url(&state, "verification", None))
        );
    }
    let _ = write!(
        content,
        "<p><a class=\"btn\" href=\"{}\">Account settings</a></p><p><a class=\"btn secondary\" href=\"{}\">Sign out</a></p>",
        escape(&init_url(&state, "settings", None)),
        escape(&format!("{base}/ui/logout"))
    );
    let response = page(&state, StatusCode::OK, "Your account", &content);
    with_refreshed_cookie(&state, &auth, &token, response)
}

/// `GET /ui/logout`: confirms, then links to the logout URL for this browser's session (the
/// same one `GET /self-service/logout/browser` returns).
pub(crate) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (auth, token) = match browser_session(&state, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return redirect(&state, &init_url(&state, "login", None)),
        Err(e) => return internal(&state, &e),
    };
    let base = public(&state);
    let logout_url =
        format!("{base}/self-service/logout?token={}", url_segment(&session::logout_token_for(&auth.session, &token)));
    let content = format!(
        "<h1>Sign out</h1>\n<p>You are signed in as <strong>{}</strong>. Sign out of this browser?</p>\
         <p><a class=\"btn\" href=\"{}\">Sign out</a></p><p><a class=\"btn secondary\" href=\"{}\">Cancel</a></p>",
        escape(display_name(&auth.identity)),
        escape(&logout_url),
        escape(&format!("{base}/ui/welcome"))
    );
    page(&state, StatusCode::OK, "Sign out", &content)
}

/// `GET /ui/error?id=`: texts from [`errors`] only; the query is never shown.
pub(crate) async fn error(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let id = param(query.as_deref(), "id").unwrap_or_default();
    error_page(&state, &id, StatusCode::OK)
}

fn error_page(state: &AppState, id: &str, status: StatusCode) -> Response {
    let entry = errors::lookup(id);
    let (href, label) = match entry.next {
        errors::Next::SignIn => (init_url(state, "login", None), "Sign in"),
        errors::Next::Account => (format!("{}/ui/welcome", public(state)), "Go to your account"),
        errors::Next::Settings => (init_url(state, "settings", None), "Open your settings"),
    };
    let mut content = format!("<h1>{}</h1>\n<p>{}</p>", escape(entry.title), escape(entry.text));
    if !entry.id.is_empty() {
        let _ = write!(content, "<p>Error code: <code>{}</code></p>", escape(entry.id));
    }
    let _ = write!(content, "<p><a class=\"btn\" href=\"{}\">{}</a></p>", escape(&href), escape(label));
    page(state, status, entry.title, &content)
}

/// `GET /ui/style.css`.
pub(crate) async fn style(State(state): State<AppState>) -> Response {
    let response = (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        portcullis_ui::STYLE,
    )
        .into_response();
    secure(&state, response)
}

#[cfg(test)]
mod tests;
