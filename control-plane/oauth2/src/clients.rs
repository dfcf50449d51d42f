//! OAuth2 clients as the admin API and the clients file write them: a validated
//! [`ClientRequest`] becomes a stored row with its secret hashed (operator-chosen secrets with
//! argon2id, generated ones with SHA-256), replacements keep or end secrets, rotation keeps the
//! previous ones for a while. Secrets are returned only to be shown once. It must not parse
//! HTTP requests or render errors: the admin handlers map [`ClientError`].

use serde_json::Value;

use crate::Ctx;
use crate::client::{ClientBody, ClientRequest, render};
use crate::crypto;
use crate::store::{ClientRow, StoreError};

/// Previous secrets still accepted after rotations (Hydra keeps five).
pub const ROTATED_SECRETS_KEPT: usize = 5;

/// Why a client operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client not found")]
    NotFound,
    /// The request was valid but conflicts with what is stored (the sentence says how).
    #[error("{0}")]
    Conflict(String),
    /// The request cannot be done to this client (the sentence names the field).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing or encoding failed: a server fault.
    #[error("{0}")]
    Internal(String),
}

/// Public and `private_key_jwt` clients have no secret: one would only be a credential to leak.
pub fn keyless(body: &ClientBody) -> bool {
    matches!(body.token_endpoint_auth_method.as_str(), "none" | "private_key_jwt")
}

/// `(secret to show once, hash to store)` for a create/replace request.
pub async fn new_secret(req: &ClientRequest) -> Result<(Option<String>, Option<String>), ClientError> {
    if keyless(&req.body) {
        return Ok((None, None));
    }
    match &req.client_secret {
        Some(secret) => {
            let owned = secret.clone();
            let hash = tokio::task::spawn_blocking(move || crypto::hash_operator_secret(&owned))
                .await
                .map_err(|e| ClientError::Internal(e.to_string()))?
                .map_err(|e| ClientError::Internal(e.to_string()))?;
            Ok((Some(secret.clone()), Some(hash)))
        }
        None => {
            let secret = crypto::generate_client_secret();
            let hash = crypto::hash_generated_secret(&secret);
            Ok((Some(secret), Some(hash)))
        }
    }
}

pub fn to_row(
    client_id: &str,
    secret_hash: Option<String>,
    body: &ClientBody,
    created_at: i64,
    updated_at: i64,
) -> Result<ClientRow, ClientError> {
    Ok(ClientRow {
        client_id: client_id.to_owned(),
        secret_hash,
        client_name: body.client_name.clone(),
        owner: body.owner.clone(),
        body: serde_json::to_string(body).map_err(|e| ClientError::Internal(e.to_string()))?,
        created_at,
        updated_at,
    })
}

/// A stored client's body; one that does not parse is a server fault.
pub fn body_of(row: &ClientRow) -> Result<ClientBody, ClientError> {
    serde_json::from_str(&row.body).map_err(|e| ClientError::Internal(format!("client {:?} body: {e}", row.client_id)))
}

/// Stores a new client; returns it as Hydra shows it, with the secret (once).
pub async fn create(ctx: &Ctx<'_>, req: &ClientRequest) -> Result<Value, ClientError> {
    let client_id = req.client_id.clone().unwrap_or_else(crypto::uuid_v4);
    let (secret, secret_hash) = new_secret(req).await?;
    let now = ctx.clock.now();
    let row = to_row(&client_id, secret_hash, &req.body, now, now)?;
    if !ctx.store.insert_client(&row).await? {
        return Err(ClientError::Conflict(format!(
            "Unable to insert or update resource because a resource with that value exists already: client_id {client_id:?} is taken."
        )));
    }
    Ok(render(&client_id, &req.body, secret.as_deref(), now, now))
}

/// Writes a validated replacement of `existing` (PUT, PATCH, lifespans). The current secret
/// is kept unless the request sets one or the client no longer uses one; any change of the
/// secret ends the rotated secrets in the same write.
pub async fn replace(ctx: &Ctx<'_>, existing: ClientRow, req: ClientRequest) -> Result<Value, ClientError> {
    let id = existing.client_id.clone();
    let (secret, secret_hash) = match (&req.client_secret, &existing.secret_hash) {
        (None, Some(hash)) if !keyless(&req.body) => (None, Some(hash.clone())),
        _ => new_secret(&req).await?,
    };
    let secret_changed = secret_hash != existing.secret_hash;
    let now = ctx.clock.now();
    let row = to_row(&id, secret_hash, &req.body, existing.created_at, now)?;
    ctx.secrets.forget(&id);
    if !ctx.store.update_client_with_rotation(&row, secret_changed).await? {
        return Err(ClientError::NotFound);
    }
    ctx.secrets.forget(&id);
    Ok(render(&id, &req.body, secret.as_deref(), existing.created_at, now))
}

/// A new generated secret for client `id`, shown once; the previous one (and up to four
/// before it) keeps working until dropped.
pub async fn rotate_secret(ctx: &Ctx<'_>, id: &str) -> Result<Value, ClientError> {
    let existing = ctx.store.get_client(id).await?.ok_or(ClientError::NotFound)?;
    let body = body_of(&existing)?;
    let Some(current) = existing.secret_hash.as_deref().filter(|_| !keyless(&body)) else {
        return Err(ClientError::Invalid(format!(
            "token_endpoint_auth_method: a client using {:?} has no secret to rotate",
            body.token_endpoint_auth_method
        )));
    };
    let secret = crypto::generate_client_secret();
    let now = ctx.clock.now();
    let rotated = ctx
        .store
        .rotate_client_secret(id, current, &crypto::hash_generated_secret(&secret), ROTATED_SECRETS_KEPT, now)
        .await?;
    if !rotated {
        return Err(ClientError::Conflict(
            "The client changed while its secret was being rotated; read it again and retry.".into(),
        ));
    }
    ctx.secrets.forget(id);
    Ok(render(id, &body, Some(&secret), existing.created_at, now))
}

/// Deletes client `id`; `false` when there was none.
pub async fn delete(ctx: &Ctx<'_>, id: &str) -> Result<bool, StoreError> {
    ctx.secrets.forget(id);
    ctx.store.delete_client(id).await
}
