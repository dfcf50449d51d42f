//! The Portcullis control plane: Hydra-compatible OAuth2 token and introspection endpoints,
//! the admin API (clients, access rules) and the rule snapshots Envoy filters poll.
//!
//! This crate does I/O (HTTP, database, files, clock, randomness) and delegates every decision
//! rule it shares with the filter to `portcullis-shared`; it must not re-implement rule
//! compilation or scope matching. The binary (`portcullis`, control-plane/bin) is a thin CLI over
//! [`app`].

// Exceptions to a lint are `#[expect]`ed with a reason, so a stale one is reported; outside
// tests a failure is an error value, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

pub mod admin;
pub mod app;
pub mod clients_file;
pub mod config;
pub mod courier;
pub mod error;
pub mod health;
pub mod identity;
pub mod oauth2;
pub mod routes;
pub mod rules;
pub mod ui;

pub use portcullis_keys as keys;
pub use portcullis_keys::jwt;
pub use portcullis_model::{client, clock, paging, rfc3339};
pub use portcullis_store as store;

/// Encoding, digests and randomness ([`portcullis_model::crypto`]), secret hashing and JWS checks
/// ([`portcullis_keys`]), under the one name the handlers use.
pub mod crypto {
    pub use portcullis_keys::hashing::*;
    pub use portcullis_keys::jws::verify_signature;
    pub use portcullis_model::crypto::*;
}

#[cfg(any(test, feature = "testing"))]
#[cfg_attr(
    not(test),
    expect(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "test fixtures (the `testing` feature, dev-dependencies only): a harness that cannot be built fails the test with the cause"
    )
)]
pub mod testing;
