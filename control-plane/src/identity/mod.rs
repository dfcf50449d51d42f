//! Identities (Kratos's job): the identity record and its JSON shapes, identity schemas,
//! passwords, the registration policy, sessions, self-service flows and passkeys.
//!
//! An identity is `traits` validated by an identity JSON Schema, plus admin-only metadata and
//! credentials. Credentials keep only verifiers (argon2id hashes, passkey public keys) and are
//! never part of a public JSON shape. Handlers live in the submodules; persistence lives in
//! `crate::store::identities`, `sessions` and `flows`.

pub mod admin;
pub mod code;
pub mod flow;
pub mod hooks;
pub mod passkey;
pub mod schema;
pub mod session;

pub use portcullis_identity::record::{derived_credentials, new_identity, rederive_credentials, sync_addresses};
pub use portcullis_identity::{config, password, policy};
pub use portcullis_model::identity::*;
