//! Test fixture: the owned inputs of a [`Ctx`] over a fresh SQLite store, a [`FixedClock`] and
//! an in-memory OAuth2 key set, with a revocation publisher that counts. Test-only.

use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_keys::config::Secrets;
use portcullis_keys::hashing::{Argon2Limits, Hashing, SecretVerifier};
use portcullis_keys::{Keys, OAUTH2_SET};
use portcullis_model::clock::FixedClock;
use portcullis_store::Store;

use crate::Ctx;
use crate::assertion::JwksCache;
use crate::config::{OAuth2, Strategies, Ttl, Urls};
use crate::context::{Publishing, Revocations};

pub const T0: i64 = 1_700_000_000;

/// Counts publications instead of publishing.
#[derive(Default)]
pub struct Published(pub AtomicUsize);

impl Revocations for Published {
    fn publish<'a>(&'a self, _: &'a Store, _: i64) -> Publishing<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

pub struct Fixture {
    pub store: Store,
    pub clock: FixedClock,
    pub keys: Keys,
    pub urls: Urls,
    pub ttl: Ttl,
    pub strategies: Strategies,
    pub oauth2: OAuth2,
    pub secrets: SecretVerifier,
    pub hashing: Hashing,
    pub client_jwks: JwksCache,
    pub http: reqwest::Client,
    pub published: Published,
}

impl Fixture {
    pub async fn new() -> Self {
        let store = portcullis_store::testing::sqlite().await;
        let keys = Keys::load(OAUTH2_SET, &Secrets::default(), &store, T0).await.unwrap();
        Self {
            store,
            clock: FixedClock::new(T0),
            keys,
            urls: Urls::default(),
            ttl: Ttl::default(),
            strategies: Strategies::default(),
            oauth2: OAuth2::default(),
            secrets: SecretVerifier::default(),
            hashing: Hashing::new(&Argon2Limits::default()),
            client_jwks: JwksCache::default(),
            http: reqwest::Client::new(),
            published: Published::default(),
        }
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: &self.store,
            clock: &self.clock,
            keys: &self.keys,
            urls: &self.urls,
            ttl: &self.ttl,
            strategies: &self.strategies,
            oauth2: &self.oauth2,
            secrets: &self.secrets,
            hashing: &self.hashing,
            client_jwks: &self.client_jwks,
            http: &self.http,
            revocations: &self.published,
        }
    }
}
