//! The control plane's values: identities, OAuth2 clients, grants and tokens, self-service
//! flows' parts, the clock, and the pure helpers every layer shares (encoding, digests,
//! randomness, form bodies, page tokens, timestamps).
//!
//! Everything here is a value or a pure function of values. It must not do I/O: no database
//! (sqlx), no HTTP (axum, reqwest), no runtime (tokio), no files; the store maps rows to these
//! types and the core crates decide with them. The only impure things are the [`clock::Clock`]
//! trait, which the caller passes in, and OS randomness for new ids and secrets
//! ([`crypto::random_bytes`]).

// Outside tests a failure is a typed error, never a panic (control-plane/clippy.toml lets tests
// unwrap); exceptions are `#[expect]`ed with a reason, never `#[allow]`ed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

pub mod client;
pub mod clock;
pub mod crypto;
pub mod form;
pub mod identity;
pub mod paging;
pub mod token;

/// A fatal problem at start-up (bad config, bad rule file, port taken), shown as one line that
/// names the config key or file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

/// Unix seconds as RFC 3339 (`1970-01-01T00:00:00Z`), as the Hydra and Kratos JSON shapes
/// write times; empty when out of range.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
