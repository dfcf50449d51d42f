//! The settings flow, for the signed-in identity only: `profile` (traits; changed addresses
//! become unverified and identifiers follow), `password` and `passkey` (add or remove). What
//! could hand the account to someone else — a password, a passkey, a login identifier, a
//! verifiable or recovery address — needs a recent sign-in (`session_refresh_required`
//! otherwise, as Kratos), so a stale stolen session cannot take the account over; an address
//! that stops being the account's is told so by e-mail. Every submission re-checks that the
//! caller's session belongs to the flow's identity.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::ui::{self, UiNode, msg};
use super::{Flow, FlowError, Form, Outcome};
use crate::context::Identities;
use crate::courier::NewMessage;
use crate::password;
use crate::session::{self, Authenticated};
use portcullis_model::identity::{CODE, Credential, Identity, PASSWORD};

pub async fn prepare(_state: &Identities, flow: &mut Flow) -> Result<(), FlowError> {
    flow.state = "show_form".into();
    Ok(())
}

pub async fn nodes(state: &Identities, flow: &Flow) -> Vec<UiNode> {
    let Some(id) = &flow.identity_id else { return Vec::new() };
    let Ok(Some(identity)) = state.store.get_identity(id).await else { return Vec::new() };
    let schema = state.schemas.get(&identity.schema_id).unwrap_or_else(|| state.schemas.default_schema());
    let mut nodes: Vec<UiNode> = super::registration::trait_nodes(&schema)
        .into_iter()
        .map(|mut n| {
            n.group = "profile".into();
            let name = n.name().trim_start_matches("traits.").to_owned();
            if let Some(v) = identity.body.traits[&name].as_str() {
                n.attributes["value"] = v.into();
            }
            n
        })
        .collect();
    nodes.push(ui::submit("profile", "profile", msg::save()));
    if state.config.selfservice.methods.password.enabled {
        let mut pw = ui::input("password", "password", "password", "", true, Some(msg::label_password()));
        pw.attributes["autocomplete"] = "new-password".into();
        nodes.push(pw);
        nodes.push(ui::submit("password", PASSWORD, msg::save()));
    }
    let credentials = state.store.get_credentials(id).await.unwrap_or_default();
    nodes.extend(crate::passkey::settings_nodes(state, flow, &identity, &credentials));
    nodes
}

pub async fn submit(
    state: &Identities,
    mut flow: Flow,
    form: &Form,
    headers: &HeaderMap,
) -> Result<Outcome, FlowError> {
    let Some(auth) = session::authenticate(state, headers).await? else {
        return Err(FlowError::new(StatusCode::UNAUTHORIZED, "session_inactive", "Sign in to change your settings."));
    };
    if flow.identity_id.as_deref() != Some(auth.identity.id.as_str()) {
        return Err(FlowError::new(
            StatusCode::FORBIDDEN,
            "security_identity_mismatch",
            "This settings flow belongs to another identity.",
        ));
    }
    let saved = match form.get("method") {
        Some("profile") => profile(state, &mut flow, form, &auth).await?,
        Some(PASSWORD) if state.config.selfservice.methods.password.enabled => {
            privileged(state, &flow, &auth)?;
            change_password(state, &mut flow, form, &auth).await?
        }
        Some("passkey") if state.config.selfservice.methods.passkey.enabled => {
            privileged(state, &flow, &auth)?;
            crate::passkey::settings(state, &mut flow, form, &auth.identity).await?
        }
        _ => {
            flow.messages.push(msg::no_strategy());
            false
        }
    };
    if saved {
        flow.state = "success".into();
        flow.messages.push(msg::settings_saved());
    }
    super::save(&state.store, &mut flow).await?;
    Ok(Outcome::Again(flow))
}

/// Credential and address changes need a sign-in younger than `privileged_session_max_age`.
fn privileged(state: &Identities, flow: &Flow, auth: &Authenticated) -> Result<(), FlowError> {
    let max = i64::try_from(state.config.selfservice.flows.privileged_session_max_age().as_secs()).unwrap_or(900);
    if state.clock.now() - auth.session.authenticated_at <= max {
        return Ok(());
    }
    let public = state.config.public_base.as_str();
    let mut e = FlowError::new(
        StatusCode::FORBIDDEN,
        "session_refresh_required",
        "The login session is too old and thus not allowed to update these fields. Please re-authenticate.",
    );
    if !flow.is_api() {
        e.redirect = Some(format!(
            "{public}/self-service/login/browser?refresh=true&return_to={}",
            portcullis_model::identity::url_segment(&flow.ui_url(state))
        ));
    }
    Err(e)
}

async fn profile(state: &Identities, flow: &mut Flow, form: &Form, auth: &Authenticated) -> Result<bool, FlowError> {
    let mut identity = auth.identity.clone();
    let schema = state.schemas.get(&identity.schema_id).unwrap_or_else(|| state.schemas.default_schema());
    let traits = form.traits();
    if let Err(errors) = schema.validate(&traits) {
        for e in errors {
            flow.field_error(&e.pointer.trim_start_matches('/').replace('/', "."), ui::UiText::error(e.id, e.text));
        }
        return Ok(false);
    }
    for f in schema.fields.iter().filter(|f| f.is_email) {
        if let Some(v) = traits[&f.name].as_str() {
            if let Err(text) = state.config.selfservice.policy.check(v) {
                flow.field_error(&format!("traits.{}", f.name), msg::not_allowed(text));
                return Ok(false);
            }
        }
    }
    let now = state.clock.now();
    identity.body.traits = traits.clone();
    crate::record::sync_addresses(&schema, &mut identity.body, now);
    identity.updated_at = now;
    let existing = state.store.get_credentials(&identity.id).await?;
    let creds = crate::record::derived_credentials(&schema, &traits, &existing, None, now);
    // The store replaces only the credential types given; the others (passkeys) stay.
    let kept = existing.iter().filter(|c| !creds.iter().any(|n| n.kind == c.kind));
    let before = Protected::of(&auth.identity, &existing);
    let after = Protected::of(&identity, &kept.chain(&creds).cloned().collect::<Vec<_>>());
    if before != after {
        // Kratos's rule (identity.Manager.requiresPrivilegedAccess): a change of credentials'
        // identifiers or of verifiable or recovery addresses is a credential change.
        privileged(state, flow, auth)?;
    }
    match state.store.update_identity(&identity, &creds).await? {
        Ok(_) => {
            notify_removed_addresses(state, &identity, &before, &after, now).await;
            Ok(true)
        }
        Err(_) => {
            flow.field_error("traits.email", msg::duplicate());
            Ok(false)
        }
    }
}

/// What only a privileged session may change: every credential's identifiers and the
/// verifiable and recovery addresses, each as a sorted set.
#[derive(PartialEq, Eq)]
struct Protected {
    identifiers: BTreeSet<(String, String)>,
    verifiable: BTreeSet<String>,
    recovery: BTreeSet<String>,
}

impl Protected {
    fn of(identity: &Identity, credentials: &[Credential]) -> Self {
        let identifiers =
            credentials.iter().flat_map(|c| c.identifiers.iter().map(|i| (c.kind.clone(), i.clone()))).collect();
        Self {
            identifiers,
            verifiable: identity.body.verifiable_addresses.iter().map(|a| a.value.clone()).collect(),
            recovery: identity.body.recovery_addresses.iter().map(|a| a.value.clone()).collect(),
        }
    }

    /// Every e-mail address the account answered to: code identifiers and addresses.
    fn addresses(&self) -> BTreeSet<&str> {
        let codes = self.identifiers.iter().filter(|(kind, _)| kind == CODE).map(|(_, a)| a.as_str());
        self.verifiable.iter().chain(&self.recovery).map(String::as_str).chain(codes).collect()
    }
}

/// Tells each address the account no longer answers to that it was changed, and when. It
/// names neither the new address nor anything secret: it is the owner's chance to notice a
/// takeover, and may reach someone who merely mistyped an address once.
async fn notify_removed_addresses(
    state: &Identities,
    identity: &Identity,
    before: &Protected,
    after: &Protected,
    now: i64,
) {
    let kept = after.addresses();
    for old in before.addresses().into_iter().filter(|a| !kept.contains(a) && a.contains('@')) {
        let body = format!(
            "Hi,\n\nthe e-mail address of your account was changed on {when} (UTC). This address, {old}, can no \
             longer be used to sign in to the account or to recover it.\n\nIf you made this change, there is nothing \
             else to do. If you did not, someone else may be using your account: contact the site's administrator.\n",
            when = portcullis_model::rfc3339(now).replace('T', " ").trim_end_matches('Z'),
        );
        let message = NewMessage {
            recipient: old.to_owned(),
            subject: "The e-mail address of your account was changed".into(),
            body,
            template_type: ADDRESS_CHANGED.into(),
            secret: None,
        };
        // The change is stored already: a notice that cannot be queued is logged, not an error
        // shown to the user who made it.
        match state.courier.enqueue(&state.store, now, message).await {
            Ok(_) => tracing::info!(identity_id = %identity.id, "address change notified to the previous address"),
            Err(e) => {
                tracing::error!(identity_id = %identity.id, error = %e, "could not queue the address-change notice")
            }
        }
    }
}

/// The courier template of the message above.
pub const ADDRESS_CHANGED: &str = "settings_address_changed";

async fn change_password(
    state: &Identities,
    flow: &mut Flow,
    form: &Form,
    auth: &Authenticated,
) -> Result<bool, FlowError> {
    let pw = form.get("password").unwrap_or("");
    let schema = state.schemas.get(&auth.identity.schema_id).unwrap_or_else(|| state.schemas.default_schema());
    let identifier =
        schema.values(&auth.identity.body.traits, |f| f.password_identifier).into_iter().next().unwrap_or_default();
    if let Err((id, text)) =
        password::check_policy(&state.config.selfservice.methods.password, &identifier, pw, &state.http).await
    {
        flow.field_error("password", ui::UiText::error(id, text));
        return Ok(false);
    }
    let presented = pw.to_owned();
    let hash = state
        .hashing
        .run(move || password::hash(&presented))
        .await
        .map_err(FlowError::from_hashing)?
        .map_err(|e| FlowError::internal(&e))?;
    let now = state.clock.now();
    let existing = state.store.get_credentials(&auth.identity.id).await?;
    let creds = crate::record::derived_credentials(&schema, &auth.identity.body.traits, &existing, Some(hash), now);
    let mut identity = auth.identity.clone();
    identity.updated_at = now;
    if state.store.update_identity(&identity, &creds).await?.is_err() {
        flow.messages.push(msg::duplicate());
        return Ok(false);
    }
    tracing::info!(identity_id = %identity.id, "password changed");
    Ok(true)
}
