//! The admin API (Hydra paths under `/admin`): OAuth2 clients, access rules, the public
//! signing keys and the version.
//! It has no authentication of its own, like Hydra's: bind it to a private address. Errors are
//! [`crate::error::ApiError`]s. Routing lives in [`crate::app`]; nothing here serves the
//! public listener.

pub mod clients;
pub mod keys;
pub mod rules;
pub mod tokens;

use axum::Json;
use serde_json::{Value, json};

pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}
