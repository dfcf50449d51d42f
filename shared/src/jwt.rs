//! JSON Web Tokens and keys, without the cryptography: parse a compact JWS, pick the keys that
//! may have signed it, and turn JWKs into what a verifier needs (SubjectPublicKeyInfo DER, and
//! DER signatures for ECDSA) — Envoy's `verify_signature` foreign function (BoringSSL) in the
//! filter, RustCrypto in the control plane. Checking the signature is the caller's job (see
//! [`crate::pipeline::Step::Verify`]); checking the claims happens in the pipeline.
//!
//! The parser is strict because an attacker writes the input: one base64url spelling per
//! token (no padding, no whitespace), JSON objects with no duplicate member at any depth (so no
//! other parser can read a different `alg`, `kid` or `sub`), a bounded size, and no `crit`
//! extension, since it understands none (RFC 7515 §4.1.11). It never takes a key from the
//! token itself (`jwk`, `jku`, `x5u`, `x5c` are ignored).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest as _;

/// The largest token the parser reads. Real access tokens are a few KB (Azure AD's with group
/// claims reach ~10 KB); anything near Envoy's 60 KiB header limit is an attack.
pub const MAX_TOKEN_BYTES: usize = 32 * 1024;

/// [`TokenError::Malformed`] for a token longer than [`MAX_TOKEN_BYTES`].
pub const TOO_LARGE: &str = "size";

/// [`TokenError::Malformed`] for a token with a `crit` header: it lists extensions the
/// recipient must understand, and this one understands none.
pub const CRITICAL: &str = "header.crit";

/// The event member that makes a Security Event Token an OIDC back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Signature algorithms the filter can have verified natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    ES256,
}

impl Algorithm {
    pub fn parse(name: &str) -> Option<Algorithm> {
        Some(match name {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "ES256" => Algorithm::ES256,
            _ => return None,
        })
    }

    /// The hash function name Envoy's `verify_signature` expects.
    pub fn hash(self) -> &'static str {
        match self {
            Algorithm::RS256 | Algorithm::ES256 => "sha256",
            Algorithm::RS384 => "sha384",
            Algorithm::RS512 => "sha512",
        }
    }

    fn key_type(self) -> &'static str {
        match self {
            Algorithm::ES256 => "EC",
            _ => "RSA",
        }
    }
}

/// A verification key from a JWKS, ready for a verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    /// `EC` (P-256) or `RSA`.
    pub kty: &'static str,
    /// The key's `alg`, when the JWKS pins one.
    pub alg: Option<Algorithm>,
    /// SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// SHA-256 of `spki_der`: how a cache of verified tokens names the key that verified one.
    pub spki_sha256: [u8; 32],
}

/// Reads the signing keys of a JWKS document (`{"keys": [...]}`). Keys that are not for
/// signatures (`use` other than `sig`; a key without `use` counts as `sig`), or of a type the
/// filter cannot verify, are skipped rather than failing the whole set.
pub fn signing_keys(jwks: &Value) -> Vec<VerifyingKey> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else { return Vec::new() };
    keys.iter()
        .filter(|k| k.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig"))
        .filter_map(|k| {
            let text = |name: &str| k.get(name).and_then(Value::as_str);
            let bytes = |name: &str| text(name).and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok());
            let (kty, spki_der) = match text("kty")? {
                "EC" if text("crv") == Some("P-256") => ("EC", ec_p256_spki(&bytes("x")?, &bytes("y")?)?),
                "RSA" => ("RSA", rsa_spki(&bytes("n")?, &bytes("e")?)),
                _ => return None,
            };
            let alg = match text("alg") {
                Some(a) => Some(Algorithm::parse(a)?),
                None => None,
            };
            let spki_sha256 = sha2::Sha256::digest(&spki_der).into();
            Some(VerifyingKey { kid: text("kid").map(str::to_owned), kty, alg, spki_der, spki_sha256 })
        })
        .collect()
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug, Clone, PartialEq)]
pub struct UntrustedToken<'t> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The `typ` header, as written.
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'t [u8],
    /// The signature, DER-encoded for ECDSA (what BoringSSL and RustCrypto expect).
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not three dot-separated parts: not a JWT at all (Oathkeeper: "not responsible").
    NotAJwt,
    Malformed(&'static str),
    AlgorithmNotAllowed(String),
}

impl<'t> UntrustedToken<'t> {
    pub fn parse(token: &'t str, allowed: &[Algorithm]) -> Result<Self, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotAJwt);
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(TOO_LARGE));
        }
        let decode = |part: &str, what| URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed(what));
        let header = strict_object(&decode(header, "header")?).ok_or(TokenError::Malformed("header"))?;
        if header.contains_key("crit") {
            return Err(TokenError::Malformed(CRITICAL));
        }
        let alg_name = header.get("alg").and_then(Value::as_str).ok_or(TokenError::Malformed("header.alg"))?;
        let alg = Algorithm::parse(alg_name)
            .filter(|a| allowed.contains(a))
            .ok_or_else(|| TokenError::AlgorithmNotAllowed(alg_name.to_owned()))?;
        // A `kid` or `typ` that is not a string is not "absent": refuse rather than guess.
        let text = |name: &str, what| match header.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(TokenError::Malformed(what)),
        };
        let kid = text("kid", "header.kid")?;
        let typ = text("typ", "header.typ")?;
        let claims = strict_object(&decode(payload, "payload")?).ok_or(TokenError::Malformed("payload"))?;
        let raw_signature = decode(signature, "signature")?;
        let signature = match alg {
            Algorithm::ES256 => ecdsa_der(&raw_signature).ok_or(TokenError::Malformed("signature"))?,
            _ => raw_signature,
        };
        let signing_input = &token.as_bytes()[..header_len_plus_payload(token)];
        Ok(Self { alg, kid, typ, claims, signing_input, signature })
    }

    /// The keys that may have signed this token: the one named by `kid`, or — without a
    /// `kid` — every key of the right type (Oathkeeper refuses such tokens; RFC 7515 does not).
    /// `keys` may be shared (`Arc<VerifyingKey>`).
    pub fn candidate_keys<'k, K: std::borrow::Borrow<VerifyingKey>>(&self, keys: &'k [K]) -> Vec<&'k K> {
        keys.iter()
            .filter(|k| {
                let k = (*k).borrow();
                k.kty == self.alg.key_type()
                    && k.alg.is_none_or(|a| a == self.alg)
                    && (self.kid.is_none() || k.kid == self.kid)
            })
            .collect()
    }
}

fn header_len_plus_payload(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

/// What a token is, for rules that accept some kinds only (explicit typing, RFC 8725 §3.11):
/// its `typ` lower-cased without `application/`, except that
/// - a token carrying an `events` claim is a Security Event Token (`secevent+jwt`), and an OIDC
///   back-channel logout token (`logout+jwt`) when the event is the logout one, whatever its
///   `typ` says;
/// - an untyped or `JWT`-typed token carrying a member only ID tokens have (`nonce`, `at_hash`,
///   `c_hash`: OIDC Core §2, §3.1.3.6, §3.3.2.11) is an `id_token`;
/// - any other untyped token is a `jwt`.
pub fn token_kind(typ: Option<&str>, claims: &Map<String, Value>) -> String {
    let typ = typ.map(str::to_ascii_lowercase);
    let typ = typ.as_deref().map(|t| t.strip_prefix("application/").unwrap_or(t));
    if let Some(Value::Object(events)) = claims.get("events") {
        return if typ == Some("logout+jwt") || events.contains_key(BACKCHANNEL_LOGOUT_EVENT) {
            "logout+jwt".into()
        } else {
            "secevent+jwt".into()
        };
    }
    match typ {
        None | Some("jwt") if ["nonce", "at_hash", "c_hash"].iter().any(|m| claims.contains_key(*m)) => {
            "id_token".into()
        }
        None => "jwt".into(),
        Some(t) => t.to_owned(),
    }
}

/// Parses a JSON object, refusing a member name repeated in any object at any depth: readers
/// disagree on which of two `sub`s counts (first or last), so a token with two means whatever
/// its author wants. serde_json's recursion limit bounds nesting.
fn strict_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = deserializer.deserialize_any(StrictVisitor).ok()?;
    deserializer.end().ok()?;
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A JSON object read as strictly as [`UntrustedToken::parse`] reads a token's header and
/// payload (no member repeated at any depth), for the control plane's other JWT reader.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrictObject(pub Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_map(StrictVisitor)? {
            Value::Object(map) => Ok(Self(map)),
            _ => Err(de::Error::custom("expected a JSON object")),
        }
    }
}

/// A `serde_json::Value` builder that fails on duplicate object members.
struct StrictVisitor;

/// A value read by [`StrictVisitor`] (nested arrays and objects are read the same way).
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON without duplicate object members")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom(format_args!("duplicate member {name:?}")));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

/// Finishes a compact JWS from its signing input and an ES256 signature as signers produce it
/// (DER `SEQUENCE { r, s }`, or already the 64-byte `r || s` JWS wants).
pub fn compact_es256(signing_input: &str, signature: &[u8]) -> Option<String> {
    let raw = if signature.len() == 64 { signature.to_vec() } else { ecdsa_raw(signature)? };
    Some(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(raw)))
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` → 64-byte `r || s`.
fn ecdsa_raw(der: &[u8]) -> Option<Vec<u8>> {
    let (&tag, rest) = der.split_first()?;
    let (&len, mut body) = rest.split_first()?;
    if tag != 0x30 || usize::from(len) != body.len() {
        return None;
    }
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        let (&int_tag, rest) = body.split_first()?;
        let (&int_len, rest) = rest.split_first()?;
        let int_len = usize::from(int_len);
        if int_tag != 0x02 || rest.len() < int_len || int_len > 33 {
            return None;
        }
        let digits = &rest[..int_len];
        let digits = digits.strip_prefix(&[0]).unwrap_or(digits);
        if digits.len() > 32 {
            return None;
        }
        out.extend(std::iter::repeat_n(0u8, 32 - digits.len()));
        out.extend_from_slice(digits);
        body = &rest[int_len..];
    }
    body.is_empty().then_some(out)
}

/// JWS ECDSA signatures are `r || s`; verifiers want `SEQUENCE { INTEGER r, INTEGER s }`.
fn ecdsa_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let (r, s) = raw.split_at(32);
    let mut body = der_integer(r);
    body.extend(der_integer(s));
    Some(der(0x30, &body))
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => &[0u8][..],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der(0x02, &content)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn ec_p256_spki(x: &[u8], y: &[u8]) -> Option<Vec<u8>> {
    if x.len() != 32 || y.len() != 32 {
        return None;
    }
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { 0x04 || x || y } }
    const PREFIX: [u8; 27] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    let mut out = PREFIX.to_vec();
    out.extend_from_slice(x);
    out.extend_from_slice(y);
    Some(out)
}

fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { RSAPublicKey { n, e } } }
    const ALGORITHM: [u8; 15] =
        [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut public_key = der_integer(n);
    public_key.extend(der_integer(e));
    let public_key = der(0x30, &public_key);
    let mut bit_string = vec![0u8];
    bit_string.extend(public_key);
    let mut body = ALGORITHM.to_vec();
    body.extend(der(0x03, &bit_string));
    der(0x30, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn parses_a_compact_jws_and_converts_the_signature_to_der() {
        let token = format!(
            "{}.{}.{}",
            b64(&json!({"alg": "ES256", "kid": "k1"})),
            b64(&json!({"sub": "u"})),
            URL_SAFE_NO_PAD.encode([0x80u8; 64])
        );
        let t = UntrustedToken::parse(&token, &[Algorithm::ES256]).unwrap();
        assert_eq!((t.alg, t.kid.as_deref()), (Algorithm::ES256, Some("k1")));
        assert_eq!(t.claims["sub"], "u");
        assert_eq!(t.signing_input, token.rsplit_once('.').unwrap().0.as_bytes());
        // High bit set: each INTEGER gets a leading zero (33 bytes), SEQUENCE of 2 × 35.
        assert_eq!(&t.signature[..4], &[0x30, 70, 0x02, 33]);
    }

    #[test]
    fn der_and_raw_signatures_round_trip() {
        let mut raw = [0x11u8; 64];
        raw[0] = 0x80; // r needs a leading zero in DER
        raw[32] = 0;
        raw[33] = 0x05; // s is shorter in DER
        let der = ecdsa_der(&raw).unwrap();
        assert_eq!(ecdsa_raw(&der).unwrap(), raw);
        let token = compact_es256("h.p", &der).unwrap();
        assert_eq!(token, compact_es256("h.p", &raw).unwrap());
        assert!(token.starts_with("h.p."));
        assert_eq!(compact_es256("h.p", &[0x30, 2, 0x02, 0]), None);
    }

    #[test]
    fn rejects_what_is_not_allowed_or_not_a_jwt() {
        assert_eq!(UntrustedToken::parse("opaque-token", &[Algorithm::ES256]), Err(TokenError::NotAJwt));
        let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&json!({})));
        assert_eq!(
            UntrustedToken::parse(&none, &[Algorithm::ES256]),
            Err(TokenError::AlgorithmNotAllowed("none".into()))
        );
        let hs = format!("{}.{}.x", b64(&json!({"alg": "RS256"})), b64(&json!({})));
        assert!(matches!(UntrustedToken::parse(&hs, &[Algorithm::ES256]), Err(TokenError::AlgorithmNotAllowed(_))));
        let bad = format!("{}.!!.x", b64(&json!({"alg": "ES256"})));
        assert_eq!(UntrustedToken::parse(&bad, &[Algorithm::ES256]), Err(TokenError::Malformed("payload")));
    }

    #[test]
    fn jwks_keys_become_spki_and_are_selected_by_kid() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": x, "y": x, "kid": "a"},
            {"kty": "EC", "crv": "P-256", "x": x, "y": x, "kid": "b", "use": "sig", "alg": "ES256"},
            {"kty": "EC", "crv": "P-256", "x": x, "y": x, "kid": "enc", "use": "enc"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc1u8; 256]), "e": "AQAB", "kid": "r"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed"}
        ]});
        let keys = signing_keys(&jwks);
        assert_eq!(keys.iter().map(|k| k.kid.as_deref().unwrap()).collect::<Vec<_>>(), ["a", "b", "r"]);
        assert_eq!(keys[0].spki_der.len(), 91);
        assert_eq!(&keys[2].spki_der[..2], &[0x30, 0x82], "a 2048-bit RSA SPKI needs a long-form length");
        let token = format!(
            "{}.{}.{}",
            b64(&json!({"alg": "ES256", "kid": "b"})),
            b64(&json!({})),
            URL_SAFE_NO_PAD.encode([1u8; 64])
        );
        let t = UntrustedToken::parse(&token, &[Algorithm::ES256]).unwrap();
        assert_eq!(t.candidate_keys(&keys).len(), 1);
        let no_kid =
            format!("{}.{}.{}", b64(&json!({"alg": "ES256"})), b64(&json!({})), URL_SAFE_NO_PAD.encode([1u8; 64]));
        let t = UntrustedToken::parse(&no_kid, &[Algorithm::ES256]).unwrap();
        assert_eq!(t.candidate_keys(&keys).len(), 2, "no kid: every EC signing key is tried");
    }
}
