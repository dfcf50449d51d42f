//! Target `jwt`: compact JWS parsing, the JWS `r || s` → DER conversion for ECDSA (what Envoy's
//! BoringSSL verifies), the DER → `r || s` conversion for tokens the filter signs, and JWKS
//! key reading.
//! The input is read three ways: as a token; its first 64 bytes as a raw ES256 signature
//! inside a well-formed token; and as a DER signature to finish a token with. Asserts: the
//! signing input is exactly `header.payload`; an ES256 signature comes out as strict DER
//! (minimal, positive INTEGERs) that decodes to the same `r` and `s`; a token finished from a
//! DER signature carries the same `r` and `s` and parses back; candidate keys fit the token's
//! algorithm and `kid`; a JWKS yields only well-formed SubjectPublicKeyInfo.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_shared::jwt::{Algorithm, UntrustedToken, VerifyingKey, compact_es256, signing_keys};

const ALL: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::ES256];
/// `{"alg":"ES256"}.{"sub":"u"}`
const HEADER_PAYLOAD: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0";

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_token(&text);

    let mut raw = [0u8; 64];
    let n = data.len().min(64);
    raw[..n].copy_from_slice(&data[..n]);
    let token = format!("{HEADER_PAYLOAD}.{}", URL_SAFE_NO_PAD.encode(raw));
    let parsed = UntrustedToken::parse(&token, &[Algorithm::ES256]).unwrap_or_else(|e| panic!("{token}: {e:?}"));
    assert_eq!(strict_der(&parsed.signature), Some(raw), "DER of {raw:02x?}");

    if let Some(finished) = compact_es256(HEADER_PAYLOAD, data) {
        let expected = match data.len() {
            64 => data.to_vec(),
            _ => lenient_der(data)
                .unwrap_or_else(|| panic!("accepted a signature that is not DER: {data:02x?}"))
                .to_vec(),
        };
        let signature = finished.strip_prefix(&format!("{HEADER_PAYLOAD}.")).unwrap_or_else(|| panic!("{finished}"));
        assert_eq!(URL_SAFE_NO_PAD.decode(signature).ok(), Some(expected), "r || s of {data:02x?}");
        let again = UntrustedToken::parse(&finished, &[Algorithm::ES256]).unwrap_or_else(|e| panic!("{e:?}"));
        // A DER signature of exactly 64 bytes (r and s 58 bytes together, about 2^-48 for a
        // real signature) is read as `r || s`: `compact_es256` cannot tell them apart.
        if again.signature.len() != 64 {
            assert_eq!(compact_es256(HEADER_PAYLOAD, &again.signature), Some(finished), "DER round trip");
        }
    }

    if let Ok(jwks) = serde_json::from_slice::<serde_json::Value>(data) {
        for key in signing_keys(&jwks) {
            check_key(&key);
        }
    }
}

fn check_token(text: &str) {
    let Ok(token) = UntrustedToken::parse(text, ALL) else { return };
    let (signing_input, signature) = text.rsplit_once('.').unwrap_or_else(|| panic!("parsed without dots"));
    assert_eq!(token.signing_input, signing_input.as_bytes());
    let raw = URL_SAFE_NO_PAD.decode(signature).unwrap_or_else(|_| panic!("parsed a signature that is not base64url"));
    match token.alg {
        Algorithm::ES256 => {
            let raw: [u8; 64] = raw.try_into().unwrap_or_else(|_| panic!("ES256 signature of the wrong length"));
            assert_eq!(strict_der(&token.signature), Some(raw));
            // Canonical base64url in, so the same token comes back out (unless the DER is
            // 64 bytes long, see `run`).
            let signing_input = String::from_utf8_lossy(token.signing_input);
            assert!(
                token.signature.len() == 64 || compact_es256(&signing_input, &token.signature).as_deref() == Some(text)
            );
        }
        _ => assert_eq!(token.signature, raw),
    }
    let keys = fixed_keys();
    for key in token.candidate_keys(&keys) {
        let kty = if token.alg == Algorithm::ES256 { "EC" } else { "RSA" };
        assert_eq!(key.kty, kty);
        assert!(key.alg.is_none_or(|a| a == token.alg));
        assert!(token.kid.is_none() || key.kid == token.kid);
    }
}

fn fixed_keys() -> Vec<VerifyingKey> {
    let spki = vec![0x30];
    let key = |kid: Option<&str>, kty, alg| VerifyingKey {
        kid: kid.map(str::to_owned),
        kty,
        alg,
        spki_der: spki.clone(),
        spki_sha256: [0; 32],
    };
    vec![
        key(Some("a"), "EC", None),
        key(Some("a"), "RSA", Some(Algorithm::RS256)),
        key(None, "EC", Some(Algorithm::ES256)),
        key(Some("b"), "RSA", Some(Algorithm::RS512)),
    ]
}

fn check_key(key: &VerifyingKey) {
    let (tag, body, rest) = der_tlv(&key.spki_der).unwrap_or_else(|| panic!("SPKI is not DER: {:02x?}", key.spki_der));
    assert!(tag == 0x30 && rest.is_empty(), "SPKI is not one SEQUENCE");
    let (tag, _algorithm, rest) = der_tlv(body).unwrap_or_else(|| panic!("no AlgorithmIdentifier"));
    assert_eq!(tag, 0x30);
    let (tag, bits, rest) = der_tlv(rest).unwrap_or_else(|| panic!("no BIT STRING"));
    assert!(tag == 0x03 && rest.is_empty());
    match key.kty {
        "EC" => assert_eq!((key.spki_der.len(), bits.first()), (91, Some(&0)), "P-256 SPKI"),
        "RSA" => {
            let (tag, rsa, rest) = der_tlv(&bits[1..]).unwrap_or_else(|| panic!("no RSAPublicKey"));
            assert!(tag == 0x30 && rest.is_empty());
            let (n, rest) = der_integer(rsa).unwrap_or_else(|| panic!("modulus is not a minimal INTEGER"));
            let (e, rest) = der_integer(rest).unwrap_or_else(|| panic!("exponent is not a minimal INTEGER"));
            assert!(rest.is_empty() && !n.is_empty() && !e.is_empty());
        }
        other => panic!("unexpected key type {other}"),
    }
}

/// One DER TLV with a definite, minimally encoded length: (tag, content, rest).
fn der_tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n || rest[0] == 0 {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        rest = &rest[n..];
        if len < 0x80 {
            return None;
        }
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A minimal, non-negative DER INTEGER: its magnitude without the sign byte, and the rest.
fn der_integer(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = der_tlv(bytes)?;
    if tag != 0x02 || content.is_empty() || content[0] & 0x80 != 0 {
        return None;
    }
    if content.len() > 1 && content[0] == 0 && content[1] & 0x80 == 0 {
        return None;
    }
    let magnitude = if content.len() > 1 && content[0] == 0 { &content[1..] } else { content };
    Some((magnitude, rest))
}

fn fixed32(magnitude: &[u8]) -> Option<[u8; 32]> {
    let magnitude = match magnitude.iter().position(|b| *b != 0) {
        Some(i) => &magnitude[i..],
        None => &[],
    };
    let mut out = [0u8; 32];
    out.get_mut(32usize.checked_sub(magnitude.len())?..)?.copy_from_slice(magnitude);
    Some(out)
}

/// `SEQUENCE { INTEGER r, INTEGER s }` in strict DER, as `r || s`.
fn strict_der(der: &[u8]) -> Option<[u8; 64]> {
    let (tag, body, rest) = der_tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (r, body) = der_integer(body)?;
    let (s, body) = der_integer(body)?;
    if !body.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&fixed32(r)?);
    out[32..].copy_from_slice(&fixed32(s)?);
    Some(out)
}

/// What a signer may hand back: a DER `SEQUENCE` of two INTEGERs whose values fit 32 bytes
/// (minimal encoding not required). Returns `r || s`.
fn lenient_der(der: &[u8]) -> Option<[u8; 64]> {
    let (tag, body, rest) = der_tlv(der).or_else(|| short_tlv(der))?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    let mut body = body;
    for half in out.chunks_mut(32) {
        let (tag, content, rest) = short_tlv(body)?;
        if tag != 0x02 {
            return None;
        }
        half.copy_from_slice(&fixed32(content)?);
        body = rest;
    }
    body.is_empty().then_some(out)
}

/// A TLV with a short-form length.
fn short_tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    (len < 0x80 && rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}
