//! The control plane's JSON Web Tokens, on `jwt-compact`: minting the ES256 tokens the OAuth2
//! key signs (ID tokens, JWT access tokens, back-channel logout tokens, whoami tokens) and
//! reading tokens written by others (`private_key_jwt` and jwt-bearer assertions) or handed
//! back (`id_token_hint`). The library parses, checks signatures and the time claims; this
//! module adds what it leaves to its user and an attacker would otherwise use: an algorithm
//! allowlist per caller (ES256, RS256; never `none` or HMAC, whose key would be a public key),
//! `kid` matched against the caller's keys, `crit` refused (no extension is understood),
//! members repeated at any depth refused (readers disagree on which one counts), and a size
//! bound. Time is the control plane's [`Clock`](portcullis_model::clock::Clock) read once per request,
//! converted to the library's `chrono` types here and nowhere else. It never takes a key from
//! the token (`jwk`, `jku`, `x5u`, `x5c`), and it does not decide which keys or issuers a
//! caller trusts.

use chrono::{DateTime, TimeDelta, Utc};
use jwt_compact::alg::{Es256, Rsa};
use jwt_compact::{AlgorithmExt as _, Claims, Header, TimeOptions, UntrustedToken, ValidationError};
use p256::pkcs8::DecodePublicKey as _;
use portcullis_shared::jwt::{MAX_TOKEN_BYTES, StrictObject, VerifyingKey};
use serde_json::{Map, Value};

/// The signature algorithms the control plane verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    ES256,
    RS256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
        }
    }

    /// The JWK `kty` of the keys this algorithm verifies with.
    fn key_type(self) -> &'static str {
        match self {
            Alg::ES256 => "EC",
            Alg::RS256 => "RSA",
        }
    }

    fn shared(self) -> portcullis_shared::jwt::Algorithm {
        match self {
            Alg::ES256 => portcullis_shared::jwt::Algorithm::ES256,
            Alg::RS256 => portcullis_shared::jwt::Algorithm::RS256,
        }
    }
}

/// Why a token could not be read. Nothing here was verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not three dot-separated base64url parts.
    NotAJwt,
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// A part that does not decode or is not a JSON object as the JOSE specs define it
    /// (`header`, `payload`), or a member repeated.
    Malformed(&'static str),
    /// A `crit` header: it names extensions the recipient must understand.
    Critical,
    /// `alg` is not one the caller allows.
    AlgorithmNotAllowed(String),
    /// `exp`, `nbf` or `iat` is not a number of seconds.
    TimeClaim(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NotAJwt => f.write_str("is not a compact JWS"),
            ParseError::TooLarge => write!(f, "is larger than {MAX_TOKEN_BYTES} bytes"),
            ParseError::Malformed(part) => write!(f, "has a malformed {part}"),
            ParseError::Critical => f.write_str("has a crit header, and no extension is understood"),
            ParseError::AlgorithmNotAllowed(alg) => write!(f, "is signed with {alg:?}"),
            ParseError::TimeClaim(name) => write!(f, "has a claim {name} that is not a number of seconds"),
        }
    }
}

/// A parsed token whose signature is not checked yet. Its claims are readable (to pick the
/// keys to check it with), but only [`Untrusted::verify`] says they are genuine.
#[derive(Debug)]
pub struct Untrusted<'t> {
    token: UntrustedToken<'t, StrictObject>,
    alg: Alg,
    claims: Claims<StrictObject>,
}

impl<'t> Untrusted<'t> {
    /// Reads `token`, allowing only the algorithms in `allowed`.
    pub fn parse(token: &'t str, allowed: &[Alg]) -> Result<Self, ParseError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ParseError::TooLarge);
        }
        // The header's own members are typed by the library (a repeated one is an error there);
        // the rest land in a strict object, which refuses repeats and lets `crit` be seen.
        let parsed = UntrustedToken::<StrictObject>::try_from(token).map_err(|e| match e {
            jwt_compact::ParseError::InvalidTokenStructure => ParseError::NotAJwt,
            jwt_compact::ParseError::InvalidBase64Encoding => ParseError::Malformed("base64url encoding"),
            _ => ParseError::Malformed("header"),
        })?;
        if parsed.header().other_fields.0.contains_key("crit") {
            return Err(ParseError::Critical);
        }
        let alg = allowed
            .iter()
            .copied()
            .find(|a| a.name() == parsed.algorithm())
            .ok_or_else(|| ParseError::AlgorithmNotAllowed(parsed.algorithm().to_owned()))?;
        let claims = parsed.deserialize_claims_unchecked::<StrictObject>().map_err(|_| malformed_payload(token))?;
        Ok(Self { token: parsed, alg, claims })
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.token.header().key_id.as_deref()
    }

    /// The `typ` header, as written.
    pub fn typ(&self) -> Option<&str> {
        self.token.header().token_type.as_deref()
    }

    /// The claims, NOT verified: for choosing keys and for messages only.
    pub fn unverified_claims(&self) -> &Map<String, Value> {
        &self.claims.custom.0
    }

    /// The keys of `keys` that may have signed this token: its `kid`'s (every key of the
    /// right type when it names none), of the algorithm's key type, not pinned to another
    /// algorithm.
    pub fn candidate_keys<'k>(&self, keys: &'k [VerifyingKey]) -> Vec<&'k VerifyingKey> {
        keys.iter()
            .filter(|k| {
                k.kty == self.alg.key_type()
                    && k.alg.is_none_or(|a| a == self.alg.shared())
                    && self.kid().is_none_or(|kid| k.kid.as_deref() == Some(kid))
            })
            .collect()
    }

    /// The claims, once one of `keys` (a candidate, see [`Self::candidate_keys`]) verifies the
    /// signature; `None` when none does.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Option<Verified> {
        self.candidate_keys(keys).into_iter().find_map(|key| {
            let token = match self.alg {
                Alg::ES256 => {
                    let key = p256::ecdsa::VerifyingKey::from_public_key_der(&key.spki_der).ok()?;
                    Es256.validator::<StrictObject>(&key).validate(&self.token).ok()?
                }
                Alg::RS256 => {
                    let key = rsa::RsaPublicKey::from_public_key_der(&key.spki_der).ok()?;
                    Rsa::rs256().validator::<StrictObject>(&key).validate(&self.token).ok()?
                }
            };
            Some(Verified(token.into_parts().1))
        })
    }
}

/// The payload did not deserialize: say which time claim is not a number when that is why
/// (a client can fix that), else that the payload is malformed. Only picks the message: the
/// library has already refused the token.
fn malformed_payload(token: &str) -> ParseError {
    let payload = token.split('.').nth(1).and_then(crate::crypto::b64url_decode);
    let loose: Option<Map<String, Value>> = payload.and_then(|p| serde_json::from_slice(&p).ok());
    loose
        .and_then(|claims| {
            ["exp", "nbf", "iat"].into_iter().find(|name| claims.get(*name).is_some_and(|v| !v.is_number()))
        })
        .map_or(ParseError::Malformed("payload"), ParseError::TimeClaim)
}

/// Claims whose signature verified.
#[derive(Debug)]
pub struct Verified(pub Claims<StrictObject>);

impl Verified {
    /// Every claim but the three times.
    pub fn custom(&self) -> &Map<String, Value> {
        &self.0.custom.0
    }

    /// Every claim as one JSON object, the times as unix seconds.
    pub fn into_json(self) -> Map<String, Value> {
        let Claims { expiration, not_before, issued_at, custom, .. } = self.0;
        let mut all = custom.0;
        for (name, at) in [("exp", expiration), ("nbf", not_before), ("iat", issued_at)] {
            if let Some(at) = at {
                all.insert(name.into(), at.timestamp().into());
            }
        }
        all
    }
}

/// `now` (unix seconds) as the library's time: the Clock's reading. A time `chrono` cannot
/// hold makes every token late, which fails closed.
pub fn instant(now: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(now, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The library's time options for one request: the Clock's reading `now` and `leeway` seconds.
pub fn time_options(now: i64, leeway: i64) -> TimeOptions<impl Fn() -> DateTime<Utc>> {
    TimeOptions::new(TimeDelta::try_seconds(leeway).unwrap_or_default(), move || instant(now))
}

/// How a token's time claims failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// No `exp`.
    NoExpiry,
    /// `exp` is now or past (RFC 7519 §4.1.4: used *before* `exp`).
    Expired,
    /// `nbf` is later than now plus the leeway.
    NotYetValid,
    /// `iat` is later than now plus the leeway.
    IssuedInTheFuture,
}

/// Checks `exp` (required, no leeway), and `nbf` and `iat` when present (`leeway` seconds of
/// clock difference), at `now`.
pub fn check_times(claims: &Claims<StrictObject>, now: i64, leeway: i64) -> Result<(), TimeError> {
    // RFC 7519 §4.1.4: a token is used *before* its `exp`; the library accepts `exp` itself.
    // The Clock reads whole seconds, and once second `now` has begun its instant is past
    // `now.0`: read it so, and `exp == now` is late, as it is. (A negative leeway would say the
    // same but overflow, in the library, into "never expires" for an `exp` at chrono's minimum.)
    let under_way = instant(now).checked_add_signed(TimeDelta::nanoseconds(1)).unwrap_or(DateTime::<Utc>::MAX_UTC);
    match claims.validate_expiration(&TimeOptions::new(TimeDelta::zero(), move || under_way)) {
        Ok(_) => {}
        Err(ValidationError::NoClaim(_)) => return Err(TimeError::NoExpiry),
        Err(_) => return Err(TimeError::Expired),
    }
    let skew = time_options(now, leeway);
    // Only a future `nbf` can fail, and for one the library's `nbf - leeway` cannot overflow
    // (it panics for an `nbf` within the leeway of chrono's minimum).
    if claims.not_before.is_some_and(|nbf| nbf > instant(now)) && claims.validate_maturity(&skew).is_err() {
        return Err(TimeError::NotYetValid);
    }
    // The library has no check for `iat`; it is the same comparison as `nbf`'s.
    let in_future = |iat: DateTime<Utc>| iat.checked_sub_signed(skew.leeway).is_some_and(|t| t > (skew.clock_fn)());
    if claims.issued_at.is_some_and(in_future) {
        return Err(TimeError::IssuedInTheFuture);
    }
    Ok(())
}

/// The claims to sign: `custom` issued at `now`, expiring `lifetime` seconds later, and not
/// valid before `now` when `with_nbf`. The times are the library's; members of `custom` with
/// their names are dropped, so no template or stored claim can repeat or override them.
/// `None` when the expiry is past what a timestamp can hold.
pub fn issue(
    mut custom: Map<String, Value>,
    now: i64,
    lifetime: i64,
    with_nbf: bool,
) -> Option<Claims<Map<String, Value>>> {
    for name in ["exp", "nbf", "iat"] {
        custom.remove(name);
    }
    let options = time_options(now, 0);
    let issued_at = (options.clock_fn)();
    let expiration = issued_at.checked_add_signed(TimeDelta::try_seconds(lifetime)?)?;
    let mut claims = Claims::new(custom);
    claims.issued_at = Some(issued_at);
    claims.expiration = Some(expiration);
    if with_nbf {
        claims = claims.set_not_before(issued_at);
    }
    Some(claims)
}

/// A compact ES256 JWS of `claims` with `kid` and `typ` in the header.
pub fn sign_es256(
    key: &p256::ecdsa::SigningKey,
    kid: &str,
    typ: &str,
    claims: &Claims<Map<String, Value>>,
) -> Option<String> {
    let header = Header::empty().with_key_id(kid).with_token_type(typ);
    Es256.token(&header, claims, key).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Signer;
    use crate::crypto::b64url;
    use crate::testing::forge;

    const NOW: i64 = 1_700_000_000;

    fn keys(signer: &Signer) -> Vec<VerifyingKey> {
        portcullis_shared::jwt::signing_keys(&json!({"keys": [signer.public_jwk()]}))
    }

    fn header(signer: &Signer) -> String {
        json!({"alg": "ES256", "kid": signer.kid(), "typ": "JWT"}).to_string()
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_times_once() {
        let signer = Signer::generate().unwrap();
        let custom = json!({"sub": "u", "exp": 1, "iat": "spoofed"}).as_object().unwrap().clone();
        let claims = issue(custom, NOW, 300, true).unwrap();
        let token = signer.sign_jwt("at+jwt", &claims).unwrap();
        let parsed = Untrusted::parse(&token, &[Alg::ES256]).unwrap();
        assert_eq!((parsed.kid(), parsed.typ()), (Some(signer.kid()), Some("at+jwt")));
        let all = parsed.verify(&keys(&signer)).expect("verifies").into_json();
        assert_eq!(Value::Object(all), json!({"sub": "u", "iat": NOW, "nbf": NOW, "exp": NOW + 300}));
        let payload = crate::crypto::b64url_decode(token.split('.').nth(1).unwrap()).unwrap();
        let text = String::from_utf8(payload).unwrap();
        assert_eq!(text.matches("\"exp\"").count(), 1, "{text}");
        assert!(issue(Map::new(), NOW, i64::MAX, false).is_none(), "an expiry past chrono's range is not signed");
    }

    #[test]
    fn what_another_reader_could_read_differently_is_refused() {
        let signer = Signer::generate().unwrap();
        let payload = r#"{"sub":"a","exp":1700000300}"#;
        let cases = [
            (r#"{"alg":"ES256","alg":"none"}"#.to_owned(), payload, ParseError::Malformed("header")),
            (
                format!(r#"{{"alg":"ES256","kid":"x","kid":"{}"}}"#, signer.kid()),
                payload,
                ParseError::Malformed("header"),
            ),
            (r#"{"alg":"ES256","x":1,"x":2}"#.to_owned(), payload, ParseError::Malformed("header")),
            (r#"{"alg":"ES256","crit":["b64"],"b64":false}"#.to_owned(), payload, ParseError::Critical),
            (r#"{"alg":"ES256","cty":"CBOR"}"#.to_owned(), payload, ParseError::Malformed("header")),
            (r#"{"alg":"ES256","kid":7}"#.to_owned(), payload, ParseError::Malformed("header")),
            (header(&signer), r#"{"sub":"a","sub":"b","exp":1700000300}"#, ParseError::Malformed("payload")),
            (header(&signer), r#"{"sub":"a","exp":1700000300,"exp":1700000300}"#, ParseError::Malformed("payload")),
            (header(&signer), r#"{"ext":{"role":"user","role":"admin"},"exp":1}"#, ParseError::Malformed("payload")),
            (header(&signer), r#"{"sub":"a","exp":"soon"}"#, ParseError::TimeClaim("exp")),
            (header(&signer), r#"["sub"]"#, ParseError::Malformed("payload")),
        ];
        for (header, payload, want) in cases {
            let token = forge::signed_text(&signer, &header, payload);
            assert_eq!(Untrusted::parse(&token, &[Alg::ES256]).unwrap_err(), want, "{header} {payload}");
        }
        let padded = format!("{}=", forge::signed_text(&signer, &header(&signer), payload));
        assert!(Untrusted::parse(&padded, &[Alg::ES256]).is_err(), "base64url with padding");
        assert_eq!(Untrusted::parse("a.b", &[Alg::ES256]).unwrap_err(), ParseError::NotAJwt);
        let huge =
            forge::signed_text(&signer, &header(&signer), &format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_TOKEN_BYTES)));
        assert_eq!(Untrusted::parse(&huge, &[Alg::ES256]).unwrap_err(), ParseError::TooLarge);
    }

    /// Why the claims are a [`StrictObject`]: the library's claims over a plain `serde_json`
    /// map take the last of two members (and its typed header fields refuse repeats).
    #[test]
    fn the_library_alone_would_read_the_last_of_two_members() {
        let payload = r#"{"sub":"alice","sub":"bob","exp":1700000300}"#;
        let plain: Claims<Map<String, Value>> = serde_json::from_str(payload).unwrap();
        assert_eq!(plain.custom["sub"], "bob");
        assert!(serde_json::from_str::<Claims<StrictObject>>(payload).is_err());
    }

    #[test]
    fn only_allowed_algorithms_and_the_named_key_verify() {
        let signer = Signer::generate().unwrap();
        let claims = json!({"sub": "a", "exp": NOW + 60});
        assert_eq!(
            Untrusted::parse(&forge::unsigned(&claims), &[Alg::ES256, Alg::RS256]).unwrap_err(),
            ParseError::AlgorithmNotAllowed("none".into())
        );
        for token in forge::hmac_keyed_with_public_key(&signer.public_jwk(), &claims) {
            assert_eq!(
                Untrusted::parse(&token, &[Alg::ES256, Alg::RS256]).unwrap_err(),
                ParseError::AlgorithmNotAllowed("HS256".into())
            );
        }
        let token = forge::signed_text(&signer, &header(&signer), &claims.to_string());
        assert!(Untrusted::parse(&token, &[Alg::RS256]).is_err(), "ES256 where only RS256 is allowed");
        let parsed = Untrusted::parse(&token, &[Alg::ES256]).unwrap();
        let other = Signer::generate().unwrap();
        assert!(parsed.verify(&keys(&other)).is_none(), "another key, another kid");
        let mut same_kid = keys(&other);
        same_kid[0].kid = Some(signer.kid().to_owned());
        assert!(parsed.verify(&same_kid).is_none(), "another key under this kid");
        let mut renamed = keys(&signer);
        renamed[0].kid = Some("someone-else".into());
        assert!(parsed.verify(&renamed).is_none(), "the right key under another kid is not a candidate");
        let no_kid = forge::signed_text(&signer, r#"{"alg":"ES256"}"#, &claims.to_string());
        let parsed = Untrusted::parse(&no_kid, &[Alg::ES256]).unwrap();
        assert!(parsed.verify(&[keys(&other), keys(&signer)].concat()).is_some(), "no kid: every EC key is tried");
        let tampered = format!("{}.{}.{}", b64url(header(&signer).as_bytes()), b64url(b"{\"sub\":\"b\"}"), {
            token.rsplit('.').next().unwrap()
        });
        assert!(Untrusted::parse(&tampered, &[Alg::ES256]).unwrap().verify(&keys(&signer)).is_none());
    }

    #[test]
    fn time_claims_are_judged_at_the_clock_reading() {
        let claims = |c: Value| serde_json::from_value::<Claims<StrictObject>>(c).unwrap();
        let check = |c: Value| check_times(&claims(c), NOW, 60);
        assert_eq!(check(json!({"exp": NOW + 1})), Ok(()));
        assert_eq!(check(json!({"exp": NOW})), Err(TimeError::Expired), "exp is exclusive");
        assert_eq!(check(json!({"exp": NOW - 1})), Err(TimeError::Expired));
        assert_eq!(check(json!({})), Err(TimeError::NoExpiry));
        assert_eq!(check(json!({"exp": NOW + 1, "nbf": NOW + 60})), Ok(()), "nbf within the leeway");
        assert_eq!(check(json!({"exp": NOW + 1, "nbf": NOW + 61})), Err(TimeError::NotYetValid));
        assert_eq!(check(json!({"exp": NOW + 1, "iat": NOW + 60})), Ok(()));
        assert_eq!(check(json!({"exp": NOW + 1, "iat": NOW + 61})), Err(TimeError::IssuedInTheFuture));
        assert_eq!(check(json!({"exp": NOW as f64 + 1.5})), Ok(()), "fractional seconds are read as whole ones");
        // chrono's extremes: never a panic, never "valid forever".
        let min = DateTime::<Utc>::MIN_UTC.timestamp();
        let max = DateTime::<Utc>::MAX_UTC.timestamp();
        assert_eq!(check(json!({"exp": min})), Err(TimeError::Expired));
        assert_eq!(check(json!({"exp": NOW + 1, "nbf": min, "iat": min})), Ok(()));
        assert_eq!(check(json!({"exp": max, "nbf": max})), Err(TimeError::NotYetValid));
        assert_eq!(check(json!({"exp": NOW + 1, "iat": max})), Err(TimeError::IssuedInTheFuture));
    }
}
