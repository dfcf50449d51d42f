//! JWT assertions presented to the token endpoint (RFC 7523): `private_key_jwt` client
//! assertions and jwt-bearer grants. It reads them with [`crate::jwt`] (jwt-compact: ES256 or
//! RS256 only, the signature, the time claims against the Clock), checks what the library
//! leaves to its user (`iss`, `sub`, `aud`, a bounded lifetime, `jti`), and caches fetched
//! `jwks_uri` documents. It must not decide which keys or issuers are trusted, nor record
//! `jti`s: callers do both, and they turn the messages here into OAuth2 errors.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use portcullis_shared::jwt::{VerifyingKey, signing_keys};
use serde_json::{Map, Value};

use crate::config::SelfUrls;
use crate::jwt::{Alg, ParseError, TimeError, Untrusted, Verified};

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// What the server verifies (and what `token_endpoint_auth_signing_alg` may name).
pub const ALGORITHMS: [Alg; 2] = [Alg::ES256, Alg::RS256];
pub const ALGORITHM_NAMES: [&str; 2] = ["ES256", "RS256"];
/// The longest a client assertion may still be valid for: long-lived assertions are bearer
/// credentials in all but name, and the `jti` store would have to keep them that long.
pub const MAX_CLIENT_ASSERTION_LIFETIME: i64 = 3600;
/// Tolerated clock difference for `nbf` and `iat` in the future.
const SKEW: i64 = 60;
/// How long a fetched `jwks_uri` document is used.
const JWKS_TTL: i64 = 300;
/// An unknown `kid` refetches the document, but not more often than this, so a stream of
/// made-up `kid`s cannot turn the server into a fetcher of someone else's URL.
const REFETCH_INTERVAL: i64 = 10;
const MAX_JWKS_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The claims an assertion must carry for its use.
pub struct Expected<'a> {
    pub issuer: &'a str,
    /// `None`: any non-empty subject.
    pub subject: Option<&'a str>,
    pub audiences: &'a [String],
    pub max_lifetime: i64,
    /// The Clock's reading for this request: every time claim is judged at this instant.
    pub now: i64,
}

/// What a checked assertion tells the caller.
#[derive(Debug)]
pub struct Claims {
    pub subject: String,
    pub exp: i64,
    pub jti: String,
    /// Every claim, the times as unix seconds.
    pub all: Map<String, Value>,
}

/// The audiences the server answers to: its token endpoint and its issuer URL (with or
/// without the trailing slash).
pub fn audiences(urls: &SelfUrls) -> Vec<String> {
    let issuer = urls.issuer.trim_end_matches('/');
    vec![format!("{}/oauth2/token", urls.public_base()), issuer.to_owned(), format!("{issuer}/")]
}

/// Reads an assertion; the error is the sentence a client reads.
pub fn parse(assertion: &str) -> Result<Untrusted<'_>, String> {
    Untrusted::parse(assertion, &ALGORITHMS).map_err(|e| match e {
        ParseError::AlgorithmNotAllowed(_) => format!("the assertion {e}; allowed: {}", ALGORITHM_NAMES.join(", ")),
        ParseError::TimeClaim(name) => format!("claim {name} must be a number of seconds"),
        _ => format!("the assertion {e}"),
    })
}

/// Whether `keys` has a key `token` could have been signed with (for the refetch decision).
pub fn has_candidate(token: &Untrusted<'_>, keys: &[VerifyingKey]) -> bool {
    !token.candidate_keys(keys).is_empty()
}

pub fn check_claims(verified: Verified, expected: &Expected<'_>) -> Result<Claims, String> {
    let claims = verified.custom();
    let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    let iss = text("iss").ok_or("claim iss is missing")?;
    if iss != expected.issuer {
        return Err(format!("claim iss {iss:?} is not {:?}", expected.issuer));
    }
    let sub = text("sub").ok_or("claim sub is missing")?;
    if let Some(want) = expected.subject {
        if sub != want {
            return Err(format!("claim sub {sub:?} is not {want:?}"));
        }
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => return Err("claim aud is missing".into()),
    };
    if !aud.iter().any(|a| expected.audiences.iter().any(|e| e == a)) {
        return Err(format!("claim aud must contain {:?}", expected.audiences.first().map_or("", String::as_str)));
    }
    let now = expected.now;
    crate::jwt::check_times(&verified.0, now, SKEW).map_err(|e| match e {
        TimeError::NoExpiry => "claim exp is missing".to_owned(),
        TimeError::Expired => "the assertion has expired (claim exp)".to_owned(),
        TimeError::NotYetValid => "the assertion is not valid yet (claim nbf)".to_owned(),
        TimeError::IssuedInTheFuture => "claim iat is in the future".to_owned(),
    })?;
    let exp = verified.0.expiration.map_or(i64::MAX, |exp| exp.timestamp());
    if exp.saturating_sub(now) > expected.max_lifetime {
        return Err(format!("claim exp is more than {}s in the future", expected.max_lifetime));
    }
    let (subject, jti) = (sub.to_owned(), text("jti").ok_or("claim jti is missing")?.to_owned());
    Ok(Claims { subject, exp, jti, all: verified.into_json() })
}

#[derive(Clone)]
struct Entry {
    keys: Vec<VerifyingKey>,
    fetched_at: i64,
}

/// Fetched `jwks_uri` documents by URL.
#[derive(Default)]
pub struct JwksCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").finish_non_exhaustive()
    }
}

impl JwksCache {
    /// The signing keys at `uri`: cached for [`JWKS_TTL`], refetched early when `token` names
    /// a key the cached document lacks.
    pub async fn keys(
        &self,
        http: &reqwest::Client,
        uri: &str,
        token: &Untrusted<'_>,
        now: i64,
    ) -> Result<Vec<VerifyingKey>, String> {
        let cached = self.lock().get(uri).cloned();
        if let Some(entry) = cached {
            let fresh = entry.fetched_at + JWKS_TTL > now;
            let recent = entry.fetched_at + REFETCH_INTERVAL > now;
            if fresh && (has_candidate(token, &entry.keys) || recent) {
                return Ok(entry.keys);
            }
        }
        let keys = fetch(http, uri).await?;
        self.lock().insert(uri.to_owned(), Entry { keys: keys.clone(), fetched_at: now });
        Ok(keys)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn fetch(http: &reqwest::Client, uri: &str) -> Result<Vec<VerifyingKey>, String> {
    // A client's key server is on the token request's path: bound how long it may take and
    // how much it may send, so a slow or huge answer cannot hold the request or the memory.
    let mut reply =
        http.get(uri).timeout(FETCH_TIMEOUT).send().await.map_err(|e| format!("jwks_uri could not be fetched: {e}"))?;
    if !reply.status().is_success() {
        return Err(format!("jwks_uri answered {}", reply.status()));
    }
    let too_large = || format!("jwks_uri document is larger than {MAX_JWKS_BYTES} bytes");
    if reply.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = reply.chunk().await.map_err(|e| format!("jwks_uri could not be read: {e}"))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("jwks_uri is not a JSON Web Key Set: {e}"))?;
    Ok(signing_keys(&doc))
}
