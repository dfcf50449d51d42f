//! `GET /schemas` and `GET /schemas/{id}`: the identity schemas (`portcullis_identity::schema`,
//! re-exported here) in Kratos's shapes. Loading and validating schemas must not happen here.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::ApiError;

pub use portcullis_identity::schema::*;

/// `GET /schemas`: Kratos's list shape.
pub async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let all: Vec<Value> = state.schemas.all().iter().map(|s| json!({"id": s.id, "schema": s.raw})).collect();
    Json(all)
}

/// `GET /schemas/{id}`: the schema itself.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    state.schemas.get(&id).map(|s| Json(s.raw.clone())).ok_or_else(ApiError::not_found)
}
