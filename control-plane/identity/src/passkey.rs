//! Passkeys (WebAuthn discoverable credentials, through `webauthn-rs`) for the login,
//! registration and settings flows, and `webauthn.js`, the browser half of the ceremonies
//! (Kratos's contract; the control plane serves it at `GET /.well-known/ory/webauthn.js`).
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

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    CreationChallengeResponse, CredentialID, DiscoverableAuthentication, Passkey, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use portcullis_model::StartupError;
use portcullis_model::identity::{CODE, Credential, Identity, PASSKEY, PASSWORD};

use crate::config::SelfService;
use crate::context::Identities;
use crate::flow::ui::{self, UiNode, UiText, msg};
use crate::flow::{Flow, FlowError, Form};

const GROUP: &str = "passkey";
pub const SCRIPT_PATH: &str = "/.well-known/ory/webauthn.js";
/// The browser half of the ceremonies, served at [`SCRIPT_PATH`].
pub const SCRIPT: &str = include_str!("webauthn.js");

/// `sha512-…` for the script node's `integrity` attribute.
static INTEGRITY: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha512::digest(SCRIPT.as_bytes());
    format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(digest))
});

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
    /// `public_base` is `urls.self.public` (or the issuer) without its trailing `/`.
    pub fn from_config(selfservice: &SelfService, public_base: &str) -> Result<Self, StartupError> {
        let method = &selfservice.methods.passkey;
        if !method.enabled {
            return Ok(Self::default());
        }
        let Some((rp_id, origins)) = relying_party(selfservice, public_base)? else {
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
fn relying_party(selfservice: &SelfService, public: &str) -> Result<Option<(String, Vec<Url>)>, StartupError> {
    let rp = &selfservice.methods.passkey.rp;
    let key = "config key selfservice.methods.passkey.rp";
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

fn webauthn(state: &Identities) -> Option<&Webauthn> {
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

fn script_node(state: &Identities) -> UiNode {
    ui::script(GROUP, &format!("{}{SCRIPT_PATH}", state.config.public_base.as_str()), &INTEGRITY)
}

/// Browser flows load webauthn.js; API flows (native apps) run the ceremony themselves.
fn with_script(state: &Identities, flow: &Flow, mut nodes: Vec<UiNode>) -> Vec<UiNode> {
    if !flow.is_api() {
        nodes.push(script_node(state));
    }
    nodes
}

// --- login ------------------------------------------------------------------------------

/// Starts a discoverable (usernameless) authentication ceremony for a new login flow.
pub fn prepare_login(state: &Identities, flow: &mut Flow) {
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

pub fn prepare_registration(_state: &Identities, _flow: &mut Flow) {
    // Nothing yet: the ceremony starts once the traits are known to be valid.
}

pub fn login_nodes(state: &Identities, flow: &Flow) -> Vec<UiNode> {
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
pub async fn login(state: &Identities, flow: &mut Flow, form: &Form) -> Result<Option<Identity>, FlowError> {
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

pub fn registration_nodes(state: &Identities, flow: &Flow) -> Vec<UiNode> {
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
    state: &Identities,
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
async fn taken(state: &Identities, flow: &mut Flow, identity: &Identity) -> Result<bool, FlowError> {
    let schema = state.schemas.get(&identity.schema_id).unwrap_or_else(|| state.schemas.default_schema());
    let mut taken = false;
    for field in schema.fields.iter().filter(|f| f.password_identifier || f.code_identifier) {
        let Some(value) = identity.body.traits[&field.name].as_str() else { continue };
        let value = portcullis_model::identity::normalise_identifier(value, field.is_email);
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

fn display_name(state: &Identities, identity: &Identity) -> String {
    let schema = state.schemas.get(&identity.schema_id).unwrap_or_else(|| state.schemas.default_schema());
    schema
        .display_name(&identity.body.traits)
        .or_else(|| identity.body.traits.as_object()?.values().find_map(|v| v.as_str().map(str::to_owned)))
        .unwrap_or_else(|| identity.id.clone())
}

/// Starts a creation ceremony whose options the flow shows as `passkey_create_data`.
fn start_registration(
    state: &Identities,
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
    state: &Identities,
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
        added_at: portcullis_model::rfc3339(state.clock.now()),
        passkey,
    };
    Ok(Some((entry, user_handle)))
}

// --- settings ---------------------------------------------------------------------------

pub fn settings_nodes(state: &Identities, flow: &Flow, identity: &Identity, credentials: &[Credential]) -> Vec<UiNode> {
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
pub async fn settings(
    state: &Identities,
    flow: &mut Flow,
    form: &Form,
    identity: &Identity,
) -> Result<bool, FlowError> {
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
    state: &Identities,
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
fn other_way_in(state: &Identities, credentials: &[Credential]) -> bool {
    let methods = &state.config.selfservice.methods;
    credentials.iter().any(|c| match c.kind.as_str() {
        PASSWORD => methods.password.enabled && c.config["hashed_password"].is_string(),
        CODE => methods.code.passwordless_enabled && !c.identifiers.is_empty(),
        _ => false,
    })
}
