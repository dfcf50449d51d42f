//! Identity records built from traits: a new identity, its verifiable and recovery addresses
//! and the credentials whose identifiers come from traits, kept in step when traits change.
//! Pure functions of the schema, the traits and the time; they must not read or write the store.

use portcullis_model::crypto;
use portcullis_model::identity::*;
use serde_json::json;

use crate::schema;

/// A new identity for `traits` under `schema`, with its verifiable and recovery addresses.
pub fn new_identity(schema: &schema::Schema, traits: serde_json::Value, now: i64) -> Identity {
    let mut body = Body { traits, ..Body::default() };
    sync_addresses(schema, &mut body, now);
    Identity {
        id: crypto::uuid_v4(),
        schema_id: schema.id.clone(),
        state: State::Active,
        state_changed_at: now,
        created_at: now,
        updated_at: now,
        body,
    }
}

/// Makes the address lists follow the traits: new addresses start unverified, removed ones
/// go, kept ones keep their verification.
pub fn sync_addresses(schema: &schema::Schema, body: &mut Body, now: i64) {
    let verifiable = schema.values(&body.traits, |f| f.verifiable);
    let old = std::mem::take(&mut body.verifiable_addresses);
    body.verifiable_addresses = verifiable
        .into_iter()
        .map(|value| {
            old.iter().find(|a| a.value == value).cloned().unwrap_or_else(|| VerifiableAddress {
                id: crypto::uuid_v4(),
                value,
                verified: false,
                via: "email".into(),
                status: "pending".into(),
                verified_at: None,
                created_at: now,
                updated_at: now,
            })
        })
        .collect();
    let recovery = schema.values(&body.traits, |f| f.recovery);
    let old = std::mem::take(&mut body.recovery_addresses);
    body.recovery_addresses = recovery
        .into_iter()
        .map(|value| {
            old.iter().find(|a| a.value == value).cloned().unwrap_or_else(|| RecoveryAddress {
                id: crypto::uuid_v4(),
                value,
                via: "email".into(),
                created_at: now,
                updated_at: now,
            })
        })
        .collect();
}

/// The credentials whose identifiers come from traits — `password` (when `hashed_password`
/// is given or already exists) and `code` — recomputed for `traits`. Existing configs are kept.
pub fn derived_credentials(
    schema: &schema::Schema,
    traits: &serde_json::Value,
    existing: &[Credential],
    new_password_hash: Option<String>,
    now: i64,
) -> Vec<Credential> {
    let mut out = Vec::new();
    let old = |kind: &str| existing.iter().find(|c| c.kind == kind);
    let password_ids = schema.values(traits, |f| f.password_identifier);
    let password_config = match (&new_password_hash, old(PASSWORD)) {
        (Some(h), _) => Some(json!({"hashed_password": h})),
        (None, Some(c)) => Some(c.config.clone()),
        (None, None) => None,
    };
    if let Some(config) = password_config {
        out.push(Credential {
            kind: PASSWORD.into(),
            identifiers: password_ids,
            config,
            version: 0,
            created_at: old(PASSWORD).map_or(now, |c| c.created_at),
            updated_at: now,
        });
    }
    let code_ids = schema.values(traits, |f| f.code_identifier);
    if !code_ids.is_empty() {
        out.push(Credential {
            kind: CODE.into(),
            config: json!({"addresses": code_ids.iter().map(|a| json!({"channel": "email", "address": a})).collect::<Vec<_>>()}),
            identifiers: code_ids,
            version: 0,
            created_at: old(CODE).map_or(now, |c| c.created_at),
            updated_at: now,
        });
    }
    out
}

/// `credentials` after a change of traits: the derived ones (`password`, `code`) follow the
/// new traits, keeping their configs; the others (passkeys) are kept as they are.
pub fn rederive_credentials(
    schema: &schema::Schema,
    traits: &serde_json::Value,
    credentials: &[Credential],
    now: i64,
) -> Vec<Credential> {
    let mut out = derived_credentials(schema, traits, credentials, None, now);
    out.extend(credentials.iter().filter(|c| c.kind != PASSWORD && c.kind != CODE).cloned());
    out
}
