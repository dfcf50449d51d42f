//! The Portcullis control plane: Hydra-compatible OAuth2 token and introspection endpoints,
//! the admin API (clients, access rules) and the rule snapshots Envoy filters poll.
//!
//! This crate does I/O (HTTP, database, files, clock, randomness) and delegates every decision
//! rule it shares with the filter to `portcullis-shared`; it must not re-implement rule
//! compilation or scope matching. The binary (`portcullis`) is a thin CLI over [`app`].

pub mod admin;
pub mod app;
pub mod cli;
pub mod client;
pub mod clients_file;
pub mod clock;
pub mod config;
pub mod courier;
pub mod crypto;
pub mod error;
pub mod health;
pub mod identity;
pub mod jwt;
pub mod keys;
pub mod oauth2;
pub mod paging;
pub mod rules;
pub mod store;
pub mod ui;

#[cfg(test)]
pub(crate) mod testing;
