//! Passkeys (WebAuthn discoverable credentials, through `webauthn-rs`) for the login,
//! registration and settings flows, and `GET /.well-known/ory/webauthn.js`, the browser half
//! of the ceremonies (Kratos's contract; see `webauthn.js` beside this file).
//!
//! A ceremony spans two requests. The server keeps webauthn-rs's state in the flow
//! (`flow.passkey_state`, stored server-side and never part of the flow's JSON) and shows the
//! challenge in a hidden node; webauthn.js runs `navigator.credentials.*` and posts the answer.
//! Login is usernameless: the credential's user handle (a UUID, the identity id for identities
//! that registered with a passkey) names the identity. Registration and "add a passkey" start
//! their ceremony only after the server has checked what it can (traits, the session), so a
//! device never stores a passkey for an account that cannot be created.
//!
//! This module does not decide the registration policy, the identity's state or session
//! freshness (its callers do) and never issues sessions.

use std::sync::LazyLock;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    CreationChallengeResponse, CredentialID, DiscoverableAuthentication, Passkey, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::flow::ui::{self, UiNode, UiText, msg};
use super::flow::{Flow, FlowError, Form};
use super::{CODE, Credential, Identity, PASSKEY, PASSWORD};
use crate::app::AppState;
use crate::config::Config;
use crate::error::StartupError;

const GROUP: &str = "passkey";
const SCRIPT_PATH: &str = "/.well-known/ory/webauthn.js";
const SCRIPT: &str = include_str!("webauthn.js");

/// `sha512-…` for the script node's `integrity` attribute.
static INTEGRITY: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha512::digest(SCRIPT.as_bytes());
    format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(digest))
});

static ETAG: LazyLock<String> = LazyLock::new(|| format!("\"{}\"", crate::crypto::sha256_hex(SCRIPT.as_bytes())));

// --- the relying party ------------------------------------------------------------------

/// The relying party, resolved from `selfservice.methods.passkey` and the public URL at
/// startup. `None` inside: passkeys are off (disabled, or impossible with this public URL).
#[derive(Debug, Default)]
pub struct Passkeys {
    webauthn: Option<Webauthn>,
}

impl Passkeys {
    /// Explicit `rp` settings that cannot work are startup errors naming the key. When
    /// nothing under `rp` is set and the public URL cannot be a relying party (an IP address
    /// such as the default `127.0.0.1`, or plain http on a host other than localhost),
    /// passkeys are switched off with a warning instead: the defaults must still start.
    pub fn from_config(config: &Config) -> Result<Self, StartupError> {
        let method = &config.selfservice.methods.passkey;
        if !method.enabled {
            return Ok(Self::default());
        }
        let Some((rp_id, origins)) = relying_party(config)? else {
            return Ok(Self::default());
        };
        let rp_key = "config key selfservice.methods.passkey.rp";
        let invalid = |e: webauthn_rs::prelude::WebauthnError| StartupError(format!("{rp_key}: {e}"));
        let name =
            if method.rp.display_name.trim().is_empty() { rp_id.as_str() } else { method.rp.display_name.trim() };
        let mut builder = WebauthnBuilder::new(&rp_id, &origins[0]).map_err(invalid)?.rp_name(name);
        for origin in &origins[1..] {
            builder = builder.append_allowed_origin(origin);
        }
        let webauthn = builder.build().map_err(invalid)?;
        tracing::info!(rp_id = %rp_id, origins = ?origins.iter().map(Url::as_str).collect::<Vec<_>>(), "passkeys enabled");
        Ok(Self { webauthn: Some(webauthn) })
    }

    pub fn available(&self) -> bool {
        self.webauthn.is_some()
    }
}

/// `(rp id, allowed origins)`, `None` when passkeys must be off (logged).
fn relying_party(config: &Config) -> Result<Option<(String, Vec<Url>)>, StartupError> {
    let rp = &config.selfservice.methods.passkey.rp;
    let key = "config key selfservice.methods.passkey.rp";
    let public = config.urls.self_.public_base();
    let configured = !rp.id.trim().is_empty() || !rp.origins.is_empty();
    let off = |why: String| -> Result<Option<(String, Vec<Url>)>, StartupError> {
        tracing::warn!(
            "passkeys are off: {why}. Serve the public URL from a domain name (for local testing \
             http://localhost:4444 via urls.self.public) or set selfservice.methods.passkey.rp.id and \
             rp.origins; selfservice.methods.passkey.enabled: false silences this warning"
        );
        Ok(None)
    };
    let public_url = Url::parse(public)
        .map_err(|e| StartupError(format!("config key urls.self.public: {public:?} is not a URL: {e}")))?;
    let rp_id = if rp.id.trim().is_empty() {
        match public_url.domain() {
            Some(d) => d.to_ascii_lowercase(),
            None if configured => {
                return Err(StartupError(format!(
                    "{key}.id: must be set, because the public URL {public} has an IP address for a host and \
                     browsers accept only domain names as relying party ids"
                )));
            }
            None => {
                return off(format!(
                    "the public URL {public} has an IP address for a host, which browsers refuse as a relying party id"
                ));
            }
        }
    } else {
        let id = rp.id.trim().to_ascii_lowercase();
        if id.contains(['/', ':', '@', ' ']) || id.starts_with('.') || id.ends_with('.') {
            return Err(StartupError(format!(
                "{key}.id: {:?} must be a bare domain name such as example.com (no scheme, port or path)",
                rp.id
            )));
        }
        if id.parse::<std::net::IpAddr>().is_ok() {
            return Err(StartupError(format!(
                "{key}.id: {id:?} is an IP address; browsers accept only domain names (use localhost for local testing)"
            )));
        }
        id
    };
    let (origins, origin_key): (Vec<Url>, Vec<String>) = if rp.origins.is_empty() {
        let origin = Url::parse(&public_url.origin().ascii_serialization())
            .map_err(|e| StartupError(format!("config key urls.self.public: {public:?}: {e}")))?;
        (vec![origin], vec!["config key urls.self.public".into()])
    } else {
        let mut out = Vec::new();
        let mut keys = Vec::new();
        for (i, o) in rp.origins.iter().enumerate() {
            let k = format!("{key}.origins[{i}]");
            let url = Url::parse(o.trim()).map_err(|e| StartupError(format!("{k}: {o:?} is not a URL: {e}")))?;
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return Err(StartupError(format!(
                    "{k}: {o:?} must be an origin (scheme://host[:port]) without a path"
                )));
            }
            out.push(url);
            keys.push(k);
        }
        (out, keys)
    };
    for (origin, k) in origins.iter().zip(&origin_key) {
        let host = origin.domain().map(str::to_ascii_lowercase);
        let derived = !configured;
        let Some(host) = host else {
            if derived {
                return off(format!("the public URL {public} has an IP address for a host"));
            }
            return Err(StartupError(format!(
                "{k}: {origin} has an IP address for a host; browsers refuse passkeys there"
            )));
        };
        if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
            let k = if rp.origins.is_empty() { format!("{key}.id") } else { k.clone() };
            return Err(StartupError(format!(
                "{k}: the origin {origin} is not on the relying party id {rp_id:?} (its host must be {rp_id} or a \
                 subdomain of it); set selfservice.methods.passkey.rp.origins to the origins browsers use"
            )));
        }
        let local = host == "localhost" || host.ends_with(".localhost");
        match origin.scheme() {
            "https" => {}
            "http" if local => {}
            "http" if derived => {
                return off(format!("the public URL {public} is plain http on a host other than localhost"));
            }
            "http" => {
                return Err(StartupError(format!(
                    "{k}: browsers run passkeys only on https:// origins or http://localhost, not on {origin}"
                )));
            }
            other => return Err(StartupError(format!("{k}: scheme {other:?} is not http or https"))),
        }
    }
    Ok(Some((rp_id, origins)))
}

fn webauthn(state: &AppState) -> Option<&Webauthn> {
    state.passkeys.webauthn.as_ref()
}

// --- what is stored ---------------------------------------------------------------------

/// The `passkey` credential's config: every passkey of the identity, one user handle.
#[derive(Serialize, Deserialize)]
struct Stored {
    credentials: Vec<StoredPasskey>,
    user_handle: String,
}

#[derive(Serialize, Deserialize)]
struct StoredPasskey {
    /// The credential id, base64url.
    id: String,
    display_name: String,
    added_at: String,
    passkey: Passkey,
}

fn stored(credential: &Credential) -> Option<Stored> {
    match serde_json::from_value(credential.config.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "a stored passkey credential cannot be read");
            None
        }
    }
}

/// The ceremony in progress, kept in `flow.passkey_state`.
#[derive(Default, Serialize, Deserialize)]
struct Ceremony {
    /// Registration and settings: whose passkey is being created (`pending_user` reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registration: Option<PasskeyRegistration>,
    /// The creation options shown as `passkey_create_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    create: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authentication: Option<DiscoverableAuthentication>,
    /// The request options shown as `passkey_challenge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    challenge: Option<Value>,
}

fn ceremony(flow: &Flow) -> Ceremony {
    flow.passkey_state.clone().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default()
}

fn set_ceremony(flow: &mut Flow, c: &Ceremony) -> Result<(), FlowError> {
    flow.passkey_state = Some(serde_json::to_value(c).map_err(|e| FlowError::internal(&e))?);
    Ok(())
}

// --- messages ---------------------------------------------------------------------------

fn answer_malformed(e: &serde_json::Error) -> UiText {
    UiText::error(4_000_001, format!("The passkey answer is not valid WebAuthn JSON ({e}). Try again."))
}

fn ceremony_missing() -> UiText {
    UiText::error(4_000_001, "The passkey request expired or was already answered. Start again.")
}

fn registration_failed(e: &dyn std::fmt::Display) -> UiText {
    UiText::error(4_000_001, format!("The passkey could not be registered: {e}. Start again."))
}

fn unknown_passkey() -> UiText {
    UiText::error(4_000_001, "This passkey does not exist (any more).")
}

/// Ours: Kratos refuses this with a generic error.
fn last_credential() -> UiText {
    UiText::error(
        4_000_046,
        "This is your last way to sign in: add a password or another passkey before removing this passkey.",
    )
}

// --- nodes ------------------------------------------------------------------------------

/// A `type=button` input that runs one of webauthn.js's functions: `onclickTrigger` (Kratos's
/// current contract, which the built-in UI renders as `data-portcullis-trigger`) and the
/// legacy inline `onclick` for older Kratos UIs.
fn trigger(name: &str, function: &str, label: UiText) -> UiNode {
    let mut node = ui::input(GROUP, name, "button", "", false, Some(label));
    node.attributes["onclick"] = json!(format!("window.{function}()"));
    node.attributes["onclickTrigger"] = json!(function);
    node
}

fn hidden(name: &str, value: &str) -> UiNode {
    let mut node = ui::hidden(GROUP, name, value);
    node.attributes["required"] = json!(false);
    node
}

fn script_node(state: &AppState) -> UiNode {
    ui::script(GROUP, &format!("{}{SCRIPT_PATH}", state.config.urls.self_.public_base()), &INTEGRITY)
}

/// Browser flows load webauthn.js; API flows (native apps) run the ceremony themselves.
fn with_script(state: &AppState, flow: &Flow, mut nodes: Vec<UiNode>) -> Vec<UiNode> {
    if !flow.is_api() {
        nodes.push(script_node(state));
    }
    nodes
}

// --- login ------------------------------------------------------------------------------

/// Starts a discoverable (usernameless) authentication ceremony for a new login flow.
pub fn prepare_login(state: &AppState, flow: &mut Flow) {
    if let Some(w) = webauthn(state) {
        start_login(w, flow);
    }
}

fn start_login(w: &Webauthn, flow: &mut Flow) {
    let started = w.start_discoverable_authentication().map_err(|e| e.to_string()).and_then(|(rcr, auth)| {
        let mut challenge = serde_json::to_value(&rcr).map_err(|e| e.to_string())?;
        // The button asks in a modal dialog; webauthn.js adds `mediation: conditional` itself
        // for autofill.
        if let Some(o) = challenge.as_object_mut() {
            o.remove("mediation");
        }
        Ok(Ceremony { authentication: Some(auth), challenge: Some(challenge), ..Ceremony::default() })
    });
    match started.and_then(|c| set_ceremony(flow, &c).map_err(|e| e.reason)) {
        Ok(()) => {}
        Err(e) => tracing::error!(flow_id = %flow.id, error = %e, "could not start a passkey sign-in"),
    }
}

pub fn prepare_registration(_state: &AppState, _flow: &mut Flow) {
    // Nothing yet: the ceremony starts once the traits are known to be valid.
}

pub fn login_nodes(state: &AppState, flow: &Flow) -> Vec<UiNode> {
    if webauthn(state).is_none() {
        return Vec::new();
    }
    let Some(challenge) = ceremony(flow).challenge else {
        return Vec::new();
    };
    let nodes = vec![
        hidden("passkey_challenge", &challenge.to_string()),
        hidden("passkey_login", ""),
        trigger("passkey_login_trigger", "oryPasskeyLogin", msg::sign_in_with_passkey()),
    ];
    with_script(state, flow, nodes)
}

/// Finishes the sign-in with the answer in `passkey_login`. `Ok(None)` with a message on the
/// flow when it fails; every attempt gets a fresh challenge.
pub async fn login(state: &AppState, flow: &mut Flow, form: &Form) -> Result<Option<Identity>, FlowError> {
    let Some(w) = webauthn(state) else {
        flow.messages.push(msg::no_strategy());
        return Ok(None);
    };
    let auth = ceremony(flow).authentication;
    start_login(w, flow);
    let Some(auth) = auth else {
        flow.messages.push(msg::no_strategy());
        return Ok(None);
    };
    let Some(answer) = form.get("passkey_login") else {
        flow.messages.push(msg::required("passkey_login"));
        return Ok(None);
    };
    let credential: PublicKeyCredential = match serde_json::from_str(answer) {
        Ok(c) => c,
        Err(e) => {
            flow.messages.push(answer_malformed(&e));
            return Ok(None);
        }
    };
    let refuse = |flow: &mut Flow, why: &dyn std::fmt::Display| -> Result<Option<Identity>, FlowError> {
        tracing::info!(flow_id = %flow.id, reason = %why, "passkey sign-in refused");
        flow.messages.push(msg::invalid_credentials());
        Ok(None)
    };
    let (user_handle, credential_id) = match w.identify_discoverable_authentication(&credential) {
        Ok(x) => x,
        Err(e) => return refuse(flow, &e),
    };
    let Some(identity) = state.store.find_identity_by_identifier(PASSKEY, &user_handle.to_string()).await? else {
        return refuse(flow, &"no identity has this user handle");
    };
    let Some(mut record) = state.store.get_credential(&identity.id, PASSKEY).await? else {
        return refuse(flow, &"the identity has no passkey credential");
    };
    let Some(mut config) = stored(&record) else {
        return refuse(flow, &"the stored passkeys cannot be read");
    };
    let Some(entry) = config.credentials.iter_mut().find(|c| c.passkey.cred_id().as_slice() == credential_id) else {
        return refuse(flow, &"the identity has no passkey with this credential id");
    };
    let result = match w.finish_discoverable_authentication_v2(&credential, auth, &entry.passkey) {
        Ok(r) => r,
        Err(e) => return refuse(flow, &e),
    };
    // Counters and backup flags: the next sign-in compares against them (clone detection).
    if entry.passkey.update_credential(&result) == Some(true) {
        record.config = serde_json::to_value(&config).map_err(|e| FlowError::internal(&e))?;
        record.updated_at = state.clock.now();
        if let Err(conflict) = state.store.update_identity(&identity, &[record]).await? {
            tracing::warn!(identity_id = %identity.id, ?conflict, "could not store the passkey's new counter");
        }
    }
    Ok(Some(identity))
}

// --- registration -----------------------------------------------------------------------

pub fn registration_nodes(state: &AppState, flow: &Flow) -> Vec<UiNode> {
    if webauthn(state).is_none() {
        return Vec::new();
    }
    let nodes = match ceremony(flow).create {
        Some(create) => vec![
            hidden("passkey_create_data", &create.to_string()),
            hidden("passkey_register", ""),
            trigger("passkey_register_trigger", "oryPasskeyRegistration", msg::create_passkey()),
        ],
        None => vec![ui::submit(GROUP, PASSKEY, msg::sign_up_with_passkey())],
    };
    with_script(state, flow, nodes)
}

/// Whether a sign-up ceremony has been started and waits for the device's answer.
pub fn confirming(flow: &Flow) -> bool {
    ceremony(flow).create.is_some()
}

/// The identity id the registration ceremony was started for (the passkey's user handle).
pub fn pending_user(flow: &Flow) -> Option<String> {
    flow.passkey_state.as_ref().and_then(|s| s["user_id"].as_str()).map(str::to_owned)
}

/// Without `passkey_register`: starts the ceremony for `identity` (valid traits, id = the
/// future user handle) and returns `Ok(None)` so the flow shows the challenge. With it:
/// finishes the ceremony and returns the `passkey` credential to store with the identity.
pub async fn register(
    state: &AppState,
    flow: &mut Flow,
    form: &Form,
    identity: &Identity,
) -> Result<Option<Credential>, FlowError> {
    let Some(w) = webauthn(state) else {
        flow.messages.push(msg::no_strategy());
        return Ok(None);
    };
    let Some(answer) = form.get("passkey_register") else {
        if taken(state, flow, identity).await? {
            return Ok(None);
        }
        start_registration(state, w, flow, identity, &identity.id, Vec::new())?;
        // The traits are accepted: the same "Sign up" button again would read as a failure.
        flow.messages.push(msg::confirm_with_passkey());
        return Ok(None);
    };
    let Some((entry, user_handle)) = finish_registration(state, w, flow, answer, identity)? else {
        return Ok(None);
    };
    let now = state.clock.now();
    let config = Stored { credentials: vec![entry], user_handle: user_handle.clone() };
    Ok(Some(Credential {
        kind: PASSKEY.into(),
        identifiers: vec![user_handle],
        config: serde_json::to_value(&config).map_err(|e| FlowError::internal(&e))?,
        version: 0,
        created_at: now,
        updated_at: now,
    }))
}

/// Whether another identity already answers to these traits' identifiers (field errors on
/// the flow): checked before the device creates a passkey nobody could use.
async fn taken(state: &AppState, flow: &mut Flow, identity: &Identity) -> Result<bool, FlowError> {
    let schema = state.schemas.get(&identity.schema_id).unwrap_or_else(|| state.schemas.default_schema());
    let mut taken = false;
    for field in schema.fields.iter().filter(|f| f.password_identifier || f.code_identifier) {
        let Some(value) = identity.body.traits[&field.name].as_str() else { continue };
        let value = super::normalise_identifier(value, field.is_email);
        for kind in [PASSWORD, CODE] {
            if state.store.find_identity_by_identifier(kind, &value).await?.is_some() {
                flow.field_error(&format!("traits.{}", field.name), msg::duplicate());
                taken = true;
                break;
            }
        }
    }
    Ok(taken)
}

fn display_name(state: &AppState, identity: &Identity) -> String {
    let schema = state.schemas.get(&identity.schema_id).unwrap_or_else(|| state.schemas.default_schema());
    schema
        .display_name(&identity.body.traits)
        .or_else(|| identity.body.traits.as_object()?.values().find_map(|v| v.as_str().map(str::to_owned)))
        .unwrap_or_else(|| identity.id.clone())
}

/// Starts a creation ceremony whose options the flow shows as `passkey_create_data`.
fn start_registration(
    state: &AppState,
    w: &Webauthn,
    flow: &mut Flow,
    identity: &Identity,
    user_handle: &str,
    exclude: Vec<CredentialID>,
) -> Result<(), FlowError> {
    let handle = Uuid::parse_str(user_handle).map_err(|e| FlowError::internal(&format!("user handle: {e}")))?;
    let name = display_name(state, identity);
    let exclude = if exclude.is_empty() { None } else { Some(exclude) };
    let (ccr, registration) =
        w.start_passkey_registration(handle, &name, &name, exclude).map_err(|e| FlowError::internal(&e))?;
    let create = discoverable(&ccr)?;
    let c = Ceremony {
        user_id: Some(identity.id.clone()),
        user_handle: Some(user_handle.to_owned()),
        display_name: Some(name),
        registration: Some(registration),
        create: Some(create),
        ..Ceremony::default()
    };
    set_ceremony(flow, &c)
}

/// webauthn-rs's passkey options leave residence to the authenticator; sign-in here is
/// usernameless, so the credential must be discoverable. (User verification stays
/// `required`, as webauthn-rs checks it on both ceremonies.)
fn discoverable(ccr: &CreationChallengeResponse) -> Result<Value, FlowError> {
    let mut v = serde_json::to_value(ccr).map_err(|e| FlowError::internal(&e))?;
    let selection = &mut v["publicKey"]["authenticatorSelection"];
    if !selection.is_object() {
        *selection = json!({"userVerification": "required"});
    }
    selection["residentKey"] = json!("required");
    selection["requireResidentKey"] = json!(true);
    Ok(v)
}

/// Checks the answer against the stored ceremony (which is used up either way, keeping only
/// whose it was). `Ok(None)` with a message on the flow when it fails.
fn finish_registration(
    state: &AppState,
    w: &Webauthn,
    flow: &mut Flow,
    answer: &str,
    identity: &Identity,
) -> Result<Option<(StoredPasskey, String)>, FlowError> {
    let mut c = ceremony(flow);
    let registration = c.registration.take();
    c.create = None;
    set_ceremony(flow, &c)?;
    let (Some(registration), Some(user_handle)) = (registration, c.user_handle.clone()) else {
        flow.messages.push(ceremony_missing());
        return Ok(None);
    };
    if c.user_id.as_deref() != Some(identity.id.as_str()) {
        flow.messages.push(ceremony_missing());
        return Ok(None);
    }
    let credential: RegisterPublicKeyCredential = match serde_json::from_str(answer) {
        Ok(c) => c,
        Err(e) => {
            flow.messages.push(answer_malformed(&e));
            return Ok(None);
        }
    };
    let passkey = match w.finish_passkey_registration(&credential, &registration) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(flow_id = %flow.id, error = %e, "passkey registration refused");
            flow.messages.push(registration_failed(&e));
            return Ok(None);
        }
    };
    let entry = StoredPasskey {
        id: crate::crypto::b64url(passkey.cred_id()),
        display_name: c.display_name.clone().unwrap_or_else(|| display_name(state, identity)),
        added_at: crate::rfc3339(state.clock.now()),
        passkey,
    };
    Ok(Some((entry, user_handle)))
}

// --- settings ---------------------------------------------------------------------------

pub fn settings_nodes(state: &AppState, flow: &Flow, identity: &Identity, credentials: &[Credential]) -> Vec<UiNode> {
    if webauthn(state).is_none() {
        return Vec::new();
    }
    let mut nodes = Vec::new();
    if let Some(config) = credentials.iter().find(|c| c.kind == PASSKEY).and_then(stored) {
        for p in &config.credentials {
            // Passkeys share the display name; when they were added tells them apart.
            let added = p.added_at.get(..19).unwrap_or(&p.added_at).replace('T', " ");
            let label = msg::remove_passkey(&format!("{}, added {added} UTC", p.display_name));
            nodes.push(ui::button(GROUP, "passkey_remove", &p.id, label));
        }
    }
    let c = ceremony(flow);
    match c.create {
        Some(create) if c.user_id.as_deref() == Some(identity.id.as_str()) => {
            nodes.push(hidden("passkey_create_data", &create.to_string()));
            nodes.push(hidden("passkey_settings_register", ""));
            nodes.push(trigger("passkey_register_trigger", "oryPasskeySettingsRegistration", msg::add_passkey()));
        }
        _ => nodes.push(ui::submit(GROUP, PASSKEY, msg::add_passkey())),
    }
    with_script(state, flow, nodes)
}

/// `passkey_remove=<id>` removes a passkey; `passkey_settings_register` (or
/// `passkey_register`) finishes adding one; neither starts adding one. `Ok(true)`: saved.
/// The caller has checked that the session is the identity's and recent enough.
pub async fn settings(state: &AppState, flow: &mut Flow, form: &Form, identity: &Identity) -> Result<bool, FlowError> {
    let Some(w) = webauthn(state) else {
        flow.messages.push(msg::no_strategy());
        return Ok(false);
    };
    let credentials = state.store.get_credentials(&identity.id).await?;
    let existing = credentials.iter().find(|c| c.kind == PASSKEY);
    let config = existing.and_then(stored);
    if let Some(id) = form.get("passkey_remove") {
        return remove(state, flow, identity, &credentials, id).await;
    }
    let Some(answer) = form.get("passkey_settings_register").or_else(|| form.get("passkey_register")) else {
        let (handle, exclude) = match &config {
            Some(s) => (s.user_handle.clone(), s.credentials.iter().map(|p| p.passkey.cred_id().clone()).collect()),
            // Identities from elsewhere may have ids that are not UUIDs; user handles must be.
            None => {
                (Uuid::parse_str(&identity.id).map_or_else(|_| crate::crypto::uuid_v4(), |u| u.to_string()), Vec::new())
            }
        };
        start_registration(state, w, flow, identity, &handle, exclude)?;
        return Ok(false);
    };
    let Some((entry, user_handle)) = finish_registration(state, w, flow, answer, identity)? else {
        return Ok(false);
    };
    let now = state.clock.now();
    let mut config = config.unwrap_or(Stored { credentials: Vec::new(), user_handle: user_handle.clone() });
    if config.credentials.iter().any(|p| p.id == entry.id) {
        flow.messages.push(registration_failed(&"this passkey is already registered"));
        return Ok(false);
    }
    config.credentials.push(entry);
    let credential = Credential {
        kind: PASSKEY.into(),
        identifiers: vec![config.user_handle.clone()],
        config: serde_json::to_value(&config).map_err(|e| FlowError::internal(&e))?,
        version: 0,
        created_at: existing.map_or(now, |c| c.created_at),
        updated_at: now,
    };
    let mut updated = identity.clone();
    updated.updated_at = now;
    if state.store.update_identity(&updated, &[credential]).await?.is_err() {
        flow.messages.push(registration_failed(&"the user handle belongs to another identity"));
        return Ok(false);
    }
    flow.passkey_state = None;
    tracing::info!(identity_id = %identity.id, "passkey added");
    Ok(true)
}

async fn remove(
    state: &AppState,
    flow: &mut Flow,
    identity: &Identity,
    credentials: &[Credential],
    id: &str,
) -> Result<bool, FlowError> {
    let existing = credentials.iter().find(|c| c.kind == PASSKEY);
    let Some((record, mut config)) = existing.and_then(|c| Some((c, stored(c)?))) else {
        flow.messages.push(unknown_passkey());
        return Ok(false);
    };
    let before = config.credentials.len();
    config.credentials.retain(|p| p.id != id);
    if config.credentials.len() == before {
        flow.messages.push(unknown_passkey());
        return Ok(false);
    }
    if config.credentials.is_empty() && !other_way_in(state, credentials) {
        flow.messages.push(last_credential());
        return Ok(false);
    }
    let now = state.clock.now();
    if config.credentials.is_empty() {
        state.store.delete_credential(&identity.id, PASSKEY).await?;
    } else {
        let credential = Credential {
            config: serde_json::to_value(&config).map_err(|e| FlowError::internal(&e))?,
            updated_at: now,
            ..record.clone()
        };
        let mut updated = identity.clone();
        updated.updated_at = now;
        if state.store.update_identity(&updated, &[credential]).await?.is_err() {
            return Err(FlowError::internal(&"the passkey user handle belongs to another identity"));
        }
    }
    tracing::info!(identity_id = %identity.id, "passkey removed");
    Ok(true)
}

/// Whether the identity can still sign in without passkeys: a password, or a code address
/// while code sign-in is enabled.
fn other_way_in(state: &AppState, credentials: &[Credential]) -> bool {
    let methods = &state.config.selfservice.methods;
    credentials.iter().any(|c| match c.kind.as_str() {
        PASSWORD => methods.password.enabled && c.config["hashed_password"].is_string(),
        CODE => methods.code.passwordless_enabled && !c.identifiers.is_empty(),
        _ => false,
    })
}

// --- webauthn.js ------------------------------------------------------------------------

/// `GET /.well-known/ory/webauthn.js`. Cached briefly and revalidated by ETag: the flows pin
/// it by SRI hash, so a cached copy from an older binary must not outlive an upgrade for long.
/// Any origin may load it (SPAs on another origin use `crossorigin="anonymous"` with SRI).
pub async fn script(headers: HeaderMap) -> Response {
    let etag = ETAG.as_str();
    let common = [
        (header::CACHE_CONTROL, "public, max-age=300"),
        (header::ETAG, etag),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], common, SCRIPT).into_response()
}

#[cfg(test)]
mod tests {
    //! Whole ceremonies through the public router on SQLite, with a small software
    //! authenticator (P-256, `none` attestation, resident credentials) written here:
    //! webauthn-authenticator-rs's `SoftPasskey` can create neither resident keys nor user
    //! handles, so it cannot do usernameless sign-in.

    use axum::http::StatusCode;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{Signature, SigningKey};
    use serde_json::{Value, json};

    use super::*;
    use crate::crypto::{b64url, b64url_decode, sha256};
    use crate::testing::{Harness, Reply, flow_action, message_ids};

    const ORIGIN: &str = "http://localhost:4444";

    fn config() -> Config {
        let mut config = Config::default();
        config.urls.self_.public = format!("{ORIGIN}/");
        config
    }

    async fn post(h: &Harness, flow: &Value, body: Value, headers: &[(&str, &str)]) -> Reply {
        h.post_json(&flow_action(flow), body, headers).await
    }

    fn node<'a>(flow: &'a Value, name: &str) -> Option<&'a Value> {
        flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == name)
    }

    fn json_node(flow: &Value, name: &str) -> Value {
        let n = node(flow, name).unwrap_or_else(|| panic!("no {name} node in {flow}"));
        serde_json::from_str(n["attributes"]["value"].as_str().unwrap()).unwrap()
    }

    // --- a software authenticator --------------------------------------------------------

    fn cbor_head(major: u8, n: usize, out: &mut Vec<u8>) {
        let m = major << 5;
        match n {
            0..24 => out.push(m | n as u8),
            24..256 => out.extend([m | 24, n as u8]),
            _ => {
                out.push(m | 25);
                out.extend(u16::try_from(n).unwrap().to_be_bytes());
            }
        }
    }

    fn cbor_int(i: i64, out: &mut Vec<u8>) {
        if i >= 0 { cbor_head(0, i as usize, out) } else { cbor_head(1, (-1 - i) as usize, out) }
    }

    fn cbor_bytes(b: &[u8], out: &mut Vec<u8>) {
        cbor_head(2, b.len(), out);
        out.extend(b);
    }

    fn cbor_text(s: &str, out: &mut Vec<u8>) {
        cbor_head(3, s.len(), out);
        out.extend(s.as_bytes());
    }

    /// One resident P-256 credential, as a platform authenticator with user verification.
    struct Authenticator {
        key: SigningKey,
        credential_id: Vec<u8>,
        user_handle: Vec<u8>,
        counter: u32,
        origin: String,
    }

    impl Authenticator {
        fn new(seed: u8) -> Self {
            Self {
                key: SigningKey::from_slice(&[seed; 32]).unwrap(),
                credential_id: vec![seed; 20],
                user_handle: Vec::new(),
                counter: 0,
                origin: ORIGIN.into(),
            }
        }

        fn client_data(&self, kind: &str, challenge: &Value) -> Vec<u8> {
            json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false})
                .to_string()
                .into_bytes()
        }

        /// `navigator.credentials.create` for `passkey_create_data`, as webauthn.js sends it.
        fn create(&mut self, options: &Value) -> Value {
            let pk = &options["publicKey"];
            assert_eq!(pk["authenticatorSelection"]["residentKey"], "required", "{options}");
            self.user_handle = b64url_decode(pk["user"]["id"].as_str().unwrap()).unwrap();
            let point = self.key.verifying_key().to_encoded_point(false);
            let mut cose = Vec::new();
            cbor_head(5, 5, &mut cose);
            for (k, v) in [(1, 2), (3, -7), (-1, 1)] {
                cbor_int(k, &mut cose);
                cbor_int(v, &mut cose);
            }
            cbor_int(-2, &mut cose);
            cbor_bytes(point.x().unwrap(), &mut cose);
            cbor_int(-3, &mut cose);
            cbor_bytes(point.y().unwrap(), &mut cose);
            let mut auth_data = sha256(pk["rp"]["id"].as_str().unwrap().as_bytes()).to_vec();
            auth_data.push(0x45); // user present, user verified, attested credential data
            auth_data.extend(self.counter.to_be_bytes());
            auth_data.extend([0u8; 16]); // AAGUID
            auth_data.extend(u16::try_from(self.credential_id.len()).unwrap().to_be_bytes());
            auth_data.extend(&self.credential_id);
            auth_data.extend(cose);
            let mut attestation = Vec::new();
            cbor_head(5, 3, &mut attestation);
            cbor_text("fmt", &mut attestation);
            cbor_text("none", &mut attestation);
            cbor_text("attStmt", &mut attestation);
            cbor_head(5, 0, &mut attestation);
            cbor_text("authData", &mut attestation);
            cbor_bytes(&auth_data, &mut attestation);
            json!({
                "id": b64url(&self.credential_id),
                "rawId": b64url(&self.credential_id),
                "type": "public-key",
                "response": {
                    "attestationObject": b64url(&attestation),
                    "clientDataJSON": b64url(&self.client_data("webauthn.create", &pk["challenge"])),
                },
                "extensions": {"credProps": {"rk": true}},
            })
        }

        /// `navigator.credentials.get` for `passkey_challenge` (no allow list: discoverable).
        fn get(&mut self, options: &Value) -> Value {
            let pk = &options["publicKey"];
            self.counter += 1;
            let mut auth_data = sha256(pk["rpId"].as_str().unwrap().as_bytes()).to_vec();
            auth_data.push(0x05); // user present, user verified
            auth_data.extend(self.counter.to_be_bytes());
            let client_data = self.client_data("webauthn.get", &pk["challenge"]);
            let mut signed = auth_data.clone();
            signed.extend(sha256(&client_data));
            let signature: Signature = self.key.sign(&signed);
            json!({
                "id": b64url(&self.credential_id),
                "rawId": b64url(&self.credential_id),
                "type": "public-key",
                "response": {
                    "authenticatorData": b64url(&auth_data),
                    "clientDataJSON": b64url(&client_data),
                    "signature": b64url(signature.to_der().as_bytes()),
                    "userHandle": b64url(&self.user_handle),
                },
                "extensions": {},
            })
        }
    }

    /// Registers `email` with a passkey through an API flow; the reply signs in.
    async fn register(h: &Harness, a: &mut Authenticator, email: &str) -> Value {
        let flow = h.api_flow("registration", &[]).await;
        let started = post(h, &flow, json!({"method": "passkey", "traits": {"email": email}}), &[]).await;
        assert_eq!(started.status, StatusCode::OK, "{}", started.json());
        let answer = a.create(&json_node(&started.json(), "passkey_create_data"));
        let done = post(h, &flow, json!({"method": "passkey", "passkey_register": answer}), &[]).await;
        assert_eq!(done.status, StatusCode::OK, "{}", String::from_utf8_lossy(&done.bytes));
        done.json()
    }

    async fn login(h: &Harness, a: &mut Authenticator) -> Reply {
        let flow = h.api_flow("login", &[]).await;
        let answer = a.get(&json_node(&flow, "passkey_challenge"));
        post(h, &flow, json!({"method": "passkey", "passkey_login": answer}), &[]).await
    }

    fn stored_passkeys(credential: &Credential) -> Vec<Value> {
        credential.config["credentials"].as_array().unwrap().clone()
    }

    #[tokio::test]
    async fn passkey_registration_then_usernameless_login() {
        for (backend, h) in Harness::all_with_config(config()).await {
            eprintln!("backend: {backend}");
            let flow = h.api_flow("registration", &[]).await;
            let button = flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["value"] == "passkey");
            let button = button.expect("a Sign up with passkey button");
            assert_eq!((&button["group"], &button["attributes"]["name"]), (&json!("passkey"), &json!("method")));
            assert_eq!(button["meta"]["label"]["id"], 1_040_007);
            assert!(node(&flow, "passkey_create_data").is_none(), "no ceremony before the traits are valid");

            let started =
                post(&h, &flow, json!({"method": "passkey", "traits": {"email": "Ada@Example.com"}}), &[]).await;
            assert_eq!(started.status, StatusCode::OK, "{}", started.json());
            let started = started.json();
            let options = json_node(&started, "passkey_create_data");
            let pk = &options["publicKey"];
            assert_eq!(pk["rp"]["id"], "localhost");
            assert_eq!(pk["user"]["name"], "ada@example.com");
            assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
            assert_eq!(pk["authenticatorSelection"]["requireResidentKey"], true);
            assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
            assert!(b64url_decode(pk["challenge"].as_str().unwrap()).unwrap().len() >= 16);
            let trigger = node(&started, "passkey_register_trigger").unwrap();
            assert_eq!(trigger["attributes"]["onclickTrigger"], "oryPasskeyRegistration");
            assert_eq!(trigger["meta"]["label"], json!({"id": 1_040_902, "text": "Create passkey", "type": "info"}));
            assert_eq!(started["ui"]["messages"][0]["id"], 1_040_901);
            assert_eq!(started["ui"]["messages"][0]["text"], "Now confirm with your passkey.");
            let sign_up_again =
                started["ui"]["nodes"].as_array().unwrap().iter().any(|n| n["attributes"]["value"] == "passkey");
            assert!(!sign_up_again, "the traits step's button is gone");
            let email = node(&started, "traits.email").unwrap();
            assert_eq!(email["attributes"]["disabled"], true, "the traits being registered are shown, fixed");
            assert!(node(&started, "password").is_none(), "other methods wait behind Back");
            assert_eq!(node(&started, "screen").unwrap()["attributes"]["value"], "previous");
            assert_eq!(trigger["attributes"]["type"], "button");
            assert!(node(&started, "passkey_register").is_some());

            let mut a = Authenticator::new(7);
            let answer = a.create(&options);
            let done = post(&h, &flow, json!({"method": "passkey", "passkey_register": answer}), &[]).await;
            assert_eq!(done.status, StatusCode::OK, "{}", String::from_utf8_lossy(&done.bytes));
            let done = done.json();
            let id = done["identity"]["id"].as_str().unwrap().to_owned();
            assert_eq!(done["identity"]["traits"]["email"], "Ada@Example.com");
            assert_eq!(Uuid::from_slice(&a.user_handle).unwrap().to_string(), id, "the user handle is the identity id");
            let credential = h.state.store.get_credential(&id, PASSKEY).await.unwrap().unwrap();
            assert_eq!(credential.identifiers, [id.as_str()]);
            let passkeys = stored_passkeys(&credential);
            assert_eq!(passkeys.len(), 1);
            assert_eq!(passkeys[0]["id"], b64url(&a.credential_id));
            assert_eq!(passkeys[0]["display_name"], "ada@example.com");
            assert_eq!(credential.config["user_handle"], id);

            let flow = h.api_flow("login", &[]).await;
            let challenge = json_node(&flow, "passkey_challenge");
            assert_eq!(challenge["publicKey"]["rpId"], "localhost");
            assert!(challenge.get("mediation").is_none(), "the button asks modally; autofill is webauthn.js's choice");
            assert_eq!(node(&flow, "passkey_login").unwrap()["attributes"]["value"], "");
            let trigger = node(&flow, "passkey_login_trigger").unwrap();
            assert_eq!(trigger["group"], "passkey");
            assert_eq!(trigger["attributes"]["onclickTrigger"], "oryPasskeyLogin");
            assert_eq!(trigger["meta"]["label"]["id"], 1_010_021);
            assert_eq!(trigger["meta"]["label"]["text"], "Sign in with passkey");
            assert!(
                flow["ui"]["nodes"].as_array().unwrap().iter().all(|n| n["type"] != "script"),
                "API flows load no script"
            );

            let answer = a.get(&challenge);
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": answer}), &[]).await;
            assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.bytes));
            let token = r.json()["session_token"].as_str().unwrap().to_owned();
            let me = h.get("/sessions/whoami", &[("x-session-token", &token)]).await.json();
            assert_eq!(me["identity"]["id"], id);
            assert_eq!(me["authentication_methods"][0]["method"], "passkey");
            let credential = h.state.store.get_credential(&id, PASSKEY).await.unwrap().unwrap();
            assert_eq!(stored_passkeys(&credential)[0]["passkey"]["cred"]["counter"], 1, "the counter is kept");
        }
    }

    #[tokio::test]
    async fn back_from_the_passkey_step_offers_every_method_again_with_the_traits_kept() {
        let h = Harness::with_config(config()).await;
        let flow = h.api_flow("registration", &[]).await;
        let started = post(&h, &flow, json!({"method": "passkey", "traits": {"email": "kim@example.com"}}), &[]).await;
        assert!(node(&started.json(), "passkey_create_data").is_some());
        let back = post(&h, &flow, json!({"screen": "previous"}), &[]).await;
        assert_eq!(back.status, StatusCode::OK, "{}", back.json());
        let back = back.json();
        assert!(node(&back, "passkey_create_data").is_none(), "the ceremony is dropped");
        assert!(node(&back, "password").is_some());
        assert_eq!(node(&back, "traits.email").unwrap()["attributes"]["value"], "kim@example.com");
        assert_eq!(node(&back, "traits.email").unwrap()["attributes"]["disabled"], false);
        let r = post(
            &h,
            &flow,
            json!({"method": "password", "traits": {"email": "kim@example.com"}, "password": "violet-tractor-umbrella"}),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "another method works after Back: {}", r.json());
    }

    #[tokio::test]
    async fn a_passkey_login_hook_sets_traits_and_the_passkey_keeps_working() {
        let url = crate::identity::hooks::test_server(|body: Value| {
            let email = body["identity"]["traits"]["email"].clone();
            let changed = json!({"identity": {"traits": {"email": email, "name": "Grace"},
                "metadata_public": {"via": body["flow"]["active"]}}});
            (200, changed.to_string())
        })
        .await;
        let mut config = config();
        config.selfservice.flows.login.after = serde_json::from_value(
            json!({"passkey": {"hooks": [{"hook": "web_hook", "config": {"url": url, "response": {"parse": true}}}]}}),
        )
        .unwrap();
        for (backend, h) in Harness::all_with_config(config.clone()).await {
            eprintln!("backend: {backend}");
            let mut a = Authenticator::new(11);
            register(&h, &mut a, "grace@example.com").await;
            let r = login(&h, &mut a).await;
            assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.bytes));
            let identity = &r.json()["session"]["identity"];
            assert_eq!(identity["traits"]["name"], "Grace");
            assert_eq!(identity["metadata_public"]["via"], "passkey");
            let again = login(&h, &mut a).await;
            assert_eq!(again.status, StatusCode::OK, "the passkey survived the change: {}", again.json());
        }
    }

    #[tokio::test]
    async fn tampered_replayed_or_cloned_passkey_answers_get_a_flow_message() {
        for (backend, h) in Harness::all_with_config(config()).await {
            eprintln!("backend: {backend}");
            let mut a = Authenticator::new(9);
            register(&h, &mut a, "bob@example.com").await;

            let flow = h.api_flow("login", &[]).await;
            let first = json_node(&flow, "passkey_challenge");
            let mut tampered = a.get(&first);
            let sig = tampered["response"]["signature"].as_str().unwrap();
            let mut bytes = b64url_decode(sig).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            tampered["response"]["signature"] = json!(b64url(&bytes));
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": tampered}), &[]).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&r.bytes));
            assert_eq!(message_ids(&r.json()), [4_000_006]);
            let second = json_node(&r.json(), "passkey_challenge");
            assert_ne!(
                first["publicKey"]["challenge"], second["publicKey"]["challenge"],
                "each attempt gets a new challenge"
            );

            // An answer to the old challenge is refused; one to the new challenge is not.
            let stale = a.get(&first);
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": stale}), &[]).await;
            assert_eq!(message_ids(&r.json()), [4_000_006]);

            let garbage = post(&h, &flow, json!({"method": "passkey", "passkey_login": "not json"}), &[]).await;
            assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
            assert_eq!(message_ids(&garbage.json()), [4_000_001]);
            let missing = post(&h, &flow, json!({"method": "passkey"}), &[]).await;
            assert_eq!(message_ids(&missing.json()), [4_000_002]);

            // A passkey nobody registered (an unknown user handle) looks the same as a bad one.
            let mut stranger = Authenticator::new(11);
            stranger.user_handle = Uuid::parse_str(&crate::crypto::uuid_v4()).unwrap().as_bytes().to_vec();
            let r = login(&h, &mut stranger).await;
            assert_eq!(message_ids(&r.json()), [4_000_006]);

            // Another origin (a phishing page relaying the challenge) is refused.
            let flow = h.api_flow("login", &[]).await;
            a.origin = "http://localhost:4445".into();
            let phished = a.get(&json_node(&flow, "passkey_challenge"));
            a.origin = ORIGIN.into();
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": phished}), &[]).await;
            assert_eq!(message_ids(&r.json()), [4_000_006]);

            assert_eq!(login(&h, &mut a).await.status, StatusCode::OK);
            // A clone whose counter lags behind is refused.
            a.counter -= 2;
            let r = login(&h, &mut a).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert_eq!(message_ids(&r.json()), [4_000_006]);

            // A registration answer for another origin creates nothing.
            let flow = h.api_flow("registration", &[]).await;
            let started =
                post(&h, &flow, json!({"method": "passkey", "traits": {"email": "eve@example.com"}}), &[]).await;
            let mut b = Authenticator::new(13);
            b.origin = "https://evil.example".into();
            let answer = b.create(&json_node(&started.json(), "passkey_create_data"));
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_register": answer}), &[]).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&r.bytes));
            assert_eq!(message_ids(&r.json()), [4_000_001]);
            assert!(node(&r.json(), "passkey_create_data").is_none(), "the used-up ceremony is gone");
            let list = h.state.store.find_identity_by_identifier(CODE, "eve@example.com").await.unwrap();
            assert!(list.is_none(), "no identity was created");

            // A taken address is refused before any passkey is created.
            let flow = h.api_flow("registration", &[]).await;
            let r = post(&h, &flow, json!({"method": "passkey", "traits": {"email": "bob@example.com"}}), &[]).await;
            assert_eq!(message_ids(&r.json()), [4_000_007]);
            assert!(node(&r.json(), "passkey_create_data").is_none());
        }
    }

    #[tokio::test]
    async fn settings_add_a_passkey_and_refuse_removing_the_last_way_in() {
        let mut config = config();
        config.selfservice.methods.code.passwordless_enabled = false;
        for (backend, h) in Harness::all_with_config(config).await {
            eprintln!("backend: {backend}");
            let mut a = Authenticator::new(21);
            let registered = register(&h, &mut a, "cleo@example.com").await;
            let token = registered["session_token"].as_str().unwrap().to_owned();
            let id = registered["identity"]["id"].as_str().unwrap().to_owned();
            let auth = [("x-session-token", token.as_str())];

            let flow = h.api_flow("settings", &auth).await;
            let remove = node(&flow, "passkey_remove").unwrap();
            assert_eq!(remove["attributes"]["value"], b64url(&a.credential_id));
            assert_eq!(remove["meta"]["label"]["id"], 1_050_020);
            let r =
                post(&h, &flow, json!({"method": "passkey", "passkey_remove": b64url(&a.credential_id)}), &auth).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&r.bytes));
            assert_eq!(message_ids(&r.json()), [4_000_046]);
            assert!(h.state.store.get_credential(&id, PASSKEY).await.unwrap().is_some(), "still there");

            // Add a second passkey: same user handle, the first one excluded.
            let started = post(&h, &flow, json!({"method": "passkey"}), &auth).await;
            assert_eq!(started.status, StatusCode::OK, "{}", started.json());
            let options = json_node(&started.json(), "passkey_create_data");
            assert_eq!(options["publicKey"]["excludeCredentials"][0]["id"], b64url(&a.credential_id));
            let trigger = node(&started.json(), "passkey_register_trigger").unwrap().clone();
            assert_eq!(trigger["attributes"]["onclickTrigger"], "oryPasskeySettingsRegistration");
            let mut b = Authenticator::new(22);
            let answer = b.create(&options);
            assert_eq!(b.user_handle, a.user_handle);
            let saved = post(&h, &flow, json!({"method": "passkey", "passkey_settings_register": answer}), &auth).await;
            assert_eq!(saved.status, StatusCode::OK, "{}", saved.json());
            assert_eq!(message_ids(&saved.json()), [1_050_001]);
            let credential = h.state.store.get_credential(&id, PASSKEY).await.unwrap().unwrap();
            assert_eq!(stored_passkeys(&credential).len(), 2);
            let r = login(&h, &mut b).await;
            assert_eq!(r.json()["session"]["identity"]["id"], id, "the new passkey signs in too");

            // Now the first can go, but not the second as well.
            let r =
                post(&h, &flow, json!({"method": "passkey", "passkey_remove": b64url(&a.credential_id)}), &auth).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json());
            assert_eq!(login(&h, &mut a).await.status, StatusCode::BAD_REQUEST, "a removed passkey no longer signs in");
            let r =
                post(&h, &flow, json!({"method": "passkey", "passkey_remove": b64url(&b.credential_id)}), &auth).await;
            assert_eq!(message_ids(&r.json()), [4_000_046]);
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_remove": "no-such-passkey"}), &auth).await;
            assert_eq!(message_ids(&r.json()), [4_000_001]);
        }
    }

    #[tokio::test]
    async fn passkey_script_is_served_with_its_sri_hash_and_the_insecure_origin_message() {
        let h = Harness::with_config(config()).await;
        let flow = h.get("/self-service/login/browser", &[("accept", "application/json")]).await.json();
        let script = flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["type"] == "script").unwrap().clone();
        assert_eq!(script["group"], "passkey");
        assert_eq!(script["attributes"]["src"], format!("{ORIGIN}/.well-known/ory/webauthn.js"));

        let r = h.get("/.well-known/ory/webauthn.js", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("content-type").starts_with("text/javascript"), "{}", r.header("content-type"));
        assert!(r.header("cache-control").contains("max-age="));
        use base64::Engine as _;
        use sha2::Digest as _;
        let sri =
            format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&r.bytes)));
        assert_eq!(script["attributes"]["integrity"], sri, "the SRI hash matches what is served");
        let js = String::from_utf8(r.bytes.clone()).unwrap();
        assert!(js.contains("Passkeys need a secure origin (https:// or localhost). This page is served from "));
        assert!(js.contains("role\", \"alert"));
        for f in
            ["oryPasskeyLogin", "oryPasskeyRegistration", "oryPasskeySettingsRegistration", "data-portcullis-trigger"]
        {
            assert!(js.contains(f), "{f}");
        }
        let etag = r.header("etag").to_owned();
        let again = h.get("/.well-known/ory/webauthn.js", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn an_ip_address_public_url_offers_no_passkeys_and_refuses_the_method() {
        let h = Harness::new().await; // http://127.0.0.1:4444
        assert!(!h.state.passkeys.available());
        let flow = h.api_flow("login", &[]).await;
        assert!(flow["ui"]["nodes"].as_array().unwrap().iter().all(|n| n["group"] != "passkey"));
        let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": "{}"}), &[]).await;
        assert_eq!(message_ids(&r.json()), [4_010_002]);
    }

    #[test]
    fn passkey_relying_party_config_errors_name_the_key() {
        let with = |id: &str, origins: &[&str], public: &str| {
            let mut c = Config::default();
            c.urls.self_.public = public.into();
            c.selfservice.methods.passkey.rp.id = id.into();
            c.selfservice.methods.passkey.rp.origins = origins.iter().map(|o| (*o).to_owned()).collect();
            Passkeys::from_config(&c).map(|p| p.available()).map_err(|e| e.0)
        };
        assert_eq!(with("", &[], "http://127.0.0.1:4444/"), Ok(false), "the defaults start, without passkeys");
        assert_eq!(with("", &[], "http://localhost:4444/"), Ok(true));
        assert_eq!(with("", &[], "https://login.example.com/"), Ok(true));
        assert_eq!(with("", &[], "http://login.example.com/"), Ok(false), "plain http: off, with a warning");
        assert_eq!(with("example.com", &[], "https://login.example.com/"), Ok(true));
        assert_eq!(
            with("example.com", &["https://a.example.com", "https://example.com:8443"], "http://127.0.0.1/"),
            Ok(true)
        );
        let err = |r: Result<bool, String>| r.unwrap_err();
        assert!(err(with("127.0.0.1", &[], "http://127.0.0.1:4444/")).contains("selfservice.methods.passkey.rp.id"));
        assert!(err(with("https://example.com", &[], "https://example.com/")).contains("rp.id"));
        assert!(err(with("example.com", &[], "https://login.other.org/")).contains("rp.id"));
        assert!(err(with("", &["https://localhost:4444"], "http://127.0.0.1:4444/")).contains("rp.id: must be set"));
        let e = err(with("example.com", &["http://example.com"], "https://example.com/"));
        assert!(e.contains("rp.origins[0]") && e.contains("https"), "{e}");
        assert!(
            err(with("example.com", &["https://example.com/login"], "https://example.com/")).contains("origins[0]")
        );
        assert!(
            err(with("example.com", &["https://example.com", "https://other.org"], "https://example.com/"))
                .contains("origins[1]")
        );
    }
}
