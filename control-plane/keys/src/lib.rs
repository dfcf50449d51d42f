//! The two ES256 key sets the control plane signs with, kept apart because they are trusted by
//! different parties and held by different parties:
//! - [`OAUTH2_SET`] (`portcullis.id-token`, Hydra's `hydra.openid.id-token` and
//!   `hydra.jwt.access-token` in one): ID tokens, JWT access tokens, back-channel logout tokens
//!   and whoami tokens, all minted inside the control plane and verified by its relying parties
//!   at [`OAUTH2_JWKS_PATH`]. Its private keys never leave this process: nothing here can hand
//!   one to a snapshot.
//! - [`GATEWAY_SET`] (`portcullis.gateway`): what `id_token` mutators sign with, in the filters
//!   (the only key a snapshot carries, [`Keys::snapshot_key`]) and in the decisions API;
//!   upstreams verify those tokens at [`GATEWAY_JWKS_PATH`]. Whoever holds a filter token or a
//!   `rules:write` API key can sign with it, so no OAuth2 relying party may trust it.
//!
//! At start the newest unretired key of each set is loaded, or one is generated and stored.
//! Private keys are stored only encrypted (AES-256-GCM, key = SHA-256 of the first entry of
//! `secrets.system`, the key id as associated data so a ciphertext cannot be moved to another
//! row); every configured secret is tried to decrypt, so a secret rotates by prepending. With no
//! `secrets.system` nothing is stored and each process signs with its own in-memory key. This
//! module never logs or formats key material: `Debug` shows key ids only. It does no HTTP.

// Outside tests a failure is a typed error, never a panic (control-plane/clippy.toml lets tests
// unwrap); exceptions are `#[expect]`ed with a reason, never `#[allow]`ed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::SigningKey as EcKey;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use portcullis_shared::jwt::Algorithm;
use portcullis_shared::snapshot::SigningKey as SnapshotKey;
use serde_json::{Map, Value, json};

pub mod config;
pub mod hashing;
pub mod jws;
pub mod jwt;
#[cfg(any(test, feature = "testing"))]
#[expect(
    clippy::unwrap_used,
    reason = "test helpers (the `testing` feature, dev-dependencies only): a malformed fixture fails the test"
)]
pub mod testing;

pub use config::Secrets;
use portcullis_model::StartupError;
use portcullis_model::crypto;
use portcullis_store::{KeyRow, Store, StoreError};

/// Why a key set could not be reloaded while serving: the store failed, or a stored key does not
/// load (no active key, a key no configured secret decrypts, a malformed public JWK). Either way
/// the set keeps signing with the key it had.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Key(StartupError),
}

/// The OAuth2 server's set (see the module documentation). Existing deployments keep their
/// key: this is the set every earlier version signed everything with.
pub const OAUTH2_SET: &str = "portcullis.id-token";

/// The gateway's set for `id_token` mutators (see the module documentation).
pub const GATEWAY_SET: &str = "portcullis.gateway";

/// The sets whose active key this server signs with; the admin API keeps each able to sign.
pub const MANAGED_SETS: [&str; 2] = [OAUTH2_SET, GATEWAY_SET];

/// Where the public keys of [`OAUTH2_SET`] are published (public listener; discovery's `jwks_uri`).
pub const OAUTH2_JWKS_PATH: &str = "/.well-known/jwks.json";

/// Where the public keys of [`GATEWAY_SET`] are published (public listener), for upstreams that
/// verify the tokens `id_token` mutators add (Oathkeeper publishes its own JWKS the same way).
pub const GATEWAY_JWKS_PATH: &str = "/.well-known/gateway-jwks.json";

/// How long a retired key stays in its JWKS: longer than any token it signed may live, so
/// relying parties can still verify tokens minted just before a rotation.
pub const RETIRED_LISTED_SECONDS: i64 = 24 * 3600;

const CIPHERTEXT_VERSION: &str = "v1";

/// A private key ready to sign, with its id.
pub struct Signer {
    kid: String,
    key: EcKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Signer {
    /// A fresh P-256 key with a random 96-bit key id.
    pub fn generate() -> Result<Self, String> {
        loop {
            // Zero or a value above the group order is not a valid scalar: odds of about 2^-32,
            // so drawing again is the whole remedy.
            let bytes = Zeroizing::new(crypto::random_bytes::<32>());
            if let Ok(key) = EcKey::from_bytes(&p256::FieldBytes::from(*bytes)) {
                return Ok(Self { kid: crypto::b64url(&crypto::random_bytes::<12>()), key });
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

    /// A compact ES256 JWT of `claims` (see [`crate::jwt::issue`]) with this key's `kid` and
    /// the JOSE `typ` given (`JWT`, `logout+jwt`, ...), or `None` if signing failed.
    pub fn sign_jwt(&self, typ: &str, claims: &jwt_compact::Claims<Map<String, Value>>) -> Option<String> {
        crate::jwt::sign_es256(&self.key, &self.kid, typ, claims)
    }

    /// The public half as a JWK; never any private part.
    pub fn public_jwk(&self) -> Value {
        public_jwk(&self.kid, &self.key)
    }

    /// The private key as a snapshot carries it (PKCS#8 DER, standard base64). Private to this
    /// module: only [`Keys::snapshot_key`] of the gateway set hands it out.
    fn snapshot_key(&self) -> Option<SnapshotKey> {
        let der = self.key.to_pkcs8_der().ok()?;
        Some(SnapshotKey { kid: self.kid.clone(), alg: Algorithm::ES256, pkcs8: STANDARD.encode(der.as_bytes()) })
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

/// One consistent view of the set: the signer and the public keys, swapped as a whole.
#[derive(Debug)]
struct Loaded {
    signer: Arc<Signer>,
    listed: Vec<Listed>,
}

/// One managed set ([`OAUTH2_SET`] or [`GATEWAY_SET`]): the signing key and the public keys.
/// Rotation (through the admin API, or another replica's, seen by [`Keys::reload`]) swaps the
/// whole view without a lock, so `signer()` and `jwks()` callers never wait and never see half
/// a rotation.
pub struct Keys {
    set: &'static str,
    current: ArcSwap<Loaded>,
    ephemeral: bool,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("set", &self.set)
            .field("signer", &self.current.load().signer)
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

impl Keys {
    /// Loads (or creates) the active key of `set`, one of [`MANAGED_SETS`]. `now` is unix
    /// seconds.
    pub async fn load(set: &'static str, secrets: &Secrets, store: &Store, now: i64) -> Result<Self, StartupError> {
        if !MANAGED_SETS.contains(&set) {
            return Err(StartupError(format!("{set} is not a key set this server signs with")));
        }
        secrets.validate()?;
        if secrets.system.is_empty() {
            tracing::warn!(set, "signing key is ephemeral: set secrets.system to persist it");
            let signer = Signer::generate().map_err(StartupError)?;
            let listed = vec![Listed { jwk: signer.public_jwk(), retired_at: None }];
            return Ok(Self {
                set,
                current: ArcSwap::from_pointee(Loaded { signer: Arc::new(signer), listed }),
                ephemeral: true,
            });
        }
        let mut rows = store.signing_keys(set).await?;
        if !rows.iter().any(|r| r.retired_at.is_none()) {
            let signer = Signer::generate().map_err(StartupError)?;
            store.insert_signing_key(&encrypted_row(&signer, set, &secrets.system[0], now)?).await?;
            tracing::info!(kid = %signer.kid, set, "generated a signing key");
            // Re-read: a replica starting at the same moment may have stored one too, and
            // every replica must pick the same (the newest).
            rows = store.signing_keys(set).await?;
        }
        let loaded = loaded_from(set, &rows, &secrets.system)?;
        Ok(Self { set, current: ArcSwap::from_pointee(loaded), ephemeral: false })
    }

    /// The set's name.
    pub fn set(&self) -> &'static str {
        self.set
    }

    /// The active private key as snapshots carry it to filters: only for [`GATEWAY_SET`]. The
    /// OAuth2 set answers `None`, so no wiring mistake can publish its key.
    pub fn snapshot_key(&self) -> Option<SnapshotKey> {
        if self.set == GATEWAY_SET { self.signer().snapshot_key() } else { None }
    }

    /// Re-reads the set from the store and swaps it in; returns whether the signer changed.
    /// On an error (no active key, a key that does not decrypt) the running view stays: a
    /// server keeps signing with the key it has rather than stop.
    pub async fn reload(&self, secrets: &Secrets, store: &Store) -> Result<bool, ReloadError> {
        if self.ephemeral {
            return Ok(false);
        }
        let mut rows = store.signing_keys(self.set).await?;
        active_first(&mut rows);
        let old = self.current.load();
        let same_rows = rows.len() == old.listed.len()
            && rows
                .iter()
                .zip(&old.listed)
                .all(|(r, l)| r.retired_at == l.retired_at && l.jwk["kid"] == r.kid.as_str());
        let active = rows.iter().find(|r| r.retired_at.is_none()).map(|r| r.kid.as_str());
        if same_rows && active == Some(old.signer.kid()) {
            return Ok(false);
        }
        let loaded = loaded_from(self.set, &rows, &secrets.system).map_err(ReloadError::Key)?;
        // The same kid may now name another key (an import replaced it).
        let changed = loaded.signer.kid() != old.signer.kid() || loaded.signer.key != old.signer.key;
        if changed {
            tracing::info!(kid = %loaded.signer.kid, set = self.set, "signing with a new key");
        }
        self.current.store(Arc::new(loaded));
        Ok(changed)
    }

    /// The key the set signs with now.
    pub fn signer(&self) -> Arc<Signer> {
        self.current.load().signer.clone()
    }

    /// Whether the key lives only in this process (no `secrets.system`).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The public JWKS at `now` (unix seconds): unretired keys, and retired ones for
    /// [`RETIRED_LISTED_SECONDS`] after retirement.
    pub fn jwks(&self, now: i64) -> Value {
        let current = self.current.load();
        let keys: Vec<&Value> = current
            .listed
            .iter()
            .filter(|k| k.retired_at.is_none_or(|at| at.saturating_add(RETIRED_LISTED_SECONDS) > now))
            .map(|k| &k.jwk)
            .collect();
        json!({ "keys": keys })
    }
}

/// The signing key first, then the others newest first (the store's order): relying parties
/// that take the first key of the JWKS get the one that signs, whatever the ties in time.
fn active_first(rows: &mut [KeyRow]) {
    rows.sort_by_key(|r| r.retired_at.is_some());
}

fn loaded_from(set: &str, rows: &[KeyRow], secrets: &[String]) -> Result<Loaded, StartupError> {
    let mut rows = rows.to_vec();
    active_first(&mut rows);
    let active = rows
        .iter()
        .find(|r| r.retired_at.is_none())
        .ok_or_else(|| StartupError(format!("signing key set {set} has no active key")))?;
    let signer = decrypt_row(set, active, secrets)?;
    let listed = rows
        .iter()
        .map(|r| {
            let jwk = serde_json::from_str(&r.public_jwk).map_err(|e| {
                StartupError(format!("signing key {} in set {set}: public_jwk is not JSON: {e}", r.kid))
            })?;
            Ok(Listed { jwk, retired_at: r.retired_at })
        })
        .collect::<Result<_, StartupError>>()?;
    Ok(Loaded { signer: Arc::new(signer), listed })
}

/// The algorithms a key can be generated or imported with: ES256 (what the filter signs and
/// verifies through Envoy) and RS256 (for relying parties that only take RSA).
pub const SUPPORTED_ALGS: [&str; 2] = ["ES256", "RS256"];

/// RSA modulus size for generated keys. Hydra uses 4096; 2048 (NIST-acceptable through 2030)
/// keeps generation under a second, and imported keys may be larger.
const RSA_BITS: usize = 2048;

/// A key for any set, generated or imported, before it is stored. Never formatted (no Debug).
pub struct KeyMaterial {
    pub kid: String,
    pub alg: &'static str,
    pub use_: String,
    private: Private,
}

enum Private {
    Ec(EcKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// The operating system's generator (through [`crypto`]) in the shape `rsa` asks for.
struct OsRandom;

impl rsa::rand_core::RngCore for OsRandom {
    fn next_u32(&mut self) -> u32 {
        u32::from_le_bytes(crypto::random_bytes::<4>())
    }
    fn next_u64(&mut self) -> u64 {
        u64::from_le_bytes(crypto::random_bytes::<8>())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            let bytes = Zeroizing::new(crypto::random_bytes::<32>());
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for OsRandom {}

/// Checks a set name or key id: 1 to 128 characters of `A-Z a-z 0-9 . _ ~ -` (they appear in
/// URL paths and in JWT headers).
pub fn validate_name(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if ok { Ok(()) } else { Err(format!("{field}: {value:?} must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -")) }
}

fn check_alg(alg: &str) -> Result<&'static str, String> {
    SUPPORTED_ALGS
        .into_iter()
        .find(|a| *a == alg)
        .ok_or_else(|| format!("alg: {alg:?} is not supported; use one of {}", SUPPORTED_ALGS.join(", ")))
}

fn check_use(use_: &str) -> Result<String, String> {
    match use_ {
        "sig" | "enc" => Ok(use_.to_owned()),
        other => Err(format!("use: {other:?} must be \"sig\" or \"enc\"")),
    }
}

impl KeyMaterial {
    /// A new key; `kid` defaults to a random 96-bit id.
    pub fn generate(alg: &str, use_: &str, kid: Option<&str>) -> Result<Self, String> {
        let alg = check_alg(alg)?;
        let use_ = check_use(use_)?;
        let kid = match kid {
            Some(kid) => {
                validate_name("kid", kid)?;
                kid.to_owned()
            }
            None => crypto::b64url(&crypto::random_bytes::<12>()),
        };
        let private = match alg {
            "ES256" => Private::Ec(Signer::generate()?.key),
            _ => Private::Rsa(Box::new(
                rsa::RsaPrivateKey::new(&mut OsRandom, RSA_BITS)
                    .map_err(|e| format!("cannot generate an RSA key: {e}"))?,
            )),
        };
        Ok(Self { kid, alg, use_, private })
    }

    /// A private JWK (`kty` EC with `crv` P-256 and `d`, or RSA with `n e d p q`). Errors name
    /// the field; a public-only JWK is refused (the set's keys must be able to sign).
    pub fn from_jwk(jwk: &Value) -> Result<Self, String> {
        let obj = jwk.as_object().ok_or("a JSON Web Key must be a JSON object")?;
        let text = |name: &str| -> Result<Option<&str>, String> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(format!("{name}: must be a string")),
            }
        };
        let required = |name: &str| text(name)?.ok_or_else(|| format!("{name}: is required"));
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            crypto::b64url_decode(required(name)?).ok_or_else(|| format!("{name}: is not base64url"))
        };
        let kid = required("kid")?;
        validate_name("kid", kid)?;
        let use_ = check_use(text("use")?.unwrap_or("sig"))?;
        let kty = required("kty")?;
        let (alg, private) = match kty {
            "EC" => {
                let alg = check_alg(text("alg")?.unwrap_or("ES256"))?;
                if alg != "ES256" {
                    return Err(format!("alg: {alg:?} does not fit kty \"EC\"; use ES256"));
                }
                if required("crv")? != "P-256" {
                    return Err("crv: only \"P-256\" is supported".into());
                }
                let d = Zeroizing::new(bytes("d")?);
                if d.len() != 32 {
                    return Err("d: a P-256 private key is 32 bytes".into());
                }
                let key = EcKey::from_bytes(&p256::FieldBytes::clone_from_slice(&d))
                    .map_err(|_| "d: not a valid P-256 private key".to_owned())?;
                let public = public_jwk(kid, &key);
                for c in ["x", "y"] {
                    if text(c)?.is_some_and(|v| v != public[c]) {
                        return Err(format!("{c}: does not match the private key d"));
                    }
                }
                (alg, Private::Ec(key))
            }
            "RSA" => {
                let alg = check_alg(text("alg")?.unwrap_or("RS256"))?;
                if alg != "RS256" {
                    return Err(format!("alg: {alg:?} does not fit kty \"RSA\"; use RS256"));
                }
                let int = |name: &str| bytes(name).map(|b| rsa::BigUint::from_bytes_be(&b));
                let key =
                    rsa::RsaPrivateKey::from_components(int("n")?, int("e")?, int("d")?, vec![int("p")?, int("q")?])
                        .map_err(|e| format!("n, e, d, p, q: not a consistent RSA private key: {e}"))?;
                key.validate().map_err(|e| format!("n, e, d, p, q: not a consistent RSA private key: {e}"))?;
                use rsa::traits::PublicKeyParts as _;
                if key.size() < 256 {
                    return Err("n: RSA keys must have at least 2048 bits".into());
                }
                (alg, Private::Rsa(Box::new(key)))
            }
            other => return Err(format!("kty: {other:?} is not supported; use \"EC\" or \"RSA\"")),
        };
        Ok(Self { kid: kid.to_owned(), alg, use_, private })
    }

    /// The public half as a JWK; never any private part.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.private {
            Private::Ec(key) => public_jwk(&self.kid, key),
            Private::Rsa(key) => {
                use rsa::traits::PublicKeyParts as _;
                json!({
                    "kty": "RSA",
                    "n": crypto::b64url(&key.n().to_bytes_be()),
                    "e": crypto::b64url(&key.e().to_bytes_be()),
                    "kid": self.kid,
                    "use": "sig",
                    "alg": self.alg,
                })
            }
        };
        jwk["use"] = json!(self.use_);
        jwk
    }

    /// The row to store: PKCS#8 encrypted under `secret`, bound to the kid.
    pub fn row(&self, set_id: &str, secret: &str, now: i64) -> Result<KeyRow, String> {
        use rsa::pkcs8::EncodePrivateKey as _;
        let der = match &self.private {
            Private::Ec(key) => key.to_pkcs8_der(),
            Private::Rsa(key) => key.to_pkcs8_der(),
        }
        .map_err(|e| format!("cannot encode key {} as PKCS#8: {e}", self.kid))?;
        Ok(KeyRow {
            kid: self.kid.clone(),
            set_id: set_id.to_owned(),
            alg: self.alg.to_owned(),
            private_key: encrypt(secret, &self.kid, der.as_bytes())?,
            public_jwk: self.public_jwk().to_string(),
            created_at: now,
            retired_at: None,
        })
    }
}

fn encrypted_row(signer: &Signer, set: &str, secret: &str, now: i64) -> Result<KeyRow, StartupError> {
    let der = signer
        .key
        .to_pkcs8_der()
        .map_err(|e| StartupError(format!("cannot encode signing key {} as PKCS#8: {e}", signer.kid)))?;
    Ok(KeyRow {
        kid: signer.kid.clone(),
        set_id: set.into(),
        alg: "ES256".into(),
        private_key: encrypt(secret, &signer.kid, der.as_bytes()).map_err(StartupError)?,
        public_jwk: signer.public_jwk().to_string(),
        created_at: now,
        retired_at: None,
    })
}

fn decrypt_row(set: &str, row: &KeyRow, secrets: &[String]) -> Result<Signer, StartupError> {
    let fail = |why: String| StartupError(format!("signing key {} in set {set}: {why}", row.kid));
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
    Ok(Signer { kid: row.kid.clone(), key })
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
mod tests {
    use super::*;
    use crate::testing::*;
    use portcullis_store::testing;

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
            let keys = Keys::load(OAUTH2_SET, &secrets(&[SECRET]), &store, 1000).await.unwrap();
            assert!(!keys.is_ephemeral());
            let signer = keys.signer();
            assert_eq!(crypto::b64url_decode(signer.kid()).unwrap().len(), 12);

            let rows = store.signing_keys(OAUTH2_SET).await.unwrap();
            assert_eq!(rows.len(), 1, "{backend}");
            let base64 = signer.snapshot_key().unwrap().pkcs8;
            let pkcs8 = STANDARD.decode(&base64).unwrap();
            let stored = &rows[0].private_key;
            assert!(stored.starts_with("v1:"), "{backend}");
            assert!(!stored.contains(&base64), "{backend}: no clear base64 PKCS#8");
            assert!(!stored.contains(&crypto::b64url(&pkcs8)), "{backend}: no clear base64url PKCS#8");
            assert!(!stored.contains(&crypto::hex(&pkcs8)), "{backend}: no clear hex PKCS#8");
            assert_eq!(rows[0].created_at, 1000);
            let jwk: Value = serde_json::from_str(&rows[0].public_jwk).unwrap();
            assert!(jwk.get("d").is_none());

            // A restart (with the secret rotated by prepending) signs with the same key.
            let again = Keys::load(OAUTH2_SET, &secrets(&[OTHER, SECRET]), &store, 2000).await.unwrap();
            assert_eq!(again.signer().kid(), signer.kid(), "{backend}");
            assert_eq!(again.signer().snapshot_key(), signer.snapshot_key());
            assert_eq!(store.signing_keys(OAUTH2_SET).await.unwrap().len(), 1, "no second key");

            let err = Keys::load(OAUTH2_SET, &secrets(&[OTHER]), &store, 2000).await.unwrap_err().to_string();
            assert!(
                err.contains(signer.kid()) && err.contains("cannot be decrypted") && err.contains("secrets.system")
            );
            assert!(!err.contains(OTHER) && !err.contains(SECRET), "{err}");

            let err = Keys::load(OAUTH2_SET, &secrets(&["short"]), &store, 2000).await.unwrap_err().to_string();
            assert!(err.contains("secrets.system[0]"), "{err}");
        }
    }

    #[tokio::test]
    async fn the_two_sets_hold_different_keys_and_only_the_gateway_key_goes_to_filters() {
        for (backend, store) in testing::all().await {
            for system in [secrets(&[SECRET]), Secrets::default()] {
                let oauth2 = Keys::load(OAUTH2_SET, &system, &store, 1000).await.unwrap();
                let gateway = Keys::load(GATEWAY_SET, &system, &store, 1000).await.unwrap();
                assert_ne!(oauth2.signer().kid(), gateway.signer().kid(), "{backend}");
                assert_ne!(oauth2.signer().public_jwk()["x"], gateway.signer().public_jwk()["x"], "{backend}");
                assert_eq!(oauth2.snapshot_key(), None, "{backend}: an OAuth2 key never goes into a snapshot");
                let shipped = gateway.snapshot_key().expect("the gateway key goes to filters");
                assert_eq!(shipped.kid, gateway.signer().kid());
                let token = sign_with_snapshot_key(&shipped, &json!({"sub": "x"}));
                assert!(verifies_with_any(&gateway.jwks(1000), &token), "{backend}");
                assert!(!verifies_with_any(&oauth2.jwks(1000), &token), "{backend}");
            }
            // Stored, like the OAuth2 key: a restart signs with the same gateway key.
            let stored = store.signing_keys(GATEWAY_SET).await.unwrap();
            assert_eq!(stored.len(), 1, "{backend}");
            let again = Keys::load(GATEWAY_SET, &secrets(&[SECRET]), &store, 2000).await.unwrap();
            assert_eq!(stored[0].kid, again.signer().kid(), "{backend}");
        }
        let store = testing::sqlite().await;
        let err = Keys::load("my-app", &Secrets::default(), &store, 0).await.unwrap_err().to_string();
        assert!(err.contains("my-app"), "{err}");
    }

    #[tokio::test]
    async fn retired_keys_stay_in_the_jwks_for_a_day() {
        let store = testing::sqlite().await;
        let first = Keys::load(OAUTH2_SET, &secrets(&[SECRET]), &store, 1000).await.unwrap().signer();
        assert!(store.retire_signing_key(OAUTH2_SET, first.kid(), 5000).await.unwrap());
        let keys = Keys::load(OAUTH2_SET, &secrets(&[SECRET]), &store, 6000).await.unwrap();
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
        let a = Keys::load(OAUTH2_SET, &Secrets::default(), &store, 1000).await.unwrap();
        let b = Keys::load(OAUTH2_SET, &Secrets::default(), &store, 1000).await.unwrap();
        assert!(a.is_ephemeral());
        assert_ne!(a.signer().kid(), b.signer().kid(), "one key per process");
        assert!(store.signing_keys(OAUTH2_SET).await.unwrap().is_empty());
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
        let shipped = signer.snapshot_key().unwrap();
        let debug = format!("{signer:?} {shipped:?}");
        assert!(!debug.contains(&shipped.pkcs8) && debug.contains(signer.kid()), "{debug}");
    }
}
