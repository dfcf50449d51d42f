//! Recovery and verification by one-time code. Recovery: e-mail → code → a session and a
//! settings flow to set a new password or passkey. Verification: e-mail → code → the address is
//! marked verified. Both answer the same whether or not the address belongs to an account.

use reqwest::header::HeaderMap;

use super::ui::{self, UiNode, msg};
use super::{Flow, FlowError, Form, Kind, Outcome};
use crate::code::{self, Check};
use crate::context::Identities;
use crate::session;
use portcullis_model::identity::{CODE, Identity, PASSWORD};

pub fn nodes(_state: &Identities, flow: &Flow) -> Vec<UiNode> {
    match flow.state.as_str() {
        "sent_email" => {
            let address = flow.code.as_ref().map(|c| c.address.as_str()).unwrap_or("");
            vec![
                ui::hidden("code", "email", address),
                ui::input("code", "code", "text", "", true, Some(msg::label_code())),
                ui::submit("code", CODE, msg::continue_()),
                ui::button("code", "resend", "code", msg::resend()),
            ]
        }
        "passed_challenge" => Vec::new(),
        _ => vec![
            ui::input("code", "email", "email", "", true, Some(msg::label_email())),
            ui::submit("code", CODE, msg::continue_()),
        ],
    }
}

/// The identity with this address as a code or password identifier.
async fn owner(state: &Identities, address: &str) -> Result<Option<Identity>, FlowError> {
    for kind in [CODE, PASSWORD] {
        if let Some(i) = state.store.find_identity_by_identifier(kind, address).await? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Step one of either flow: send a code to the address.
async fn send(state: &Identities, flow: &mut Flow, form: &Form) -> Result<(), FlowError> {
    let address = form
        .get("email")
        .map(str::to_owned)
        .or_else(|| flow.code.as_ref().map(|c| c.address.clone()))
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    flow.values.insert("email".into(), address.clone());
    if address.is_empty() {
        flow.field_error("email", msg::required("email"));
        return Ok(());
    }
    let identity = owner(state, &address).await?;
    let deliver = identity.as_ref().is_some_and(Identity::is_active);
    code::send(state, flow, &address, identity.map(|i| i.id), deliver).await?;
    flow.state = "sent_email".into();
    flow.active = Some(CODE.into());
    flow.messages.push(if flow.kind == Kind::Recovery {
        msg::recovery_code_sent()
    } else {
        msg::verification_code_sent()
    });
    Ok(())
}

fn entering_code(flow: &Flow, form: &Form) -> bool {
    flow.state == "sent_email" && form.get("code").is_some() && form.get("resend").is_none()
}

pub async fn submit_recovery(
    state: &Identities,
    mut flow: Flow,
    form: &Form,
    headers: &HeaderMap,
) -> Result<Outcome, FlowError> {
    if !entering_code(&flow, form) {
        send(state, &mut flow, form).await?;
        super::save(&state.store, &mut flow).await?;
        return Ok(Outcome::Again(flow));
    }
    let identity = match code::check(state, &mut flow, form.get("code").unwrap_or("")).await? {
        Check::Valid(Some(id)) => state.store.get_identity(&id).await?.filter(Identity::is_active),
        Check::Valid(None) | Check::Invalid => None,
        Check::Spent => {
            flow.state = "choose_method".into();
            flow.code = None;
            None
        }
    };
    let Some(mut identity) = identity else {
        flow.field_error("code", msg::recovery_code_invalid());
        super::save(&state.store, &mut flow).await?;
        return Ok(Outcome::Again(flow));
    };
    // Entering the code proves the address too.
    let now = state.clock.now();
    if let Some(address) = flow.code.as_ref().map(|c| c.address.clone()) {
        if portcullis_model::identity::mark_verified(&mut identity.body, &address, now) {
            identity.updated_at = now;
            state.store.update_identity(&identity, &[]).await?.ok();
        }
    }
    flow.state = "passed_challenge".into();
    super::save(&state.store, &mut flow).await?;
    let issued = session::issue(state, &identity, "code_recovery", headers).await?;
    tracing::info!(identity_id = %identity.id, "account recovered");
    // A settings flow where the user sets a new password or passkey, bound to this browser's
    // CSRF cookie (an operator-made recovery flow may be the browser's first visit).
    let mut cookies = Vec::new();
    let csrf = match session::cookie(headers, &super::csrf_cookie_name(state)).filter(|t| t.len() >= 32) {
        Some(existing) => existing.to_owned(),
        None if flow.is_api() => String::new(),
        None => {
            let token = crate::crypto::b64url(&crate::crypto::random_bytes::<32>());
            cookies.push(super::csrf_cookie(state, &token));
            token
        }
    };
    let mut settings = super::new_flow(
        state,
        Kind::Settings,
        flow.is_api(),
        format!("{}/self-service/settings/browser", state.config.public_base.as_str()),
        flow.return_to.clone(),
        &csrf,
    );
    settings.identity_id = Some(identity.id.clone());
    settings.state = "show_form".into();
    settings.messages.push(msg::recovered());
    super::create(&state.store, &settings).await?;
    if !flow.is_api() {
        cookies.push(session::session_cookie(state, &issued.token, issued.row.expires_at));
    }
    Ok(Outcome::Continue {
        flow,
        to: settings.ui_url(state),
        cookies,
        session_token: issued.token,
        settings_id: settings.id,
    })
}

pub async fn submit_verification(state: &Identities, mut flow: Flow, form: &Form) -> Result<Outcome, FlowError> {
    if !entering_code(&flow, form) {
        send(state, &mut flow, form).await?;
        super::save(&state.store, &mut flow).await?;
        return Ok(Outcome::Again(flow));
    }
    let verified = match code::check(state, &mut flow, form.get("code").unwrap_or("")).await? {
        Check::Valid(Some(id)) => {
            let address = flow.code.as_ref().map(|c| c.address.clone()).unwrap_or_default();
            match state.store.get_identity(&id).await? {
                Some(mut identity) => {
                    let now = state.clock.now();
                    portcullis_model::identity::mark_verified(&mut identity.body, &address, now);
                    identity.updated_at = now;
                    state.store.update_identity(&identity, &[]).await?.is_ok()
                }
                None => false,
            }
        }
        Check::Spent => {
            flow.state = "choose_method".into();
            flow.code = None;
            false
        }
        _ => false,
    };
    if verified {
        flow.state = "passed_challenge".into();
        flow.messages.push(msg::verified());
    } else {
        flow.field_error("code", msg::verification_code_invalid());
    }
    super::save(&state.store, &mut flow).await?;
    Ok(Outcome::Again(flow))
}
