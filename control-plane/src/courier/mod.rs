//! The courier (`portcullis_identity::courier`, re-exported here) and its one HTTP face in the
//! control plane: the `--dev` outbox page. Queueing and delivery must not be added here.

pub mod outbox;

pub use portcullis_identity::courier::*;
