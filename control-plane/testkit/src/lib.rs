//! Test doubles shared by the control plane's tests and the black-box tests in `tests/`. Only
//! ever a dev-dependency: nothing here may reach the shipped `portcullis` binary (a sink that
//! accepts any login and keeps mail in memory is not something to deploy by accident).

// Outside tests a failure is a typed error, never a panic (control-plane/clippy.toml lets tests
// unwrap); exceptions are `#[expect]`ed with a reason, never `#[allow]`ed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

pub mod smtp;

pub use smtp::{Received, SmtpSink, six_digit_code};
