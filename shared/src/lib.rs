//! Pure decision logic that the Envoy filter and the control plane both compile: the
//! Oathkeeper-compatible rule format and its compiled form, URL matching, scope strategies,
//! the null-safe template subset, the sans-IO decision pipeline, the RFC 7662 response type
//! and the snapshot the control plane pushes to filters.
//!
//! This crate must stay pure: no I/O, no clock, no randomness, no async runtime, no
//! proxy-wasm. Time comes in as a parameter and every call-out is returned to the caller as
//! a [`pipeline::Step`], so the same code runs natively, in tests, and inside Envoy.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cors;
pub mod denial;
pub mod duration;
pub mod introspection;
pub mod jwt;
pub mod matching;
pub mod pipeline;
pub mod rule;
pub mod scope;
pub mod snapshot;
pub mod template;
pub mod timestamp;
