//! The login flow: `password` (attempts limited per identifier and per client address and
//! counted before the password is checked, constant work whether or not the account exists), `code` (e-mail a one-time code, then enter it;
//! the answer never reveals whether an account exists) and `passkey` (see
//! `identity::passkey`). Every method checks the registration policy and the identity's state,
//! then runs the `after` login hooks, whose web hooks may refuse the sign-in or change the
//! identity's traits and metadata (stored before the session is issued).

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::ui::{self, UiNode, msg};
use super::{Flow, FlowError, Form, Outcome};
use crate::context::Identities;
use crate::hooks;
use crate::password::{self, Verified};
use crate::session;
use portcullis_model::identity::{CODE, Identity, PASSWORD};

/// A well-formed argon2id hash of a random password: verifying against it when the account
/// does not exist costs the same as a real check, so timing does not reveal accounts.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Lh2I3kq4Ah8Pru6r3HUdFtEGq1YfiBcS4dq5P3Xj6ZA";

pub fn prepare(state: &Identities, flow: &mut Flow) {
    crate::passkey::prepare_login(state, flow);
}

pub fn nodes(state: &Identities, flow: &Flow) -> Vec<UiNode> {
    let methods = &state.config.selfservice.methods;
    let mut nodes = Vec::new();
    if flow.state == "sent_email" {
        let address = flow.code.as_ref().map(|c| c.address.as_str()).unwrap_or("");
        nodes.push(ui::hidden("code", "identifier", address));
        nodes.push(ui::input("code", "code", "text", "", true, Some(msg::label_code())));
        nodes.push(ui::submit("code", "code", msg::sign_in()));
        nodes.push(ui::button("code", "resend", "code", msg::resend()));
        return nodes;
    }
    nodes.push(ui::input("default", "identifier", "text", "", true, Some(msg::label_identifier())));
    if methods.password.enabled {
        nodes.push(ui::input("password", "password", "password", "", false, Some(msg::label_password())));
        nodes.push(ui::submit("password", PASSWORD, msg::sign_in()));
    }
    if methods.code.passwordless_enabled {
        nodes.push(ui::submit("code", CODE, msg::sign_in_with_code()));
    }
    nodes.extend(crate::passkey::login_nodes(state, flow));
    nodes
}

pub async fn submit(
    state: &Identities,
    mut flow: Flow,
    form: &Form,
    headers: &HeaderMap,
) -> Result<Outcome, FlowError> {
    let method = form.method().map(str::to_owned);
    let methods = &state.config.selfservice.methods;
    let identity = match method.as_deref() {
        Some(PASSWORD) if methods.password.enabled => password_login(state, &mut flow, form, headers).await?,
        Some(CODE) if methods.code.passwordless_enabled => match code_login(state, &mut flow, form).await? {
            Some(i) => Some(i),
            None => {
                super::save(&state.store, &mut flow).await?;
                return Ok(Outcome::Again(flow));
            }
        },
        Some("passkey") if methods.passkey.enabled => crate::passkey::login(state, &mut flow, form).await?,
        _ => {
            flow.messages.push(msg::no_strategy());
            None
        }
    };
    let Some(identity) = identity else {
        super::save(&state.store, &mut flow).await?;
        return Ok(Outcome::Again(flow));
    };
    let method = method.unwrap_or_default();
    sign_in(state, flow, identity, &method, headers).await
}

/// The `after` login hooks of `method` (which may change the identity, stored before the
/// session is issued), then the session.
pub async fn sign_in(
    state: &Identities,
    mut flow: Flow,
    mut identity: Identity,
    method: &str,
    headers: &HeaderMap,
) -> Result<Outcome, FlowError> {
    let after = state.config.selfservice.flows.login.after.for_method(method);
    if identity.is_active() && !after.is_empty() {
        flow.active = Some(method.to_owned());
        let before = identity.clone();
        if !hooks::run_parsing(state, after, &mut flow, &mut identity).await {
            super::save(&state.store, &mut flow).await?;
            return Ok(Outcome::Again(flow));
        }
        if identity != before && !store_hook_changes(state, &mut flow, &before, &mut identity).await? {
            super::save(&state.store, &mut flow).await?;
            return Ok(Outcome::Again(flow));
        }
    }
    let outcome = start_session(state, flow, identity, method, headers).await?;
    if let Outcome::SignedIn { flow, identity, .. } = &outcome {
        hooks::fire_and_forget(state, after, flow, identity);
    }
    Ok(outcome)
}

/// Stores what a login hook changed, if the result may still sign in; `false` with a message
/// on the flow (and nothing stored) otherwise.
async fn store_hook_changes(
    state: &Identities,
    flow: &mut Flow,
    before: &Identity,
    identity: &mut Identity,
) -> Result<bool, FlowError> {
    if let Err(text) = check_policy(state, identity) {
        flow.messages.push(msg::not_allowed(text));
        return Ok(false);
    }
    let now = state.clock.now();
    identity.updated_at = now;
    let old = state.store.get_credentials(&identity.id).await?;
    let credentials = match state.schemas.get(&identity.schema_id) {
        Some(schema) if identity.body.traits != before.body.traits => {
            crate::record::rederive_credentials(&schema, &identity.body.traits, &old, now)
        }
        _ => old.clone(),
    };
    match state.store.update_identity(identity, &credentials).await? {
        Err(conflict) => {
            tracing::info!(kind = %conflict.kind, "login hook change refused: identifier exists");
            flow.messages.push(msg::duplicate());
            return Ok(false);
        }
        Ok(false) => {
            flow.messages.push(msg::invalid_credentials());
            return Ok(false);
        }
        Ok(true) => {}
    }
    // `code` identifiers come only from traits: none left means no code credential.
    if old.iter().any(|c| c.kind == CODE) && !credentials.iter().any(|c| c.kind == CODE) {
        state.store.delete_credential(&identity.id, CODE).await?;
    }
    tracing::info!(identity_id = %identity.id, "identity changed by a login web hook");
    Ok(true)
}

/// Final checks shared by every method (and by registration's `session` hook), then the session.
pub async fn start_session(
    state: &Identities,
    mut flow: Flow,
    identity: Identity,
    method: &str,
    headers: &HeaderMap,
) -> Result<Outcome, FlowError> {
    if !identity.is_active() {
        flow.messages.push(msg::identity_disabled());
        super::save(&state.store, &mut flow).await?;
        return Ok(Outcome::Again(flow));
    }
    if let Err(text) = check_policy(state, &identity) {
        flow.messages.push(msg::not_allowed(text));
        super::save(&state.store, &mut flow).await?;
        return Ok(Outcome::Again(flow));
    }
    let issued = session::issue(state, &identity, method, headers).await?;
    flow.state = "success".into();
    flow.active = Some(method.to_owned());
    super::save(&state.store, &mut flow).await?;
    Ok(Outcome::SignedIn { flow: Box::new(flow), identity: Box::new(identity), issued: Box::new(issued) })
}

/// The registration policy applies to sign-in too: an address removed from the allow-list
/// can no longer sign in, whatever the method.
pub fn check_policy(state: &Identities, identity: &Identity) -> Result<(), String> {
    let policy = &state.config.selfservice.policy;
    if policy.is_open() {
        return Ok(());
    }
    let Some(schema) = state.schemas.get(&identity.schema_id) else {
        return Err("This account's schema no longer exists.".into());
    };
    let emails = schema.values(&identity.body.traits, |f| f.is_email);
    if emails.is_empty() {
        return Err("This account has no e-mail address.".into());
    }
    emails.iter().try_for_each(|e| policy.check(e))
}

/// Where the browser goes after signing in.
pub async fn after_sign_in(state: &Identities, flow: &Flow, _identity: &Identity) -> String {
    super::after_url(state, flow)
}

fn identifier_candidates(raw: &str) -> Vec<String> {
    let trimmed = raw.trim().to_owned();
    let lower = trimmed.to_lowercase();
    if lower == trimmed { vec![trimmed] } else { vec![lower, trimmed] }
}

async fn find(state: &Identities, kind: &str, identifier: &str) -> Result<Option<Identity>, FlowError> {
    for candidate in identifier_candidates(identifier) {
        if let Some(i) = state.store.find_identity_by_identifier(kind, &candidate).await? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

async fn password_login(
    state: &Identities,
    flow: &mut Flow,
    form: &Form,
    headers: &HeaderMap,
) -> Result<Option<Identity>, FlowError> {
    let identifier = form.get("identifier").unwrap_or("").trim().to_owned();
    flow.values.insert("identifier".into(), identifier.clone());
    let pw = form.get("password").unwrap_or("");
    if identifier.is_empty() {
        flow.field_error("identifier", msg::required("identifier"));
    }
    if pw.is_empty() {
        flow.field_error("password", msg::required("password"));
    }
    if flow.has_errors() {
        return Ok(None);
    }
    let config = &state.config.selfservice.methods.password;
    let now = state.clock.now();
    let window = i64::try_from(config.lockout_window.as_secs()).unwrap_or(900);
    let id_bucket = format!("id:{}", identifier.to_lowercase());
    let ip = session::client_ip(headers);
    let ip_bucket = (!ip.is_empty()).then(|| format!("ip:{ip}"));
    let max = i64::from(config.max_failures);
    // Every guess takes its slot before the password is checked, atomically in the store: N
    // guesses sent at once see N different counts, so no more than `max` of them are ever
    // checked, whatever the concurrency or the number of replicas.
    let (taken, started) = state.store.reserve_attempt(&id_bucket, now, window).await?;
    let mut locked_until = (taken > max).then_some(started + window);
    if let Some(b) = &ip_bucket {
        // Per address the allowance is larger: many people may share one NAT.
        let (taken, started) = state.store.reserve_attempt(b, now, window).await?;
        if taken > max * 5 {
            locked_until = locked_until.max(Some(started + window));
        }
    }
    if let Some(until) = locked_until {
        tracing::warn!(flow_id = %flow.id, "password sign-in refused: too many attempts");
        flow.messages.push(msg::too_many_attempts((until - now + 59).max(60) / 60));
        return Ok(None);
    }
    let identity = find(state, PASSWORD, &identifier).await?;
    let stored = match &identity {
        Some(i) => state
            .store
            .get_credential(&i.id, PASSWORD)
            .await?
            .and_then(|c| c.config["hashed_password"].as_str().map(str::to_owned)),
        None => None,
    };
    let known = stored.is_some();
    let hash = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
    let presented = pw.to_owned();
    let verified = match state.hashing.run(move || password::verify(&hash, &presented)).await {
        Ok(v) => v,
        Err(e) => {
            // Not checked, so not an attempt: give the slots back.
            state.store.release_attempt(&id_bucket).await?;
            if let Some(b) = &ip_bucket {
                state.store.release_attempt(b).await?;
            }
            return Err(FlowError::from_hashing(e));
        }
    };
    let (Some(identity), true, true) = (identity, known, verified != Verified::No) else {
        flow.messages.push(msg::invalid_credentials());
        return Ok(None);
    };
    state.store.clear_failures(&id_bucket).await?;
    if let Some(b) = &ip_bucket {
        state.store.release_attempt(b).await?;
    }
    if verified == Verified::YesRehash {
        rehash(state, &identity, pw).await?;
    }
    Ok(Some(identity))
}

/// Replaces an imported (bcrypt, weak argon2) hash with argon2id after a successful sign-in.
async fn rehash(state: &Identities, identity: &Identity, pw: &str) -> Result<(), FlowError> {
    let presented = pw.to_owned();
    // Best effort: a busy server upgrades the hash at a later sign-in.
    let Ok(Ok(new_hash)) = state.hashing.run(move || password::hash(&presented)).await else {
        return Ok(());
    };
    if let Some(mut c) = state.store.get_credential(&identity.id, PASSWORD).await? {
        c.config["hashed_password"] = Value::String(new_hash);
        c.updated_at = state.clock.now();
        let mut updated = identity.clone();
        updated.updated_at = c.updated_at;
        if state.store.update_identity(&updated, &[c]).await?.is_ok() {
            tracing::info!(identity_id = %identity.id, "password hash upgraded to argon2id");
        }
    }
    Ok(())
}

/// Step one sends a code; step two checks it. `Ok(None)`: show the flow again.
async fn code_login(state: &Identities, flow: &mut Flow, form: &Form) -> Result<Option<Identity>, FlowError> {
    let code = form.get("code");
    if flow.state == "sent_email" && code.is_some() && form.get("resend").is_none() {
        return match crate::code::check(state, flow, code.unwrap_or("")).await? {
            crate::code::Check::Valid(Some(id)) => {
                let identity = state.store.get_identity(&id).await?;
                if identity.is_none() {
                    flow.field_error("code", msg::login_code_invalid());
                }
                Ok(identity)
            }
            crate::code::Check::Valid(None) | crate::code::Check::Invalid => {
                flow.field_error("code", msg::login_code_invalid());
                Ok(None)
            }
            crate::code::Check::Spent => {
                flow.state = "choose_method".into();
                flow.code = None;
                flow.messages.push(msg::login_code_invalid());
                Ok(None)
            }
        };
    }
    let address = form
        .get("identifier")
        .or_else(|| form.get("email"))
        .map(str::to_owned)
        .or_else(|| flow.code.as_ref().map(|c| c.address.clone()))
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    flow.values.insert("identifier".into(), address.clone());
    if address.is_empty() {
        flow.field_error("identifier", msg::required("identifier"));
        return Ok(None);
    }
    if let Err(text) = state.config.selfservice.policy.check(&address) {
        flow.field_error("identifier", msg::not_allowed(text));
        return Ok(None);
    }
    let identity = find(state, CODE, &address).await?;
    let deliver = identity.as_ref().is_some_and(Identity::is_active);
    crate::code::send(state, flow, &address, identity.map(|i| i.id), deliver).await?;
    flow.state = "sent_email".into();
    flow.active = Some(CODE.into());
    flow.messages.push(msg::code_sent());
    Ok(None)
}
