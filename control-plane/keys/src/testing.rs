//! Test helpers for other crates' tests (feature `testing`): checking and forging ES256 tokens
//! the way a relying party or a filter-token holder could. Never built into the binary.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::SigningKey as EcKey;
use p256::pkcs8::DecodePrivateKey;
use portcullis_model::crypto;
use portcullis_shared::snapshot::SigningKey as SnapshotKey;
use serde_json::{Value, json};

/// Whether `token` (a compact ES256 JWS) verifies with any P-256 key of `jwks`, whatever
/// its `kid` says: what a lenient relying party would accept.
pub fn verifies_with_any(jwks: &Value, token: &str) -> bool {
    use p256::ecdsa::signature::Verifier as _;
    let Some((input, signature)) = token.rsplit_once('.') else { return false };
    let Some(signature) = crypto::b64url_decode(signature).and_then(|s| p256::ecdsa::Signature::from_slice(&s).ok())
    else {
        return false;
    };
    jwks["keys"].as_array().is_some_and(|keys| {
        keys.iter().filter(|k| k["kty"] == "EC").any(|k| verifying_key(k).verify(input.as_bytes(), &signature).is_ok())
    })
}

/// A compact ES256 JWS of `claims` signed with the PKCS#8 key of a snapshot, as a filter
/// token holder could sign it.
pub fn sign_with_snapshot_key(key: &SnapshotKey, claims: &Value) -> String {
    use p256::ecdsa::signature::Signer as _;
    let der = STANDARD.decode(&key.pkcs8).unwrap();
    let sk = EcKey::from_pkcs8_der(&der).unwrap();
    let header = json!({"alg": "ES256", "kid": key.kid, "typ": "JWT"});
    let input =
        format!("{}.{}", crypto::b64url(header.to_string().as_bytes()), crypto::b64url(claims.to_string().as_bytes()));
    let signature: p256::ecdsa::Signature = sk.sign(input.as_bytes());
    format!("{input}.{}", crypto::b64url(&signature.to_bytes()))
}

/// The verifying key of a public P-256 JWK.
pub fn verifying_key(jwk: &Value) -> p256::ecdsa::VerifyingKey {
    let mut sec1 = vec![4u8];
    sec1.extend(crypto::b64url_decode(jwk["x"].as_str().unwrap()).unwrap());
    sec1.extend(crypto::b64url_decode(jwk["y"].as_str().unwrap()).unwrap());
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap()
}
