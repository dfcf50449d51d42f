//! The OAuth2 and OpenID Connect domain of Portcullis, without HTTP: minting ([`issue`]),
//! authorization codes ([`code`]), client authentication ([`client_auth`]) and assertions
//! ([`assertion`]), the grants ([`token`], [`refresh`], [`jwt_bearer`]), introspection and
//! revocation, the login/consent/logout contract ([`flow`], [`logout`]), discovery, userinfo
//! claims, the Hydra Maester clients file ([`clients_file`]) and client validation ([`clients`]).
//!
//! Everything takes its inputs explicitly (a [`Ctx`] or fewer) and fails with a typed error
//! ([`OAuth2Error`], [`MintError`](issue::MintError), `StoreError`); the control plane's
//! handlers extract requests, call in here and map those errors to RFC 6749 bodies once. This
//! crate must not depend on axum, on the control plane, or on identity (a login session is an
//! input the caller read); it must not render HTML.

// Outside tests a failure is a typed error, never a panic (control-plane/clippy.toml lets tests
// unwrap); exceptions are `#[expect]`ed with a reason, never `#[allow]`ed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

pub mod assertion;
pub mod authorize;
pub mod client_auth;
pub mod clients;
pub mod clients_file;
pub mod code;
pub mod config;
pub mod context;
pub mod discovery;
pub mod error;
pub mod flow;
pub mod introspect;
pub mod issue;
pub mod jwt_bearer;
pub mod keyset;
pub mod logout;
pub mod params;
pub mod refresh;
pub mod revoke;
pub mod token;
pub mod trust;
pub mod userinfo;

pub use context::{Ctx, Revocations};
pub use error::{ErrorCode, OAuth2Error};
pub use params::Params;

use portcullis_keys::jwt;
use portcullis_model::{client, clock, rfc3339};
use portcullis_store as store;

/// Encoding, digests, randomness and secret hashing under one name.
mod crypto {
    pub use portcullis_keys::hashing::*;
    pub use portcullis_model::crypto::*;
}

#[cfg(test)]
mod testing;
