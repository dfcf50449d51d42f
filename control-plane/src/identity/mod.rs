//! Identities (Kratos's job) over HTTP: the handlers of the self-service flows, sessions,
//! passkeys' script, schemas and the admin identity API. The logic they call lives in
//! `portcullis_identity` (re-exported here under the old paths), persistence in
//! `crate::store::identities`, `sessions` and `flows`. Handlers extract, call the core, map its
//! errors once and render; identity logic must not be added here.
//!
//! An identity is `traits` validated by an identity JSON Schema, plus admin-only metadata and
//! credentials. Credentials keep only verifiers (argon2id hashes, passkey public keys) and are
//! never part of a public JSON shape.

pub mod admin;
pub mod flow;
pub mod hooks;
pub mod passkey;
pub mod schema;
pub mod session;

pub use portcullis_identity::record::{derived_credentials, new_identity, rederive_credentials, sync_addresses};
pub use portcullis_identity::{code, config, password, policy};
pub use portcullis_model::identity::*;

/// The identity domain's inputs, from the config sections it owns and the two values it needs
/// from elsewhere (the public URL, the first `secrets.system`).
pub fn identities(
    config: &crate::config::Config,
    store: &crate::store::Store,
    clock: &std::sync::Arc<dyn crate::clock::Clock>,
    schemas: schema::Schemas,
    http: reqwest::Client,
    hashing: std::sync::Arc<crate::crypto::Hashing>,
    passkeys: passkey::Passkeys,
) -> portcullis_identity::Identities {
    use std::sync::Arc;
    let settings = portcullis_identity::Settings::new(
        config.identity.clone(),
        config.selfservice.clone(),
        config.session.clone(),
        config.urls.self_.public_base(),
        config.secrets.system.first().map(String::as_str),
    );
    portcullis_identity::Identities {
        store: store.clone(),
        clock: clock.clone(),
        config: Arc::new(settings),
        schemas: Arc::new(schemas),
        courier: Arc::new(crate::courier::Courier::new(&config.courier, config.dev)),
        http,
        hashing,
        passkeys: Arc::new(passkeys),
    }
}
