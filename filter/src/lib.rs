//! The Portcullis proxy-wasm filter that Envoy and Istio load. It judges every request in the
//! gateway itself: pick the access rule, run its authenticators (with token introspection
//! answered from a cache shared by all workers), authorizer and mutators, then forward or
//! answer with a clear error. Rules arrive as snapshots that one worker long-polls from the
//! control plane and shares with the others through Envoy shared data.
//!
//! Only `wasm.rs` touches the proxy-wasm ABI; everything else talks to a small [`host::Host`]
//! trait so it runs in native unit tests against a mock. Nothing here may panic: a filter
//! that cannot decide answers with an error (fail closed).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cache;
pub mod config;
pub mod foreign;
pub mod headers;
pub mod host;
pub mod stream;
pub mod sync;

#[cfg(test)]
mod attacks;
#[cfg(test)]
mod mock;

#[cfg(target_arch = "wasm32")]
mod wasm;
