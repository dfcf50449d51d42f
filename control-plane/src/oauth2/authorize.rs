//! `/oauth2/auth` (GET and POST form), the authorization endpoint of the code flow: it
//! validates the request, sends the browser to the login app (`urls.login?login_challenge=`),
//! takes it back with `login_verifier`, sends it to the consent app (`urls.consent`), takes it
//! back with `consent_verifier`, and finally redirects to the client with a code
//! ([`crate::oauth2::code::issue`]) or an error.
//!
//! Errors go to the client's `redirect_uri` (with `state` and RFC 9207 `iss`) only once the
//! client and that exact URI are known to be valid; before that the browser gets a 400 page
//! (JSON when it asks for JSON), so this endpoint can never be used as an open redirect. Every
//! flow is bound to the browser that started it by a per-flow cookie whose digest the flow
//! keeps: a verifier replayed in another browser is refused. This module mints no tokens.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::crypto;
use crate::error::{OAuthError, StoreError};
use crate::identity::session;
use crate::oauth2::OAuthParams;
use crate::oauth2::code::{self, Grant};
use crate::oauth2::flow::{self, AuthRequest, Flow, FlowBody, LoginOutcome, Reject};
use crate::store::oauth2_flows::Handle;
pub use portcullis_oauth2::authorize::with_query;
use portcullis_oauth2::authorize::{Rejected, SessionCookie, consent_skippable, outcome_of, validate};
use portcullis_oauth2::{OAuth2Error, Params};

/// The remembered OAuth2 login session (Hydra's `ory_hydra_session`).
pub const AUTH_SESSION_COOKIE: &str = "portcullis_oauth2_authentication_session";
/// Prefix of the per-flow cookie that binds a flow to its browser (Hydra's login CSRF cookie).
pub const FLOW_COOKIE_PREFIX: &str = "portcullis_oauth2_flow_";

/// Why the endpoint stopped.
#[derive(Debug)]
enum Failure {
    /// The client or redirect URI cannot be trusted: a page, never a redirect.
    Page(OAuthError),
    /// An RFC 6749 §4.1.2.1 error sent to the client's redirect URI.
    Redirect { redirect_uri: String, state: Option<String>, error: String, description: String },
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Page(OAuthError::server_error(&e))
    }
}

/// The one mapping of the core's refusals: a page is a 400 naming the RFC code.
impl From<Rejected> for Failure {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::Page(OAuth2Error::Refused { code, description }) => {
                page_error(StatusCode::BAD_REQUEST, code.as_str(), description)
            }
            Rejected::Page(e) => Failure::Page(OAuthError::server_error(&e)),
            Rejected::Redirect { redirect_uri, state, error, description } => {
                Failure::Redirect { redirect_uri, state, error, description }
            }
        }
    }
}

fn page_error(status: StatusCode, error: &'static str, description: impl Into<String>) -> Failure {
    Failure::Page(OAuthError { status, error, description: description.into() })
}

pub async fn get(State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let pairs = crate::error::parse_urlencoded(query.as_deref().unwrap_or("").as_bytes());
    handle(&state, pairs, &headers).await
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, form: OAuthParams) -> Response {
    handle(&state, form.0, &headers).await
}

async fn handle(state: &AppState, pairs: Vec<(String, String)>, headers: &HeaderMap) -> Response {
    let params = OAuthParams::new(pairs);
    let result = match (params.single("login_verifier"), params.single("consent_verifier")) {
        (Err(e), _) | (_, Err(e)) => Err(Failure::Page(e)),
        (Ok(Some(v)), _) => after_login(state, v, headers).await,
        (_, Ok(Some(v))) => after_consent(state, v, headers).await,
        _ => start(state, &params, headers).await,
    };
    let mut response = match result {
        Ok(r) => r,
        Err(f) => failure_response(state, f, headers),
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn failure_response(state: &AppState, f: Failure, headers: &HeaderMap) -> Response {
    match f {
        Failure::Page(e) => {
            let wants_json = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/json"));
            if wants_json {
                e.into_response()
            } else if !state.config.urls.error.is_empty() {
                // Hydra's `urls.error`: the operator's own error page, told what went wrong.
                let pairs = [("error", e.error.to_owned()), ("error_description", e.description)];
                found(&with_query(&state.config.urls.error, &pairs))
            } else {
                crate::ui::oauth2::error_page(state, e.status, e.error, &e.description)
            }
        }
        Failure::Redirect { redirect_uri, state: st, error, description } => {
            let mut pairs = vec![("error", error), ("error_description", description)];
            if let Some(s) = st {
                pairs.push(("state", s));
            }
            pairs.push(("iss", issuer(state)));
            found(&with_query(&redirect_uri, &pairs))
        }
    }
}

fn issuer(state: &AppState) -> String {
    state.config.urls.self_.issuer.clone()
}

fn found(location: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn app_url(configured: &str, state: &AppState, builtin: &str) -> String {
    if configured.is_empty() {
        format!("{}{builtin}", state.config.urls.self_.public_base())
    } else {
        configured.to_owned()
    }
}

fn cookie(state: &AppState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut v = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        v.push_str(&format!("; Max-Age={}", age.max(0)));
    }
    if session::secure_cookies(state) {
        v.push_str("; Secure");
    }
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn flow_cookie_name(flow_id: &str) -> String {
    format!("{FLOW_COOKIE_PREFIX}{}", &crypto::sha256_hex(flow_id.as_bytes())[..16])
}

fn ttl(state: &AppState) -> i64 {
    i64::try_from(state.config.ttl.login_consent_request.as_secs()).unwrap_or(i64::MAX / 4)
}

fn redirect_error(flow: &Flow, error: &str, description: impl Into<String>) -> Failure {
    Failure::Redirect {
        redirect_uri: flow.body.request.redirect_uri.clone(),
        state: flow.body.request.state.clone(),
        error: error.to_owned(),
        description: description.into(),
    }
}

async fn start(state: &AppState, p: &OAuthParams, headers: &HeaderMap) -> Result<Response, Failure> {
    let request = validate(&state.oauth2(), Params(&p.0)).await?;
    let now = state.clock.now();
    let hinted_subject = request.oidc_context["id_token_hint_claims"]["sub"].as_str().map(str::to_owned);
    let token = session::cookie(headers, AUTH_SESSION_COOKIE);
    let remembered = portcullis_oauth2::authorize::remembered_login(&state.oauth2(), token).await?.filter(|s| {
        // A hint for another user means this browser's login does not count.
        hinted_subject.as_ref().is_none_or(|sub| *sub == s.subject)
            && !request.prompts("login")
            && !request.prompts("select_account")
            && request.max_age.is_none_or(|max| now.saturating_sub(s.authenticated_at) <= max)
    });
    let silent = remembered.is_some()
        || (request.prompts("none")
            && builtin_login_would_accept(state, headers, &request, hinted_subject.as_deref()).await?);
    if request.prompts("none") && !silent {
        return Err(Failure::Redirect {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            error: "login_required".into(),
            description: "prompt=none was requested, but the user is not signed in (or must sign in again).".into(),
        });
    }
    let body = FlowBody {
        session_id: remembered.as_ref().map_or_else(crypto::uuid_v4, |s| s.id.clone()),
        login_skip: remembered.is_some(),
        login_subject: remembered.as_ref().map(|s| s.subject.clone()).unwrap_or_default(),
        remembered: remembered.as_ref().map(outcome_of),
        request,
        login: None,
        login_error: None,
        consent_requested_at: 0,
        consent_skip: false,
        consent: None,
        consent_error: None,
    };
    let id = crypto::uuid_v4();
    let csrf = flow::handle();
    let challenge = flow::create(&state.oauth2(), &body, &csrf, &id).await?;
    let login = app_url(&state.config.urls.login, state, "/ui/oauth2/login");
    let mut r = found(&with_query(&login, &[("login_challenge", challenge)]));
    r.headers_mut().append(header::SET_COOKIE, cookie(state, &flow_cookie_name(&id), &csrf, Some(ttl(state) * 2)));
    Ok(r)
}

/// With the built-in login page: whether it will accept this browser's Portcullis session
/// without showing anything (so `prompt=none` can go ahead after the OAuth2 login session
/// expired while the identity session slid on).
async fn builtin_login_would_accept(
    state: &AppState,
    headers: &HeaderMap,
    request: &AuthRequest,
    hinted_subject: Option<&str>,
) -> Result<bool, StoreError> {
    if !state.config.urls.login.is_empty() {
        return Ok(false);
    }
    // The built-in page reads the cookie only: judge by the cookie only.
    let mut cookies = HeaderMap::new();
    for v in headers.get_all(header::COOKIE) {
        cookies.append(header::COOKIE, v.clone());
    }
    let Some(auth) = session::authenticate(state, &cookies).await? else { return Ok(false) };
    let now = state.clock.now();
    Ok(hinted_subject.is_none_or(|sub| sub == auth.identity.id)
        && request.max_age.is_none_or(|max| now.saturating_sub(auth.session.authenticated_at) <= max))
}

/// Loads the flow a verifier names and checks that this browser started it.
async fn flow_for_verifier(state: &AppState, by: Handle, verifier: &str, headers: &HeaderMap) -> Result<Flow, Failure> {
    let Some(flow) = flow::load(&state.oauth2(), by, verifier).await? else {
        return Err(page_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The verifier is unknown or has been used already. Start again from the application.",
        ));
    };
    let bound = session::cookie(headers, &flow_cookie_name(&flow.row.id))
        .is_some_and(|c| crypto::secret_eq(&crypto::token_signature(c), &flow.row.csrf));
    if !bound {
        return Err(page_error(
            StatusCode::FORBIDDEN,
            "request_forbidden",
            "This sign-in was started in another browser (its cookie is missing or does not match). Start again \
             from the application in this browser.",
        ));
    }
    if flow.row.expires_at <= state.clock.now() {
        return Err(redirect_error(&flow, "invalid_request", "The authorization request has expired."));
    }
    Ok(flow)
}

async fn finish_with_error(state: &AppState, flow: &Flow, from: &str, reject: &Reject) -> Result<Response, Failure> {
    if !state.store.advance_oauth2_flow(&flow.row.id, from, flow::STAGE_DONE, &Default::default()).await? {
        return Err(used());
    }
    Err(redirect_error(flow, &reject.code(), reject.description()))
}

fn used() -> Failure {
    page_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "The verifier is unknown or has been used already. Start again from the application.",
    )
}

async fn after_login(state: &AppState, verifier: &str, headers: &HeaderMap) -> Result<Response, Failure> {
    let mut flow = flow_for_verifier(state, Handle::LoginVerifier, verifier, headers).await?;
    if flow.row.stage == flow::STAGE_LOGIN_REJECTED {
        let reject = flow.body.login_error.clone().unwrap_or_default();
        return finish_with_error(state, &flow, flow::STAGE_LOGIN_REJECTED, &reject).await;
    }
    if flow.row.stage != flow::STAGE_LOGIN_ACCEPTED {
        return Err(used());
    }
    let Some(login) = flow.body.login.clone() else { return Err(used()) };
    let request = flow.body.request.clone();
    let skip_consent = consent_skippable(&state.oauth2(), &flow, &login.accept.subject).await?;
    if request.prompts("none") && !skip_consent {
        if !state
            .store
            .advance_oauth2_flow(&flow.row.id, flow::STAGE_LOGIN_ACCEPTED, flow::STAGE_DONE, &Default::default())
            .await?
        {
            return Err(used());
        }
        return Err(redirect_error(
            &flow,
            "consent_required",
            "prompt=none was requested, but the user has not consented to this client and these scopes.",
        ));
    }
    let Some(challenge) = flow::start_consent(&state.oauth2(), &mut flow, skip_consent).await? else {
        return Err(used());
    };
    let session_cookie = establish_login_session(state, &flow, &login).await?;
    let consent = app_url(&state.config.urls.consent, state, "/ui/oauth2/consent");
    let mut r = found(&with_query(&consent, &[("consent_challenge", challenge)]));
    if let Some(c) = session_cookie {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(r)
}

/// Stores the login session ([`portcullis_oauth2::authorize::establish_login_session`]) and
/// returns the cookie to set (or clear).
async fn establish_login_session(
    state: &AppState,
    flow: &Flow,
    login: &LoginOutcome,
) -> Result<Option<HeaderValue>, StoreError> {
    let cap = i64::try_from(state.config.session.lifespan.as_secs()).unwrap_or(i64::MAX / 4);
    Ok(match portcullis_oauth2::authorize::establish_login_session(&state.oauth2(), flow, login, cap).await? {
        SessionCookie::Keep => None,
        SessionCookie::Set(t, max_age) => Some(cookie(state, AUTH_SESSION_COOKIE, &t, max_age)),
        SessionCookie::Clear => Some(cookie(state, AUTH_SESSION_COOKIE, "", Some(0))),
    })
}

async fn after_consent(state: &AppState, verifier: &str, headers: &HeaderMap) -> Result<Response, Failure> {
    let flow = flow_for_verifier(state, Handle::ConsentVerifier, verifier, headers).await?;
    if flow.row.stage == flow::STAGE_CONSENT_REJECTED {
        let reject = flow.body.consent_error.clone().unwrap_or_default();
        return finish_with_error(state, &flow, flow::STAGE_CONSENT_REJECTED, &reject).await;
    }
    let (Some(login), Some(consent)) = (flow.body.login.clone(), flow.body.consent.clone()) else {
        return Err(used());
    };
    if flow.row.stage != flow::STAGE_CONSENT_ACCEPTED
        || !state
            .store
            .advance_oauth2_flow(&flow.row.id, flow::STAGE_CONSENT_ACCEPTED, flow::STAGE_DONE, &Default::default())
            .await?
    {
        return Err(used());
    }
    flow::record_consent(&state.oauth2(), &flow, &consent).await?;
    let r = &flow.body.request;
    let mut granted: Vec<String> = Vec::new();
    for s in &consent.grant_scope {
        if !granted.contains(s) {
            granted.push(s.clone());
        }
    }
    let grant = Grant {
        client_id: flow.row.client_id.clone(),
        subject: login.accept.subject.clone(),
        scope: granted.clone(),
        audience: consent.grant_access_token_audience.clone(),
        redirect_uri: r.redirect_uri_param.clone(),
        code_challenge: r.code_challenge.clone(),
        code_challenge_method: r.code_challenge_method.clone(),
        nonce: r.nonce.clone(),
        auth_time: login.auth_time,
        acr: login.accept.acr.clone(),
        amr: login.accept.amr.clone(),
        sid: flow.body.session_id.clone(),
        consent_id: flow.row.id.clone(),
        access_token_claims: consent.session.access_token.clone(),
        id_token_claims: consent.session.id_token.clone(),
        requested_at: flow.row.requested_at,
    };
    let code = code::issue(&state.oauth2(), &grant).await?;
    let mut pairs = vec![("code", code), ("scope", granted.join(" "))];
    if let Some(s) = &r.state {
        pairs.push(("state", s.clone()));
    }
    pairs.push(("iss", issuer(state)));
    let mut response = found(&with_query(&r.redirect_uri, &pairs));
    // The flow is over: its binding cookie can go.
    response.headers_mut().append(header::SET_COOKIE, cookie(state, &flow_cookie_name(&flow.row.id), "", Some(0)));
    Ok(response)
}

#[cfg(test)]
mod tests;
