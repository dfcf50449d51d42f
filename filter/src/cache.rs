//! The call-out cache (introspection, session checks, hydrators), kept in Envoy shared data so
//! every worker benefits from one call-out. Shared data never evicts, so the cache is
//! direct-mapped onto a fixed number of slots: memory stays bounded whatever credentials
//! clients send, and a colliding key simply replaces the older entry. An entry stores the
//! SHA-256 of the pipeline's cache key — never the credential in it — the expiry the pipeline
//! decided (never past a token's `exp`), and the response's status and body.

use std::collections::HashMap;

use crate::host::Host;

const PREFIX: &str = "portcullis.cache.";

pub struct Lookup {
    slot: u32,
    digest: [u8; 32],
}

impl Lookup {
    /// The entry for the call whose cache key has the SHA-256 `digest`, among `slots`.
    pub fn new(slots: u32, digest: [u8; 32]) -> Self {
        let mut head = [0u8; 4];
        head.copy_from_slice(&digest[..4]);
        Self { slot: u32::from_le_bytes(head) % slots.max(1), digest }
    }

    /// The shared-data key of the slot (made only when shared data is read or written).
    fn key(&self) -> String {
        format!("{PREFIX}{}", self.slot)
    }

    /// SHA-256 of the pipeline's cache key.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The cached entry (expiry, status, body), if this exact key has a live one at `now_ms`.
    pub fn get(&self, host: &impl Host, now_ms: u64) -> Option<Answer> {
        let (value, _) = host.shared_get(&self.key())?;
        let (digest, rest) = value.split_first_chunk::<32>()?;
        let (expiry, rest) = rest.split_first_chunk::<8>()?;
        let (status, body) = rest.split_first_chunk::<2>()?;
        let until_ms = u64::from_le_bytes(*expiry);
        (digest == &self.digest && until_ms > now_ms).then(|| Answer {
            until_ms,
            status: u16::from_le_bytes(*status),
            body: body.to_vec(),
        })
    }

    /// Stores a response until `expires_ms`.
    pub fn put(&self, host: &impl Host, now_ms: u64, expires_ms: u64, status: u16, body: &[u8]) {
        if expires_ms <= now_ms {
            return;
        }
        let mut value = Vec::with_capacity(42 + body.len());
        value.extend_from_slice(&self.digest);
        value.extend_from_slice(&expires_ms.to_le_bytes());
        value.extend_from_slice(&status.to_le_bytes());
        value.extend_from_slice(body);
        // A failed write only costs a future call-out.
        let _ = host.shared_set(&self.key(), &value, None);
    }
}

/// A cached call-out answer and until when it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub until_ms: u64,
    pub status: u16,
    pub body: Vec<u8>,
}

/// Per-worker caches, shared by the worker's streams (no lock, no copy through shared data).
#[derive(Debug, Default)]
pub struct WorkerCaches {
    /// The pipeline's memory: rule selections and accepted JWTs (see `pipeline::Memo`).
    pub memo: portcullis_shared::pipeline::Memo,
    pub verified: VerifiedTokens,
    pub minted: MintedTokens,
    pub answers: WorkerAnswers,
}

/// A worker's copy of call-out answers it has read from (or written to) shared data, by the
/// same digest and until the same expiry. An entry in shared data never changes before it
/// expires (a colliding key only replaces it), so a copy is as good as the original and a hit
/// saves the shared-data read, a host call that copies the whole entry under Envoy's lock.
/// Revocations are checked before any cache, so they still apply at once. Bounded.
#[derive(Debug, Default)]
pub struct WorkerAnswers {
    entries: HashMap<[u8; 32], Answer>,
}

/// Answers are bodies of up to a few KB (a whoami session), so fewer than verified tokens.
const ANSWERS_CAPACITY: usize = 1_024;

impl WorkerAnswers {
    pub fn get(&self, digest: &[u8; 32], now_ms: u64) -> Option<&Answer> {
        self.entries.get(digest).filter(|a| a.until_ms > now_ms)
    }

    pub fn insert(&mut self, digest: [u8; 32], answer: Answer, now_ms: u64) {
        if answer.until_ms <= now_ms {
            return;
        }
        if self.entries.len() >= ANSWERS_CAPACITY {
            self.entries.retain(|_, a| a.until_ms > now_ms);
            if self.entries.len() >= ANSWERS_CAPACITY {
                self.entries.clear();
            }
        }
        self.entries.insert(digest, answer);
    }
}

/// `id_token`s this worker signed, by SHA-256 of the pipeline's cache key (key, subject,
/// claims), until shortly before they expire: signing costs far more than a lookup.
#[derive(Debug, Default)]
pub struct MintedTokens {
    tokens: HashMap<[u8; 32], (String, u64)>,
}

impl MintedTokens {
    pub fn get(&self, digest: &[u8; 32], now_ms: u64) -> Option<&str> {
        self.tokens.get(digest).filter(|(_, until)| *until > now_ms).map(|(t, _)| t.as_str())
    }

    pub fn insert(&mut self, digest: [u8; 32], token: String, until_ms: u64, now_ms: u64) {
        if self.tokens.len() >= VERIFIED_CAPACITY {
            self.tokens.retain(|_, (_, until)| *until > now_ms);
            if self.tokens.len() >= VERIFIED_CAPACITY {
                self.tokens.clear();
            }
        }
        self.tokens.insert(digest, (token, until_ms));
    }
}

/// Tokens whose signature this worker has verified, by SHA-256, until their `exp`: verifying
/// an ES256 signature costs far more than a lookup, and a client repeats its token. Each entry
/// remembers which key verified the token (the SHA-256 of its SPKI), so a hit counts only for
/// a rule that trusts that key: a token a partner's key signed, verified for the partner's
/// rule, is not "verified" for a rule that trusts only our own keys. Per worker (no lock, no
/// copy through shared data), bounded.
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    until: HashMap<[u8; 32], Verified>,
}

#[derive(Debug, Clone, Copy)]
struct Verified {
    until_ms: u64,
    key: [u8; 32],
}

const VERIFIED_CAPACITY: usize = 16_384;

impl VerifiedTokens {
    /// The SPKI digest of the key that verified this token, while the entry lives.
    pub fn verified_by(&self, token: &[u8; 32], now_ms: u64) -> Option<&[u8; 32]> {
        self.until.get(token).filter(|v| v.until_ms > now_ms).map(|v| &v.key)
    }

    /// Remembers that `key` (SPKI digest) verified `token` (digest) until `until_ms`.
    pub fn insert(&mut self, token: [u8; 32], key: [u8; 32], until_ms: u64, now_ms: u64) {
        if self.until.len() >= VERIFIED_CAPACITY {
            self.until.retain(|_, v| v.until_ms > now_ms);
            if self.until.len() >= VERIFIED_CAPACITY {
                self.until.clear();
            }
        }
        self.until.insert(token, Verified { until_ms, key });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockHost;
    use portcullis_shared::pipeline::sha256;

    #[test]
    fn entries_live_until_their_expiry_and_only_for_their_token() {
        let host = MockHost::default();
        host.set_now(1_000);
        let a = Lookup::new(16, sha256("introspect\nhttp://cp/i\ntoken-a"));
        a.put(&host, 1_000, 5_000, 200, b"{\"active\":true}");
        let hit = Answer { until_ms: 5_000, status: 200, body: b"{\"active\":true}".to_vec() };
        assert_eq!(a.get(&host, 1_000), Some(hit));
        let other = Lookup::new(16, sha256("introspect\nhttp://cp/i\ntoken-b"));
        assert_eq!(other.get(&host, 1_000), None);
        assert_eq!(a.get(&host, 5_000), None);
    }

    #[test]
    fn the_token_itself_is_never_stored() {
        let host = MockHost::default();
        Lookup::new(4, sha256("introspect\nhttp://cp/i\nsecret-token")).put(&host, 0, u64::MAX, 200, b"{}");
        assert!(host.shared_values().iter().all(|v| !v.windows(12).any(|w| w == b"secret-token")));
    }

    #[test]
    fn verified_tokens_expire_name_their_key_and_stay_bounded() {
        let mut v = VerifiedTokens::default();
        let (d, key) = (sha256("t"), sha256("spki"));
        v.insert(d, key, 1_000, 0);
        assert_eq!(v.verified_by(&d, 999), Some(&key));
        assert_eq!(v.verified_by(&d, 1_000), None);
        for i in 0..(VERIFIED_CAPACITY + 10) {
            v.insert(sha256(&i.to_string()), key, u64::MAX, 0);
        }
        assert!(v.until.len() <= VERIFIED_CAPACITY);
    }

    #[test]
    fn worker_answers_expire_with_the_shared_entry_and_stay_bounded() {
        let mut w = WorkerAnswers::default();
        let d = sha256("k");
        w.insert(d, Answer { until_ms: 1_000, status: 200, body: b"{}".to_vec() }, 0);
        assert_eq!(w.get(&d, 999).map(|a| a.status), Some(200));
        assert!(w.get(&d, 1_000).is_none(), "not a millisecond past the shared entry's expiry");
        w.insert(sha256("dead"), Answer { until_ms: 5, status: 200, body: vec![] }, 10);
        assert!(w.get(&sha256("dead"), 0).is_none(), "an expired answer is not kept");
        for i in 0..(ANSWERS_CAPACITY + 10) {
            let a = Answer { until_ms: u64::MAX, status: 200, body: vec![] };
            w.insert(sha256(&i.to_string()), a, 0);
        }
        assert!(w.entries.len() <= ANSWERS_CAPACITY);
    }

    #[test]
    fn slots_bound_memory() {
        let host = MockHost::default();
        for i in 0..200 {
            Lookup::new(8, sha256(&format!("t{i}"))).put(&host, 0, u64::MAX, 200, b"{}");
        }
        assert!(host.shared_values().len() <= 8);
    }
}
