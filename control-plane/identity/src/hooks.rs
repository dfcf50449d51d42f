//! `after` hooks of registration and login: `session` (sign the new user in) and `web_hook`,
//! which posts the flow and the identity to a URL. A parsing hook (`response.parse`, or the
//! deprecated `can_interrupt`) can refuse the flow with Kratos's `{"messages": [...]}` or change
//! traits and metadata through `{"identity": {...}}` in a 2xx answer; an answer that cannot be
//! applied, or a hook that cannot be reached, refuses the flow too and changes nothing (fail
//! closed). Other hooks are fire-and-forget. This module changes identities only in memory: the
//! caller stores the result, so a refusal never leaves half an update behind.

use serde_json::{Value, json};

use portcullis_model::identity::{Identity, View};

use crate::config::{Hook, WebHook};
use crate::context::Identities;
use crate::flow::ui::UiText;
use crate::flow::{Flow, Kind};
use crate::record::sync_addresses;

/// Kratos returns 4000000-range ids for hook messages it passes through; these are ours.
const HOOK_FAILED: u32 = 5_000_001;
const HOOK_INVALID: u32 = 5_000_002;

/// Runs the parsing web hooks of `hooks` in order; each one sees the changes of those before
/// it. `false` when one refused (messages are on the flow and `identity` is as it was).
pub async fn run_parsing(state: &Identities, hooks: &[Hook], flow: &mut Flow, identity: &mut Identity) -> bool {
    let mut changed = identity.clone();
    for hook in hooks {
        let Hook::WebHook(w) = hook else { continue };
        if !w.parses() {
            continue;
        }
        let (status, body) = match call(state, w, flow, &changed).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(url = %w.url, flow = flow.kind.as_str(), error = %e, "web hook unreachable");
                flow.messages.push(UiText::error(HOOK_FAILED, unavailable(flow.kind)));
                return false;
            }
        };
        match (status, body) {
            (200..=299, Some(body)) => {
                if let Err(e) = apply(state, &mut changed, &body) {
                    tracing::warn!(url = %w.url, flow = flow.kind.as_str(), error = %e, "web hook answer refused");
                    flow.messages.push(UiText::error(HOOK_INVALID, invalid(flow.kind)));
                    return false;
                }
            }
            (200..=299, None) => {
                tracing::warn!(url = %w.url, status, "web hook answered something that is not JSON");
                flow.messages.push(UiText::error(HOOK_INVALID, invalid(flow.kind)));
                return false;
            }
            (status, body) => {
                if !show_messages(flow, body.as_ref()) {
                    tracing::warn!(url = %w.url, flow = flow.kind.as_str(), status, "web hook failed");
                    let text = if status < 500 { refused(flow.kind) } else { unavailable(flow.kind) };
                    flow.messages.push(UiText::error(HOOK_FAILED, text));
                }
                return false;
            }
        }
    }
    *identity = changed;
    true
}

/// Fires the hooks of `hooks` that do not parse, once the flow has succeeded.
pub fn fire_and_forget(state: &Identities, hooks: &[Hook], flow: &Flow, identity: &Identity) {
    for hook in hooks {
        let Hook::WebHook(w) = hook else { continue };
        if w.parses() {
            continue;
        }
        let (state, w, flow, identity) = (state.clone(), w.clone(), flow.clone(), identity.clone());
        tokio::spawn(async move {
            if let Err(e) = call(&state, &w, &flow, &identity).await {
                tracing::warn!(url = %w.url, flow = flow.kind.as_str(), error = %e, "web hook failed");
            }
        });
    }
}

/// Whether the `session` hook is configured for registration.
pub fn signs_in(state: &Identities) -> bool {
    state.config.selfservice.flows.registration.after.iter().any(|h| matches!(h, Hook::Session))
}

fn unavailable(kind: Kind) -> &'static str {
    match kind {
        Kind::Registration => "Registration is unavailable right now; try again later.",
        _ => "Signing in is unavailable right now; try again later.",
    }
}

fn refused(kind: Kind) -> &'static str {
    match kind {
        Kind::Registration => "The registration was refused.",
        _ => "Signing in was refused.",
    }
}

fn invalid(kind: Kind) -> &'static str {
    match kind {
        Kind::Registration => "Registration is unavailable right now: an account check answered something invalid.",
        _ => "Signing in is unavailable right now: an account check answered something invalid.",
    }
}

/// Puts Kratos's `{"messages": [{"instance_ptr", "messages": [{id, text}]}]}` on the flow;
/// `false` when the answer has none. Messages about a trait go next to its input where the
/// form has one (registration), and on the form otherwise.
fn show_messages(flow: &mut Flow, body: Option<&Value>) -> bool {
    let mut any = false;
    for m in body.and_then(|b| b["messages"].as_array()).into_iter().flatten() {
        let name = m["instance_ptr"].as_str().unwrap_or("").trim_start_matches("#/").replace('/', ".");
        for text in m["messages"].as_array().into_iter().flatten() {
            let id = text["id"].as_u64().and_then(|i| u32::try_from(i).ok()).unwrap_or(4_000_001);
            let t = UiText::error(id, text["text"].as_str().unwrap_or("Refused by policy."));
            if name.is_empty() || flow.kind != Kind::Registration {
                flow.messages.push(t)
            } else {
                flow.field_error(&name, t)
            }
            any = true;
        }
    }
    any
}

/// The answer's status and JSON body (`None`: a body that is not JSON; an empty body is `{}`).
async fn call(
    state: &Identities,
    w: &WebHook,
    flow: &Flow,
    identity: &Identity,
) -> Result<(u16, Option<Value>), String> {
    let method = reqwest::Method::from_bytes(w.method.as_bytes()).map_err(|e| e.to_string())?;
    let body = json!({
        "flow": {"id": flow.id, "type": flow.flow_type, "kind": flow.kind.as_str(), "active": flow.active},
        "identity": identity.to_json(&state.config.public_base, View::Admin, None),
        "request_url": flow.request_url,
    });
    let mut req = state.http.request(method, &w.url).timeout(w.timeout).json(&body);
    for (k, v) in &w.headers {
        req = req.header(k, v);
    }
    let response = req.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    // Kratos reads at most 5 MB of a hook's answer.
    if bytes.len() > 5 * 1024 * 1024 {
        return Err("the hook's answer is larger than 5 MB".into());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((status, Some(json!({}))));
    }
    Ok((status, serde_json::from_slice(&bytes).ok()))
}

/// Applies `{"identity": {"traits"?, "metadata_public"?, "metadata_admin"?}}` to `identity`,
/// all or nothing. Traits are validated against the identity's schema as on every other write.
fn apply(state: &Identities, identity: &mut Identity, answer: &Value) -> Result<(), String> {
    let Some(changes) = answer.get("identity") else { return Ok(()) };
    let Some(changes) = changes.as_object() else { return Err("identity: not an object".into()) };
    // Other fields (`id`, `state`, addresses…) are ignored rather than refused: hooks commonly
    // echo the whole identity they were sent, changed in a few places.
    let mut next = identity.clone();
    if let Some(t) = changes.get("traits") {
        let schema = state.schemas.get(&identity.schema_id).ok_or("the identity's schema no longer exists")?;
        if let Err(errors) = schema.validate(t) {
            let first = errors.first().map_or(String::new(), |e| format!("traits{}: {}", e.pointer, e.text));
            return Err(format!("the traits do not match schema {:?}: {first}", schema.id));
        }
        next.body.traits = t.clone();
        sync_addresses(&schema, &mut next.body, state.clock.now());
    }
    if let Some(m) = changes.get("metadata_public") {
        next.body.metadata_public = m.clone();
    }
    if let Some(m) = changes.get("metadata_admin") {
        next.body.metadata_admin = m.clone();
    }
    *identity = next;
    Ok(())
}
