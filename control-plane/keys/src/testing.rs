//! Test helpers for other crates' tests (feature `testing`): checking and forging ES256 tokens
//! the way a relying party or a filter-token holder could. Never built into the binary.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::SigningKey as EcKey;
use p256::pkcs8::DecodePrivateKey;
use portcullis_model::crypto;
use portcullis_shared::snapshot::SigningKey as SnapshotKey;
use serde_json::Value;

/// Whether `token` (a compact ES256 JWS) verifies with any P-256 key of `jwks`, whatever
/// its `kid` says: what a lenient relying party would accept.
pub fn verifies_with_any(jwks: &Value, token: &str) -> bool {
    let Ok(token) = crate::jwt::Untrusted::parse(token, &[crate::jwt::Alg::ES256]) else { return false };
    let mut keys = portcullis_shared::jwt::signing_keys(jwks);
    keys.iter_mut().for_each(|k| k.kid = token.kid().map(str::to_owned));
    token.verify(&keys).is_some()
}

/// A compact ES256 JWS of `claims` signed with the PKCS#8 key of a snapshot, as a filter
/// token holder could sign it.
pub fn sign_with_snapshot_key(key: &SnapshotKey, claims: &Value) -> String {
    let der = STANDARD.decode(&key.pkcs8).unwrap();
    let sk = EcKey::from_pkcs8_der(&der).unwrap();
    let claims = jwt_compact::Claims::new(claims.as_object().unwrap().clone());
    crate::jwt::sign_es256(&sk, &key.kid, "JWT", &claims).unwrap()
}

/// The verifying key of a public P-256 JWK.
pub fn verifying_key(jwk: &Value) -> p256::ecdsa::VerifyingKey {
    let mut sec1 = vec![4u8];
    sec1.extend(crypto::b64url_decode(jwk["x"].as_str().unwrap()).unwrap());
    sec1.extend(crypto::b64url_decode(jwk["y"].as_str().unwrap()).unwrap());
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap()
}

/// Tokens an attacker writes, for tests of every path that verifies a JWT.
pub mod forge {
    use jwt_compact::AlgorithmExt as _;
    use jwt_compact::alg::{Hs256, Hs256Key};
    use serde_json::{Value, json};

    use crate::Signer;
    use crate::crypto::b64url;

    /// A compact JWS of `header` and `payload` written as JSON text (so a test can repeat a
    /// member, which no JSON builder does), signed with `key`'s ES256.
    pub fn signed_text(key: &Signer, header: &str, payload: &str) -> String {
        key.sign(&format!("{}.{}", b64url(header.as_bytes()), b64url(payload.as_bytes()))).unwrap()
    }

    /// An unsecured JWS (`alg: none`, empty signature) of `claims`.
    pub fn unsigned(claims: &Value) -> String {
        format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), b64url(claims.to_string().as_bytes()))
    }

    /// HS256 tokens of `claims` whose HMAC key is the public key `jwk` in each form a confused
    /// verifier might feed to HMAC: the JWK text, its `x`/`n` member, the decoded coordinate or
    /// modulus, and the SubjectPublicKeyInfo DER. All carry the key's `kid`.
    pub fn hmac_keyed_with_public_key(jwk: &Value, claims: &Value) -> Vec<String> {
        let member = jwk.get("x").or_else(|| jwk.get("n")).and_then(Value::as_str).unwrap_or_default();
        let spki =
            portcullis_shared::jwt::signing_keys(&json!({"keys": [jwk]})).pop().map(|k| k.spki_der).unwrap_or_default();
        let secrets: Vec<Vec<u8>> = vec![
            jwk.to_string().into_bytes(),
            member.as_bytes().to_vec(),
            crate::crypto::b64url_decode(member).unwrap_or_default(),
            spki,
        ];
        let header =
            jwt_compact::Header::empty().with_key_id(jwk["kid"].as_str().unwrap_or_default()).with_token_type("JWT");
        let claims = jwt_compact::Claims::new(claims.clone());
        secrets.iter().map(|secret| Hs256.token(&header, &claims, &Hs256Key::new(secret)).unwrap()).collect()
    }
}
