//! OAuth2 clients as the admin API and the clients file write them: a validated
//! [`ClientRequest`] becomes a stored row with its secret hashed (operator-chosen secrets with
//! argon2id, generated ones with SHA-256), replacements keep or end secrets, rotation keeps the
//! previous ones for a while. Secrets are returned only to be shown once. It must not parse
//! HTTP requests or render errors: the admin handlers map [`ClientError`].

use serde_json::{Map, Value};

use crate::Ctx;
use crate::client::{ClientBody, ClientRequest, InvalidClient, LIFESPAN_FIELDS, render};
use crate::crypto;
use crate::keyset::Keyset;
use crate::store::{ClientRow, ListFilter, Store, StoreError};

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

impl From<InvalidClient> for ClientError {
    fn from(e: InvalidClient) -> Self {
        Self::Invalid(e.0)
    }
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

/// A list request: the page and the `client_name` / `owner` filters.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub page: Keyset,
    pub filter: ListFilter,
}

impl ListQuery {
    /// Reads `page_size`, `page_token`, `client_name` and `owner` from the query's pairs.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ClientError> {
        let mut q = ListQuery::default();
        for (key, value) in pairs {
            if q.page.read(key, value).map_err(ClientError::Invalid)? {
                continue;
            }
            match key.as_str() {
                "client_name" => q.filter.client_name = Some(value.clone()),
                "owner" => q.filter.owner = Some(value.clone()),
                _ => {}
            }
        }
        Ok(q)
    }

    /// The `Link` header value on `url` (scheme, host and path).
    pub fn link(&self, url: &str, next: Option<&str>) -> String {
        let f = &self.filter;
        let filters: Vec<(&str, &str)> = [("client_name", &f.client_name), ("owner", &f.owner)]
            .into_iter()
            .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
            .collect();
        self.page.link(url, &filters, next)
    }
}

/// One page of clients as GET shows them (no secrets) and the next page's token, if any.
pub async fn list(store: &Store, q: &ListQuery) -> Result<(Vec<Value>, Option<String>), ClientError> {
    let mut rows = store.list_clients(&q.page.after, q.page.fetch(), &q.filter).await?;
    let next = q.page.cut(&mut rows, |r| &r.client_id);
    let items = rows.iter().map(shown).collect::<Result<_, _>>()?;
    Ok((items, next))
}

/// Client `id` as GET shows it.
pub async fn get(store: &Store, id: &str) -> Result<Value, ClientError> {
    shown(&store.get_client(id).await?.ok_or(ClientError::NotFound)?)
}

fn shown(row: &ClientRow) -> Result<Value, ClientError> {
    Ok(render(&row.client_id, &body_of(row)?, None, row.created_at, row.updated_at))
}

/// PUT: replaces client `id` with `map`, whose `client_id` must be absent or `id`.
pub async fn replace_with(ctx: &Ctx<'_>, id: &str, map: Map<String, Value>) -> Result<Value, ClientError> {
    let req = ClientRequest::parse(map)?;
    if req.client_id.as_deref().is_some_and(|body_id| body_id != id) {
        return Err(ClientError::Invalid("client_id: must be absent or equal to the client id in the path".into()));
    }
    let existing = ctx.store.get_client(id).await?.ok_or(ClientError::NotFound)?;
    replace(ctx, existing, req).await
}

/// PATCH: an RFC 6902 JSON Patch applied to the client as GET shows it. `client_id` and
/// `created_at` cannot change; adding `/client_secret` sets a new secret (shown once) and,
/// like PUT, ends the rotated ones.
pub async fn patch(ctx: &Ctx<'_>, id: &str, ops: Value) -> Result<Value, ClientError> {
    let ops: json_patch::Patch = serde_path_to_error::deserialize(ops).map_err(|e| {
        let path = e.path().to_string();
        ClientError::Invalid(format!("body: not a JSON Patch (RFC 6902) array at `{path}`: {}", e.into_inner()))
    })?;
    let existing = ctx.store.get_client(id).await?.ok_or(ClientError::NotFound)?;
    let mut doc = shown(&existing)?;
    let before = doc.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| ClientError::Invalid(format!("patch: {e}")))?;
    for field in ["client_id", "created_at"] {
        if doc.get(field) != before.get(field) {
            return Err(ClientError::Invalid(format!("{field}: cannot be changed")));
        }
    }
    let Value::Object(map) = doc else {
        return Err(ClientError::Invalid("patch: the result must be a JSON object".into()));
    };
    replace(ctx, existing, ClientRequest::parse(map)?).await
}

/// Sets the 13 per-grant token lifespans of client `id` (absent ones become null, i.e. the
/// global `ttl.*`) and leaves everything else alone.
pub async fn set_lifespans(ctx: &Ctx<'_>, id: &str, input: &Map<String, Value>) -> Result<Value, ClientError> {
    if let Some(unknown) = input.keys().find(|k| !LIFESPAN_FIELDS.contains(&k.as_str())) {
        return Err(ClientError::Invalid(format!(
            "unknown field `{unknown}`: not a token lifespan; allowed: {}",
            LIFESPAN_FIELDS.join(", ")
        )));
    }
    let existing = ctx.store.get_client(id).await?.ok_or(ClientError::NotFound)?;
    let Value::Object(mut map) = shown(&existing)? else {
        return Err(ClientError::Internal("client did not render as an object".into()));
    };
    for field in LIFESPAN_FIELDS {
        map.insert(field.into(), input.get(field).cloned().unwrap_or(Value::Null));
    }
    replace(ctx, existing, ClientRequest::parse(map)?).await
}

/// Ends the rotated secrets of client `id`: only the current one works from now on.
pub async fn drop_rotated_secrets(store: &Store, id: &str) -> Result<(), ClientError> {
    store.get_client(id).await?.ok_or(ClientError::NotFound)?;
    store.clear_rotated_client_secrets(id).await?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_query_reads_its_filters_and_keeps_them_in_the_link() {
        let pairs: Vec<(String, String)> =
            [("owner", "a b"), ("page_size", "5"), ("client_name", "svc")].map(|(k, v)| (k.into(), v.into())).into();
        let q = ListQuery::parse(&pairs).unwrap();
        assert_eq!(
            q.link("https://h/admin/clients", None),
            "<https://h/admin/clients?page_size=5&client_name=svc&owner=a%20b&page_token=>; rel=\"first\""
        );
        let bad = [("page_size".to_owned(), "x".to_owned())];
        assert!(matches!(ListQuery::parse(&bad), Err(ClientError::Invalid(m)) if m.starts_with("page_size:")));
    }
}
