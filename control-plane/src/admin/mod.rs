//! The admin API (Hydra paths under `/admin`): OAuth2 clients, access rules, the public
//! signing keys, API keys, jwt-bearer trust relationships and the version.
//! Unlike Hydra's, it requires an API key with the right scope (see [`auth`]) unless the
//! server runs with `--dev`; still bind it to a private address. Errors are
//! [`crate::error::ApiError`]s. Routing lives in [`crate::app`]; nothing here serves the
//! public listener.

pub mod api_keys;
pub mod auth;
pub mod clients;
pub mod courier;
pub mod keys;
pub mod rules;
#[cfg(test)]
mod scope_escalation;
pub mod tokens;
pub mod trust;

use axum::Json;
use serde_json::{Value, json};

pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}
