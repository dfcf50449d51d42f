//! Randomness, token and secret encoding, and secret hashing/verification.
//!
//! Nothing here logs or formats a secret: `Debug` is never derived on anything holding one.
//! Generated client secrets carry 256 bits of entropy, so a single SHA-256 is enough at rest
//! (`sha256$<hex>`); operator-chosen secrets may be weak, so they get argon2id. Repeated
//! verifications of an argon2 secret are answered from a small cache of the last secret that
//! verified, keyed by client id and the stored hash, so a client hammering the token endpoint
//! costs microseconds instead of an argon2 run each time.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_shared::jwt::Algorithm;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every access token we issue; lets introspection reject foreign strings without a
/// store round trip and makes leaked tokens easy to grep for.
pub const ACCESS_TOKEN_PREFIX: &str = "pc_at_";
const SHA256_PREFIX: &str = "sha256$";
const CACHE_CAPACITY: usize = 10_000;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // Without OS randomness we cannot mint a single secret safely; there is no fallback.
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

/// Constant-time equality of two secrets of possibly different lengths (compares digests, so
/// the time taken does not reveal a common prefix or the length).
pub fn secret_eq(a: &str, b: &str) -> bool {
    bool::from(sha256(a.as_bytes()).ct_eq(&sha256(b.as_bytes())))
}

/// Checks a JWS signature with RustCrypto (the filter asks Envoy's BoringSSL instead).
/// `spki_der` is SubjectPublicKeyInfo DER; ECDSA signatures are DER.
pub fn verify_signature(alg: Algorithm, spki_der: &[u8], signature: &[u8], message: &[u8]) -> bool {
    use p256::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    match alg {
        Algorithm::ES256 => {
            let (Ok(key), Ok(sig)) =
                (p256::ecdsa::VerifyingKey::from_public_key_der(spki_der), p256::ecdsa::Signature::from_der(signature))
            else {
                return false;
            };
            key.verify(message, &sig).is_ok()
        }
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
            let (Ok(key), Ok(sig)) =
                (rsa::RsaPublicKey::from_public_key_der(spki_der), rsa::pkcs1v15::Signature::try_from(signature))
            else {
                return false;
            };
            match alg {
                Algorithm::RS256 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key).verify(message, &sig).is_ok(),
                Algorithm::RS384 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key).verify(message, &sig).is_ok(),
                _ => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(key).verify(message, &sig).is_ok(),
            }
        }
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
    pub async fn verify(&self, client_id: &str, stored: &str, presented: &str) -> bool {
        if stored.starts_with(SHA256_PREFIX) {
            return verify_secret(stored, presented);
        }
        let digest = sha256(presented.as_bytes());
        if let Some((cached_hash, cached_digest)) = self.lock().get(client_id) {
            if cached_hash == stored && bool::from(cached_digest.ct_eq(&digest)) {
                return true;
            }
        }
        let (stored_owned, presented_owned) = (stored.to_owned(), presented.to_owned());
        let ok =
            tokio::task::spawn_blocking(move || verify_secret(&stored_owned, &presented_owned)).await.unwrap_or(false);
        if ok {
            let mut cache = self.lock();
            if cache.len() >= CACHE_CAPACITY && !cache.contains_key(client_id) {
                // Crude but bounded: dropping everything costs at most one argon2 run per
                // active client.
                cache.clear();
            }
            cache.insert(client_id.to_owned(), (stored.to_owned(), digest));
        }
        ok
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
        assert!(verifier.verify("c", &slow, "hunter22").await);
        assert!(verifier.verify("c", &slow, "hunter22").await);
        assert!(!verifier.verify("c", &slow, "hunter23").await);
        let other = hash_operator_secret("different").unwrap();
        assert!(!verifier.verify("c", &other, "hunter22").await);
    }

    #[test]
    fn secret_eq_is_equality() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abcd"));
    }

    #[test]
    fn es256_signatures_verify_with_spki_and_der_and_nothing_else_does() {
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::EncodePublicKey;
        let key = p256::ecdsa::SigningKey::from_bytes(&[5u8; 32].into()).unwrap();
        let spki = key.verifying_key().to_public_key_der().unwrap();
        let signature: p256::ecdsa::Signature = key.sign(b"header.payload");
        let der = signature.to_der();
        assert!(verify_signature(Algorithm::ES256, spki.as_bytes(), der.as_bytes(), b"header.payload"));
        assert!(!verify_signature(Algorithm::ES256, spki.as_bytes(), der.as_bytes(), b"header.tampered"));
        assert!(
            !verify_signature(Algorithm::RS256, spki.as_bytes(), der.as_bytes(), b"header.payload"),
            "wrong key type"
        );
        assert!(!verify_signature(Algorithm::ES256, b"not a key", der.as_bytes(), b"header.payload"));
    }
}
