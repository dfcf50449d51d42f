//! `after` registration hooks: `session` (sign the new user in) and `web_hook`, which posts the
//! identity to a URL. With `can_interrupt`, the hook can refuse the registration with Kratos's
//! `{"messages": [{"instance_ptr": "#/traits/email", "messages": [...]}]}` or change traits
//! and metadata through `{"identity": {...}}` in a 200 answer; a hook that cannot be reached
//! then refuses the registration too (fail closed). Other hooks are fire-and-forget.

use serde_json::{Value, json};

use crate::app::AppState;
use crate::identity::config::{Hook, WebHook};
use crate::identity::flow::Flow;
use crate::identity::flow::ui::UiText;
use crate::identity::{Identity, View};

/// Kratos returns 4000000-range ids for hook messages it passes through; this one is ours.
const HOOK_FAILED: u32 = 5_000_001;

/// Runs the interrupting web hooks; `Ok(false)` when one refused (messages are on the flow).
pub async fn before_persist(state: &AppState, flow: &mut Flow, identity: &mut Identity) -> bool {
    for hook in &state.config.selfservice.flows.registration.after {
        let Hook::WebHook(w) = hook else { continue };
        if !w.can_interrupt {
            continue;
        }
        match call(state, w, flow, identity).await {
            Ok((status, body)) if (200..300).contains(&status) => {
                if let Some(i) = body.get("identity") {
                    apply(state, identity, i);
                }
            }
            Ok((status, body)) if (400..500).contains(&status) => {
                let mut any = false;
                for m in body["messages"].as_array().into_iter().flatten() {
                    let name = m["instance_ptr"].as_str().unwrap_or("").trim_start_matches("#/").replace('/', ".");
                    for text in m["messages"].as_array().into_iter().flatten() {
                        let t = UiText::error(
                            text["id"].as_u64().and_then(|i| u32::try_from(i).ok()).unwrap_or(4_000_001),
                            text["text"].as_str().unwrap_or("Refused by policy."),
                        );
                        if name.is_empty() {
                            flow.messages.push(t)
                        } else {
                            flow.field_error(&name, t)
                        }
                        any = true;
                    }
                }
                if !any {
                    flow.messages.push(UiText::error(HOOK_FAILED, "The registration was refused."));
                }
                return false;
            }
            Ok((status, _)) => {
                tracing::warn!(url = %w.url, status, "registration web hook failed");
                flow.messages
                    .push(UiText::error(HOOK_FAILED, "Registration is unavailable right now; try again later."));
                return false;
            }
            Err(e) => {
                tracing::warn!(url = %w.url, error = %e, "registration web hook unreachable");
                flow.messages
                    .push(UiText::error(HOOK_FAILED, "Registration is unavailable right now; try again later."));
                return false;
            }
        }
    }
    true
}

/// Fires the non-interrupting hooks after the identity is stored.
pub fn after_persist(state: &AppState, flow: &Flow, identity: &Identity) {
    for hook in &state.config.selfservice.flows.registration.after {
        let Hook::WebHook(w) = hook else { continue };
        if w.can_interrupt {
            continue;
        }
        let (state, w, flow, identity) = (state.clone(), w.clone(), flow.clone(), identity.clone());
        tokio::spawn(async move {
            if let Err(e) = call(&state, &w, &flow, &identity).await {
                tracing::warn!(url = %w.url, error = %e, "registration web hook failed");
            }
        });
    }
}

/// Whether the `session` hook is configured.
pub fn signs_in(state: &AppState) -> bool {
    state.config.selfservice.flows.registration.after.iter().any(|h| matches!(h, Hook::Session))
}

async fn call(state: &AppState, w: &WebHook, flow: &Flow, identity: &Identity) -> Result<(u16, Value), String> {
    let method = reqwest::Method::from_bytes(w.method.as_bytes()).map_err(|e| e.to_string())?;
    let body = json!({
        "flow": {"id": flow.id, "type": flow.flow_type, "kind": flow.kind.as_str()},
        "identity": identity.to_json(state.config.urls.self_.public_base(), View::Admin, None),
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
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

fn apply(state: &AppState, identity: &mut Identity, changes: &Value) {
    if let Some(t) = changes.get("traits") {
        let valid = state.schemas.get(&identity.schema_id).is_some_and(|s| s.validate(t).is_ok());
        if valid {
            identity.body.traits = t.clone();
        } else {
            tracing::warn!("a registration web hook returned traits that do not validate; ignored");
        }
    }
    if let Some(m) = changes.get("metadata_public") {
        identity.body.metadata_public = m.clone();
    }
    if let Some(m) = changes.get("metadata_admin") {
        identity.body.metadata_admin = m.clone();
    }
}
