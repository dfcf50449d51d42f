//! `DELETE /admin/oauth2/tokens?client_id=` (Hydra): revokes every access token of a client,
//! and publishes the revocations to the filters at once.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    client_id: Option<String>,
}

pub async fn delete_client_tokens(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<StatusCode, ApiError> {
    let Some(client_id) = params.client_id.filter(|c| !c.is_empty()) else {
        return Err(ApiError::invalid_request("The request is missing a required parameter: client_id."));
    };
    let revoked = state.store.revoke_client_tokens(&client_id).await?;
    state.rules.refresh_revocations(&state.store, state.clock.now()).await?;
    tracing::info!(client_id = %client_id, revoked, "revoked the access tokens of a client");
    Ok(StatusCode::NO_CONTENT)
}
