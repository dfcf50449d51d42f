//! The identity domain of the control plane (Kratos's job) without HTTP: identity schemas and
//! records, passwords and the registration policy, the identity, self-service, session and
//! courier config sections, the self-service flows (storage, errors, UI nodes and the kinds'
//! state machines), passkey ceremonies, one-time codes, web hooks, sessions (issue, read,
//! cookies, JSON), identity administration, and the courier that delivers codes. Functions
//! take their inputs explicitly (the store, the clock, a config section, or the small
//! [`Identities`] context) and return typed errors; this crate must not depend on axum or
//! render HTTP error bodies: the control plane's handlers extract, call in here and map the
//! errors once.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Exceptions to a lint are `#[expect]`ed with a reason, so a stale one is reported.
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

pub mod admin;
pub mod code;
pub mod config;
pub mod context;
pub mod courier;
pub mod flow;
pub mod hooks;
pub mod passkey;
pub mod password;
pub mod policy;
pub mod record;
pub mod schema;
pub mod session;
pub mod sessions;

// Encoding, digests and randomness under the name the moved code used in the control plane.
pub(crate) use portcullis_model::crypto;

pub use context::{Identities, Settings};
