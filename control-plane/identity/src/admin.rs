//! Identity administration without HTTP: the create/replace body (`IdentityIn`), checking it
//! against the identity's schema, hashing or importing its password within the hashing bound,
//! applying address verification, building the identity and its trait-derived credentials,
//! inserting it, and the admin JSON of an identity (credential configs without verifiers).
//! Storing a replacement revokes a deactivated identity's sessions (through the rules, so the
//! filters drop them at once). The admin API's operations are here too, as functions of a
//! JSON body or query pairs: list filtering and keyset pages, JSON Patch (frozen paths
//! refused), delete, credential removal, the batch loop within Kratos's limits, and admin
//! recovery codes. Errors are an [`IdentityError`]; this module must not answer HTTP: the
//! control plane maps the errors to its API bodies.

use std::sync::Arc;
use std::time::Duration;

use portcullis_keys::hashing::HashError;
use portcullis_model::identity::{
    Body, CODE, Credential, Identity, PASSKEY, PASSWORD, State as IdentityState, View, url_segment,
};
use portcullis_model::paging;
use portcullis_rules::Rules;
use portcullis_store::StoreError;
use portcullis_store::identities::IdentityFilter;
use portcullis_store::sessions::Deactivate;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::context::Identities;
use crate::crypto;
use crate::flow::{self, CodeState, FlowError, Kind};
use crate::password;
use crate::record::{derived_credentials, new_identity, sync_addresses};
use crate::schema::Schema;
use crate::session::revoke;

/// Why an identity could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The request is wrong; the text names the field.
    #[error("{0}")]
    Invalid(String),
    /// Another identity already answers to one of the identifiers or the `external_id`.
    #[error("{0}")]
    Conflict(String),
    /// Every password hashing slot is busy: retry, or import a hash.
    #[error("every password hashing slot is busy")]
    Busy,
    /// Hashing the password failed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The identity to replace no longer exists.
    #[error("the identity does not exist")]
    NotFound,
    /// The identity has no credential of this type to remove.
    #[error("the identity has no {0} credential")]
    NoCredential(String),
    /// Something on the server failed (a tokenizer template, signing); the text is for the log.
    #[error("{0}")]
    Internal(String),
    /// Storing the recovery flow failed.
    #[error("{}", .0.reason)]
    Flow(FlowError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IdentityError {
    fn invalid(text: impl Into<String>) -> Self {
        Self::Invalid(text.into())
    }
}

/// Kratos's text for a duplicate identifier, which SDK users match on.
const DUPLICATE: &str = "An account with the same identifier (email, phone, username, ...) exists already.";

// --- request bodies -------------------------------------------------------------------------

/// An address as sent by an importer or as found in a patched identity (the extra fields of
/// the output shape — `id`, `via`, timestamps — are accepted and ignored).
#[derive(Deserialize)]
struct AddressIn {
    value: String,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    verified_at: Option<String>,
}

/// `credentials.password.config`. No `Debug`: it carries a password or its hash.
#[derive(Deserialize, Default)]
struct PasswordConfigIn {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    hashed_password: Option<String>,
}

#[derive(Deserialize)]
struct PasswordIn {
    #[serde(default)]
    config: PasswordConfigIn,
}

/// The body of create and replace, and what a JSON Patch must leave behind. Fields Kratos
/// has and we do not use (`organization_id`, `recovery_addresses`, `schema_url`, …) are
/// ignored; recovery addresses always follow the traits.
#[derive(Deserialize, Default)]
pub struct IdentityIn {
    #[serde(default)]
    schema_id: Option<String>,
    #[serde(default)]
    traits: Option<Value>,
    #[serde(default)]
    state: Option<IdentityState>,
    #[serde(default)]
    metadata_public: Value,
    #[serde(default)]
    metadata_admin: Value,
    #[serde(default)]
    verifiable_addresses: Option<Vec<AddressIn>>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    credentials: Option<Map<String, Value>>,
}

/// Whether `credentials` carry a plaintext password (batch limits depend on it).
pub fn plaintext_in(credentials: Option<&Map<String, Value>>) -> bool {
    credentials.and_then(|c| c.get(PASSWORD)).is_some_and(|p| p["config"]["password"].is_string())
}

/// Deserializes `v`, naming the offending field (`prefix` + serde's path) in the 400.
pub fn parse<T: DeserializeOwned>(v: Value, prefix: &str) -> Result<T, IdentityError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.trim_end_matches('.'), path.as_str()) {
            ("", ".") => String::new(),
            (p, ".") => format!("{p}: "),
            ("", rest) => format!("{rest}: "),
            (p, rest) => format!("{p}.{rest}: "),
        };
        IdentityError::invalid(format!("{field}{}", e.inner()))
    })
}

// --- building an identity -------------------------------------------------------------------

/// What a create or replace will store, checked and hashed.
pub struct Prepared {
    pub identity: Identity,
    pub credentials: Vec<Credential>,
}

/// `traits.email: is not a valid e-mail address` from the schema's `/traits/email` errors.
fn trait_errors(errors: &[crate::schema::TraitError]) -> IdentityError {
    let text = errors
        .iter()
        .map(|e| {
            let field = e.pointer.trim_start_matches('/').replace('/', ".");
            let field = if field.is_empty() { "traits".to_owned() } else { field };
            format!("{field}: {}", e.text)
        })
        .collect::<Vec<_>>()
        .join("; ");
    IdentityError::invalid(text)
}

fn schema_for(state: &Identities, id: Option<&str>) -> Result<Arc<Schema>, IdentityError> {
    match id.filter(|s| !s.is_empty()) {
        None => Ok(state.schemas.default_schema()),
        Some(id) => state.schemas.get(id).ok_or_else(|| {
            IdentityError::invalid(format!("schema_id: there is no identity schema with id {id:?} (see GET /schemas)"))
        }),
    }
}

/// The argon2id (or imported) hash for `credentials.password`, if one was given. Imports skip
/// the password policy, as Kratos: the user chose the password somewhere else.
async fn password_hash(
    state: &Identities,
    credentials: Option<&Map<String, Value>>,
) -> Result<Option<String>, IdentityError> {
    let Some(credentials) = credentials else {
        return Ok(None);
    };
    let mut hash = None;
    for (kind, value) in credentials {
        if value.is_null() {
            continue;
        }
        if kind != PASSWORD {
            return Err(IdentityError::invalid(format!(
                "credentials.{kind}: only password credentials can be imported; passkeys and codes are set up by the user"
            )));
        }
        let p: PasswordIn = parse(value.clone(), "credentials.password")?;
        hash = match (p.config.password, p.config.hashed_password) {
            (Some(_), Some(_)) => {
                return Err(IdentityError::invalid(
                    "credentials.password.config: give either password or hashed_password, not both",
                ));
            }
            (None, Some(h)) => {
                if !password::is_supported_hash(&h) {
                    return Err(IdentityError::invalid(
                        "credentials.password.config.hashed_password: unsupported hash format; import argon2 \
                         (PHC string, $argon2id$…) or bcrypt ($2a$/$2b$/$2y$) hashes",
                    ));
                }
                Some(h)
            }
            (Some(pw), None) => {
                if pw.is_empty() || pw.len() > password::MAX_PASSWORD_BYTES {
                    return Err(IdentityError::invalid(format!(
                        "credentials.password.config.password: must be 1 to {} bytes long",
                        password::MAX_PASSWORD_BYTES
                    )));
                }
                let hashed = match state.hashing.run(move || password::hash(&pw)).await {
                    Ok(h) => h.map_err(IdentityError::Hashing)?,
                    Err(HashError::Busy(_)) => return Err(IdentityError::Busy),
                    Err(HashError::Failed(e)) => return Err(IdentityError::Hashing(e)),
                };
                Some(hashed)
            }
            (None, None) => {
                return Err(IdentityError::invalid(
                    "credentials.password.config: give password (plaintext) or hashed_password",
                ));
            }
        };
    }
    Ok(hash)
}

/// Applies what the caller says about verification to the addresses derived from the traits
/// (an import keeps verified addresses verified). Addresses that are not traits are dropped,
/// as Kratos does.
fn apply_verification(body: &mut Body, given: &[AddressIn], now: i64) -> Result<(), IdentityError> {
    for (i, g) in given.iter().enumerate() {
        if let Some(s) = g.status.as_deref() {
            if !matches!(s, "pending" | "sent" | "completed") {
                return Err(IdentityError::invalid(format!(
                    "verifiable_addresses[{i}].status: must be pending, sent or completed"
                )));
            }
        }
        let verified_at = match g.verified_at.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| {
                        IdentityError::invalid(format!("verifiable_addresses[{i}].verified_at: not an RFC 3339 time"))
                    })?
                    .unix_timestamp(),
            ),
        };
        let Some(a) = body.verifiable_addresses.iter_mut().find(|a| a.value.eq_ignore_ascii_case(g.value.trim()))
        else {
            continue;
        };
        let before = a.clone();
        if g.verified {
            a.verified = true;
            a.status = "completed".into();
            a.verified_at = verified_at.or(a.verified_at).or(Some(now));
        } else {
            a.verified = false;
            a.verified_at = None;
            a.status = match g.status.as_deref() {
                Some(s @ ("pending" | "sent")) => s.to_owned(),
                _ if before.verified => "pending".into(),
                _ => before.status.clone(),
            };
        }
        if *a != before {
            a.updated_at = now;
        }
    }
    Ok(())
}

/// Checks `input` and builds the identity to store: a new one, or `existing` replaced (its
/// id, creation time and other credential types kept).
pub async fn prepare(
    state: &Identities,
    input: IdentityIn,
    existing: Option<(&Identity, &[Credential])>,
) -> Result<Prepared, IdentityError> {
    if existing.is_some() {
        for (present, field) in [
            (input.schema_id.is_some(), "schema_id"),
            (input.traits.is_some(), "traits"),
            (input.state.is_some(), "state"),
        ] {
            if !present {
                return Err(IdentityError::invalid(format!("{field}: required when replacing an identity")));
            }
        }
    }
    let schema = schema_for(state, input.schema_id.as_deref())?;
    let traits = input.traits.ok_or_else(|| IdentityError::invalid("traits: required"))?;
    schema.validate(&traits).map_err(|e| trait_errors(&e))?;
    let new_hash = password_hash(state, input.credentials.as_ref()).await?;
    if new_hash.is_some() && schema.values(&traits, |f| f.password_identifier).is_empty() {
        return Err(IdentityError::invalid(format!(
            "credentials.password: schema {:?} marks no trait as a password identifier, so nobody could sign in \
             with this password",
            schema.id
        )));
    }
    let now = state.clock.now();
    let new_state = input.state.unwrap_or(IdentityState::Active);
    let mut identity = match existing {
        None => {
            let mut i = new_identity(&schema, traits.clone(), now);
            i.state = new_state;
            i
        }
        Some((old, _)) => {
            let mut i = old.clone();
            i.schema_id = schema.id.clone();
            i.body.traits = traits.clone();
            sync_addresses(&schema, &mut i.body, now);
            if i.state != new_state {
                i.state = new_state;
                i.state_changed_at = now;
            }
            i.updated_at = now;
            i
        }
    };
    identity.body.metadata_public = input.metadata_public;
    identity.body.metadata_admin = input.metadata_admin;
    identity.body.external_id = input.external_id.filter(|e| !e.is_empty());
    if let Some(given) = &input.verifiable_addresses {
        apply_verification(&mut identity.body, given, now)?;
    }
    let old_credentials = existing.map_or(&[][..], |(_, c)| c);
    let credentials = derived_credentials(&schema, &traits, old_credentials, new_hash, now);
    Ok(Prepared { identity, credentials })
}

/// A taken identifier is Kratos's 409 with Kratos's text; a taken `external_id` says so.
pub fn conflict_error(conflict: &portcullis_store::identities::Conflict) -> IdentityError {
    if conflict.kind == portcullis_store::identities::EXTERNAL_ID {
        return IdentityError::Conflict("external_id: another identity already has this external_id".into());
    }
    IdentityError::Conflict(DUPLICATE.into())
}

/// Inserts a prepared identity; a taken identifier is Kratos's 409.
pub async fn insert(state: &Identities, p: &Prepared) -> Result<(), IdentityError> {
    if let Err(conflict) = state.store.insert_identity(&p.identity, &p.credentials).await? {
        tracing::info!(kind = %conflict.kind, "admin identity create refused: identifier exists");
        return Err(conflict_error(&conflict));
    }
    tracing::info!(identity_id = %p.identity.id, "identity created through the admin API");
    Ok(())
}

// --- rendering ------------------------------------------------------------------------------

/// A credential's config without its verifier: `include_credential` shows what a credential
/// is set up with, never the material an offline attack needs.
fn public_config(c: &Credential) -> Value {
    match &c.config {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.contains("hash") && !k.contains("secret") && k.as_str() != "password")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => json!({}),
    }
}

/// The admin JSON of `identity`; with `credentials`, their types and identifiers, plus the
/// (verifier-free) configs of the types named in `include`.
pub fn render(
    state: &Identities,
    identity: &Identity,
    credentials: Option<&[Credential]>,
    include: &[String],
) -> Value {
    let mut v = identity.to_json(&state.config.public_base, View::Admin, credentials);
    for c in credentials.unwrap_or_default() {
        if include.contains(&c.kind) {
            v["credentials"][&c.kind]["config"] = public_config(c);
        }
    }
    v
}

/// Stores a replacement for `old` and deals with the consequences: stale credentials go, and
/// an inactive identity's sessions are revoked at once (filters included).
pub async fn store_replacement(
    state: &Identities,
    rules: &Arc<Rules>,
    old_credentials: &[Credential],
    p: &Prepared,
) -> Result<Vec<Credential>, IdentityError> {
    match state.store.update_identity(&p.identity, &p.credentials).await? {
        Err(conflict) => {
            tracing::info!(kind = %conflict.kind, "admin identity update refused: identifier exists");
            return Err(conflict_error(&conflict));
        }
        Ok(false) => return Err(IdentityError::NotFound),
        Ok(true) => {}
    }
    // `code` identifiers come only from traits: none left means no code credential.
    if old_credentials.iter().any(|c| c.kind == CODE) && !p.credentials.iter().any(|c| c.kind == CODE) {
        state.store.delete_credential(&p.identity.id, CODE).await?;
    }
    if p.identity.state == IdentityState::Inactive {
        let n = revoke(
            &state.store,
            rules,
            state.clock.now(),
            Deactivate::Identity { identity_id: &p.identity.id, except: "" },
        )
        .await?;
        if n > 0 {
            tracing::info!(identity_id = %p.identity.id, sessions = n, "identity deactivated: sessions revoked");
        }
    }
    tracing::info!(identity_id = %p.identity.id, "identity updated through the admin API");
    Ok(state.store.get_credentials(&p.identity.id).await?)
}

// --- the admin API's operations ---------------------------------------------------------------

const DEFAULT_PAGE_SIZE: i64 = 250;
const MAX_PAGE_SIZE: i64 = 500;
/// More ids than this in one list request would exceed what every SQL backend binds.
const MAX_IDS: usize = 500;
/// Kratos's batch limits: hashing a plaintext password costs ~50 ms of CPU, a hash costs nothing.
const MAX_BATCH: usize = 1000;
const MAX_BATCH_PLAINTEXT: usize = 200;
/// What a JSON Patch may not touch (Kratos refuses `id`, `credentials` and `state_changed_at`;
/// `created_at` is history, not data).
const FROZEN: &[&str] = &["/id", "/credentials", "/state_changed_at", "/created_at"];

/// The credential types named by `include_credential` (repeated or comma-separated).
pub fn include_list(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "include_credential")
        .flat_map(|(_, v)| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// One page of the identity list and its `Link` header value (`first`, and `next` when more).
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub link: String,
}

/// `GET /admin/identities`' query (`page_size`, `page_token`, `ids`, `credentials_identifier`,
/// `include_credential`) answered as one keyset page.
pub async fn list(state: &Identities, pairs: &[(String, String)]) -> Result<Page, IdentityError> {
    let mut page_size = DEFAULT_PAGE_SIZE;
    let mut after = None;
    let mut filter = IdentityFilter::default();
    for (key, value) in pairs {
        match key.as_str() {
            "page_size" => {
                page_size = value.parse::<i64>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
                    IdentityError::invalid(format!("page_size: must be a number from 1 to {MAX_PAGE_SIZE}"))
                })?;
            }
            "page_token" if !value.is_empty() => {
                after = Some(paging::parse_token(value).map_err(|e| IdentityError::invalid(e.to_string()))?);
            }
            "ids" if !value.is_empty() => filter.ids.push(value.clone()),
            "credentials_identifier" if !value.is_empty() => {
                // Identifiers are stored normalised; e-mail addresses lower-cased.
                let v = value.trim();
                filter.credentials_identifier = Some(if v.contains('@') { v.to_lowercase() } else { v.to_owned() });
            }
            _ => {}
        }
    }
    if filter.ids.len() > MAX_IDS {
        return Err(IdentityError::invalid(format!("ids: at most {MAX_IDS} per request")));
    }
    if !filter.ids.is_empty() && filter.credentials_identifier.is_some() {
        return Err(IdentityError::invalid("ids and credentials_identifier cannot be combined (as in Kratos)"));
    }
    let include = include_list(pairs);
    let mut rows = state.store.list_identities(&filter, after, page_size + 1).await?;
    let more = rows.len() as i64 > page_size;
    rows.truncate(usize::try_from(page_size).unwrap_or(0));
    let mut items = Vec::with_capacity(rows.len());
    for i in &rows {
        let creds = if include.is_empty() { None } else { Some(state.store.get_credentials(&i.id).await?) };
        items.push(render(state, i, creds.as_deref(), &include));
    }
    let mut base = format!("/admin/identities?page_size={page_size}");
    for id in &filter.ids {
        base.push_str(&format!("&ids={}", url_segment(id)));
    }
    if let Some(c) = &filter.credentials_identifier {
        base.push_str(&format!("&credentials_identifier={}", url_segment(c)));
    }
    for k in &include {
        base.push_str(&format!("&include_credential={}", url_segment(k)));
    }
    let mut link = format!("<{base}>; rel=\"first\"");
    if let (true, Some(last)) = (more, rows.last()) {
        let token = paging::token(last.created_at, &last.id);
        link.push_str(&format!(",<{base}&page_token={token}>; rel=\"next\""));
    }
    Ok(Page { items, link })
}

/// The admin JSON of identity `id` with the credential configs named in `include`.
pub async fn get(state: &Identities, id: &str, include: &[String]) -> Result<Value, IdentityError> {
    let identity = state.store.get_identity(id).await?.ok_or(IdentityError::NotFound)?;
    let creds = state.store.get_credentials(id).await?;
    Ok(render(state, &identity, Some(&creds), include))
}

/// Creates an identity from an admin body; its admin JSON.
pub async fn create(state: &Identities, body: Value) -> Result<Value, IdentityError> {
    let input: IdentityIn = parse(body, "")?;
    let p = prepare(state, input, None).await?;
    insert(state, &p).await?;
    Ok(render(state, &p.identity, Some(&p.credentials), &[]))
}

/// Replaces identity `id` with `input` (a `PUT`, or a patched document); its admin JSON.
pub async fn replace(state: &Identities, rules: &Arc<Rules>, id: &str, body: Value) -> Result<Value, IdentityError> {
    let input: IdentityIn = parse(body, "")?;
    let old = state.store.get_identity(id).await?.ok_or(IdentityError::NotFound)?;
    let old_credentials = state.store.get_credentials(id).await?;
    let p = prepare(state, input, Some((&old, &old_credentials))).await?;
    let creds = store_replacement(state, rules, &old_credentials, &p).await?;
    Ok(render(state, &p.identity, Some(&creds), &[]))
}

/// Refuses a JSON Patch that touches a [`FROZEN`] path (or the whole document).
fn check_patch(ops: &json_patch::Patch) -> Result<(), IdentityError> {
    for (i, op) in ops.0.iter().enumerate() {
        let mut touched = Vec::new();
        match op {
            json_patch::PatchOperation::Test(_) => {}
            json_patch::PatchOperation::Move(m) => {
                touched.push(m.from.as_str());
                touched.push(m.path.as_str());
            }
            other => touched.push(other.path().as_str()),
        }
        for path in touched {
            let frozen = path.is_empty() || FROZEN.iter().any(|f| path == *f || path.starts_with(&format!("{f}/")));
            if frozen {
                let what = if path.is_empty() { "the whole identity" } else { path };
                return Err(IdentityError::invalid(format!("[{i}].path: {what} cannot be patched")));
            }
        }
    }
    Ok(())
}

/// Applies an RFC 6902 patch to identity `id`'s admin JSON, then stores it as a replacement.
pub async fn patch(state: &Identities, rules: &Arc<Rules>, id: &str, body: Value) -> Result<Value, IdentityError> {
    let ops: json_patch::Patch = parse(body, "")?;
    check_patch(&ops)?;
    let old = state.store.get_identity(id).await?.ok_or(IdentityError::NotFound)?;
    let mut doc = old.to_json(&state.config.public_base, View::Admin, None);
    json_patch::patch(&mut doc, &ops.0)
        .map_err(|e| IdentityError::invalid(format!("the patch does not apply: {e}")))?;
    replace(state, rules, id, doc).await
}

/// Deletes identity `id` after revoking its sessions (and pushing the revocations).
pub async fn delete(state: &Identities, rules: &Arc<Rules>, id: &str) -> Result<(), IdentityError> {
    if state.store.get_identity(id).await?.is_none() {
        return Err(IdentityError::NotFound);
    }
    revoke(&state.store, rules, state.clock.now(), Deactivate::Identity { identity_id: id, except: "" }).await?;
    if !state.store.delete_identity(id).await? {
        return Err(IdentityError::NotFound);
    }
    tracing::info!(identity_id = %id, "identity deleted through the admin API");
    Ok(())
}

/// Removes identity `id`'s credential of type `kind` (password only, as Kratos refuses
/// passkeys and codes here).
pub async fn delete_credential(state: &Identities, id: &str, kind: &str) -> Result<(), IdentityError> {
    if kind == PASSKEY || kind == CODE {
        return Err(IdentityError::invalid(format!(
            "You cannot remove {kind} credentials using this API: they follow the identity's traits or belong to \
             the user's devices."
        )));
    }
    if state.store.get_identity(id).await?.is_none() {
        return Err(IdentityError::NotFound);
    }
    if kind != PASSWORD || !state.store.delete_credential(id, kind).await? {
        return Err(IdentityError::NoCredential(kind.to_owned()));
    }
    tracing::info!(identity_id = %id, kind = %kind, "credential removed through the admin API");
    Ok(())
}

#[derive(Deserialize)]
struct BatchItem {
    #[serde(default)]
    patch_id: Option<String>,
    #[serde(default)]
    create: Option<Value>,
}

#[derive(Deserialize)]
struct BatchIn {
    identities: Vec<BatchItem>,
}

/// One item's outcome in a batch: the created identity's id or why it failed.
#[derive(Debug)]
pub struct BatchResult {
    pub patch_id: Option<String>,
    pub outcome: Result<String, IdentityError>,
}

/// `{identities: [{patch_id?, create}]}`: each item created on its own (one failing does not
/// stop the others), within Kratos's limits on the batch's size.
pub async fn batch(state: &Identities, body: Value) -> Result<Vec<BatchResult>, IdentityError> {
    let input: BatchIn = parse(body, "")?;
    let n = input.identities.len();
    let plaintext = input.identities.iter().any(|i| {
        i.create.as_ref().is_some_and(|c| c["credentials"].as_object().is_some_and(|m| plaintext_in(Some(m))))
    });
    let limit = if plaintext { MAX_BATCH_PLAINTEXT } else { MAX_BATCH };
    if n > limit {
        return Err(IdentityError::invalid(format!(
            "identities: at most {limit} per request{} (got {n})",
            if plaintext { " when any password is in plaintext" } else { "" }
        )));
    }
    let mut results = Vec::with_capacity(n);
    for item in input.identities {
        let outcome = async {
            let create = item.create.ok_or_else(|| IdentityError::invalid("create: required"))?;
            let parsed: IdentityIn = parse(create, "create")?;
            let p = prepare(state, parsed, None).await?;
            insert(state, &p).await?;
            Ok(p.identity.id)
        }
        .await;
        results.push(BatchResult { patch_id: item.patch_id, outcome });
    }
    Ok(results)
}

#[derive(Deserialize)]
struct RecoveryCodeIn {
    identity_id: String,
    #[serde(default)]
    expires_in: Option<String>,
    #[serde(default)]
    flow_type: Option<String>,
}

/// Go's duration syntax as Kratos takes it (`1h`, `30m`, `1h30m`, `90s`).
fn parse_expires_in(s: &str) -> Result<i64, IdentityError> {
    let bad = || {
        IdentityError::invalid(format!(
            "expires_in: {s:?} is not a duration like 1h, 30m or 1h30m; it must be in the future"
        ))
    };
    let d: Duration = humantime_serde::re::humantime::parse_duration(s.trim()).map_err(|_| bad())?;
    let secs = i64::try_from(d.as_secs()).map_err(|_| bad())?;
    // A year is longer than any invitation should live; the cap also keeps the sum in range.
    if secs == 0 || secs > 366 * 24 * 3600 { Err(bad()) } else { Ok(secs) }
}

/// `{identity_id, expires_in?, flow_type?}` → `{recovery_link, recovery_code, expires_at}`: a
/// recovery flow already waiting for this code, for an operator to hand to the user (an
/// invite, or a reset). Nothing is e-mailed.
pub async fn recovery_code(state: &Identities, body: Value) -> Result<Value, IdentityError> {
    let input: RecoveryCodeIn = parse(body, "")?;
    let config = &state.config.selfservice;
    if !config.flows.recovery.enabled {
        return Err(IdentityError::invalid("Recovery is not enabled (selfservice.flows.recovery.enabled)."));
    }
    let api = match input.flow_type.as_deref().unwrap_or("browser") {
        "browser" => false,
        "api" => true,
        other => return Err(IdentityError::invalid(format!("flow_type: must be browser or api, not {other:?}"))),
    };
    let lifespan = match input.expires_in.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => parse_expires_in(s)?,
        None => i64::try_from(config.methods.code.lifespan.as_secs()).unwrap_or(900),
    };
    let identity = state.store.get_identity(&input.identity_id).await?.ok_or(IdentityError::NotFound)?;
    if !identity.is_active() {
        return Err(IdentityError::invalid(
            "identity_id: the identity is inactive, so a recovery code could not sign it in; activate it first",
        ));
    }
    let now = state.clock.now();
    let csrf = if api { String::new() } else { crypto::b64url(&crypto::random_bytes::<32>()) };
    let request_url =
        format!("{}/self-service/recovery/{}", state.config.public_base, if api { "api" } else { "browser" });
    let mut f = flow::new_flow(state, Kind::Recovery, api, request_url, None, &csrf);
    f.skip_csrf = !api;
    f.expires_at = now + lifespan;
    f.state = "sent_email".into();
    f.active = Some(CODE.into());
    f.identity_id = Some(identity.id.clone());
    let code = crate::code::generate();
    // No address: the operator, not a mailbox, delivered this code, so entering it proves
    // nothing about any address.
    f.code = Some(CodeState {
        address: String::new(),
        hash: crate::code::hash(state, &f.id, &code),
        expires_at: f.expires_at,
        attempts: 0,
        sent: 1,
        identity_id: Some(identity.id.clone()),
        used: false,
    });
    flow::create(&state.store, &f).await.map_err(IdentityError::Flow)?;
    tracing::info!(identity_id = %identity.id, flow_id = %f.id, "admin recovery code created");
    Ok(json!({
        "recovery_link": f.ui_url(state),
        "recovery_code": code,
        "expires_at": portcullis_model::rfc3339(f.expires_at),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_takes_go_durations() {
        assert_eq!(parse_expires_in("1h").unwrap(), 3600);
        assert_eq!(parse_expires_in("1h30m").unwrap(), 5400);
        assert_eq!(parse_expires_in("90s").unwrap(), 90);
        assert!(parse_expires_in("-1h").is_err());
        assert!(parse_expires_in("9000h").is_err());
    }

    #[test]
    fn include_credential_is_repeated_or_comma_separated() {
        let pairs = [("include_credential", "password, passkey"), ("include_credential", ""), ("x", "code")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(include_list(&pairs), ["password", "passkey"]);
    }

    #[test]
    fn a_patch_may_not_touch_frozen_paths() {
        let patch = |v: Value| -> json_patch::Patch { serde_json::from_value(v).unwrap() };
        assert!(check_patch(&patch(json!([{"op": "replace", "path": "/traits/email", "value": "a@b.c"}]))).is_ok());
        for bad in [
            json!([{"op": "replace", "path": "/id", "value": "x"}]),
            json!([{"op": "remove", "path": "/credentials/password"}]),
            json!([{"op": "move", "from": "/created_at", "path": "/metadata_admin"}]),
            json!([{"op": "replace", "path": "", "value": {}}]),
        ] {
            assert!(matches!(check_patch(&patch(bad.clone())), Err(IdentityError::Invalid(_))), "{bad}");
        }
    }
}
