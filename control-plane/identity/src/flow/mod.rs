//! Self-service flows without HTTP: the stored flow (kinds, the one-time code state, messages,
//! sticky values), the flow-level error with Kratos's ids, submitted bodies (form or JSON),
//! loading and saving a flow with compare-and-swap, CSRF cookie names and `return_to` checks,
//! and the kinds' state machines (`login`, `registration`, `settings`, `recovery` with
//! verification), each step ending in an [`Outcome`]. It must not depend on axum or build
//! answers: the control plane's handlers turn an `Outcome` or a [`FlowError`] into a page or
//! JSON.

pub mod login;
pub mod recovery;
pub mod registration;
pub mod settings;
pub mod start;
pub mod submit;
pub mod ui;

use std::collections::BTreeMap;

use portcullis_model::crypto;
use portcullis_model::form::parse_urlencoded;
use portcullis_store::{Store, StoreError};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::context::Identities;
use portcullis_model::identity::Identity;
use reqwest::header::HeaderValue;
use ui::UiText;

use crate::session::Issued;
pub use start::{InitQuery, start};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Login,
    Registration,
    Settings,
    Recovery,
    Verification,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Registration => "registration",
            Self::Settings => "settings",
            Self::Recovery => "recovery",
            Self::Verification => "verification",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "login" => Self::Login,
            "registration" => Self::Registration,
            "settings" => Self::Settings,
            "recovery" => Self::Recovery,
            "verification" => Self::Verification,
            _ => return None,
        })
    }
}

/// A one-time code sent for this flow. Only an HMAC of the code is kept.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CodeState {
    pub address: String,
    pub hash: String,
    pub expires_at: i64,
    pub attempts: u32,
    /// How many codes this flow has sent (resends are limited too).
    pub sent: u32,
    /// The identity the code signs in (login, recovery); `None` when the address is unknown,
    /// in which case no code can succeed but the answer looks the same.
    pub identity_id: Option<String>,
    pub used: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flow {
    pub id: String,
    pub kind: Kind,
    /// `browser` or `api`.
    #[serde(rename = "type")]
    pub flow_type: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub request_url: String,
    #[serde(default)]
    pub return_to: Option<String>,
    /// `choose_method`, `sent_email`, `passed_challenge`, `success` (Kratos's states).
    pub state: String,
    #[serde(default)]
    pub active: Option<String>,
    #[serde(default)]
    pub csrf_token: String,
    /// Settings: whose settings; recovery: who is recovering.
    #[serde(default)]
    pub identity_id: Option<String>,
    #[serde(default)]
    pub refresh: bool,
    #[serde(default)]
    pub oauth2_login_challenge: Option<String>,
    #[serde(default)]
    pub messages: Vec<UiText>,
    #[serde(default)]
    pub field_messages: BTreeMap<String, Vec<UiText>>,
    /// Values the user typed, shown again (never passwords or codes).
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    #[serde(default)]
    pub code: Option<CodeState>,
    /// Traits waiting for a code (registration by code).
    #[serde(default)]
    pub pending_traits: Option<Value>,
    /// WebAuthn ceremony state between challenge and answer.
    #[serde(default)]
    pub passkey_state: Option<Value>,
    /// Created by an operator (`POST /admin/recovery/code`) for a browser that has no CSRF
    /// cookie yet; the unguessable code is what protects the submission, as in Kratos.
    #[serde(default)]
    pub skip_csrf: bool,
    #[serde(skip)]
    pub version: i64,
}

impl Flow {
    pub fn is_api(&self) -> bool {
        self.flow_type == "api"
    }

    pub fn action(&self, state: &Identities) -> String {
        format!("{}/self-service/{}?flow={}", state.config.public_base, self.kind.as_str(), self.id)
    }

    pub fn ui_url(&self, state: &Identities) -> String {
        format!("{}/ui/{}?flow={}", state.config.public_base, self.kind.as_str(), self.id)
    }

    pub fn clear_messages(&mut self) {
        self.messages.clear();
        self.field_messages.clear();
    }

    pub fn field_error(&mut self, name: &str, text: UiText) {
        self.field_messages.entry(name.to_owned()).or_default().push(text);
    }

    pub fn has_errors(&self) -> bool {
        self.messages.iter().chain(self.field_messages.values().flatten()).any(|m| m.kind == "error")
    }
}

// --- errors -----------------------------------------------------------------------------

/// A flow-level error in Kratos's generic error shape (`{"error": {id, code, status, reason,
/// message}}`); browsers navigating get the error page instead.
#[derive(Debug)]
pub struct FlowError {
    pub status: StatusCode,
    pub id: &'static str,
    pub reason: String,
    /// Where a browser should go instead (`redirect_browser_to`).
    pub redirect: Option<String>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

impl FlowError {
    pub fn new(status: StatusCode, id: &'static str, reason: impl Into<String>) -> Self {
        Self { status, id, reason: reason.into(), redirect: None, retry_after: None }
    }
    /// Every password hashing slot is taken (see [`portcullis_keys::hashing::Hashing`]).
    pub fn busy(busy: portcullis_keys::hashing::Busy) -> Self {
        tracing::warn!("self-service request refused: every password hashing slot is busy");
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "self_service_flow_busy",
            "The server is checking too many passwords at once; try again in a moment.",
        );
        e.retry_after = Some(busy.retry_after);
        e
    }
    /// A password hash (or check) through the process-wide hashing bound.
    pub fn from_hashing(e: portcullis_keys::hashing::HashError) -> Self {
        match e {
            portcullis_keys::hashing::HashError::Busy(b) => Self::busy(b),
            portcullis_keys::hashing::HashError::Failed(e) => Self::internal(&e),
        }
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "self_service_flow_not_found", "The flow does not exist.")
    }
    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "security_csrf_violation",
            "The request was rejected to protect you from Cross-Site-Request-Forgery (CSRF): the anti-CSRF cookie \
             is missing or does not match the flow's csrf_token. Start the flow again from the same browser and \
             host (127.0.0.1 and localhost are different hosts).",
        )
    }
    pub fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error in a self-service flow");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "An internal error occurred; see the server log.",
        )
    }

    /// Kratos's generic error JSON (`{"error": {id, code, status, reason, message}}`).
    pub fn body(&self) -> Value {
        let mut e = json!({
            "id": self.id,
            "code": self.status.as_u16(),
            "status": self.status.canonical_reason().unwrap_or(""),
            "reason": self.reason,
            "message": self.status.canonical_reason().unwrap_or("error"),
        });
        if let Some(r) = &self.redirect {
            e["details"] = json!({"redirect_to": r});
        }
        let mut o = json!({ "error": e });
        if let Some(r) = &self.redirect {
            o["redirect_browser_to"] = json!(r);
        }
        o
    }
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        Self::internal(&e)
    }
}

/// A submitted body: form fields or a JSON object flattened to dotted names
/// (`{"traits": {"email": …}}` → `traits.email`).
#[derive(Default)]
pub struct Form(pub BTreeMap<String, String>);

// Passwords and codes pass through here.
impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Form {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, FlowError> {
        let content = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mut map = BTreeMap::new();
        if content.starts_with("application/json") {
            let v: Value = serde_json::from_slice(body).map_err(|e| {
                FlowError::new(StatusCode::BAD_REQUEST, "bad_request", format!("The body is not valid JSON: {e}"))
            })?;
            flatten("", &v, &mut map);
        } else {
            for (k, v) in parse_urlencoded(body) {
                map.insert(k, v);
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The chosen method: `method`, or what the fields imply when a form without JavaScript
    /// sent none (a code, a resend, a passkey answer or removal), as Kratos infers it.
    pub fn method(&self) -> Option<&str> {
        if let Some(m) = self.get("method") {
            return Some(m);
        }
        if self.0.iter().any(|(k, v)| k.starts_with("passkey_") && !v.is_empty()) {
            return Some("passkey");
        }
        (self.get("code").is_some() || self.get("resend").is_some()).then_some("code")
    }

    /// `traits.*` as a JSON object; empty strings are left out so optional traits stay unset.
    pub fn traits(&self) -> Value {
        let mut o = serde_json::Map::new();
        for (k, v) in &self.0 {
            if let Some(name) = k.strip_prefix("traits.") {
                if !v.is_empty() {
                    o.insert(name.to_owned(), json!(v.trim()));
                }
            }
        }
        Value::Object(o)
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                // Passkey answers are JSON objects the ceremony parses as a whole.
                if k.starts_with("passkey_") && v.is_object() {
                    out.insert(key, v.to_string());
                } else {
                    flatten(&key, v, out);
                }
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

// --- storage ----------------------------------------------------------------------------

pub async fn create(store: &Store, flow: &Flow) -> Result<(), FlowError> {
    let body = serde_json::to_string(flow).map_err(|e| FlowError::internal(&e))?;
    store.insert_flow(&flow.id, flow.kind.as_str(), &body, flow.expires_at).await?;
    Ok(())
}

pub async fn load(store: &Store, id: &str, kind: Kind) -> Result<Flow, FlowError> {
    let Some((stored_kind, body, version)) = store.get_flow(id).await? else {
        return Err(FlowError::not_found());
    };
    if stored_kind != kind.as_str() {
        return Err(FlowError::not_found());
    }
    let mut flow: Flow = serde_json::from_str(&body).map_err(|e| FlowError::internal(&e))?;
    flow.version = version;
    Ok(flow)
}

/// Writes the flow back; fails with 409 if another request changed it meanwhile.
pub async fn save(store: &Store, flow: &mut Flow) -> Result<(), FlowError> {
    let body = serde_json::to_string(flow).map_err(|e| FlowError::internal(&e))?;
    if !store.update_flow(&flow.id, flow.version, &body).await? {
        return Err(FlowError::new(
            StatusCode::CONFLICT,
            "self_service_flow_replaced",
            "This flow was submitted twice at the same time; try again.",
        ));
    }
    flow.version += 1;
    Ok(())
}

pub fn new_flow(
    state: &Identities,
    kind: Kind,
    api: bool,
    request_url: String,
    return_to: Option<String>,
    csrf: &str,
) -> Flow {
    let now = state.clock.now();
    let lifespan = i64::try_from(state.config.selfservice.flows.lifespan.as_secs()).unwrap_or(3600);
    Flow {
        id: crypto::uuid_v4(),
        kind,
        flow_type: if api { "api" } else { "browser" }.into(),
        issued_at: now,
        expires_at: now + lifespan,
        request_url,
        return_to,
        state: "choose_method".into(),
        active: None,
        csrf_token: csrf.to_owned(),
        identity_id: None,
        refresh: false,
        oauth2_login_challenge: None,
        messages: Vec::new(),
        field_messages: BTreeMap::new(),
        values: BTreeMap::new(),
        code: None,
        pending_traits: None,
        passkey_state: None,
        skip_csrf: false,
        version: 0,
    }
}

// --- request context ---------------------------------------------------------------------

/// The anti-CSRF cookie's name: per public URL, as Kratos (`csrf_token_<hash>`).
pub fn csrf_cookie_name(state: &Identities) -> String {
    let digest = crypto::sha256(state.config.public_base.as_bytes());
    format!("csrf_token_{}", crypto::hex(&digest[..8]))
}

pub fn csrf_cookie(state: &Identities, token: &str) -> HeaderValue {
    let mut v = format!("{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000", csrf_cookie_name(state));
    if crate::session::secure_cookies(state) {
        v.push_str("; Secure");
    }
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Some(url)` when `return_to` may be used: the public URL itself or a prefix listed in
/// `selfservice.allowed_return_urls` (compared by origin and path prefix, never by substring).
pub fn allowed_return_to(state: &Identities, return_to: &str) -> Option<String> {
    if return_to.is_empty() || return_to.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    let public = state.config.public_base.as_str();
    let allowed = std::iter::once(public.to_owned())
        .chain(state.config.selfservice.allowed_return_urls.iter().cloned())
        .chain(std::iter::once(state.config.selfservice.default_browser_return_url.clone()).filter(|u| !u.is_empty()));
    for base in allowed {
        let base = base.trim_end_matches('/');
        if return_to == base {
            return Some(return_to.to_owned());
        }
        if let Some(rest) = return_to.strip_prefix(base) {
            // `https://app.example` must not admit `https://app.example.evil`.
            if rest.starts_with('/') || rest.starts_with('?') || rest.starts_with('#') {
                return Some(return_to.to_owned());
            }
        }
    }
    None
}

/// Where a browser goes after a flow: its `return_to`, the configured default, or the
/// built-in account page.
pub fn after_url(state: &Identities, flow: &Flow) -> String {
    if let Some(r) = &flow.return_to {
        return r.clone();
    }
    let d = &state.config.selfservice.default_browser_return_url;
    if d.is_empty() { format!("{}/ui/welcome", state.config.public_base.as_str()) } else { d.clone() }
}

/// What a submitted step produced.
pub enum Outcome {
    /// Show the flow again: the next step, or the same step with messages.
    Again(Flow),
    /// The user is signed in.
    SignedIn { flow: Box<Flow>, identity: Box<Identity>, issued: Box<Issued> },
    /// Registered without a session (no `session` hook).
    Registered { flow: Flow, identity: Identity },
    /// Continue elsewhere (recovery → settings): a browser with `cookies` set, a native app
    /// with the new session's token and the settings flow's id.
    Continue { flow: Flow, to: String, cookies: Vec<HeaderValue>, session_token: String, settings_id: String },
}
