//! Secret hashing and verification: argon2id for secrets an operator or a user chose (and
//! bcrypt hashes imported from Kratos, verified elsewhere through the same bound), SHA-256 for
//! the high-entropy secrets the server generates. Repeated verifications of an argon2 secret
//! are answered from a small cache of the last secret that verified, keyed by client id and the
//! stored hash, so a client hammering the token endpoint costs microseconds instead of an
//! argon2 run each time. Every argon2 (and bcrypt) run in the process goes through
//! [`Hashing`], which bounds how many run at once and how many wait: each run holds 19 MiB or
//! more, so an unbounded burst of sign-ins would exhaust memory and CPU. Nothing here logs or
//! formats a secret.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use portcullis_model::crypto::{SHA256_PREFIX, random_bytes, sha256, sha256_hex};
use subtle::ConstantTimeEq;

const CACHE_CAPACITY: usize = 10_000;

/// At-rest form of a secret the operator chose (possibly low entropy: argon2id).
pub fn hash_operator_secret(secret: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(secret.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks `presented` against a stored hash of either kind. Slow for argon2: call it off the
/// async executor (see [`SecretVerifier`]).
pub fn verify_secret(stored: &str, presented: &str) -> bool {
    if let Some(hex_digest) = stored.strip_prefix(SHA256_PREFIX) {
        let actual = sha256_hex(presented.as_bytes());
        return bool::from(actual.as_bytes().ct_eq(hex_digest.as_bytes()));
    }
    match PasswordHash::new(stored) {
        Ok(hash) => Argon2::default().verify_password(presented.as_bytes(), &hash).is_ok(),
        Err(_) => false,
    }
}

/// `hashers.argon2` (Kratos's section; these keys are ours): how much password hashing may run
/// at once. Beyond `max_concurrent` runs a request waits at most `queue_timeout`, and beyond
/// `max_queued` waiting ones it is refused at once (429 on sign-in, 503 on the token
/// endpoint, both with `Retry-After`), so a flood costs a bounded amount of memory and never
/// an unbounded queue.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hashers {
    pub argon2: Argon2Limits,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Limits {
    /// Hashes computed at once; `0`: twice the available CPUs.
    pub max_concurrent: usize,
    /// Requests that may wait for a free slot; `0`: none wait. Default: four per slot.
    pub max_queued: Option<usize>,
    /// The longest a request waits for a slot.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
}

impl Default for Argon2Limits {
    fn default() -> Self {
        Self { max_concurrent: 0, max_queued: None, queue_timeout: Duration::from_secs(2) }
    }
}

/// Refused for want of a hashing slot: try again after `retry_after` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub retry_after: u64,
}

/// Why [`Hashing::run`] produced nothing.
#[derive(Debug)]
pub enum HashError {
    Busy(Busy),
    /// The hashing task panicked.
    Failed(String),
}

/// The process-wide bound on password hashing (see the module comment).
pub struct Hashing {
    slots: tokio::sync::Semaphore,
    capacity: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    queue_timeout: Duration,
    runs: AtomicU64,
}

impl std::fmt::Debug for Hashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hashing").field("capacity", &self.capacity).field("max_waiting", &self.max_waiting).finish()
    }
}

impl Default for Hashing {
    fn default() -> Self {
        Self::new(&Argon2Limits::default())
    }
}

/// Leaves the waiting count when the wait ends, however it ends (a dropped request too).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hashing {
    pub fn new(limits: &Argon2Limits) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let capacity = if limits.max_concurrent == 0 { 2 * cpus } else { limits.max_concurrent };
        Self {
            slots: tokio::sync::Semaphore::new(capacity),
            capacity,
            waiting: AtomicUsize::new(0),
            max_waiting: limits.max_queued.unwrap_or(4 * capacity),
            queue_timeout: limits.queue_timeout,
            runs: AtomicU64::new(0),
        }
    }

    /// Runs `work` (an argon2 or bcrypt computation) on the blocking pool once a slot is free.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let busy = || HashError::Busy(Busy { retry_after: self.queue_timeout.as_secs().max(1) });
        let permit = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(busy());
                }
                let _waiting = Waiting(&self.waiting);
                match tokio::time::timeout(self.queue_timeout, self.slots.acquire()).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(busy()),
                }
            }
        };
        self.runs.fetch_add(1, Ordering::Relaxed);
        let out = tokio::task::spawn_blocking(work).await.map_err(|e| HashError::Failed(e.to_string()));
        drop(permit);
        out
    }

    /// Hashes started since the process began (a counter for metrics and tests).
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Takes every slot until the guard is dropped (tests: a saturated server).
    #[cfg(any(test, feature = "testing"))]
    #[expect(clippy::expect_used, reason = "test helper: called with every slot free, else the test is wrong")]
    pub fn saturate(&self) -> tokio::sync::SemaphorePermit<'_> {
        let n = u32::try_from(self.capacity).unwrap_or(u32::MAX);
        self.slots.try_acquire_many(n).expect("every hashing slot is free")
    }
}

/// Verifies client secrets, remembering the last argon2 success per client.
#[derive(Default)]
pub struct SecretVerifier {
    // client_id → (stored hash it verified against, sha256 of the secret that verified).
    // Keying on the stored hash too means a secret changed by another replica can never be
    // answered from a stale entry.
    cache: Mutex<HashMap<String, (String, [u8; 32])>>,
}

impl std::fmt::Debug for SecretVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretVerifier { .. }")
    }
}

impl SecretVerifier {
    /// Whether `presented` matches `stored`; `Err` when no hashing slot was free in time.
    pub async fn verify(
        &self,
        hashing: &Hashing,
        client_id: &str,
        stored: &str,
        presented: &str,
    ) -> Result<bool, Busy> {
        if stored.starts_with(SHA256_PREFIX) {
            return Ok(verify_secret(stored, presented));
        }
        let digest = sha256(presented.as_bytes());
        if let Some((cached_hash, cached_digest)) = self.lock().get(client_id) {
            if cached_hash == stored && bool::from(cached_digest.ct_eq(&digest)) {
                return Ok(true);
            }
        }
        let (stored_owned, presented_owned) = (stored.to_owned(), presented.to_owned());
        let ok = match hashing.run(move || verify_secret(&stored_owned, &presented_owned)).await {
            Ok(ok) => ok,
            Err(HashError::Busy(busy)) => return Err(busy),
            Err(HashError::Failed(_)) => false,
        };
        if ok {
            let mut cache = self.lock();
            if cache.len() >= CACHE_CAPACITY && !cache.contains_key(client_id) {
                // Crude but bounded: dropping everything costs at most one argon2 run per
                // active client.
                cache.clear();
            }
            cache.insert(client_id.to_owned(), (stored.to_owned(), digest));
        }
        Ok(ok)
    }

    pub fn forget(&self, client_id: &str) {
        self.lock().remove(client_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, [u8; 32])>> {
        // A poisoned cache only ever holds verified digests; keep using it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_model::crypto::hash_generated_secret;

    #[tokio::test]
    async fn both_hash_kinds_verify_and_cache_respects_the_stored_hash() {
        let fast = hash_generated_secret("s3cret-value");
        assert!(fast.starts_with("sha256$"));
        assert!(verify_secret(&fast, "s3cret-value"));
        assert!(!verify_secret(&fast, "s3cret-valuf"));

        let slow = hash_operator_secret("hunter22").unwrap();
        assert!(slow.starts_with("$argon2id$"));
        assert!(!slow.contains("hunter22"));
        let verifier = SecretVerifier::default();
        let hashing = Hashing::default();
        assert_eq!(verifier.verify(&hashing, "c", &slow, "hunter22").await, Ok(true));
        assert_eq!(verifier.verify(&hashing, "c", &slow, "hunter22").await, Ok(true));
        assert_eq!(verifier.verify(&hashing, "c", &slow, "hunter23").await, Ok(false));
        let other = hash_operator_secret("different").unwrap();
        assert_eq!(verifier.verify(&hashing, "c", &other, "hunter22").await, Ok(false));
        assert_eq!(hashing.runs(), 3, "the repeated success came from the cache");
    }

    #[tokio::test]
    async fn hashing_is_bounded_and_refuses_rather_than_queueing_without_end() {
        let limits = Argon2Limits { max_concurrent: 1, max_queued: Some(1), queue_timeout: Duration::from_secs(30) };
        let hashing = std::sync::Arc::new(Hashing::new(&limits));
        assert_eq!(hashing.run(|| 7).await.unwrap(), 7);
        let held = hashing.saturate();
        // One request may wait for the slot; the next is refused at once.
        let waiter = tokio::spawn({
            let hashing = hashing.clone();
            async move { hashing.run(|| 8).await.map_err(|e| format!("{e:?}")) }
        });
        while hashing.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(hashing.run(|| 9).await, Err(HashError::Busy(Busy { retry_after: 30 }))));
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(8), "the waiting one ran once the slot was free");
        let none_wait =
            Hashing::new(&Argon2Limits { max_concurrent: 1, max_queued: Some(0), ..Argon2Limits::default() });
        let _held = none_wait.saturate();
        assert!(matches!(none_wait.run(|| 1).await, Err(HashError::Busy(_))));
        assert_eq!(none_wait.runs(), 0);
    }
}
