//! JWS signature checks with RustCrypto (ES256, RS256/384/512), for the assertions the token
//! endpoint receives and for tests; the filter asks Envoy's BoringSSL instead.

use portcullis_shared::jwt::Algorithm;

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

#[cfg(test)]
mod tests {
    use super::*;

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
