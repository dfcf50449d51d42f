//! Randomness, token and secret encoding, digests and constant-time comparison: the pure
//! helpers every layer uses. Nothing here logs or formats a secret: `Debug` is never derived
//! on anything holding one. Generated client secrets carry 256 bits of entropy, so a single
//! SHA-256 is enough at rest (`sha256$<hex>`); operator-chosen secrets get argon2id, which
//! runs bounded in `portcullis_keys::hashing`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every access token we issue; lets introspection reject foreign strings without a
/// store round trip and makes leaked tokens easy to grep for.
pub const ACCESS_TOKEN_PREFIX: &str = "pc_at_";
/// The at-rest prefix of a generated secret's digest.
pub const SHA256_PREFIX: &str = "sha256$";

#[expect(
    clippy::expect_used,
    reason = "without OS randomness no secret can be minted safely and there is no fallback: failing the request is failing closed"
)]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("OS random number generator unavailable");
    buf
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha256(data))
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(data: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(data).ok()
}

/// A random UUIDv4 in its canonical text form.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

pub fn generate_client_secret() -> String {
    b64url(&random_bytes::<32>())
}

pub fn generate_access_token() -> String {
    format!("{ACCESS_TOKEN_PREFIX}{}", b64url(&random_bytes::<32>()))
}

/// What identifies a token in the store: its SHA-256, never the token.
pub fn token_signature(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// At-rest form of a secret the server generated (high entropy: one hash suffices).
pub fn hash_generated_secret(secret: &str) -> String {
    format!("{SHA256_PREFIX}{}", sha256_hex(secret.as_bytes()))
}

/// Constant-time equality of two secrets of possibly different lengths (compares digests, so
/// the time taken does not reveal a common prefix or the length).
pub fn secret_eq(a: &str, b: &str) -> bool {
    bool::from(sha256(a.as_bytes()).ct_eq(&sha256(b.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_version_and_variant() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(uuid_v4(), id);
    }

    #[test]
    fn tokens_and_secrets_are_256_bit() {
        let t = generate_access_token();
        assert!(t.starts_with("pc_at_"));
        assert_eq!(b64url_decode(&t[6..]).unwrap().len(), 32);
        assert_eq!(b64url_decode(&generate_client_secret()).unwrap().len(), 32);
    }

    #[test]
    fn secret_eq_is_equality() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abcd"));
    }
}
