//! The introspection cache, kept in Envoy shared data so every worker benefits from one
//! call-out. Shared data never evicts, so the cache is direct-mapped onto a fixed number of
//! slots: memory stays bounded whatever tokens clients send, and a colliding token simply
//! replaces the older entry. An entry stores the SHA-256 of (URL, token) — never the token —
//! its expiry, and the introspection answer. Expiry is the earlier of the token's `exp` and
//! the rule's TTL; only active answers are stored.

use sha2::{Digest, Sha256};

use crate::host::Host;

const PREFIX: &str = "portcullis.introspection.";

pub struct Lookup {
    key: String,
    digest: [u8; 32],
}

impl Lookup {
    pub fn new(slots: u32, url: &str, token: &str, scope: Option<&str>) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(url.as_bytes());
        hasher.update([0]);
        hasher.update(token.as_bytes());
        hasher.update([0]);
        hasher.update(scope.unwrap_or("").as_bytes());
        let digest: [u8; 32] = hasher.finalize().into();
        let mut head = [0u8; 4];
        head.copy_from_slice(&digest[..4]);
        let slot = u32::from_le_bytes(head) % slots.max(1);
        Self { key: format!("{PREFIX}{slot}"), digest }
    }

    /// The cached answer, if this exact token has a live entry.
    pub fn get(&self, host: &impl Host) -> Option<Vec<u8>> {
        let (value, _) = host.shared_get(&self.key)?;
        let (digest, rest) = value.split_first_chunk::<32>()?;
        let (expiry, body) = rest.split_first_chunk::<8>()?;
        (digest == &self.digest && u64::from_le_bytes(*expiry) > host.now_ms()).then(|| body.to_vec())
    }

    /// Stores an active answer until `expires_ms`.
    pub fn put(&self, host: &impl Host, expires_ms: u64, body: &[u8]) {
        if expires_ms <= host.now_ms() {
            return;
        }
        let mut value = Vec::with_capacity(40 + body.len());
        value.extend_from_slice(&self.digest);
        value.extend_from_slice(&expires_ms.to_le_bytes());
        value.extend_from_slice(body);
        // A failed write only costs a future call-out.
        let _ = host.shared_set(&self.key, &value, None);
    }
}

/// When a cached answer must be forgotten: the rule's TTL, but never past the token's `exp`.
pub fn expiry_ms(now_ms: u64, ttl_ms: u64, token_exp_secs: Option<i64>) -> u64 {
    let by_ttl = now_ms.saturating_add(ttl_ms);
    match token_exp_secs {
        Some(exp) => by_ttl.min(u64::try_from(exp).unwrap_or(0).saturating_mul(1000)),
        None => by_ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockHost;

    #[test]
    fn entries_live_until_their_expiry_and_only_for_their_token() {
        let host = MockHost::default();
        host.set_now(1_000);
        let a = Lookup::new(16, "http://cp/i", "token-a", None);
        a.put(&host, 5_000, b"{\"active\":true}");
        assert_eq!(a.get(&host).as_deref(), Some(&b"{\"active\":true}"[..]));
        let other = Lookup::new(16, "http://cp/i", "token-b", None);
        assert_eq!(other.get(&host), None);
        host.set_now(5_000);
        assert_eq!(a.get(&host), None);
    }

    #[test]
    fn the_token_itself_is_never_stored() {
        let host = MockHost::default();
        Lookup::new(4, "http://cp/i", "secret-token", None).put(&host, u64::MAX, b"{}");
        assert!(host.shared_values().iter().all(|v| !v.windows(12).any(|w| w == b"secret-token")));
    }

    #[test]
    fn slots_bound_memory() {
        let host = MockHost::default();
        for i in 0..200 {
            Lookup::new(8, "http://cp/i", &format!("t{i}"), None).put(&host, u64::MAX, b"{}");
        }
        assert!(host.shared_values().len() <= 8);
    }

    #[test]
    fn expiry_is_bounded_by_token_exp() {
        assert_eq!(expiry_ms(1_000, 60_000, Some(10)), 10_000);
        assert_eq!(expiry_ms(1_000, 60_000, Some(1_000)), 61_000);
        assert_eq!(expiry_ms(1_000, 60_000, None), 61_000);
        assert_eq!(expiry_ms(1_000, 60_000, Some(-5)), 0);
    }
}
