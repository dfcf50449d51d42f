//! The login and consent contract (Hydra's "bring your own UI" API): the login and consent
//! requests a browser flow passes through, their accept and reject operations (behind the
//! admin endpoints `/admin/oauth2/auth/requests/{login,consent}[/accept|/reject]`), and the
//! remembered consents and their revocation. The built-in pages call the same functions.
//!
//! A flow is one row keyed by the SHA-256 of short random handles (challenge, verifier), never
//! by the handles themselves, and never by an encrypted copy of the flow (Hydra 2.2's 1 kB
//! challenges). Every stage change is a compare-and-swap, so each challenge is handled once
//! and each verifier used once. This module does not talk to browsers (the control plane's
//! `authorize` does), does not answer HTTP (the admin handlers there map [`ContractError`])
//! and does not mint tokens.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use portcullis_model::identity::url_segment;

use crate::Ctx;
use crate::client::ClientBody;
use crate::crypto;
use crate::rfc3339;
use crate::store::oauth2_flows::{Advance, ConsentRow, FlowRow, Handle};
use crate::store::{ClientRow, StoreError};

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

/// A new random handle (challenge, verifier, cookie value): 256 bits, 43 characters.
pub fn handle() -> String {
    crypto::b64url(&crypto::random_bytes::<32>())
}

fn ttl(ctx: &Ctx<'_>) -> i64 {
    i64::try_from(ctx.ttl.login_consent_request.as_secs()).unwrap_or(i64::MAX / 4)
}

fn encode(body: &FlowBody) -> Result<String, StoreError> {
    serde_json::to_string(body).map_err(|e| StoreError::corrupt("oauth2_flows.body", e))
}

/// Stores a new flow; returns the login challenge. `csrf` is the browser-binding cookie value.
pub async fn create(ctx: &Ctx<'_>, body: &FlowBody, csrf: &str, id: &str) -> Result<String, StoreError> {
    let challenge = handle();
    let now = ctx.clock.now();
    ctx.store
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
            expires_at: now.saturating_add(ttl(ctx).saturating_mul(2)),
        })
        .await?;
    Ok(challenge)
}

pub async fn load(ctx: &Ctx<'_>, by: Handle, handle: &str) -> Result<Option<Flow>, StoreError> {
    if handle.is_empty() || handle.len() > 128 {
        return Ok(None);
    }
    let Some(row) = ctx.store.get_oauth2_flow_by(by, &crypto::token_signature(handle)).await? else {
        return Ok(None);
    };
    let body: FlowBody = serde_json::from_str(&row.body).map_err(|e| StoreError::corrupt("oauth2_flows.body", e))?;
    Ok(Some(Flow { row, body }))
}

async fn load_at(ctx: &Ctx<'_>, by: Handle, challenge: &str, stage: &str) -> Result<Flow, ContractError> {
    let flow = load(ctx, by, challenge).await?.ok_or(ContractError::NotFound)?;
    if flow.row.stage != stage {
        return Err(ContractError::Handled(flow.body.request.request_url.clone()));
    }
    let started = if stage == STAGE_CONSENT { flow.body.consent_requested_at } else { flow.row.requested_at };
    if started.saturating_add(ttl(ctx)) <= ctx.clock.now() {
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

async fn client_of(ctx: &Ctx<'_>, flow: &Flow) -> Result<Value, StoreError> {
    Ok(match ctx.store.get_client(&flow.row.client_id).await? {
        Some(row) => client_json(&row),
        None => json!({"client_id": flow.row.client_id}),
    })
}

fn public<'a>(ctx: &Ctx<'a>) -> &'a str {
    ctx.urls.self_.public_base()
}

fn verifier_url(ctx: &Ctx<'_>, name: &str, verifier: &str) -> String {
    format!("{}/oauth2/auth?{name}={verifier}", public(ctx))
}

// --- login ----------------------------------------------------------------------------

/// `oAuth2LoginRequest`.
pub async fn login_request(ctx: &Ctx<'_>, challenge: &str) -> Result<(Flow, Value), ContractError> {
    let flow = load_at(ctx, Handle::LoginChallenge, challenge, STAGE_LOGIN).await?;
    let b = &flow.body;
    let json = json!({
        "challenge": challenge,
        "skip": b.login_skip,
        "subject": b.login_subject,
        "client": client_of(ctx, &flow).await?,
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
    ctx: &Ctx<'_>,
    challenge: &str,
    accept: LoginAccept,
    auth_time: Option<i64>,
    local: bool,
) -> Result<String, ContractError> {
    let mut flow = load_at(ctx, Handle::LoginChallenge, challenge, STAGE_LOGIN).await?;
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
        _ => auth_time.unwrap_or_else(|| ctx.clock.now()),
    };
    flow.body.login = Some(LoginOutcome { accept, auth_time, local_identity_session: local });
    let verifier = handle();
    let body = encode(&flow.body)?;
    let hash = crypto::token_signature(&verifier);
    let change = Advance { login_verifier: Some(&hash), body: Some(&body), ..Advance::default() };
    if !ctx.store.advance_oauth2_flow(&flow.row.id, STAGE_LOGIN, STAGE_LOGIN_ACCEPTED, &change).await? {
        return Err(ContractError::Handled(flow.body.request.request_url));
    }
    Ok(verifier_url(ctx, "login_verifier", &verifier))
}

pub async fn reject_login(ctx: &Ctx<'_>, challenge: &str, reject: Reject) -> Result<String, ContractError> {
    let mut flow = load_at(ctx, Handle::LoginChallenge, challenge, STAGE_LOGIN).await?;
    flow.body.login_error = Some(reject);
    let verifier = handle();
    let body = encode(&flow.body)?;
    let hash = crypto::token_signature(&verifier);
    let change = Advance { login_verifier: Some(&hash), body: Some(&body), ..Advance::default() };
    if !ctx.store.advance_oauth2_flow(&flow.row.id, STAGE_LOGIN, STAGE_LOGIN_REJECTED, &change).await? {
        return Err(ContractError::Handled(flow.body.request.request_url));
    }
    Ok(verifier_url(ctx, "login_verifier", &verifier))
}

/// Moves an accepted login on to consent; returns the consent challenge.
pub async fn start_consent(ctx: &Ctx<'_>, flow: &mut Flow, skip: bool) -> Result<Option<String>, StoreError> {
    let challenge = handle();
    flow.body.consent_requested_at = ctx.clock.now();
    flow.body.consent_skip = skip;
    let body = encode(&flow.body)?;
    let hash = crypto::token_signature(&challenge);
    let change = Advance { consent_challenge: Some(&hash), body: Some(&body), ..Advance::default() };
    let moved = ctx.store.advance_oauth2_flow(&flow.row.id, STAGE_LOGIN_ACCEPTED, STAGE_CONSENT, &change).await?;
    Ok(moved.then_some(challenge))
}

// --- consent --------------------------------------------------------------------------

/// `oAuth2ConsentRequest`.
pub async fn consent_request(ctx: &Ctx<'_>, challenge: &str) -> Result<(Flow, Value), ContractError> {
    let flow = load_at(ctx, Handle::ConsentChallenge, challenge, STAGE_CONSENT).await?;
    let mut json = consent_request_json(&flow, client_of(ctx, &flow).await?);
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

pub async fn accept_consent(ctx: &Ctx<'_>, challenge: &str, accept: ConsentAccept) -> Result<String, ContractError> {
    let mut flow = load_at(ctx, Handle::ConsentChallenge, challenge, STAGE_CONSENT).await?;
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
    finish_consent(ctx, flow, STAGE_CONSENT_ACCEPTED).await
}

pub async fn reject_consent(ctx: &Ctx<'_>, challenge: &str, reject: Reject) -> Result<String, ContractError> {
    let mut flow = load_at(ctx, Handle::ConsentChallenge, challenge, STAGE_CONSENT).await?;
    flow.body.consent_error = Some(reject);
    finish_consent(ctx, flow, STAGE_CONSENT_REJECTED).await
}

async fn finish_consent(ctx: &Ctx<'_>, flow: Flow, to: &str) -> Result<String, ContractError> {
    let verifier = handle();
    let body = encode(&flow.body)?;
    let hash = crypto::token_signature(&verifier);
    let change = Advance { consent_verifier: Some(&hash), body: Some(&body), ..Advance::default() };
    if !ctx.store.advance_oauth2_flow(&flow.row.id, STAGE_CONSENT, to, &change).await? {
        return Err(ContractError::Handled(flow.body.request.request_url));
    }
    Ok(verifier_url(ctx, "consent_verifier", &verifier))
}

/// Records an accepted consent when its verifier is used (`oAuth2ConsentSession`).
pub async fn record_consent(ctx: &Ctx<'_>, flow: &Flow, accept: &ConsentAccept) -> Result<(), StoreError> {
    let now = ctx.clock.now();
    let client = client_of(ctx, flow).await?;
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
    ctx.store
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
    ctx: &Ctx<'_>,
    subject: &str,
    client_id: &str,
    scope: &[String],
    audience: &[String],
) -> Result<bool, StoreError> {
    for row in ctx.store.remembered_consents(subject, client_id, ctx.clock.now()).await? {
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
pub async fn revoke_tokens_for_consents(ctx: &Ctx<'_>, consent_ids: &[String]) -> Result<(), StoreError> {
    let mut revoked = 0;
    for id in consent_ids {
        revoked += ctx.store.revoke_tokens(crate::store::tokens::Selector::Consent(id)).await?;
    }
    if revoked > 0 {
        ctx.revocations.publish(ctx.store, ctx.clock.now()).await?;
        tracing::info!(consents = consent_ids.len(), tokens = revoked, "tokens of revoked consents revoked");
    }
    Ok(())
}

/// Revokes `subject`'s consents (to `client`, or only `consent_id`, or all) and the tokens
/// issued under them.
pub async fn revoke_consents(
    ctx: &Ctx<'_>,
    subject: &str,
    client: Option<&str>,
    consent_id: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let ids = ctx.store.delete_consents(subject, client, consent_id).await?;
    revoke_tokens_for_consents(ctx, &ids).await?;
    Ok(ids)
}

/// A request for a subject's remembered consents (`oAuth2ConsentSession`s), newest first:
/// optionally one login session's, paged by `(handled_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentList {
    pub subject: String,
    pub login_session_id: Option<String>,
    pub page_size: i64,
    pub after: Option<(i64, String)>,
}

impl ConsentList {
    /// Reads `subject` (required), `login_session_id`, `page_size` and `page_token`.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ContractError> {
        let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
        let subject = get("subject")
            .ok_or_else(|| ContractError::Invalid("subject: the query parameter is required".into()))?
            .to_owned();
        let page_size = match get("page_size") {
            None => crate::keyset::DEFAULT_PAGE_SIZE,
            Some(v) => {
                v.parse::<i64>().ok().filter(|n| (1..=crate::keyset::MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
                    ContractError::Invalid(format!(
                        "page_size: must be a number from 1 to {}",
                        crate::keyset::MAX_PAGE_SIZE
                    ))
                })?
            }
        };
        let after = match get("page_token") {
            Some(t) => {
                Some(portcullis_model::paging::parse_token(t).map_err(|e| ContractError::Invalid(e.to_string()))?)
            }
            None => None,
        };
        Ok(Self { subject, login_session_id: get("login_session_id").map(str::to_owned), page_size, after })
    }

    /// The `Link` header value on `url` (scheme, host and path), `next` when there is more.
    pub fn link(&self, url: &str, next: Option<&str>) -> String {
        let base = format!("{url}?subject={}&page_size={}", url_segment(&self.subject), self.page_size);
        let mut link = format!("<{base}&page_token=>; rel=\"first\"");
        if let Some(next) = next {
            link.push_str(&format!(",<{base}&page_token={next}>; rel=\"next\""));
        }
        link
    }
}

/// One page of the consents `q` asks for, and the next page's token when there is more.
pub async fn list_consent_sessions(ctx: &Ctx<'_>, q: &ConsentList) -> Result<(Vec<Value>, Option<String>), StoreError> {
    let position = q.after.as_ref().map(|(at, id)| (*at, id.as_str()));
    let mut rows = ctx
        .store
        .list_consents(&q.subject, q.login_session_id.as_deref(), position, q.page_size.saturating_add(1))
        .await?;
    let size = usize::try_from(q.page_size).unwrap_or(0);
    let more = rows.len() > size;
    rows.truncate(size);
    let next = rows.last().filter(|_| more).map(|last| portcullis_model::paging::token(last.handled_at, &last.id));
    Ok((rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect(), next))
}
