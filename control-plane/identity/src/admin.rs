//! Identity administration without HTTP: the create/replace body (`IdentityIn`), checking it
//! against the identity's schema, hashing or importing its password within the hashing bound,
//! applying address verification, building the identity and its trait-derived credentials,
//! inserting it, and the admin JSON of an identity (credential configs without verifiers).
//! Storing a replacement revokes a deactivated identity's sessions (through the rules, so the
//! filters drop them at once). Errors are an [`IdentityError`]; this module must not answer
//! HTTP: the control plane maps the errors to its API bodies.

use std::sync::Arc;

use portcullis_keys::hashing::HashError;
use portcullis_model::identity::{Body, CODE, Credential, Identity, PASSWORD, State as IdentityState, View};
use portcullis_rules::Rules;
use portcullis_store::StoreError;
use portcullis_store::sessions::Deactivate;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::context::Identities;
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
