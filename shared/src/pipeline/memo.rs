//! What a gateway worker remembers between requests so that a repeated request costs a lookup,
//! not the work that first answered it: which rule a request line selects (and its captures),
//! which JWTs an authenticator has already verified and accepted (the session they yield), and
//! the session an authenticator concluded from a cacheable call-out answer (introspection, a
//! session check), so a cached answer is not parsed and checked again on every request, and the
//! SHA-256 of the credentials and cache keys it has hashed (under V8 a SHA-256 of a 300-byte
//! token costs about 15 times a keyed SipHash of it, which is what finds the remembered one).
//! A `Memo` is plain data owned by one worker (the caller keeps one per thread or wasm VM); the
//! pipeline reads and fills it, so nothing here locks, reads a clock or does I/O.
//!
//! A memory answers only the question that produced it. A selection is bound to the rule set
//! it was made in (its generation) and to the exact method, scheme, authority and target. An
//! accepted token is bound to its SHA-256, to the very authenticator configuration that accepted
//! it (issuers, audiences, scopes, token types, keys: one `Arc`), and to the key that verified
//! it, which must still be among that authenticator's keys; its `exp`, `nbf` and `iat` are
//! checked against the clock again on every hit, and revocations are checked before the memo is
//! read. A concluded answer is bound to the SHA-256 of the call's cache key (which covers
//! everything the answer depends on), to the very rule and authenticator that read it and the
//! call's phase, and to the rule set's generation; it lives no longer than the cached answer
//! it came from, and revocations are checked before the call is even built. Every map is
//! bounded: a full map drops an entry before it takes another.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use super::Session;
use super::authn::Jwt;
use crate::rule::{CompiledRule, RuleSet};

/// Request lines remembered per worker (a gateway serves a bounded set of routes; an attacker
/// sending unique paths only churns this map).
const SELECTIONS_CAPACITY: usize = 4_096;
/// Accepted tokens remembered per worker.
const TOKENS_CAPACITY: usize = 8_192;
/// Concluded call-out answers remembered per worker (a session's `extra` can be a few kB).
const CONCLUSIONS_CAPACITY: usize = 1_024;
/// Digests remembered per worker, and the bytes of input they may hold in all.
const DIGESTS_CAPACITY: usize = 4_096;
const DIGESTS_BYTES: usize = 1 << 20;
/// Longer inputs are hashed each time (they would crowd out the common ones).
const DIGEST_INPUT_MAX: usize = 4_096;

/// A worker's memory; see the module documentation for what binds each entry.
#[derive(Debug, Default)]
pub struct Memo {
    selections: Selections,
    tokens: AcceptedTokens,
    conclusions: Conclusions,
    digests: Digests,
}

impl Memo {
    /// How many request lines, tokens and concluded call-out answers are remembered (for tests
    /// and metrics).
    pub fn len(&self) -> (usize, usize, usize) {
        (self.selections.entries.len(), self.tokens.entries.len(), self.conclusions.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0, 0)
    }

    pub(crate) fn conclusions(&mut self) -> &mut Conclusions {
        &mut self.conclusions
    }

    /// SHA-256 of `input` (a credential, a call's cache key), computed once per worker while
    /// remembered. A remembered digest is found by a keyed hash of the input and used only
    /// when the stored input is the same, byte for byte.
    pub fn sha256(&mut self, input: &str) -> [u8; 32] {
        self.digests.sha256(input)
    }

    pub(crate) fn selections(&mut self) -> &mut Selections {
        &mut self.selections
    }

    pub(crate) fn tokens(&mut self) -> &mut AcceptedTokens {
        &mut self.tokens
    }
}

/// Drops one entry of a full map: which one does not matter for correctness, and a random one
/// (the hasher's order) keeps the hot entries most of the time without bookkeeping.
fn make_room<K: Clone + Eq + Hash, V>(map: &mut HashMap<K, V>, capacity: usize) {
    if map.len() >= capacity {
        if let Some(key) = map.keys().next().cloned() {
            map.remove(&key);
        }
    }
}

/// The rule (and its captures) a request line selected; `None`: no rule matched.
pub(crate) type Selected = Option<(Arc<CompiledRule>, Arc<[String]>)>;

#[derive(Debug, Default)]
pub(crate) struct Selections {
    generation: u64,
    hasher: std::collections::hash_map::RandomState,
    entries: HashMap<u64, (SelectionKey, Selected)>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SelectionKey {
    method: String,
    scheme: String,
    host: String,
    target: String,
}

impl Selections {
    fn hash(&self, parts: [&str; 4]) -> u64 {
        self.hasher.hash_one(parts)
    }

    /// The remembered selection for this exact request line in `rules`.
    pub(crate) fn get(&mut self, rules: &RuleSet, parts: [&str; 4]) -> Option<Selected> {
        if self.generation != rules.generation() {
            self.entries.clear();
            self.generation = rules.generation();
            return None;
        }
        let (key, selected) = self.entries.get(&self.hash(parts))?;
        let [method, scheme, host, target] = parts;
        (key.method == method && key.scheme == scheme && key.host == host && key.target == target)
            .then(|| selected.clone())
    }

    pub(crate) fn put(&mut self, rules: &RuleSet, parts: [&str; 4], selected: &Selected) {
        if self.generation != rules.generation() {
            self.entries.clear();
            self.generation = rules.generation();
        }
        let hash = self.hash(parts);
        make_room(&mut self.entries, SELECTIONS_CAPACITY);
        let [method, scheme, host, target] = parts.map(str::to_owned);
        self.entries.insert(hash, (SelectionKey { method, scheme, host, target }, selected.clone()));
    }
}

/// A token an authenticator accepted: the session it yields and what must still hold.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The authenticator configuration that accepted it (held, so its address is not reused).
    pub(crate) by: Arc<Jwt>,
    /// SHA-256 of the SPKI of the key that verified the signature.
    pub(crate) key: [u8; 32],
    pub(crate) times: super::authn::TokenTimes,
    pub(crate) session: Session,
}

#[derive(Debug, Default)]
pub(crate) struct AcceptedTokens {
    /// By (SHA-256 of the token, address of the accepting configuration).
    entries: HashMap<([u8; 32], usize), Accepted>,
}

impl AcceptedTokens {
    /// What `by` accepted for the token with this digest, when the key that verified it is
    /// still one of `by`'s keys. The caller checks the times.
    pub(crate) fn get(&self, digest: &[u8; 32], by: &Arc<Jwt>) -> Option<&Accepted> {
        let entry = self.entries.get(&(*digest, Arc::as_ptr(by) as usize))?;
        (Arc::ptr_eq(&entry.by, by) && by.keys.iter().any(|k| k.spki_sha256 == entry.key)).then_some(entry)
    }

    pub(crate) fn put(&mut self, digest: [u8; 32], accepted: Accepted) {
        make_room(&mut self.entries, TOKENS_CAPACITY);
        self.entries.insert((digest, Arc::as_ptr(&accepted.by) as usize), accepted);
    }

    pub(crate) fn forget(&mut self, digest: &[u8; 32], by: &Arc<Jwt>) {
        self.entries.remove(&(*digest, Arc::as_ptr(by) as usize));
    }
}

/// Which authenticator read a call-out answer: the rule (held, so its address is not reused),
/// the authenticator's index in it, and the call's phase (a `pre_authorization` call comes
/// before the introspection call).
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    pub(crate) rule: Arc<CompiledRule>,
    pub(crate) index: usize,
    pub(crate) phase: u8,
}

impl Reader {
    fn key(&self, digest: &[u8; 32]) -> ([u8; 32], usize, usize, u8) {
        (*digest, Arc::as_ptr(&self.rule) as usize, self.index, self.phase)
    }
}

/// The session an authenticator concluded from a call-out answer, until the answer expires.
#[derive(Debug)]
struct Concluded {
    reader: Reader,
    until_ms: i64,
    session: Session,
}

#[derive(Debug, Default)]
pub(crate) struct Conclusions {
    generation: u64,
    entries: HashMap<([u8; 32], usize, usize, u8), Concluded>,
}

impl Conclusions {
    /// Forgets everything concluded under another rule set, so old rules are not kept alive.
    fn align(&mut self, generation: u64) {
        if self.generation != generation {
            self.entries.clear();
            self.generation = generation;
        }
    }

    /// The session `reader` concluded from the answer to the call whose cache key has this
    /// SHA-256, while that answer lives.
    pub(crate) fn get(&mut self, generation: u64, digest: &[u8; 32], reader: &Reader, now_ms: i64) -> Option<Session> {
        self.align(generation);
        let entry = self.entries.get(&reader.key(digest))?;
        (Arc::ptr_eq(&entry.reader.rule, &reader.rule) && entry.until_ms > now_ms).then(|| entry.session.clone())
    }

    pub(crate) fn put(&mut self, generation: u64, digest: &[u8; 32], reader: Reader, until_ms: i64, session: Session) {
        self.align(generation);
        make_room(&mut self.entries, CONCLUSIONS_CAPACITY);
        self.entries.insert(reader.key(digest), Concluded { reader, until_ms, session });
    }
}

pub(crate) fn sha256(input: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(input.as_bytes()).into()
}

/// Inputs and their SHA-256, by a SipHash of the input under this worker's random key. The
/// key never leaves the worker, so nobody can aim an input at another's entry; and a hit also
/// needs the stored input to be equal, so a collision costs a recomputation, never a wrong
/// digest.
#[derive(Debug, Default)]
struct Digests {
    hasher: std::collections::hash_map::RandomState,
    entries: HashMap<u64, (Box<str>, [u8; 32])>,
    bytes: usize,
}

impl Digests {
    fn sha256(&mut self, input: &str) -> [u8; 32] {
        if input.len() > DIGEST_INPUT_MAX {
            return sha256(input);
        }
        let hash = self.hasher.hash_one(input);
        if let Some((stored, digest)) = self.entries.get(&hash) {
            if **stored == *input {
                return *digest;
            }
        }
        let digest = sha256(input);
        while self.entries.len() >= DIGESTS_CAPACITY || self.bytes + input.len() > DIGESTS_BYTES {
            let Some(key) = self.entries.keys().next().copied() else { break };
            if let Some((old, _)) = self.entries.remove(&key) {
                self.bytes -= old.len();
            }
        }
        if let Some((old, _)) = self.entries.insert(hash, (input.into(), digest)) {
            self.bytes -= old.len();
        }
        self.bytes += input.len();
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_digest_is_the_digest_of_that_very_input_and_memory_stays_bounded() {
        let mut d = Digests::default();
        assert_eq!(d.sha256("token-a"), sha256("token-a"));
        assert_eq!(d.sha256("token-a"), sha256("token-a"), "a hit answers the same digest");
        assert_eq!(d.sha256("token-b"), sha256("token-b"));
        // Force a collision: the entry for token-a's hash holds another input.
        let hash = d.hasher.hash_one("token-a");
        d.entries.insert(hash, ("forged".into(), [0; 32]));
        d.bytes = d.bytes - "token-a".len() + "forged".len();
        assert_eq!(d.sha256("token-a"), sha256("token-a"), "another input under the same hash is not used");
        let big = "x".repeat(DIGEST_INPUT_MAX);
        for i in 0..600 {
            d.sha256(&format!("{i}{big}")[..DIGEST_INPUT_MAX]);
        }
        assert!(d.bytes <= DIGESTS_BYTES && d.entries.len() <= DIGESTS_CAPACITY);
        assert_eq!(d.bytes, d.entries.values().map(|(s, _)| s.len()).sum::<usize>());
    }
}
