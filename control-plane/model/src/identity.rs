//! Identities (Kratos's): the identity record, its addresses and credentials, and its JSON
//! shapes per audience. Credentials keep only verifiers (argon2id hashes, passkey public keys)
//! and are never part of a public JSON shape. Values only: no schema validation (the identity
//! crate's), no storage (the store's).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::rfc3339;

/// The UI message id of a registration the operator's policy refused. Kratos has no id for this;
/// 4000040 is ours, in Kratos's validation range.
pub const REGISTRATION_POLICY_MESSAGE_ID: u32 = 4_000_040;

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
