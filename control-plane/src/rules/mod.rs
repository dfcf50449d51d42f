//! The HTTP side of access rules: the decisions API, rule explanation and the snapshot
//! long-poll filters read. Rule sources, publication, revocations and the call-out driver are
//! the `portcullis-rules` crate, re-exported here under the name the handlers use.

pub mod decisions;
pub mod explain;
pub mod snapshot;

pub use portcullis_rules::*;
