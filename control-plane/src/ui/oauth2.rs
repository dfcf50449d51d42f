//! The built-in login and consent apps (`/ui/oauth2/login`, `/ui/oauth2/consent`), the
//! defaults of `urls.login` and `urls.consent`, so the authorization-code flow works without
//! writing a login app (Hydra's most common complaint). They are clients of the same contract
//! an external app uses ([`crate::oauth2::flow`]), called in-process: they never reach into a
//! flow's row, and they decide nothing the contract would not let an external app decide.
//!
//! Login: a Portcullis identity session in this browser (fresh enough for `prompt=login` and
//! `max_age`) is accepted as the subject; otherwise the browser signs in through the
//! self-service login and comes back. `amr` follows RFC 8176 from the session's methods:
//! password → `pwd`, e-mailed code → `otp`, passkey → `hwk` (a hardware-bound key) and `user`
//! (user verification); `acr` is the session's AAL (`aal1`/`aal2`). Consent: first-party
//! (`skip_consent`) clients and remembered consents pass silently; otherwise the user sees the
//! client and scopes and allows or denies with a CSRF-protected form.

use std::fmt::Write as _;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use super::{browser_session, escape, internal, page, param, public, redirect};
use crate::app::AppState;
use crate::crypto;
use crate::error::{FormParams, OAuthError};
use crate::identity::session;
use crate::identity::url_segment;
use crate::oauth2::flow::{self, ConsentAccept, ContractError, LoginAccept, Reject};

const CONSENT_CSRF_COOKIE: &str = "portcullis_oauth2_consent_csrf";

/// The page `/oauth2/auth` shows when it cannot trust the client or redirect URI.
pub fn error_page(state: &AppState, status: StatusCode, error: &str, description: &str) -> Response {
    let content = format!(
        "<h1>This sign-in request cannot be completed</h1>\n<p>{}</p><p>Error code: <code>{}</code></p>\
         <p>Go back to the application and try again. If it keeps happening, tell the application's owner.</p>",
        escape(description),
        escape(error)
    );
    page(state, status, "Sign-in request failed", &content)
}

fn contract_failure(state: &AppState, e: ContractError) -> Response {
    match e {
        ContractError::Handled(to) => redirect(state, &to),
        ContractError::NotFound => error_page(
            state,
            StatusCode::NOT_FOUND,
            "not_found",
            "This sign-in request is unknown. Start again from the application.",
        ),
        ContractError::Expired => error_page(
            state,
            StatusCode::BAD_REQUEST,
            "request_unauthorized",
            "This sign-in request has expired. Start again from the application.",
        ),
        ContractError::Invalid(m) => error_page(state, StatusCode::BAD_REQUEST, "invalid_request", &m),
        ContractError::Store(e) => internal(state, &e),
    }
}

/// RFC 8176 method references for the session's authentication methods.
pub fn amr_of(methods: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in methods.as_array().into_iter().flatten() {
        let refs: &[&str] = match m["method"].as_str().unwrap_or_default() {
            "password" => &["pwd"],
            "code" | "code_recovery" | "link_recovery" => &["otp"],
            "passkey" | "webauthn" => &["hwk", "user"],
            _ => &[],
        };
        for r in refs {
            if !out.iter().any(|x| x == r) {
                out.push((*r).to_owned());
            }
        }
    }
    out
}

/// `GET /ui/oauth2/login?login_challenge=`.
pub async fn login(State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let Some(challenge) = param(query.as_deref(), "login_challenge") else {
        return contract_failure(&state, ContractError::NotFound);
    };
    let (flow, _) = match flow::login_request(&state.oauth2(), &challenge).await {
        Ok(found) => found,
        Err(e) => return contract_failure(&state, e),
    };
    if flow.body.login_skip {
        let accept = LoginAccept { subject: flow.body.login_subject.clone(), ..LoginAccept::default() };
        return match flow::accept_login(&state.oauth2(), &challenge, accept, None, false).await {
            Ok(to) => redirect(&state, &to),
            Err(e) => contract_failure(&state, e),
        };
    }
    let current = match browser_session(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return internal(&state, &e),
    };
    let now = state.clock.now();
    let request = &flow.body.request;
    if let Some((auth, _)) = &current {
        let s = &auth.session;
        // prompt=login: a sign-in that happened after this request was made.
        let fresh = !(request.prompts("login") || request.prompts("select_account"))
            || s.authenticated_at >= flow.row.requested_at;
        let young = request.max_age.is_none_or(|max| now.saturating_sub(s.authenticated_at) <= max);
        if fresh && young {
            let accept = LoginAccept {
                subject: auth.identity.id.clone(),
                // Remembered for as long as the identity session lives; /oauth2/auth also
                // checks that session on every use, so signing out ends it.
                remember: true,
                remember_for: s.expires_at.saturating_sub(now).max(1),
                acr: s.aal.clone(),
                amr: amr_of(&s.methods),
                identity_provider_session_id: s.id.clone(),
                ..LoginAccept::default()
            };
            return match flow::accept_login(&state.oauth2(), &challenge, accept, Some(s.authenticated_at), true).await {
                Ok(to) => redirect(&state, &to),
                Err(e) => contract_failure(&state, e),
            };
        }
    }
    let back = format!("{}/ui/oauth2/login?login_challenge={}", public(&state), url_segment(&challenge));
    let mut to = format!("{}/self-service/login/browser?return_to={}", public(&state), url_segment(&back));
    if current.is_some() {
        to.push_str("&refresh=true");
    }
    redirect(&state, &to)
}

/// The consent page's CSP also admits the client's redirect URI: browsers apply `form-action`
/// to the redirects that follow a form submission, and the last one leads there.
fn with_client_origin(state: &AppState, mut response: Response, redirect_uri: &str) -> Response {
    let Ok(url) = reqwest::Url::parse(redirect_uri) else { return response };
    let origin = url.origin();
    let extra = if origin.is_tuple() { origin.ascii_serialization() } else { format!("{}:", url.scheme()) };
    let policy = super::csp(state).to_str().unwrap_or_default().replacen(
        "form-action 'self'",
        &format!("form-action 'self' {extra}"),
        1,
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// Whether the browser's Portcullis session belongs to the consent's subject (checked only
/// when the built-in login page produced the subject).
async fn same_user(state: &AppState, flow: &flow::Flow, headers: &HeaderMap) -> Result<bool, crate::error::StoreError> {
    let Some(login) = &flow.body.login else { return Ok(false) };
    if !login.local_identity_session {
        return Ok(true);
    }
    Ok(browser_session(state, headers).await?.is_some_and(|(a, _)| a.identity.id == login.accept.subject))
}

/// Grants what was asked; with the `email` scope and a Portcullis identity, the ID token (and
/// `/userinfo`) carry `email` and `email_verified`.
async fn everything_requested(
    state: &AppState,
    flow: &flow::Flow,
    remember: bool,
) -> Result<ConsentAccept, crate::error::StoreError> {
    let mut session = flow::ConsentSession::default();
    let local = flow.body.login.as_ref().filter(|l| l.local_identity_session);
    if let (Some(login), true) = (local, flow.body.request.scope.iter().any(|s| s == "email")) {
        if let Some(identity) = state.store.get_identity(&login.accept.subject).await? {
            let address = identity.body.traits["email"].as_str().map(str::to_owned);
            if let Some(email) = address {
                let verified = identity.body.verifiable_addresses.iter().any(|a| a.verified && a.value == email);
                session.id_token.insert("email".into(), email.into());
                session.id_token.insert("email_verified".into(), verified.into());
            }
        }
    }
    Ok(ConsentAccept {
        grant_scope: flow.body.request.scope.clone(),
        grant_access_token_audience: flow.body.request.audience.clone(),
        remember,
        session,
        ..ConsentAccept::default()
    })
}

/// `GET /ui/oauth2/consent?consent_challenge=`.
pub async fn consent(State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let Some(challenge) = param(query.as_deref(), "consent_challenge") else {
        return contract_failure(&state, ContractError::NotFound);
    };
    let (flow, json) = match flow::consent_request(&state.oauth2(), &challenge).await {
        Ok(found) => found,
        Err(e) => return contract_failure(&state, e),
    };
    if flow.body.consent_skip {
        let accept = match everything_requested(&state, &flow, false).await {
            Ok(a) => a,
            Err(e) => return internal(&state, &e),
        };
        return match flow::accept_consent(&state.oauth2(), &challenge, accept).await {
            Ok(to) => redirect(&state, &to),
            Err(e) => contract_failure(&state, e),
        };
    }
    match same_user(&state, &flow, &headers).await {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                &state,
                StatusCode::FORBIDDEN,
                "request_forbidden",
                "This consent request belongs to another account or browser. Start again from the application.",
            );
        }
        Err(e) => return internal(&state, &e),
    }
    let client = &json["client"];
    let name = client["client_name"].as_str().filter(|n| !n.is_empty()).or(client["client_id"].as_str()).unwrap_or("");
    let csrf = flow::handle();
    let mut content = format!(
        "<h1>Allow {} to access your account?</h1>\n<p><strong>{}</strong> asks for:</p>\n<ul class=\"scopes\">",
        escape(name),
        escape(name)
    );
    if flow.body.request.scope.is_empty() {
        content.push_str("<li>Your sign-in only (no extra permissions)</li>");
    }
    for s in &flow.body.request.scope {
        let _ = write!(content, "<li><code>{}</code>{}</li>", escape(s), escape(scope_text(s)));
    }
    content.push_str("</ul>");
    let _ = write!(
        content,
        "<form method=\"post\" action=\"{}\">\
         <input type=\"hidden\" name=\"consent_challenge\" value=\"{}\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
         <p><label><input type=\"checkbox\" name=\"remember\" value=\"true\"> Remember my choice for this application</label></p>\
         <p><button type=\"submit\" name=\"action\" value=\"allow\" class=\"btn\">Allow</button> \
         <button type=\"submit\" name=\"action\" value=\"deny\" class=\"btn secondary\">Deny</button></p></form>",
        escape(&format!("{}/ui/oauth2/consent", public(&state))),
        escape(&challenge),
        escape(&csrf)
    );
    let mut response = page(&state, StatusCode::OK, "Allow access", &content);
    let mut c = format!("{CONSENT_CSRF_COOKIE}={csrf}; Path=/ui/oauth2/consent; HttpOnly; SameSite=Strict");
    if session::secure_cookies(&state) {
        c.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    with_client_origin(&state, response, &flow.body.request.redirect_uri)
}

fn scope_text(scope: &str) -> &'static str {
    match scope {
        "openid" => " — confirm who you are",
        "offline_access" => " — stay connected when you are away",
        "email" => " — your e-mail address",
        "profile" => " — your profile",
        _ => "",
    }
}

/// `POST /ui/oauth2/consent`: Allow or Deny.
pub async fn decide(State(state): State<AppState>, headers: HeaderMap, form: FormParams<OAuthError>) -> Response {
    let field = |name: &str| form.all(name).next().unwrap_or_default().to_owned();
    let (challenge, csrf) = (field("consent_challenge"), field("csrf_token"));
    let cookie_ok =
        session::cookie(&headers, CONSENT_CSRF_COOKIE).is_some_and(|c| !csrf.is_empty() && crypto::secret_eq(c, &csrf));
    if !cookie_ok {
        return super::error_page(&state, "security_csrf_violation", StatusCode::FORBIDDEN);
    }
    let flow = match flow::consent_request(&state.oauth2(), &challenge).await {
        Ok((flow, _)) => flow,
        Err(e) => return contract_failure(&state, e),
    };
    match same_user(&state, &flow, &headers).await {
        Ok(true) => {}
        Ok(false) => return super::error_page(&state, "security_csrf_violation", StatusCode::FORBIDDEN),
        Err(e) => return internal(&state, &e),
    }
    let result = match field("action").as_str() {
        "allow" => match everything_requested(&state, &flow, field("remember") == "true").await {
            Ok(accept) => flow::accept_consent(&state.oauth2(), &challenge, accept).await,
            Err(e) => return internal(&state, &e),
        },
        "deny" => {
            let reject = Reject {
                error: "access_denied".into(),
                error_description: "The user denied the request.".into(),
                ..Reject::default()
            };
            flow::reject_consent(&state.oauth2(), &challenge, reject).await
        }
        _ => return error_page(&state, StatusCode::BAD_REQUEST, "invalid_request", "action: must be allow or deny."),
    };
    let response = match result {
        Ok(to) => redirect(&state, &to),
        Err(e) => return contract_failure(&state, e),
    };
    with_client_origin(&state, response, &flow.body.request.redirect_uri)
}

const LOGOUT_CSRF_COOKIE: &str = "portcullis_oauth2_logout_csrf";

/// Ends the Portcullis identity session behind the OAuth2 login session (and this browser's),
/// then accepts the logout; returns where to send the browser.
async fn end_sessions(state: &AppState, challenge: &str, headers: &HeaderMap) -> Result<String, ContractError> {
    let (_, body) = crate::oauth2::logout::load(&state.oauth2(), challenge).await?;
    let mut ids: Vec<String> = Vec::new();
    if let Some(s) = state.store.get_login_session(&body.sid).await? {
        if !s.identity_provider_session_id.is_empty() {
            ids.push(s.identity_provider_session_id);
        }
    }
    if let Some((auth, _)) = browser_session(state, headers).await? {
        if auth.identity.id == body.subject {
            ids.push(auth.session.id);
        }
    }
    for id in &ids {
        session::revoke(&state.store, &state.rules, state.clock.now(), crate::store::sessions::Deactivate::One(id))
            .await?;
    }
    crate::oauth2::logout::accept(&state.oauth2(), challenge).await
}

fn signed_out(state: &AppState, to: &str) -> Response {
    let mut r = redirect(state, to);
    r.headers_mut().append(header::SET_COOKIE, session::clear_session_cookie(state));
    r
}

/// `GET /ui/oauth2/logout?logout_challenge=`: asks, unless the client skips logout consent.
pub async fn logout(State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let Some(challenge) = param(query.as_deref(), "logout_challenge") else {
        return contract_failure(&state, ContractError::NotFound);
    };
    let (body, json) = match crate::oauth2::logout::request_json(&state.oauth2(), &challenge).await {
        Ok(found) => found,
        Err(e) => return contract_failure(&state, e),
    };
    if json["client"]["skip_logout_consent"] == true {
        return match end_sessions(&state, &challenge, &headers).await {
            Ok(to) => signed_out(&state, &to),
            Err(e) => contract_failure(&state, e),
        };
    }
    let name = json["client"]["client_name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .or(body.client_id.as_deref())
        .map(|n| format!(" (asked by {n})"))
        .unwrap_or_default();
    let csrf = flow::handle();
    let content = format!(
        "<h1>Sign out?</h1>\n<p>Sign out of this browser and the applications you signed in to{}?</p>\
         <form method=\"post\" action=\"{}\">\
         <input type=\"hidden\" name=\"logout_challenge\" value=\"{}\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
         <p><button type=\"submit\" name=\"action\" value=\"yes\" class=\"btn\">Sign out</button> \
         <button type=\"submit\" name=\"action\" value=\"no\" class=\"btn secondary\">Stay signed in</button></p></form>",
        escape(&name),
        escape(&format!("{}/ui/oauth2/logout", public(&state))),
        escape(&challenge),
        escape(&csrf)
    );
    let mut response = page(&state, StatusCode::OK, "Sign out", &content);
    let mut c = format!("{LOGOUT_CSRF_COOKIE}={csrf}; Path=/ui/oauth2/logout; HttpOnly; SameSite=Strict");
    if session::secure_cookies(&state) {
        c.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    match &body.post_logout_redirect_uri {
        Some(uri) => with_client_origin(&state, response, uri),
        None => response,
    }
}

/// `POST /ui/oauth2/logout`.
pub async fn logout_decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: FormParams<OAuthError>,
) -> Response {
    let field = |name: &str| form.all(name).next().unwrap_or_default().to_owned();
    let (challenge, csrf) = (field("logout_challenge"), field("csrf_token"));
    let cookie_ok =
        session::cookie(&headers, LOGOUT_CSRF_COOKIE).is_some_and(|c| !csrf.is_empty() && crypto::secret_eq(c, &csrf));
    if !cookie_ok {
        return super::error_page(&state, "security_csrf_violation", StatusCode::FORBIDDEN);
    }
    let target = crate::oauth2::logout::load(&state.oauth2(), &challenge)
        .await
        .ok()
        .and_then(|(_, b)| b.post_logout_redirect_uri);
    let response = match field("action").as_str() {
        "yes" => match end_sessions(&state, &challenge, &headers).await {
            Ok(to) => signed_out(&state, &to),
            Err(e) => return contract_failure(&state, e),
        },
        "no" => match crate::oauth2::logout::reject(&state.oauth2(), &challenge).await {
            Ok(()) => redirect(&state, &format!("{}/ui/welcome", public(&state))),
            Err(e) => return contract_failure(&state, e),
        },
        _ => return error_page(&state, StatusCode::BAD_REQUEST, "invalid_request", "action: must be yes or no."),
    };
    match target {
        Some(uri) => with_client_origin(&state, response, &uri),
        None => response,
    }
}
