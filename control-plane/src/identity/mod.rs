//! Identities (Kratos's job): the identity record and its JSON shapes, identity schemas,
//! passwords, the registration policy, sessions, self-service flows and passkeys.
//!
//! An identity is `traits` validated by an identity JSON Schema, plus admin-only metadata and
//! credentials. Credentials keep only verifiers (argon2id hashes, passkey public keys) and are
//! never part of a public JSON shape. Handlers live in the submodules; persistence lives in
//! `crate::store::identities`, `sessions` and `flows`.

pub mod admin;
pub mod code;
pub mod config;
pub mod flow;
pub mod hooks;
pub mod passkey;
pub mod password;
pub mod policy;
pub mod schema;
pub mod session;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::client::rfc3339;

/// Credential types this server stores.
pub const PASSWORD: &str = "password";
pub const CODE: &str = "code";
pub const PASSKEY: &str = "passkey";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Active,
    Inactive,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifiableAddress {
    pub id: String,
    pub value: String,
    pub verified: bool,
    pub via: String,
    /// `pending`, `sent` or `completed`, as Kratos.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecoveryAddress {
    pub id: String,
    pub value: String,
    pub via: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The parts of an identity stored as one JSON document (`identities.body`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Body {
    pub traits: Value,
    #[serde(default)]
    pub metadata_public: Value,
    #[serde(default)]
    pub metadata_admin: Value,
    #[serde(default)]
    pub verifiable_addresses: Vec<VerifiableAddress>,
    #[serde(default)]
    pub recovery_addresses: Vec<RecoveryAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub id: String,
    pub schema_id: String,
    pub state: State,
    pub state_changed_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub body: Body,
}

/// A stored credential: its type, the identifiers it answers to and its verifier config.
#[derive(Clone, PartialEq)]
pub struct Credential {
    pub kind: String,
    pub identifiers: Vec<String>,
    pub config: Value,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

// `config` holds password hashes: offline-attack material.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("kind", &self.kind).field("identifiers", &self.identifiers).finish()
    }
}

/// Who is asking for an identity's JSON: each audience sees less than the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Admin API: everything but credential configs.
    Admin,
    /// `/sessions/whoami` and self-service flows: no `metadata_admin`.
    Owner,
}

impl Identity {
    pub fn is_active(&self) -> bool {
        self.state == State::Active
    }

    /// Kratos's identity JSON. `credentials` (admin GETs) lists types and identifiers; the
    /// configs are included only for types named in `include_config`, and even then hashes
    /// stay out.
    pub fn to_json(&self, public_base: &str, view: View, credentials: Option<&[Credential]>) -> Value {
        let addresses = |v: &[VerifiableAddress]| -> Vec<Value> {
            v.iter()
                .map(|a| {
                    let mut o = json!({
                        "id": a.id, "value": a.value, "verified": a.verified, "via": a.via, "status": a.status,
                        "created_at": rfc3339(a.created_at), "updated_at": rfc3339(a.updated_at),
                    });
                    if let Some(t) = a.verified_at {
                        o["verified_at"] = json!(rfc3339(t));
                    }
                    o
                })
                .collect()
        };
        let mut o = json!({
            "id": self.id,
            "schema_id": self.schema_id,
            "schema_url": format!("{public_base}/schemas/{}", url_segment(&self.schema_id)),
            "state": self.state.as_str(),
            "state_changed_at": rfc3339(self.state_changed_at),
            "traits": self.body.traits,
            "verifiable_addresses": addresses(&self.body.verifiable_addresses),
            "recovery_addresses": self.body.recovery_addresses.iter().map(|a| json!({
                "id": a.id, "value": a.value, "via": a.via,
                "created_at": rfc3339(a.created_at), "updated_at": rfc3339(a.updated_at),
            })).collect::<Vec<_>>(),
            "metadata_public": self.body.metadata_public,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        });
        if let Some(e) = &self.body.external_id {
            o["external_id"] = json!(e);
        }
        if view == View::Admin {
            o["metadata_admin"] = self.body.metadata_admin.clone();
        }
        if let Some(creds) = credentials {
            let mut map = Map::new();
            for c in creds {
                map.insert(
                    c.kind.clone(),
                    json!({
                        "type": c.kind,
                        "identifiers": c.identifiers,
                        "version": c.version,
                        "created_at": rfc3339(c.created_at),
                        "updated_at": rfc3339(c.updated_at),
                    }),
                );
            }
            o["credentials"] = Value::Object(map);
        }
        o
    }
}

/// Percent-encodes a path segment or query value (schema ids, identifiers are user-chosen).
pub fn url_segment(s: &str) -> String {
    portcullis_shared::pipeline::form_encode(s)
}

/// Lower-cases what the schema says is an e-mail address, so `Alice@Example.com` and
/// `alice@example.com` are one identifier.
pub fn normalise_identifier(value: &str, is_email: bool) -> String {
    let v = value.trim();
    if is_email { v.to_lowercase() } else { v.to_owned() }
}

/// A new identity for `traits` under `schema`, with its verifiable and recovery addresses.
pub fn new_identity(schema: &schema::Schema, traits: serde_json::Value, now: i64) -> Identity {
    let mut body = Body { traits, ..Body::default() };
    sync_addresses(schema, &mut body, now);
    Identity {
        id: crate::crypto::uuid_v4(),
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
                id: crate::crypto::uuid_v4(),
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
                id: crate::crypto::uuid_v4(),
                value,
                via: "email".into(),
                created_at: now,
                updated_at: now,
            })
        })
        .collect();
}

/// Marks `address` verified (after a code sent to it was entered).
pub fn mark_verified(body: &mut Body, address: &str, now: i64) -> bool {
    let mut changed = false;
    for a in &mut body.verifiable_addresses {
        if a.value == address && !a.verified {
            a.verified = true;
            a.status = "completed".into();
            a.verified_at = Some(now);
            a.updated_at = now;
            changed = true;
        }
    }
    changed
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

/// The public listener's identity routes (Kratos's frontend API).
pub fn public_routes() -> axum::Router<crate::app::AppState> {
    use axum::routing::{delete, get, post};
    axum::Router::new()
        .route("/sessions/whoami", get(session::whoami))
        .route("/sessions", get(session::list_mine).delete(session::revoke_others))
        .route("/sessions/{id}", delete(session::revoke_mine))
        .route("/self-service/logout/browser", get(session::logout_browser))
        .route("/self-service/logout/api", delete(session::logout_api))
        .route("/self-service/logout", get(session::logout))
        .route("/self-service/{kind}/browser", get(flow::init_browser))
        .route("/self-service/{kind}/api", get(flow::init_api))
        .route("/self-service/{kind}/flows", get(flow::get))
        .route("/self-service/{kind}", post(flow::submit))
        .route("/.well-known/ory/webauthn.js", get(passkey::script))
}

/// The admin listener's session routes (identities are in `admin`).
pub fn admin_routes() -> axum::Router<crate::app::AppState> {
    use axum::routing::{get, patch};
    axum::Router::new()
        .route("/admin/sessions", get(session::admin_list))
        .route("/admin/sessions/{id}", get(session::admin_get).delete(session::admin_disable))
        .route("/admin/sessions/{id}/extend", patch(session::admin_extend))
        .route(
            "/admin/identities/{id}/sessions",
            get(session::admin_list_for_identity).delete(session::admin_delete_for_identity),
        )
        .merge(admin::routes())
}
