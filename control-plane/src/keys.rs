//! The keys the control plane signs with: today the ES256 key set `portcullis.id-token` that
//! `id_token` mutators use, in the filter (through the snapshot) and in the decisions API.
//!
//! At start the newest unretired key of the set is loaded, or one is generated and stored.
//! Private keys are stored only encrypted (AES-256-GCM, key = SHA-256 of the first entry of
//! `secrets.system`, the key id as associated data so a ciphertext cannot be moved to another
//! row); every configured secret is tried to decrypt, so a secret rotates by prepending. With no
//! `secrets.system` nothing is stored and each process signs with its own in-memory key. This
//! module never logs or formats key material: `Debug` shows key ids only. It does no HTTP.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::SigningKey as EcKey;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use portcullis_shared::jwt::Algorithm;
use portcullis_shared::snapshot::SigningKey as SnapshotKey;
use serde_json::{Value, json};

use crate::config::Secrets;
use crate::crypto;
use crate::error::StartupError;
use crate::store::{KeyRow, Store};

/// The set `id_token` mutators sign with (Hydra's is `hydra.openid.id-token`).
pub const ID_TOKEN_SET: &str = "portcullis.id-token";

/// How long a retired key stays in the JWKS: longer than any id_token it signed may live, so
/// upstreams can still verify tokens minted just before a rotation.
pub const RETIRED_LISTED_SECONDS: i64 = 24 * 3600;

const CIPHERTEXT_VERSION: &str = "v1";

/// A private key ready to sign, with its id.
pub struct Signer {
    kid: String,
    key: EcKey,
    /// What filters receive: PKCS#8 DER, standard base64 (computed once; it is the same secret).
    snapshot: SnapshotKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Signer {
    fn new(kid: String, key: EcKey) -> Result<Self, String> {
        let der = key.to_pkcs8_der().map_err(|e| format!("cannot encode signing key {kid} as PKCS#8: {e}"))?;
        let snapshot = SnapshotKey { kid: kid.clone(), alg: Algorithm::ES256, pkcs8: STANDARD.encode(der.as_bytes()) };
        Ok(Self { kid, key, snapshot })
    }

    /// A fresh P-256 key with a random 96-bit key id.
    pub fn generate() -> Result<Self, String> {
        loop {
            // Zero or a value above the group order is not a valid scalar: odds of about 2^-32,
            // so drawing again is the whole remedy.
            let bytes = Zeroizing::new(crypto::random_bytes::<32>());
            if let Ok(key) = EcKey::from_bytes(&p256::FieldBytes::from(*bytes)) {
                return Self::new(crypto::b64url(&crypto::random_bytes::<12>()), key);
            }
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The compact JWS for `signing_input` (`header.payload`), or `None` if signing failed.
    pub fn sign(&self, signing_input: &str) -> Option<String> {
        use p256::ecdsa::signature::Signer as _;
        let signature: p256::ecdsa::Signature = self.key.try_sign(signing_input.as_bytes()).ok()?;
        portcullis_shared::jwt::compact_es256(signing_input, &signature.to_bytes())
    }

    /// A compact ES256 JWT of `claims` with this key's `kid` and the JOSE `typ` given
    /// (`JWT`, `logout+jwt`, ...), or `None` if signing failed.
    pub fn sign_jwt(&self, typ: &str, claims: &Value) -> Option<String> {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": typ});
        self.sign(&format!(
            "{}.{}",
            crypto::b64url(header.to_string().as_bytes()),
            crypto::b64url(claims.to_string().as_bytes())
        ))
    }

    /// The public half as a JWK; never any private part.
    pub fn public_jwk(&self) -> Value {
        public_jwk(&self.kid, &self.key)
    }

    /// The key as the snapshot carries it to filters.
    pub fn snapshot_key(&self) -> &SnapshotKey {
        &self.snapshot
    }
}

fn public_jwk(kid: &str, key: &EcKey) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    let coordinate = |c: Option<&p256::FieldBytes>| c.map(|c| crypto::b64url(c)).unwrap_or_default();
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": coordinate(point.x()),
        "y": coordinate(point.y()),
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
    })
}

/// A public key of the set and when it stopped signing.
#[derive(Debug, Clone)]
struct Listed {
    jwk: Value,
    retired_at: Option<i64>,
}

/// The `portcullis.id-token` set as loaded at start: the signing key and the public keys.
#[derive(Debug)]
pub struct Keys {
    signer: Arc<Signer>,
    listed: Vec<Listed>,
    ephemeral: bool,
}

impl Keys {
    /// Loads (or creates) the active key of [`ID_TOKEN_SET`]. `now` is unix seconds.
    pub async fn load(secrets: &Secrets, store: &Store, now: i64) -> Result<Self, StartupError> {
        secrets.validate()?;
        if secrets.system.is_empty() {
            tracing::warn!("id_token signing key is ephemeral: set secrets.system to persist it");
            let signer = Signer::generate().map_err(StartupError)?;
            let listed = vec![Listed { jwk: signer.public_jwk(), retired_at: None }];
            return Ok(Self { signer: Arc::new(signer), listed, ephemeral: true });
        }
        let mut rows = store.signing_keys(ID_TOKEN_SET).await?;
        if !rows.iter().any(|r| r.retired_at.is_none()) {
            let signer = Signer::generate().map_err(StartupError)?;
            store.insert_signing_key(&encrypted_row(&signer, &secrets.system[0], now)?).await?;
            tracing::info!(kid = %signer.kid, set = ID_TOKEN_SET, "generated a signing key");
            // Re-read: a replica starting at the same moment may have stored one too, and
            // every replica must pick the same (the newest).
            rows = store.signing_keys(ID_TOKEN_SET).await?;
        }
        let active = rows
            .iter()
            .find(|r| r.retired_at.is_none())
            .ok_or_else(|| StartupError(format!("signing key set {ID_TOKEN_SET}: the key just stored is missing")))?;
        let signer = decrypt_row(active, &secrets.system)?;
        let listed = rows
            .iter()
            .map(|r| {
                let jwk = serde_json::from_str(&r.public_jwk).map_err(|e| {
                    StartupError(format!("signing key {} in set {ID_TOKEN_SET}: public_jwk is not JSON: {e}", r.kid))
                })?;
                Ok(Listed { jwk, retired_at: r.retired_at })
            })
            .collect::<Result<_, StartupError>>()?;
        Ok(Self { signer: Arc::new(signer), listed, ephemeral: false })
    }

    /// The key `id_token` mutators sign with.
    pub fn signer(&self) -> Arc<Signer> {
        self.signer.clone()
    }

    /// Whether the key lives only in this process (no `secrets.system`).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The public JWKS at `now` (unix seconds): unretired keys, and retired ones for
    /// [`RETIRED_LISTED_SECONDS`] after retirement.
    pub fn jwks(&self, now: i64) -> Value {
        let keys: Vec<&Value> = self
            .listed
            .iter()
            .filter(|k| k.retired_at.is_none_or(|at| at.saturating_add(RETIRED_LISTED_SECONDS) > now))
            .map(|k| &k.jwk)
            .collect();
        json!({ "keys": keys })
    }
}

fn encrypted_row(signer: &Signer, secret: &str, now: i64) -> Result<KeyRow, StartupError> {
    let der = signer
        .key
        .to_pkcs8_der()
        .map_err(|e| StartupError(format!("cannot encode signing key {} as PKCS#8: {e}", signer.kid)))?;
    Ok(KeyRow {
        kid: signer.kid.clone(),
        set_id: ID_TOKEN_SET.into(),
        alg: "ES256".into(),
        private_key: encrypt(secret, &signer.kid, der.as_bytes()).map_err(StartupError)?,
        public_jwk: signer.public_jwk().to_string(),
        created_at: now,
        retired_at: None,
    })
}

fn decrypt_row(row: &KeyRow, secrets: &[String]) -> Result<Signer, StartupError> {
    let fail = |why: String| StartupError(format!("signing key {} in set {ID_TOKEN_SET}: {why}", row.kid));
    if row.alg != "ES256" {
        return Err(fail(format!("alg {:?} is not supported (only ES256)", row.alg)));
    }
    let der = decrypt(secrets, &row.kid, &row.private_key).ok_or_else(|| {
        fail(format!(
            "cannot be decrypted with any of the {} secret(s) in secrets.system; restore the secret it was \
             encrypted with (rotate by prepending a new secret and keeping the old ones)",
            secrets.len()
        ))
    })?;
    let key = EcKey::from_pkcs8_der(&der).map_err(|e| fail(format!("decrypted, but not a P-256 PKCS#8 key: {e}")))?;
    Signer::new(row.kid.clone(), key).map_err(StartupError)
}

fn cipher(secret: &str) -> Aes256Gcm {
    let key = Zeroizing::new(crypto::sha256(secret.as_bytes()));
    Aes256Gcm::new(&(*key).into())
}

/// `v1:<nonce>:<ciphertext>` (base64url) of `plaintext` under `secret`, bound to `kid`.
pub fn encrypt(secret: &str, kid: &str, plaintext: &[u8]) -> Result<String, String> {
    let nonce = crypto::random_bytes::<12>();
    let ciphertext = cipher(secret)
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: kid.as_bytes() })
        .map_err(|_| format!("cannot encrypt signing key {kid}"))?;
    Ok(format!("{CIPHERTEXT_VERSION}:{}:{}", crypto::b64url(&nonce), crypto::b64url(&ciphertext)))
}

/// The plaintext of an [`encrypt`] result under the first of `secrets` that opens it.
pub fn decrypt(secrets: &[String], kid: &str, stored: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut parts = stored.split(':');
    let (Some(CIPHERTEXT_VERSION), Some(nonce), Some(ciphertext), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let nonce: [u8; 12] = crypto::b64url_decode(nonce)?.try_into().ok()?;
    let ciphertext = crypto::b64url_decode(ciphertext)?;
    secrets.iter().find_map(|secret| {
        cipher(secret)
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: kid.as_bytes() })
            .ok()
            .map(Zeroizing::new)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::testing;

    const SECRET: &str = "a-system-secret-of-32-characters";
    const OTHER: &str = "another-secret-16+";

    fn secrets(list: &[&str]) -> Secrets {
        Secrets { system: list.iter().map(|s| (*s).to_owned()).collect() }
    }

    #[test]
    fn encryption_round_trips_and_binds_the_kid() {
        let sealed = encrypt(SECRET, "k1", b"pkcs8 bytes").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert_ne!(sealed, encrypt(SECRET, "k1", b"pkcs8 bytes").unwrap(), "a fresh nonce each time");
        let both = [OTHER.to_owned(), SECRET.to_owned()];
        assert_eq!(decrypt(&both, "k1", &sealed).unwrap().as_slice(), b"pkcs8 bytes", "any secret may open it");
        assert!(decrypt(&[OTHER.to_owned()], "k1", &sealed).is_none(), "wrong secret");
        assert!(decrypt(&both, "k2", &sealed).is_none(), "moved to another kid");
        assert!(decrypt(&both, "k1", "v2:a:b").is_none());
        assert!(decrypt(&both, "k1", &sealed.replace("v1:", "v1:x")).is_none());
    }

    #[tokio::test]
    async fn a_key_is_generated_once_stored_encrypted_and_reloaded() {
        for (backend, store) in testing::all().await {
            let keys = Keys::load(&secrets(&[SECRET]), &store, 1000).await.unwrap();
            assert!(!keys.is_ephemeral());
            let signer = keys.signer();
            assert_eq!(crypto::b64url_decode(signer.kid()).unwrap().len(), 12);

            let rows = store.signing_keys(ID_TOKEN_SET).await.unwrap();
            assert_eq!(rows.len(), 1, "{backend}");
            let pkcs8 = STANDARD.decode(&signer.snapshot_key().pkcs8).unwrap();
            let stored = &rows[0].private_key;
            assert!(stored.starts_with("v1:"), "{backend}");
            assert!(!stored.contains(&signer.snapshot_key().pkcs8), "{backend}: no clear base64 PKCS#8");
            assert!(!stored.contains(&crypto::b64url(&pkcs8)), "{backend}: no clear base64url PKCS#8");
            assert!(!stored.contains(&crypto::hex(&pkcs8)), "{backend}: no clear hex PKCS#8");
            assert_eq!(rows[0].created_at, 1000);
            let jwk: Value = serde_json::from_str(&rows[0].public_jwk).unwrap();
            assert!(jwk.get("d").is_none());

            // A restart (with the secret rotated by prepending) signs with the same key.
            let again = Keys::load(&secrets(&[OTHER, SECRET]), &store, 2000).await.unwrap();
            assert_eq!(again.signer().kid(), signer.kid(), "{backend}");
            assert_eq!(again.signer().snapshot_key(), signer.snapshot_key());
            assert_eq!(store.signing_keys(ID_TOKEN_SET).await.unwrap().len(), 1, "no second key");

            let err = Keys::load(&secrets(&[OTHER]), &store, 2000).await.unwrap_err().to_string();
            assert!(
                err.contains(signer.kid()) && err.contains("cannot be decrypted") && err.contains("secrets.system")
            );
            assert!(!err.contains(OTHER) && !err.contains(SECRET), "{err}");

            let err = Keys::load(&secrets(&["short"]), &store, 2000).await.unwrap_err().to_string();
            assert!(err.contains("secrets.system[0]"), "{err}");
        }
    }

    #[tokio::test]
    async fn retired_keys_stay_in_the_jwks_for_a_day() {
        let store = testing::sqlite().await;
        let first = Keys::load(&secrets(&[SECRET]), &store, 1000).await.unwrap().signer();
        assert!(store.retire_signing_key(ID_TOKEN_SET, first.kid(), 5000).await.unwrap());
        let keys = Keys::load(&secrets(&[SECRET]), &store, 6000).await.unwrap();
        assert_ne!(keys.signer().kid(), first.kid(), "a retired key no longer signs: a new one is made");
        let kids = |now: i64| -> Vec<String> {
            keys.jwks(now)["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(kids(6000), [keys.signer().kid(), first.kid()]);
        assert_eq!(kids(5000 + RETIRED_LISTED_SECONDS - 1).len(), 2);
        assert_eq!(kids(5000 + RETIRED_LISTED_SECONDS), [keys.signer().kid()]);
    }

    #[tokio::test]
    async fn without_system_secrets_nothing_is_stored() {
        let store = testing::sqlite().await;
        let a = Keys::load(&Secrets::default(), &store, 1000).await.unwrap();
        let b = Keys::load(&Secrets::default(), &store, 1000).await.unwrap();
        assert!(a.is_ephemeral());
        assert_ne!(a.signer().kid(), b.signer().kid(), "one key per process");
        assert!(store.signing_keys(ID_TOKEN_SET).await.unwrap().is_empty());
        assert_eq!(a.jwks(1000)["keys"][0]["kid"], a.signer().kid());
    }

    #[test]
    fn signatures_verify_with_the_public_jwk_and_debug_hides_the_key() {
        use p256::ecdsa::signature::Verifier as _;
        let signer = Signer::generate().unwrap();
        let token = signer.sign("aGVhZGVy.cGF5bG9hZA").unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(input, "aGVhZGVy.cGF5bG9hZA");
        let jwk = signer.public_jwk();
        assert_eq!(jwk.as_object().unwrap().len(), 7, "kty crv x y kid use alg, and no d: {jwk}");
        let key = verifying_key(&jwk);
        let signature = p256::ecdsa::Signature::from_slice(&crypto::b64url_decode(signature).unwrap()).unwrap();
        key.verify(input.as_bytes(), &signature).unwrap();
        let debug = format!("{signer:?} {:?}", signer.snapshot_key());
        assert!(!debug.contains(&signer.snapshot_key().pkcs8) && debug.contains(signer.kid()), "{debug}");
    }

    /// The verifying key of a public P-256 JWK.
    pub(crate) fn verifying_key(jwk: &Value) -> p256::ecdsa::VerifyingKey {
        let mut sec1 = vec![4u8];
        sec1.extend(crypto::b64url_decode(jwk["x"].as_str().unwrap()).unwrap());
        sec1.extend(crypto::b64url_decode(jwk["y"].as_str().unwrap()).unwrap());
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap()
    }
}
