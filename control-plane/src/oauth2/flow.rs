//! The login and consent contract (Hydra's "bring your own UI" API): the login and consent
//! requests a browser flow passes through, their accept and reject operations, and the admin
//! endpoints over them (`/admin/oauth2/auth/requests/{login,consent}[/accept|/reject]`), plus
//! the remembered consents and login sessions (`/admin/oauth2/auth/sessions/...`). The
//! built-in pages call the same functions in-process.
//!
//! A flow is one row keyed by the SHA-256 of short random handles (challenge, verifier), never
//! by the handles themselves, and never by an encrypted copy of the flow (Hydra 2.2's 1 kB
//! challenges). Every stage change is a compare-and-swap, so each challenge is handled once
//! and each verifier used once. This module does not talk to browsers (`authorize` does) and
//! does not mint tokens.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::client::ClientBody;
use crate::crypto;
use crate::error::{ApiError, ApiJson, StoreError, parse_urlencoded};
use crate::rfc3339;
use crate::store::ClientRow;
use crate::store::oauth2_flows::{Advance, ConsentRow, FlowRow, Handle};

pub const STAGE_LOGIN: &str = "login";
pub const STAGE_LOGIN_ACCEPTED: &str = "login_accepted";
pub const STAGE_LOGIN_REJECTED: &str = "login_rejected";
pub const STAGE_CONSENT: &str = "consent";
pub const STAGE_CONSENT_ACCEPTED: &str = "consent_accepted";
pub const STAGE_CONSENT_REJECTED: &str = "consent_rejected";
pub const STAGE_DONE: &str = "done";

/// A validated authorization request, as `/oauth2/auth` understood it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    /// Where the answer goes: the `redirect_uri` parameter, or the client's only one.
    pub redirect_uri: String,
    /// The parameter as sent (`None` when omitted), for the code's `Grant`.
    pub redirect_uri_param: Option<String>,
    pub scope: Vec<String>,
    pub audience: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub oidc_context: Value,
    pub request_url: String,
}

impl AuthRequest {
    pub fn prompts(&self, p: &str) -> bool {
        self.prompt.iter().any(|x| x == p)
    }
}

/// The login app's accept (`acceptOAuth2LoginRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginAccept {
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub remember: bool,
    #[serde(default)]
    pub remember_for: i64,
    #[serde(default)]
    pub acr: String,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub context: Value,
    #[serde(default)]
    pub identity_provider_session_id: String,
    #[serde(default)]
    pub extend_session_lifespan: bool,
    /// Pairwise subjects are not supported; accepted for SDK compatibility and ignored.
    #[serde(default)]
    pub force_subject_identifier: String,
}

/// What the login stage decided, with what only in-process callers may set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginOutcome {
    pub accept: LoginAccept,
    /// When the user authenticated (unix seconds).
    pub auth_time: i64,
    /// Set by the built-in login page: the OAuth2 login session lives only as long as the
    /// Portcullis identity session `identity_provider_session_id`.
    #[serde(default)]
    pub local_identity_session: bool,
}

/// `acceptOAuth2ConsentRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentAccept {
    #[serde(default)]
    pub grant_scope: Vec<String>,
    #[serde(default)]
    pub grant_access_token_audience: Vec<String>,
    #[serde(default)]
    pub remember: bool,
    #[serde(default)]
    pub remember_for: i64,
    #[serde(default)]
    pub context: Value,
    #[serde(default)]
    pub session: ConsentSession,
    /// Hydra sets this itself; accepted and ignored.
    #[serde(default)]
    pub handled_at: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSession {
    #[serde(default)]
    pub access_token: Map<String, Value>,
    #[serde(default)]
    pub id_token: Map<String, Value>,
}

/// `rejectOAuth2Request`: the error the client will receive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub error_hint: String,
    #[serde(default)]
    pub error_debug: String,
    #[serde(default)]
    pub status_code: i64,
}

impl Reject {
    /// The RFC 6749 error code to send: the app's if it is a plain token, else `access_denied`.
    pub fn code(&self) -> String {
        let valid = !self.error.is_empty()
            && self.error.len() <= 64
            && self.error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
        if valid { self.error.clone() } else { "access_denied".into() }
    }

    pub fn description(&self) -> String {
        match (self.error_description.is_empty(), self.error_hint.is_empty()) {
            (true, true) => "The resource owner or authorization server denied the request.".into(),
            (false, true) => self.error_description.clone(),
            (true, false) => self.error_hint.clone(),
            (false, false) => format!("{} {}", self.error_description, self.error_hint),
        }
    }
}

/// Everything a flow carries from `/oauth2/auth` to the code (the row's `body`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowBody {
    pub request: AuthRequest,
    /// The login session id (`sid`): the remembered one when `login_skip`, else a new one.
    pub session_id: String,
    pub login_skip: bool,
    /// The remembered session's subject when `login_skip`.
    pub login_subject: String,
    /// The remembered session's acr/amr/auth_time, used when a skipped login is accepted.
    #[serde(default)]
    pub remembered: Option<LoginOutcome>,
    #[serde(default)]
    pub login: Option<LoginOutcome>,
    #[serde(default)]
    pub login_error: Option<Reject>,
    #[serde(default)]
    pub consent_requested_at: i64,
    #[serde(default)]
    pub consent_skip: bool,
    #[serde(default)]
    pub consent: Option<ConsentAccept>,
    #[serde(default)]
    pub consent_error: Option<Reject>,
}

/// A loaded flow.
#[derive(Debug, Clone)]
pub struct Flow {
    pub row: FlowRow,
    pub body: FlowBody,
}

/// Why a login or consent operation could not be done.
#[derive(Debug)]
pub enum ContractError {
    /// No such challenge (or a malformed one).
    NotFound,
    /// Already handled: the browser should start again at `redirect_to`.
    Handled(String),
    /// Older than `ttl.login_consent_request`.
    Expired,
    /// A bad accept or reject body.
    Invalid(String),
    Store(StoreError),
}

impl From<StoreError> for ContractError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl IntoResponse for ContractError {
    fn into_response(self) -> Response {
        match self {
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
}

/// A new random handle (challenge, verifier, cookie value): 256 bits, 43 characters.
pub fn handle() -> String {
    crypto::b64url(&crypto::random_bytes::<32>())
}

fn ttl(state: &AppState) -> i64 {
    i64::try_from(state.config.ttl.login_consent_request.as_secs()).unwrap_or(i64::MAX / 4)
}

fn encode(body: &FlowBody) -> Result<String, StoreError> {
    serde_json::to_string(body).map_err(|e| StoreError::corrupt("oauth2_flows.body", e))
}

/// Stores a new flow; returns the login challenge. `csrf` is the browser-binding cookie value.
pub async fn create(state: &AppState, body: &FlowBody, csrf: &str, id: &str) -> Result<String, StoreError> {
    let challenge = handle();
    let now = state.clock.now();
    state
        .store
        .insert_oauth2_flow(&FlowRow {
            id: id.to_owned(),
            client_id: body.request.client_id.clone(),
            stage: STAGE_LOGIN.into(),
            login_challenge: crypto::token_signature(&challenge),
            login_verifier: None,
            consent_challenge: None,
            consent_verifier: None,
            csrf: crypto::token_signature(csrf),
            body: encode(body)?,
            requested_at: now,
            // Two request lifetimes: the login's, then the consent's.
            expires_at: now.saturating_add(ttl(state).saturating_mul(2)),
        })
        .await?;
    Ok(challenge)
}

pub async fn load(state: &AppState, by: Handle, handle: &str) -> Result<Option<Flow>, StoreError> {
    if handle.is_empty() || handle.len() > 128 {
        return Ok(None);
    }
    let Some(row) = state.store.get_oauth2_flow_by(by, &crypto::token_signature(handle)).await? else {
        return Ok(None);
    };
    let body: FlowBody = serde_json::from_str(&row.body).map_err(|e| StoreError::corrupt("oauth2_flows.body", e))?;
    Ok(Some(Flow { row, body }))
}

async fn load_at(state: &AppState, by: Handle, challenge: &str, stage: &str) -> Result<Flow, ContractError> {
    let flow = load(state, by, challenge).await?.ok_or(ContractError::NotFound)?;
    if flow.row.stage != stage {
        return Err(ContractError::Handled(flow.body.request.request_url.clone()));
    }
    let started = if stage == STAGE_CONSENT { flow.body.consent_requested_at } else { flow.row.requested_at };
    if started.saturating_add(ttl(state)) <= state.clock.now() {
        return Err(ContractError::Expired);
    }
    Ok(flow)
}

/// The client as the contract shows it (Hydra's `oAuth2Client`, never the secret).
pub fn client_json(row: &ClientRow) -> Value {
    match serde_json::from_str::<ClientBody>(&row.body) {
        Ok(body) => crate::client::render(&row.client_id, &body, None, row.created_at, row.updated_at),
        Err(_) => json!({"client_id": row.client_id}),
    }
}

async fn client_of(state: &AppState, flow: &Flow) -> Result<Value, StoreError> {
    Ok(match state.store.get_client(&flow.row.client_id).await? {
        Some(row) => client_json(&row),
        None => json!({"client_id": flow.row.client_id}),
    })
}

fn public(state: &AppState) -> &str {
    state.config.urls.self_.public_base()
}

fn verifier_url(state: &AppState, name: &str, verifier: &str) -> String {
    format!("{}/oauth2/auth?{name}={verifier}", public(state))
}

// --- login ----------------------------------------------------------------------------

/// `oAuth2LoginRequest`.
pub async fn login_request(state: &AppState, challenge: &str) -> Result<(Flow, Value), ContractError> {
    let flow = load_at(state, Handle::LoginChallenge, challenge, STAGE_LOGIN).await?;
    let b = &flow.body;
    let json = json!({
        "challenge": challenge,
        "skip": b.login_skip,
        "subject": b.login_subject,
        "client": client_of(state, &flow).await?,
        "request_url": b.request.request_url,
        "requested_scope": b.request.scope,
        "requested_access_token_audience": b.request.audience,
        "session_id": b.session_id,
        "oidc_context": b.request.oidc_context,
    });
    Ok((flow, json))
}

/// Accepts the login; returns `redirect_to`. `auth_time` and `local` come only from the
/// built-in page (an external app's accept means "authenticated now").
pub async fn accept_login(
    state: &AppState,
    challenge: &str,
    accept: LoginAccept,
    auth_time: Option<i64>,
    local: bool,
) -> Result<String, ContractError> {
    let mut flow = load_at(state, Handle::LoginChallenge, challenge, STAGE_LOGIN).await?;
    if accept.subject.is_empty() {
        return Err(ContractError::Invalid("subject: is required".into()));
    }
    if accept.remember_for < 0 {
        return Err(ContractError::Invalid("remember_for: must not be negative".into()));
    }
    if !accept.context.is_null() && !accept.context.is_object() {
        return Err(ContractError::Invalid("context: must be an object".into()));
    }
    if flow.body.login_skip && accept.subject != flow.body.login_subject {
        return Err(ContractError::Invalid(
            "subject: does not match the subject of the remembered login session (skip was true)".into(),
        ));
    }
    let mut accept = accept;
    let mut local = local;
    let auth_time = match (&flow.body.remembered, flow.body.login_skip) {
        (Some(r), true) => {
            // A skipped login is the remembered one: keep how the user really signed in.
            if accept.amr.is_empty() {
                accept.amr = r.accept.amr.clone();
            }
            if accept.acr.is_empty() {
                accept.acr = r.accept.acr.clone();
            }
            if accept.identity_provider_session_id.is_empty() {
                accept.identity_provider_session_id = r.accept.identity_provider_session_id.clone();
            }
            local |= r.local_identity_session;
            r.auth_time
        }
        _ => auth_time.unwrap_or_else(|| state.clock.now()),
    };
    flow.body.login = Some(LoginOutcome { accept, auth_time, local_identity_session: local });
    let verifier = handle();
    let body = encode(&flow.body)?;
    let hash = crypto::token_signature(&verifier);
    let change = Advance { login_verifier: Some(&hash), body: Some(&body), ..Advance::default() };
    if !state.store.advance_oauth2_flow(&flow.row.id, STAGE_LOGIN, STAGE_LOGIN_ACCEPTED, &change).await? {
        return Err(ContractError::Handled(flow.body.request.request_url));
    }
    Ok(verifier_url(state, "login_verifier", &verifier))
}

pub async fn reject_login(state: &AppState, challenge: &str, reject: Reject) -> Result<String, ContractError> {
    let mut flow = load_at(state, Handle::LoginChallenge, challenge, STAGE_LOGIN).await?;
    flow.body.login_error = Some(reject);
    let verifier = handle();
    let body = encode(&flow.body)?;
    let hash = crypto::token_signature(&verifier);
    let change = Advance { login_verifier: Some(&hash), body: Some(&body), ..Advance::default() };
    if !state.store.advance_oauth2_flow(&flow.row.id, STAGE_LOGIN, STAGE_LOGIN_REJECTED, &change).await? {
        return Err(ContractError::Handled(flow.body.request.request_url));
    }
    Ok(verifier_url(state, "login_verifier", &verifier))
}

/// Moves an accepted login on to consent; returns the consent challenge.
pub async fn start_consent(state: &AppState, flow: &mut Flow, skip: bool) -> Result<Option<String>, StoreError> {
    let challenge = handle();
    flow.body.consent_requested_at = state.clock.now();
    flow.body.consent_skip = skip;
    let body = encode(&flow.body)?;
    let hash = crypto::token_signature(&challenge);
    let change = Advance { consent_challenge: Some(&hash), body: Some(&body), ..Advance::default() };
    let moved = state.store.advance_oauth2_flow(&flow.row.id, STAGE_LOGIN_ACCEPTED, STAGE_CONSENT, &change).await?;
    Ok(moved.then_some(challenge))
}

// --- consent --------------------------------------------------------------------------

/// `oAuth2ConsentRequest`.
pub async fn consent_request(state: &AppState, challenge: &str) -> Result<(Flow, Value), ContractError> {
    let flow = load_at(state, Handle::ConsentChallenge, challenge, STAGE_CONSENT).await?;
    let mut json = consent_request_json(&flow, client_of(state, &flow).await?);
    json["challenge"] = challenge.into();
    Ok((flow, json))
}

fn consent_request_json(flow: &Flow, client: Value) -> Value {
    let b = &flow.body;
    let login = b.login.as_ref();
    json!({
        "challenge": "",
        "consent_request_id": flow.row.id,
        "skip": b.consent_skip,
        "subject": login.map(|l| l.accept.subject.as_str()).unwrap_or_default(),
        "client": client,
        "request_url": b.request.request_url,
        "requested_scope": b.request.scope,
        "requested_access_token_audience": b.request.audience,
        // Challenges are stored hashed; the login challenge cannot be shown again.
        "login_challenge": "",
        "login_session_id": b.session_id,
        "acr": login.map(|l| l.accept.acr.as_str()).unwrap_or_default(),
        "amr": login.map(|l| l.accept.amr.clone()).unwrap_or_default(),
        "context": login.map(|l| l.accept.context.clone()).unwrap_or(Value::Null),
        "oidc_context": b.request.oidc_context,
    })
}

pub async fn accept_consent(state: &AppState, challenge: &str, accept: ConsentAccept) -> Result<String, ContractError> {
    let mut flow = load_at(state, Handle::ConsentChallenge, challenge, STAGE_CONSENT).await?;
    if accept.remember_for < 0 {
        return Err(ContractError::Invalid("remember_for: must not be negative".into()));
    }
    if !accept.context.is_null() && !accept.context.is_object() {
        return Err(ContractError::Invalid("context: must be an object".into()));
    }
    // The user can only grant what the client asked for.
    if let Some(s) = accept.grant_scope.iter().find(|s| !flow.body.request.scope.contains(s)) {
        return Err(ContractError::Invalid(format!("grant_scope: {s:?} was not requested")));
    }
    if let Some(a) = accept.grant_access_token_audience.iter().find(|a| !flow.body.request.audience.contains(a)) {
        return Err(ContractError::Invalid(format!("grant_access_token_audience: {a:?} was not requested")));
    }
    flow.body.consent = Some(accept);
    finish_consent(state, flow, STAGE_CONSENT_ACCEPTED).await
}

pub async fn reject_consent(state: &AppState, challenge: &str, reject: Reject) -> Result<String, ContractError> {
    let mut flow = load_at(state, Handle::ConsentChallenge, challenge, STAGE_CONSENT).await?;
    flow.body.consent_error = Some(reject);
    finish_consent(state, flow, STAGE_CONSENT_REJECTED).await
}

async fn finish_consent(state: &AppState, flow: Flow, to: &str) -> Result<String, ContractError> {
    let verifier = handle();
    let body = encode(&flow.body)?;
    let hash = crypto::token_signature(&verifier);
    let change = Advance { consent_verifier: Some(&hash), body: Some(&body), ..Advance::default() };
    if !state.store.advance_oauth2_flow(&flow.row.id, STAGE_CONSENT, to, &change).await? {
        return Err(ContractError::Handled(flow.body.request.request_url));
    }
    Ok(verifier_url(state, "consent_verifier", &verifier))
}

/// Records an accepted consent when its verifier is used (`oAuth2ConsentSession`).
pub async fn record_consent(state: &AppState, flow: &Flow, accept: &ConsentAccept) -> Result<(), StoreError> {
    let now = state.clock.now();
    let client = client_of(state, flow).await?;
    let expires_at = if accept.remember_for == 0 { 0 } else { now.saturating_add(accept.remember_for) };
    let body = json!({
        "consent_request": consent_request_json(flow, client),
        "consent_request_id": flow.row.id,
        "grant_scope": accept.grant_scope,
        "grant_access_token_audience": accept.grant_access_token_audience,
        "handled_at": rfc3339(now),
        "remember": accept.remember,
        "remember_for": accept.remember_for,
        "context": accept.context,
        "session": {"access_token": accept.session.access_token, "id_token": accept.session.id_token},
    });
    state
        .store
        .insert_consent(&ConsentRow {
            id: flow.row.id.clone(),
            subject: flow.body.login.as_ref().map(|l| l.accept.subject.clone()).unwrap_or_default(),
            client_id: flow.row.client_id.clone(),
            login_session_id: flow.body.session_id.clone(),
            remember: accept.remember,
            handled_at: now,
            expires_at,
            body: body.to_string(),
        })
        .await
}

/// Whether a remembered consent of `subject` to `client_id` covers `scope` and `audience`.
pub async fn remembered_consent_covers(
    state: &AppState,
    subject: &str,
    client_id: &str,
    scope: &[String],
    audience: &[String],
) -> Result<bool, StoreError> {
    for row in state.store.remembered_consents(subject, client_id, state.clock.now()).await? {
        let Ok(body) = serde_json::from_str::<Value>(&row.body) else { continue };
        let list = |k: &str| -> Vec<String> {
            body[k]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let (granted, aud) = (list("grant_scope"), list("grant_access_token_audience"));
        if scope.iter().all(|s| granted.contains(s)) && audience.iter().all(|a| aud.contains(a)) {
            return Ok(true);
        }
    }
    Ok(false)
}

// --- revocation hook ------------------------------------------------------------------

/// Revokes every token issued under the consents `consent_ids` (`Grant.consent_id`) and tells
/// the filters at once.
pub async fn revoke_tokens_for_consents(state: &AppState, consent_ids: &[String]) -> Result<(), StoreError> {
    let mut revoked = 0;
    for id in consent_ids {
        revoked += state.store.revoke_tokens(crate::store::tokens::Selector::Consent(id)).await?;
    }
    if revoked > 0 {
        state.rules.refresh_revocations(&state.store, state.clock.now()).await?;
        tracing::info!(consents = consent_ids.len(), tokens = revoked, "tokens of revoked consents revoked");
    }
    Ok(())
}

/// Revokes `subject`'s consents (to `client`, or only `consent_id`, or all) and the tokens
/// issued under them.
pub async fn revoke_consents(
    state: &AppState,
    subject: &str,
    client: Option<&str>,
    consent_id: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let ids = state.store.delete_consents(subject, client, consent_id).await?;
    revoke_tokens_for_consents(state, &ids).await?;
    Ok(ids)
}

// --- admin handlers -------------------------------------------------------------------

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
        Err(e) => e.into_response(),
    }
}

pub async fn admin_get_login(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let challenge = match required(q.as_deref(), "login_challenge") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match login_request(&state, &challenge).await {
        Ok((_, json)) => Json(json).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn admin_accept_login(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ApiJson(body): ApiJson<LoginAccept>,
) -> Response {
    match required(q.as_deref(), "login_challenge") {
        Ok(c) => redirect_to(accept_login(&state, &c, body, None, false).await),
        Err(e) => e.into_response(),
    }
}

pub async fn admin_reject_login(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ApiJson(body): ApiJson<Reject>,
) -> Response {
    match required(q.as_deref(), "login_challenge") {
        Ok(c) => redirect_to(reject_login(&state, &c, body).await),
        Err(e) => e.into_response(),
    }
}

pub async fn admin_get_consent(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let challenge = match required(q.as_deref(), "consent_challenge") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match consent_request(&state, &challenge).await {
        Ok((_, json)) => Json(json).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn admin_accept_consent(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ApiJson(body): ApiJson<ConsentAccept>,
) -> Response {
    match required(q.as_deref(), "consent_challenge") {
        Ok(c) => redirect_to(accept_consent(&state, &c, body).await),
        Err(e) => e.into_response(),
    }
}

pub async fn admin_reject_consent(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ApiJson(body): ApiJson<Reject>,
) -> Response {
    match required(q.as_deref(), "consent_challenge") {
        Ok(c) => redirect_to(reject_consent(&state, &c, body).await),
        Err(e) => e.into_response(),
    }
}

const DEFAULT_PAGE_SIZE: i64 = 250;
const MAX_PAGE_SIZE: i64 = 1000;

/// `GET /admin/oauth2/auth/sessions/consent?subject=`: `[oAuth2ConsentSession]`, newest first.
pub async fn admin_list_consents(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = q.as_deref();
    let subject = required(q, "subject")?;
    let login_session_id = query_param(q, "login_session_id").filter(|v| !v.is_empty());
    let page_size = match query_param(q, "page_size").filter(|v| !v.is_empty()) {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => v.parse::<i64>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
            ApiError::invalid_request(format!("page_size: must be a number from 1 to {MAX_PAGE_SIZE}"))
        })?,
    };
    let after = match query_param(q, "page_token").filter(|v| !v.is_empty()) {
        Some(t) => Some(crate::paging::parse_token(&t)?),
        None => None,
    };
    let position = after.as_ref().map(|(at, id)| (*at, id.as_str()));
    let mut rows = state.store.list_consents(&subject, login_session_id.as_deref(), position, page_size + 1).await?;
    let more = rows.len() as i64 > page_size;
    rows.truncate(usize::try_from(page_size).unwrap_or(0));
    let items: Vec<Value> = rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let base = format!(
        "http://{host}/admin/oauth2/auth/sessions/consent?subject={}&page_size={page_size}",
        crate::identity::url_segment(&subject)
    );
    let mut link = format!("<{base}&page_token=>; rel=\"first\"");
    if let (true, Some(last)) = (more, rows.last()) {
        link.push_str(&format!(
            ",<{base}&page_token={}>; rel=\"next\"",
            crate::paging::token(last.handled_at, &last.id)
        ));
    }
    let mut res = Json(items).into_response();
    if let Ok(v) = HeaderValue::from_str(&link) {
        res.headers_mut().insert(header::LINK, v);
    }
    Ok(res)
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
    revoke_consents(&state, &subject, client, consent_id.as_deref()).await?;
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
                crate::oauth2::logout::end_login_session(&state, &s.subject, sid).await?;
            }
        }
        _ => {
            state.store.delete_login_sessions(subject.as_deref(), sid.as_deref()).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
