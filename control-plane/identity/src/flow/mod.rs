//! Self-service flows without HTTP: the `ui` container and message catalogue a flow answers
//! with. Must not depend on axum; the handlers that drive flows live in the control plane.

pub mod ui;
