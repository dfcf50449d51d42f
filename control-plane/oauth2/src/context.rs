//! What the OAuth2 domain reads from the server, borrowed for one request or one pass: the
//! store, the clock, the OAuth2 key set, its own configuration sections, the client-secret
//! verifier and hashing bound, the clients' JWKS cache, an HTTP client, and where revocations
//! are published. It is built by the HTTP edge (never from inside this crate) and must not
//! grow into a second `AppState`: a field belongs here only if OAuth2 code reads it.

use std::future::Future;
use std::pin::Pin;

use portcullis_keys::Keys;
use portcullis_keys::hashing::{Hashing, SecretVerifier};
use portcullis_model::clock::Clock;
use portcullis_store::{Store, StoreError};

use crate::assertion::JwksCache;
use crate::config::{OAuth2, SelfUrls, Strategies, Ttl, Urls};

/// A boxed future, so [`Revocations`] can be used as a trait object.
pub type Publishing<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Publishes the store's revoked token digests to the filters (the control plane's rules and
/// snapshots). OAuth2 code calls it after revoking tokens; what publishing means is not its
/// business.
pub trait Revocations: Send + Sync {
    fn publish<'a>(&'a self, store: &'a Store, now: i64) -> Publishing<'a>;
}

/// The OAuth2 domain's inputs.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub clock: &'a dyn Clock,
    /// The OAuth2 set (`portcullis.id-token`); never the gateway's.
    pub keys: &'a Keys,
    pub urls: &'a Urls,
    pub ttl: &'a Ttl,
    pub strategies: &'a Strategies,
    pub oauth2: &'a OAuth2,
    pub secrets: &'a SecretVerifier,
    pub hashing: &'a Hashing,
    pub client_jwks: &'a JwksCache,
    /// Fetches clients' `jwks_uri` documents and sends back-channel logouts.
    pub http: &'a reqwest::Client,
    pub revocations: &'a dyn Revocations,
}

impl Ctx<'_> {
    pub fn self_urls(&self) -> &SelfUrls {
        &self.urls.self_
    }

    /// The public base URL without a trailing slash.
    pub fn public_base(&self) -> &str {
        self.urls.self_.public_base()
    }

    pub fn issuer(&self) -> &str {
        &self.urls.self_.issuer
    }

    /// Publishes the revoked digests now (see [`Revocations`]).
    pub async fn publish_revocations(&self) -> Result<(), StoreError> {
        self.revocations.publish(self.store, self.clock.now()).await
    }
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("urls", self.urls).field("ttl", self.ttl).finish_non_exhaustive()
    }
}
