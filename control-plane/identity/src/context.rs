//! The identity domain's inputs, handed to the functions that need several of them: the
//! store, the clock, the domain's config sections (with the public URL and the one-time code
//! key derived from `secrets.system`), the identity schemas, the courier, the HTTP client
//! for web hooks, the password hashing bound and the passkey relying party. It holds nothing of another domain (no OAuth2 keys, no rules, no admin API
//! keys) and must not grow into a second `AppState`: a function that needs one thing takes it.

use std::sync::Arc;

use portcullis_model::clock::Clock;
use portcullis_store::Store;

use crate::config::{IdentityConfig, SelfService, SessionConfig};
use crate::courier::Courier;
use crate::passkey::Passkeys;
use crate::schema::Schemas;

/// What the identity domain reads: cheap to clone (every part is shared).
#[derive(Clone, Debug)]
pub struct Identities {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Settings>,
    pub schemas: Arc<Schemas>,
    pub courier: Arc<Courier>,
    /// Outbound HTTP for web hooks and the optional breached-password check.
    pub http: reqwest::Client,
    /// The bound on concurrent password hashing.
    pub hashing: Arc<portcullis_keys::hashing::Hashing>,
    /// The passkey relying party (`selfservice.methods.passkey`).
    pub passkeys: Arc<Passkeys>,
}

/// The identity domain's configuration: its own sections plus the two values it needs from
/// elsewhere (the public base URL, the key one-time codes are kept under).
pub struct Settings {
    pub identity: IdentityConfig,
    pub selfservice: SelfService,
    pub session: SessionConfig,
    /// `urls.self.public` without its trailing `/`: flows', hooks' and sessions' links.
    pub public_base: String,
    /// The HMAC key one-time codes are stored under (see [`crate::code`]); never logged.
    pub(crate) code_key: [u8; 32],
}

impl Settings {
    /// `system_secret` is the first `secrets.system` entry; without one, codes are valid only
    /// until this process restarts.
    pub fn new(
        identity: IdentityConfig,
        selfservice: SelfService,
        session: SessionConfig,
        public_base: &str,
        system_secret: Option<&str>,
    ) -> Self {
        Self {
            identity,
            selfservice,
            session,
            public_base: public_base.trim_end_matches('/').to_owned(),
            code_key: crate::code::key(system_secret),
        }
    }
}

// The code key must not reach a log line through `{:?}`.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("identity", &self.identity)
            .field("selfservice", &self.selfservice)
            .field("session", &self.session)
            .field("public_base", &self.public_base)
            .finish_non_exhaustive()
    }
}
