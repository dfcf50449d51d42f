//! The registration flow: traits from the identity schema plus `password` (policy-checked,
//! argon2id), `code` (traits first, then the e-mailed code; the address is verified by it) or
//! `passkey`. The registration policy (allowed e-mail domains and addresses) is checked before
//! anything is sent or stored, `after` web hooks may refuse or amend the identity, and the
//! `session` hook signs the new user in.

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::ui::{self, UiNode, msg};
use super::{Flow, FlowError, Form, Outcome};
use crate::context::Identities;
use crate::schema::Schema;
use crate::{hooks, password};
use portcullis_model::identity::{CODE, Credential, Identity, PASSWORD};

pub fn prepare(state: &Identities, flow: &mut Flow) {
    crate::passkey::prepare_registration(state, flow);
}

/// The trait inputs for `schema` (group `default`, as Kratos's profile-first style).
pub fn trait_nodes(schema: &Schema) -> Vec<UiNode> {
    schema
        .fields
        .iter()
        .map(|f| {
            let input_type = if f.is_email { "email" } else { "text" };
            let mut node = ui::input(
                "default",
                &format!("traits.{}", f.name),
                input_type,
                "",
                f.required,
                Some(ui::UiText::info(1_070_002, f.title.clone())),
            );
            if !f.options.is_empty() {
                node.attributes["options"] = serde_json::json!(f.options);
            }
            node
        })
        .collect()
}

pub fn nodes(state: &Identities, flow: &Flow) -> Vec<UiNode> {
    let methods = &state.config.selfservice.methods;
    let schema = state.schemas.default_schema();
    if flow.state == "sent_email" {
        return vec![
            ui::input("code", "code", "text", "", true, Some(msg::label_code())),
            ui::submit("code", CODE, msg::continue_()),
            ui::button("code", "resend", "code", msg::resend()),
        ];
    }
    let mut nodes = trait_nodes(&schema);
    if crate::passkey::confirming(flow) {
        // The traits are taken and the ceremony is waiting: show what is being registered,
        // the one button that finishes, and a way back to change the details or the method.
        for n in &mut nodes {
            n.attributes["disabled"] = Value::Bool(true);
        }
        nodes.extend(crate::passkey::registration_nodes(state, flow));
        nodes.push(ui::button("default", "screen", "previous", msg::back()));
        return nodes;
    }
    if methods.password.enabled {
        let mut pw = ui::input("password", "password", "password", "", true, Some(msg::label_password()));
        pw.attributes["autocomplete"] = Value::from("new-password");
        pw.attributes["minlength"] = Value::from(methods.password.min_password_length);
        nodes.push(pw);
        nodes.push(ui::submit("password", PASSWORD, msg::sign_up()));
    }
    if methods.code.passwordless_enabled {
        nodes.push(ui::submit("code", CODE, msg::sign_up_with_code()));
    }
    nodes.extend(crate::passkey::registration_nodes(state, flow));
    nodes
}

pub async fn submit(
    state: &Identities,
    mut flow: Flow,
    form: &Form,
    headers: &HeaderMap,
) -> Result<Outcome, FlowError> {
    let methods = &state.config.selfservice.methods;
    let method = form.method().map(str::to_owned);
    let schema = state.schemas.default_schema();
    let now = state.clock.now();
    if form.get("screen") == Some("previous") {
        flow.passkey_state = None;
        flow.pending_traits = None;
        return again(state, flow).await;
    }
    let (identity, credentials) = match method.as_deref() {
        Some(PASSWORD) if methods.password.enabled => {
            let Some(traits) = checked_traits(state, &mut flow, form, &schema) else {
                return again(state, flow).await;
            };
            let identifier = schema.values(&traits, |f| f.password_identifier).into_iter().next().unwrap_or_default();
            let pw = form.get("password").unwrap_or("");
            if pw.is_empty() {
                flow.field_error("password", msg::required("password"));
                return again(state, flow).await;
            }
            if let Err((id, text)) = password::check_policy(&methods.password, &identifier, pw, &state.http).await {
                flow.field_error("password", ui::UiText::error(id, text));
                return again(state, flow).await;
            }
            let presented = pw.to_owned();
            let hash = state
                .hashing
                .run(move || password::hash(&presented))
                .await
                .map_err(FlowError::from_hashing)?
                .map_err(|e| FlowError::internal(&e))?;
            let identity = crate::record::new_identity(&schema, traits.clone(), now);
            let creds = crate::record::derived_credentials(&schema, &traits, &[], Some(hash), now);
            (identity, creds)
        }
        Some(CODE) if methods.code.passwordless_enabled => {
            let code = form.get("code");
            if flow.state == "sent_email" && code.is_some() && form.get("resend").is_none() {
                match crate::code::check(state, &mut flow, code.unwrap_or("")).await? {
                    crate::code::Check::Valid(_) => {}
                    crate::code::Check::Invalid => {
                        flow.field_error("code", msg::registration_code_invalid());
                        return again(state, flow).await;
                    }
                    crate::code::Check::Spent => {
                        flow.state = "choose_method".into();
                        flow.code = None;
                        flow.messages.push(msg::registration_code_invalid());
                        return again(state, flow).await;
                    }
                }
                let traits = flow.pending_traits.clone().unwrap_or(Value::Null);
                let address = flow.code.as_ref().map(|c| c.address.clone()).unwrap_or_default();
                let mut identity = crate::record::new_identity(&schema, traits.clone(), now);
                portcullis_model::identity::mark_verified(&mut identity.body, &address, now);
                let creds = crate::record::derived_credentials(&schema, &traits, &[], None, now);
                (identity, creds)
            } else {
                let traits = if form.get("resend").is_some() {
                    flow.pending_traits.clone()
                } else {
                    checked_traits(state, &mut flow, form, &schema)
                };
                let Some(traits) = traits else {
                    return again(state, flow).await;
                };
                let Some(address) = schema.values(&traits, |f| f.code_identifier).into_iter().next() else {
                    flow.messages.push(msg::no_strategy());
                    return again(state, flow).await;
                };
                if taken(state, &schema, &traits).await? {
                    flow.field_error("traits.email", msg::duplicate());
                    return again(state, flow).await;
                }
                crate::code::send(state, &mut flow, &address, None, true).await?;
                flow.pending_traits = Some(traits);
                flow.state = "sent_email".into();
                flow.active = Some(CODE.into());
                flow.messages.push(msg::registration_code_sent());
                return again(state, flow).await;
            }
        }
        Some("passkey") if methods.passkey.enabled => {
            let traits = match flow.pending_traits.clone() {
                Some(t) if form.get("passkey_register").is_some() => Some(t),
                _ => checked_traits(state, &mut flow, form, &schema),
            };
            let Some(traits) = traits else {
                return again(state, flow).await;
            };
            let mut identity = crate::record::new_identity(&schema, traits.clone(), now);
            if let Some(id) = crate::passkey::pending_user(&flow) {
                identity.id = id;
            }
            flow.pending_traits = Some(traits.clone());
            let Some(passkey) = crate::passkey::register(state, &mut flow, form, &identity).await? else {
                return again(state, flow).await;
            };
            let mut creds = crate::record::derived_credentials(&schema, &traits, &[], None, now);
            creds.push(passkey);
            (identity, creds)
        }
        _ => {
            flow.messages.push(msg::no_strategy());
            return again(state, flow).await;
        }
    };
    finish(state, flow, identity, credentials, method.as_deref().unwrap_or(PASSWORD), headers).await
}

async fn again(state: &Identities, mut flow: Flow) -> Result<Outcome, FlowError> {
    super::save(&state.store, &mut flow).await?;
    Ok(Outcome::Again(flow))
}

/// Validated traits that the policy allows, or `None` with messages on the flow.
fn checked_traits(state: &Identities, flow: &mut Flow, form: &Form, schema: &Schema) -> Option<Value> {
    let traits = form.traits();
    for (k, v) in traits.as_object().into_iter().flatten() {
        if let Some(s) = v.as_str() {
            flow.values.insert(format!("traits.{k}"), s.to_owned());
        }
    }
    if let Err(errors) = schema.validate(&traits) {
        for e in errors {
            let name = e.pointer.trim_start_matches('/').replace('/', ".");
            flow.field_error(&name, ui::UiText::error(e.id, e.text));
        }
        return None;
    }
    for f in schema.fields.iter().filter(|f| f.is_email) {
        if let Some(v) = traits[&f.name].as_str() {
            if let Err(text) = state.config.selfservice.policy.check(v) {
                flow.field_error(&format!("traits.{}", f.name), msg::not_allowed(text));
                return None;
            }
        }
    }
    Some(traits)
}

/// Whether another identity already answers to one of these traits' identifiers.
async fn taken(state: &Identities, schema: &Schema, traits: &Value) -> Result<bool, FlowError> {
    for (kind, ids) in [
        (PASSWORD, schema.values(traits, |f| f.password_identifier)),
        (CODE, schema.values(traits, |f| f.code_identifier)),
    ] {
        for id in ids {
            if state.store.find_identity_by_identifier(kind, &id).await?.is_some() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Hooks, storage, and the session if the `session` hook is on.
async fn finish(
    state: &Identities,
    mut flow: Flow,
    mut identity: Identity,
    credentials: Vec<Credential>,
    method: &str,
    headers: &HeaderMap,
) -> Result<Outcome, FlowError> {
    let after = &state.config.selfservice.flows.registration.after;
    let traits = identity.body.traits.clone();
    if !hooks::run_parsing(state, after, &mut flow, &mut identity).await {
        return again(state, flow).await;
    }
    if identity.body.traits != traits {
        // The policy was checked on what the user typed; a hook's traits must pass it too.
        if let Err(text) = super::login::check_policy(state, &identity) {
            flow.messages.push(msg::not_allowed(text));
            return again(state, flow).await;
        }
    }
    let credentials = match state.schemas.get(&identity.schema_id) {
        Some(schema) if identity.body.traits != traits => {
            crate::record::rederive_credentials(&schema, &identity.body.traits, &credentials, state.clock.now())
        }
        _ => credentials,
    };
    if let Err(conflict) = state.store.insert_identity(&identity, &credentials).await? {
        tracing::info!(kind = %conflict.kind, "registration refused: identifier exists");
        flow.field_error("traits.email", msg::duplicate());
        return again(state, flow).await;
    }
    tracing::info!(identity_id = %identity.id, method, "identity registered");
    hooks::fire_and_forget(state, after, &flow, &identity);
    if hooks::signs_in(state) {
        return super::login::start_session(state, flow, identity, method, headers).await;
    }
    flow.state = "success".into();
    super::save(&state.store, &mut flow).await?;
    Ok(Outcome::Registered { flow, identity })
}
