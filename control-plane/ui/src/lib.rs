//! The built-in UI's HTML, as pure functions of values: [`html::escape`] (every value that
//! reaches a page goes through it), the generic renderer of a self-service flow's `ui` nodes,
//! the page layout (built in, or the operator's template, checked at start), the error page's
//! fixed catalogue and the one stylesheet. It must not know HTTP (no axum: the handlers in the
//! control plane crate load flows and sessions and send the pages), touch the store, or emit
//! inline script (the CSP forbids it).

// Outside tests a failure is a typed error, never a panic (control-plane/clippy.toml lets tests
// unwrap); exceptions are `#[expect]`ed with a reason, never `#[allow]`ed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

pub mod errors;
pub mod html;
pub mod layout;

pub use layout::UiConfig;

/// The stylesheet every page links (`/ui/style.css`).
pub const STYLE: &str = include_str!("style.css");
