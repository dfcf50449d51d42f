//! Authenticators: who is calling. Oathkeeper's handlers with their config keys — `noop`,
//! `anonymous`, `unauthorized`, `oauth2_introspection`, `cookie_session`, `bearer_token` —
//! each deciding "not responsible" (pass to the next), "authenticated", "failed", or "ask
//! this URL first".

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::{self, CacheSpec, Empty, HandlerError};
use super::memo::{self, Accepted, AcceptedTokens, Memo};
use super::{HttpCall, HttpResponse, Request, Session, SignatureCheck, form_encode, json_path};
use crate::denial::{BearerError, Denial, DenialKind};
use crate::introspection::IntrospectionResponse;
use crate::jwt::{self, Algorithm, TokenError, UntrustedToken, VerifyingKey};
use crate::rule::HandlerSpec;
use crate::scope::{self, ScopeStrategy};

pub const HANDLERS: &[&str] = &[
    "noop",
    "anonymous",
    "unauthorized",
    "oauth2_introspection",
    "cookie_session",
    "bearer_token",
    "jwt",
    "oauth2_client_credentials",
];

/// The default cache lifetime when a rule enables a cache without a `ttl`.
pub const DEFAULT_CACHE_TTL_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Authenticator {
    pub kind: Kind,
    /// `on_invalid: continue` — a failed check passes to the next authenticator.
    pub continue_on_invalid: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Noop,
    Unauthorized,
    Anonymous {
        subject: String,
    },
    OAuth2Introspection(Box<Introspection>),
    SessionCheck(Box<SessionCheck>),
    /// Shared: the memo binds a token it remembers to this very configuration.
    Jwt(Arc<Jwt>),
    ClientCredentials(Box<ClientCredentials>),
}

/// `oauth2_client_credentials`: HTTP Basic credentials are valid when the token endpoint grants
/// them a client-credentials token; the subject is the client id.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCredentials {
    pub token_url: String,
    pub required_scope: Vec<String>,
    pub cache_ttl_ms: Option<u64>,
}

/// `jwt`: verify a signed token against keys the control plane fetched from `jwks_urls` and
/// pushed in the snapshot, then check its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    /// Shared with every signature check, which names the keys this rule trusts.
    pub keys: Vec<Arc<VerifyingKey>>,
    /// Some `jwks_urls` had no keys in the snapshot (not fetched yet, or failing).
    pub keys_missing: bool,
    pub allowed_algorithms: Vec<Algorithm>,
    pub scope_strategy: ScopeStrategy,
    pub required_scope: Vec<String>,
    pub target_audience: Vec<String>,
    pub trusted_issuers: Vec<String>,
    pub token_from: TokenSource,
    /// Portcullis: a token without `exp` is refused unless the rule says `require_exp: false`.
    pub require_exp: bool,
    /// Portcullis: the kinds of token accepted ([`jwt::token_kind`]), lower-case; by default
    /// access tokens (`jwt`, `at+jwt`), never logout tokens.
    pub allowed_token_types: Vec<String>,
}

/// The token kinds a `jwt` rule accepts unless it lists its own `allowed_token_types`.
pub const DEFAULT_TOKEN_TYPES: &[&str] = &["jwt", "at+jwt"];

/// Where a bearer credential is read from (Oathkeeper `token_from`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    #[default]
    AuthorizationBearer,
    /// The whole value of another header.
    Header(String),
    QueryParameter(String),
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Introspection {
    pub introspection_url: String,
    pub scope_strategy: ScopeStrategy,
    pub required_scope: Vec<String>,
    pub target_audience: Vec<String>,
    pub trusted_issuers: Vec<String>,
    pub prefix: String,
    pub token_from: TokenSource,
    pub request_headers: Vec<(String, String)>,
    pub preserve_host: bool,
    /// How long an active answer may be reused, never past the token's `exp`. `None`: no cache.
    pub cache_ttl_ms: Option<u64>,
    /// Introspect with a client-credentials token obtained first (for protected endpoints).
    pub pre_authorization: Option<PreAuthorization>,
}

#[derive(Clone, PartialEq)]
pub struct PreAuthorization {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Vec<String>,
    pub audience: Option<String>,
}

impl std::fmt::Debug for PreAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreAuthorization")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// `cookie_session` and `bearer_token`: forward the credential to a session endpoint
/// (Kratos's `/sessions/whoami`, say) and read the subject from its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionCheck {
    pub credential: Credential,
    pub check_session_url: String,
    pub preserve_path: bool,
    pub preserve_query: bool,
    pub preserve_host: bool,
    pub force_method: Option<String>,
    /// Lower-cased names of request headers copied onto the check.
    pub forward_headers: Vec<String>,
    pub additional_headers: Vec<(String, String)>,
    pub subject_from: String,
    pub extra_from: String,
    pub cache_ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Responsible when any cookie (or any of `only`) is present.
    Cookie {
        only: Vec<String>,
    },
    Bearer {
        token_from: TokenSource,
        prefix: String,
    },
}

pub enum Outcome {
    NotResponsible,
    Authenticated(Session),
    Failed(Denial),
    Call(HttpCall),
    /// Check this signature; the claims wait for the answer.
    Verify(SignatureCheck, Map<String, Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFromSpec {
    header: Option<String>,
    query_parameter: Option<String>,
    cookie: Option<String>,
}

fn token_source(spec: Option<TokenFromSpec>) -> Result<TokenSource, HandlerError> {
    Ok(match spec {
        None => TokenSource::AuthorizationBearer,
        Some(TokenFromSpec { header: Some(h), query_parameter: None, cookie: None }) => {
            if h.eq_ignore_ascii_case("authorization") {
                TokenSource::AuthorizationBearer
            } else {
                TokenSource::Header(h.to_ascii_lowercase())
            }
        }
        Some(TokenFromSpec { header: None, query_parameter: Some(q), cookie: None }) => TokenSource::QueryParameter(q),
        Some(TokenFromSpec { header: None, query_parameter: None, cookie: Some(c) }) => TokenSource::Cookie(c),
        Some(_) => {
            return Err(("config.token_from".into(), "set exactly one of header, query_parameter or cookie".into()));
        }
    })
}

impl Authenticator {
    /// `jwks` holds the key sets the control plane fetched, by URL, for `jwt` authenticators.
    pub fn compile(h: &HandlerSpec, jwks: &BTreeMap<String, Value>) -> Result<Self, HandlerError> {
        // `on_invalid` is Portcullis's, valid on every authenticator: take it out first.
        let mut spec = h.clone();
        let mut continue_on_invalid = false;
        if let Value::Object(map) = &mut spec.config {
            match map.remove("on_invalid") {
                None => {}
                Some(Value::String(s)) if s == "deny" => {}
                Some(Value::String(s)) if s == "continue" => continue_on_invalid = true,
                Some(_) => return Err(("config.on_invalid".into(), "must be \"deny\" or \"continue\"".into())),
            }
        }
        let h = &spec;
        let kind = match h.handler.as_str() {
            "noop" => config::config::<Empty>(h).map(|_| Kind::Noop)?,
            "unauthorized" => config::config::<Empty>(h).map(|_| Kind::Unauthorized)?,
            "anonymous" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Anonymous {
                    subject: Option<String>,
                }
                let c: Anonymous = config::config(h)?;
                Kind::Anonymous { subject: c.subject.unwrap_or_else(|| "anonymous".into()) }
            }
            "oauth2_introspection" => Kind::OAuth2Introspection(Box::new(compile_introspection(h)?)),
            "cookie_session" => Kind::SessionCheck(Box::new(compile_session_check(h, false)?)),
            "bearer_token" => Kind::SessionCheck(Box::new(compile_session_check(h, true)?)),
            "jwt" => Kind::Jwt(Arc::new(compile_jwt(h, jwks)?)),
            "oauth2_client_credentials" => Kind::ClientCredentials(Box::new(compile_client_credentials(h)?)),
            other => return Err(config::unknown_handler("authenticator", other, HANDLERS)),
        };
        Ok(Self { kind, continue_on_invalid })
    }

    /// Whether this failure passes to the next authenticator: only with `on_invalid: continue`,
    /// and only for credentials that were checked and refused — never when the check itself
    /// could not be made.
    pub fn continue_on_invalid(&self, denial: &Denial) -> bool {
        self.continue_on_invalid && matches!(denial.kind, DenialKind::Unauthorized | DenialKind::Forbidden)
    }

    /// `revoked`: digests of tokens revoked before they expired — refused here, before any
    /// call-out or cache, so a revocation pushed in a snapshot takes effect at once.
    ///
    /// `memo`: tokens this worker's `jwt` authenticators accepted before; a hit answers without
    /// parsing the token again (its times are checked again, its revocation first).
    pub(crate) fn start(
        &self,
        req: &Request<'_>,
        revoked: &crate::rule::Revoked,
        now_ms: i64,
        mut memo: Option<&mut Memo>,
    ) -> Outcome {
        let memo = &mut memo;
        match &self.kind {
            Kind::Noop => Outcome::Authenticated(Session::default()),
            Kind::Unauthorized => Outcome::Failed(Denial::unauthorized().with_reason("unauthorized_handler")),
            Kind::Anonymous { subject } => {
                if req.header("authorization").is_some() {
                    Outcome::NotResponsible
                } else {
                    Outcome::Authenticated(Session::new(subject.clone(), Map::new()))
                }
            }
            Kind::OAuth2Introspection(c) => match token(req, &c.token_from) {
                Some(t) if is_revoked(revoked, &t, memo) => Outcome::Failed(revoked_token()),
                Some(t) if t.starts_with(c.prefix.as_str()) => match &c.pre_authorization {
                    Some(p) => Outcome::Call(pre_authorization_call(p)),
                    None => Outcome::Call(introspection_call(c, req, &t, None)),
                },
                _ => Outcome::NotResponsible,
            },
            Kind::SessionCheck(c) => match session_credential(req, &c.credential) {
                Some(credential)
                    if matches!(c.credential, Credential::Bearer { .. }) && is_revoked(revoked, &credential, memo) =>
                {
                    Outcome::Failed(revoked_token())
                }
                Some(_) if revoked_session_cookie(req, &c.credential, revoked, memo) => {
                    Outcome::Failed(revoked_token())
                }
                Some(credential) => Outcome::Call(session_check_call(c, req, credential)),
                None => Outcome::NotResponsible,
            },
            Kind::Jwt(c) => match token(req, &c.token_from) {
                Some(t) => start_jwt(c, &t, revoked, now_ms, memo.as_deref_mut()),
                None => Outcome::NotResponsible,
            },
            Kind::ClientCredentials(c) => match basic_credentials(req) {
                Some((id, secret)) => Outcome::Call(client_credentials_call(c, &id, &secret)),
                None => Outcome::NotResponsible,
            },
        }
    }

    /// Reads the verifier's answer for this authenticator's signature check. `verified_by`:
    /// the SHA-256 of the SPKI of the key that verified the signature, when the verifier says;
    /// with a `memo`, an accepted token is then remembered (bound to that key) until its `exp`.
    pub(crate) fn finish_verified(
        &self,
        verified: bool,
        claims: Map<String, Value>,
        now_ms: i64,
        remember: Option<(&mut AcceptedTokens, [u8; 32], [u8; 32])>,
    ) -> Outcome {
        match &self.kind {
            Kind::Jwt(c) if verified => {
                let times = TokenTimes::read(&claims);
                let outcome = check_claims(c, claims, now_ms / 1000);
                if let (Outcome::Authenticated(session), Some((memo, digest, key)), Ok(times)) =
                    (&outcome, remember, times)
                {
                    // Only tokens that expire: the memo never outlives the token.
                    if times.exp.is_some() {
                        memo.put(digest, Accepted { by: Arc::clone(c), key, times, session: session.clone() });
                    }
                }
                outcome
            }
            Kind::Jwt(_) => Outcome::Failed(invalid_token("The token's signature is not valid", "bad_signature")),
            _ => Outcome::Failed(Denial::new(DenialKind::Internal, "unexpected signature result")),
        }
    }

    /// Reads the answer to this authenticator's call; returns the outcome and, when the answer
    /// may be cached, until when (unix ms). `phase` counts this authenticator's earlier calls
    /// for the same request (0 for the first).
    pub fn finish(
        &self,
        req: &Request<'_>,
        outcome: Result<HttpResponse, String>,
        now_ms: i64,
        phase: u8,
    ) -> (Outcome, Option<i64>) {
        match &self.kind {
            Kind::OAuth2Introspection(c) if c.pre_authorization.is_some() && phase == 0 => {
                match (pre_authorization_token(outcome, now_ms), token(req, &c.token_from)) {
                    (Ok((bearer, until)), Some(t)) => {
                        (Outcome::Call(introspection_call(c, req, &t, Some(&bearer))), until)
                    }
                    (Ok(_), None) => {
                        (Outcome::Failed(Denial::new(DenialKind::Internal, "the token disappeared")), None)
                    }
                    (Err(denial), _) => (Outcome::Failed(denial), None),
                }
            }
            Kind::OAuth2Introspection(c) => finish_introspection(c, outcome, now_ms),
            Kind::SessionCheck(c) => finish_session_check(c, outcome, now_ms),
            Kind::ClientCredentials(c) => finish_client_credentials(c, req, outcome, now_ms),
            _ => (Outcome::Failed(Denial::new(DenialKind::Internal, "unexpected call result")), None),
        }
    }
}

fn token(req: &Request<'_>, source: &TokenSource) -> Option<String> {
    let token = match source {
        TokenSource::AuthorizationBearer => {
            let (scheme, token) = req.header("authorization")?.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            token.trim().to_owned()
        }
        TokenSource::Header(name) => req.header(name)?.trim().to_owned(),
        TokenSource::QueryParameter(name) => req.query_parameter(name)?,
        TokenSource::Cookie(name) => req.cookie(name)?.to_owned(),
    };
    (!token.is_empty()).then_some(token)
}

/// A session cookie whose value is a revoked token (a signed-out Portcullis session): refused
/// before the cached whoami answer can let it through.
fn revoked_session_cookie(
    req: &Request<'_>,
    credential: &Credential,
    revoked: &crate::rule::Revoked,
    memo: &mut Option<&mut Memo>,
) -> bool {
    let Credential::Cookie { only } = credential else { return false };
    !revoked.is_empty()
        && req.cookies().any(|(name, value)| {
            (only.is_empty() || only.iter().any(|o| o == name)) && is_revoked(revoked, value, memo)
        })
}

fn is_revoked(revoked: &crate::rule::Revoked, token: &str, memo: &mut Option<&mut Memo>) -> bool {
    !revoked.is_empty() && revoked.contains(&sha256(token, memo))
}

/// The token's SHA-256, from the worker's memory when there is one.
fn sha256(token: &str, memo: &mut Option<&mut Memo>) -> [u8; 32] {
    match memo {
        Some(memo) => memo.sha256(token),
        None => memo::sha256(token),
    }
}

fn revoked_token() -> Denial {
    Denial::new(DenialKind::Unauthorized, "The token has been revoked")
        .with_bearer_error(BearerError::InvalidToken)
        .with_reason("token_revoked")
}

/// A credential check's answer: 200 goes on; 429 is passed on; 5xx or no answer means the
/// check could not be made (503, never a pass); anything else refuses the credential (401).
fn accepted(
    outcome: Result<HttpResponse, String>,
    what: &str,
    refused: &str,
    reason: &'static str,
) -> Result<HttpResponse, Denial> {
    let response = outcome.map_err(|_| unavailable(what))?;
    match response.status {
        200 => Ok(response),
        429 => Err(Denial::new(DenialKind::TooManyRequests, "Too many requests").with_reason("rate_limited")),
        s if s >= 500 => Err(unavailable(what)),
        _ => Err(Denial::new(DenialKind::Unauthorized, refused).with_reason(reason)),
    }
}

fn unavailable(what: &str) -> Denial {
    Denial::new(DenialKind::Unavailable, format!("The credentials could not be checked: {what} is unavailable"))
        .with_reason("upstream_unavailable")
}

// --- oauth2_introspection -------------------------------------------------------------------

fn compile_introspection(h: &HandlerSpec) -> Result<Introspection, HandlerError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        introspection_url: String,
        #[serde(default)]
        scope_strategy: ScopeStrategy,
        #[serde(default)]
        required_scope: Vec<String>,
        #[serde(default)]
        target_audience: Vec<String>,
        #[serde(default)]
        trusted_issuers: Vec<String>,
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        preserve_host: bool,
        #[serde(default)]
        token_from: Option<TokenFromSpec>,
        #[serde(default)]
        introspection_request_headers: BTreeMap<String, String>,
        #[serde(default)]
        cache: Option<CacheSpec>,
        /// Accepted for compatibility; the filter's call-out timeout is set in its plugin config.
        #[serde(default)]
        #[expect(dead_code, reason = "an Oathkeeper option Portcullis accepts and does not need")]
        retry: Option<Value>,
        #[serde(default)]
        pre_authorization: Option<PreAuthorizationSpec>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PreAuthorizationSpec {
        #[serde(default)]
        enabled: bool,
        client_id: Option<String>,
        client_secret: Option<String>,
        token_url: Option<String>,
        #[serde(default)]
        scope: Vec<String>,
        audience: Option<String>,
    }

    let c: Spec = config::config(h)?;
    config::http_url("config.introspection_url", &c.introspection_url)?;
    let pre_authorization = match c.pre_authorization {
        Some(p) if p.enabled => {
            let required = |v: Option<String>, key: &str| {
                v.filter(|v| !v.is_empty())
                    .ok_or_else(|| (format!("config.pre_authorization.{key}"), "is required when enabled".to_owned()))
            };
            let token_url = required(p.token_url, "token_url")?;
            config::http_url("config.pre_authorization.token_url", &token_url)?;
            Some(PreAuthorization {
                token_url,
                client_id: required(p.client_id, "client_id")?,
                client_secret: required(p.client_secret, "client_secret")?,
                scope: p.scope,
                audience: p.audience,
            })
        }
        _ => None,
    };
    for (i, s) in c.required_scope.iter().enumerate() {
        if !scope::is_valid_token(s) {
            return Err((format!("config.required_scope[{i}]"), format!("{s:?} is not a valid scope")));
        }
    }
    Ok(Introspection {
        introspection_url: c.introspection_url,
        scope_strategy: c.scope_strategy,
        required_scope: c.required_scope,
        target_audience: c.target_audience,
        trusted_issuers: c.trusted_issuers,
        prefix: c.prefix,
        token_from: token_source(c.token_from)?,
        request_headers: c
            .introspection_request_headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .filter(|(k, _)| k != "content-type")
            .collect(),
        preserve_host: c.preserve_host,
        cache_ttl_ms: CacheSpec::ttl_ms(c.cache, DEFAULT_CACHE_TTL_MS)?,
        pre_authorization,
    })
}

/// The client-credentials request a pre-authorized introspection starts with.
fn pre_authorization_call(p: &PreAuthorization) -> HttpCall {
    use base64::Engine as _;
    let mut body = String::from("grant_type=client_credentials");
    if !p.scope.is_empty() {
        body.push_str("&scope=");
        body.push_str(&form_encode(&p.scope.join(" ")));
    }
    if let Some(audience) = &p.audience {
        body.push_str("&audience=");
        body.push_str(&form_encode(audience));
    }
    let credentials = format!("{}:{}", form_encode(&p.client_id), form_encode(&p.client_secret));
    HttpCall {
        method: "POST".into(),
        url: p.token_url.clone(),
        headers: vec![
            ("content-type".into(), "application/x-www-form-urlencoded".into()),
            ("accept".into(), "application/json".into()),
            (
                "authorization".into(),
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)),
            ),
        ],
        body: body.into_bytes(),
        cache_key: None,
    }
    .cacheable(true)
}

/// Reads the pre-authorization token response: the access token, and how long to reuse it.
fn pre_authorization_token(
    outcome: Result<HttpResponse, String>,
    now_ms: i64,
) -> Result<(String, Option<i64>), Denial> {
    let failed = || unavailable("the introspection pre-authorization token endpoint");
    let response = outcome.map_err(|_| failed())?;
    if response.status != 200 {
        return Err(failed());
    }
    let body: Value = serde_json::from_slice(&response.body).map_err(|_| failed())?;
    let token = body.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty()).ok_or_else(failed)?;
    // Reused until 30 s before it expires, so the introspection call never carries a dead token.
    let until = body
        .get("expires_in")
        .and_then(Value::as_i64)
        .map(|s| now_ms.saturating_add(s.saturating_sub(30).saturating_mul(1000)))
        .filter(|t| *t > now_ms);
    Ok((token.to_owned(), until))
}

fn introspection_call(c: &Introspection, req: &Request<'_>, token: &str, bearer: Option<&str>) -> HttpCall {
    // Oathkeeper: with scope strategy `none`, required scopes are for the server to check, and
    // the answer then depends on them, so it is not cached.
    let delegate_scope = c.scope_strategy == ScopeStrategy::None && !c.required_scope.is_empty();
    let scope = delegate_scope.then(|| c.required_scope.join(" "));
    let mut body = format!("token={}", form_encode(token));
    if let Some(scope) = &scope {
        body.push_str("&scope=");
        body.push_str(&form_encode(scope));
    }
    let mut headers = vec![
        ("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
        ("accept".to_owned(), "application/json".to_owned()),
    ];
    headers.extend(c.request_headers.iter().cloned());
    if c.preserve_host {
        headers.push(("x-forwarded-host".to_owned(), req.host.to_owned()));
    }
    if let Some(bearer) = bearer {
        headers.retain(|(n, _)| n != "authorization");
        headers.push(("authorization".to_owned(), format!("Bearer {bearer}")));
    }
    let cacheable = c.cache_ttl_ms.is_some() && !delegate_scope;
    HttpCall {
        method: "POST".into(),
        url: c.introspection_url.clone(),
        headers,
        body: body.into_bytes(),
        cache_key: None,
    }
    .cacheable(cacheable)
}

fn finish_introspection(
    c: &Introspection,
    outcome: Result<HttpResponse, String>,
    now_ms: i64,
) -> (Outcome, Option<i64>) {
    let response = match outcome {
        Ok(r) if r.status == 200 => r,
        Ok(r) if r.status == 429 => {
            return (
                Outcome::Failed(
                    Denial::new(DenialKind::TooManyRequests, "Too many requests").with_reason("rate_limited"),
                ),
                None,
            );
        }
        _ => return (Outcome::Failed(unavailable("the token introspection endpoint")), None),
    };
    let Ok(answer) = serde_json::from_slice::<IntrospectionResponse>(&response.body) else {
        return (Outcome::Failed(unavailable("the token introspection endpoint")), None);
    };
    let cache_until = match (answer.active, c.cache_ttl_ms) {
        (true, Some(ttl)) => {
            let by_ttl = now_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
            Some(answer.exp.map_or(by_ttl, |exp| by_ttl.min(exp.saturating_mul(1000))))
        }
        _ => None,
    };
    match check_introspection(c, answer, now_ms / 1000) {
        Ok(session) => (Outcome::Authenticated(session), cache_until),
        Err(denial) => (Outcome::Failed(denial), cache_until),
    }
}

/// The claim checks introspection answers and JWTs share: trusted issuer, every target
/// audience, every required scope (under the strategy; `None` checks nothing here).
struct ClaimRules<'a> {
    trusted_issuers: &'a [String],
    target_audience: &'a [String],
    scope_strategy: ScopeStrategy,
    required_scope: &'a [String],
}

impl ClaimRules<'_> {
    /// `mismatch` is the status for issuer and audience failures; a missing scope is always 403.
    fn check(&self, iss: Option<&str>, aud: &[String], granted: &[&str], mismatch: DenialKind) -> Result<(), Denial> {
        let refuse = |message: String, reason: &'static str| {
            let denial = Denial::new(mismatch, message).with_reason(reason);
            if mismatch == DenialKind::Unauthorized {
                denial.with_bearer_error(BearerError::InvalidToken)
            } else {
                denial
            }
        };
        if !self.trusted_issuers.is_empty() && !iss.is_some_and(|i| self.trusted_issuers.iter().any(|t| t == i)) {
            return Err(refuse("The token was issued by an untrusted issuer".into(), "untrusted_issuer"));
        }
        if let Some(missing) = self.target_audience.iter().find(|a| !aud.contains(a)) {
            return Err(refuse(format!("The token is not intended for audience {missing}"), "audience_mismatch"));
        }
        if self.scope_strategy != ScopeStrategy::None {
            if let Some(missing) =
                self.required_scope.iter().find(|s| !self.scope_strategy.covers(granted.iter().copied(), s))
            {
                return Err(Denial::new(
                    DenialKind::Forbidden,
                    format!("The token lacks the required scope {missing}"),
                )
                .with_bearer_error(BearerError::InsufficientScope)
                .with_reason("insufficient_scope"));
            }
        }
        Ok(())
    }
}

fn check_introspection(c: &Introspection, r: IntrospectionResponse, now: i64) -> Result<Session, Denial> {
    let invalid = |msg: &str, reason: &'static str| {
        Denial::new(DenialKind::Unauthorized, msg).with_bearer_error(BearerError::InvalidToken).with_reason(reason)
    };
    let forbidden = |msg: String, reason: &'static str| Denial::new(DenialKind::Forbidden, msg).with_reason(reason);
    if r.token_use.as_deref().is_some_and(|u| !u.is_empty() && u != "access_token") {
        return Err(forbidden("The token is not an access token".into(), "not_an_access_token"));
    }
    if !r.active {
        return Err(invalid("The access token is not active", "token_inactive"));
    }
    if r.exp.is_some_and(|exp| exp <= now) {
        return Err(invalid("The access token has expired", "token_expired"));
    }
    let aud = r.aud.clone().unwrap_or_default();
    let granted: Vec<&str> = scope::split(r.scope.as_deref().unwrap_or("")).collect();
    let claims = ClaimRules {
        trusted_issuers: &c.trusted_issuers,
        target_audience: &c.target_audience,
        scope_strategy: c.scope_strategy,
        required_scope: &c.required_scope,
    };
    // Oathkeeper: after introspection, issuer and audience mismatches are 403.
    claims.check(r.iss.as_deref(), &aud, &granted, DenialKind::Forbidden)?;
    let mut extra = r.ext.unwrap_or_default();
    for (key, value) in [("username", r.username), ("client_id", r.client_id), ("scope", r.scope)] {
        if let Some(v) = value {
            extra.insert(key.into(), Value::String(v));
        }
    }
    extra.insert("aud".into(), Value::from(aud));
    Ok(Session::new(r.sub.unwrap_or_default(), extra))
}

// --- cookie_session / bearer_token ----------------------------------------------------------

fn compile_session_check(h: &HandlerSpec, bearer: bool) -> Result<SessionCheck, HandlerError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        check_session_url: String,
        #[serde(default)]
        only: Option<Vec<String>>,
        #[serde(default)]
        preserve_path: bool,
        #[serde(default = "yes")]
        preserve_query: bool,
        #[serde(default)]
        preserve_host: bool,
        force_method: Option<String>,
        forward_http_headers: Option<Vec<String>>,
        #[serde(default)]
        additional_headers: BTreeMap<String, String>,
        extra_from: Option<String>,
        subject_from: Option<String>,
        token_from: Option<TokenFromSpec>,
        prefix: Option<String>,
        cache: Option<CacheSpec>,
    }
    fn yes() -> bool {
        true
    }
    let c: Spec = config::config(h)?;
    config::http_url("config.check_session_url", &c.check_session_url)?;
    let credential = if bearer {
        if c.only.is_some() {
            return Err(("config.only".into(), "is a cookie_session key; bearer_token uses token_from".into()));
        }
        Credential::Bearer { token_from: token_source(c.token_from)?, prefix: c.prefix.unwrap_or_default() }
    } else {
        if c.token_from.is_some() || c.prefix.is_some() {
            return Err(("config.token_from".into(), "is a bearer_token key; cookie_session uses only".into()));
        }
        Credential::Cookie { only: c.only.unwrap_or_default() }
    };
    if let Some(m) = &c.force_method {
        if m.is_empty() || !m.bytes().all(config::is_token_byte) {
            return Err(("config.force_method".into(), format!("{m:?} is not an HTTP method")));
        }
    }
    // The credential itself is always forwarded; Oathkeeper's docs list both by default.
    let mut forward_headers: Vec<String> = c
        .forward_http_headers
        .unwrap_or_else(|| vec!["Authorization".into(), "Cookie".into()])
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let always = if bearer { "authorization" } else { "cookie" };
    if !forward_headers.iter().any(|h| h == always) {
        forward_headers.push(always.into());
    }
    Ok(SessionCheck {
        credential,
        check_session_url: c.check_session_url,
        preserve_path: c.preserve_path,
        preserve_query: c.preserve_query,
        preserve_host: c.preserve_host,
        force_method: c.force_method.map(|m| m.to_ascii_uppercase()),
        forward_headers,
        additional_headers: c.additional_headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
        subject_from: c.subject_from.unwrap_or_else(|| if bearer { "sub" } else { "subject" }.into()),
        extra_from: c.extra_from.unwrap_or_else(|| "extra".into()),
        cache_ttl_ms: CacheSpec::ttl_ms(c.cache, DEFAULT_CACHE_TTL_MS)?,
    })
}

/// The credential that makes a session check responsible: the token, or the cookie header.
fn session_credential(req: &Request<'_>, credential: &Credential) -> Option<String> {
    match credential {
        Credential::Bearer { token_from, prefix } => token(req, token_from).filter(|t| t.starts_with(prefix.as_str())),
        Credential::Cookie { only } => {
            let mut cookies = req.cookies().peekable();
            let responsible = if only.is_empty() {
                cookies.peek().is_some()
            } else {
                cookies.any(|(name, _)| only.iter().any(|o| o == name))
            };
            responsible.then(|| req.header("cookie").unwrap_or("").to_owned())
        }
    }
}

fn session_check_call(c: &SessionCheck, req: &Request<'_>, credential: String) -> HttpCall {
    let (base, own_query) = match c.check_session_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (c.check_session_url.as_str(), None),
    };
    let mut url = if c.preserve_path {
        base.to_owned()
    } else {
        // Oathkeeper's behaviour: the request path replaces the URL's path (set preserve_path
        // for Kratos's /sessions/whoami).
        let after_scheme = base.find("://").map_or(0, |i| i + 3);
        let authority_end = base[after_scheme..].find('/').map_or(base.len(), |i| after_scheme + i);
        format!("{}{}", &base[..authority_end], req.path())
    };
    let query = if c.preserve_query { own_query } else { req.query() };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| c.forward_headers.iter().any(|f| f == n))
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    if let Credential::Bearer { token_from, .. } = &c.credential {
        if *token_from != TokenSource::AuthorizationBearer {
            headers.retain(|(n, _)| n != "authorization");
            headers.push(("authorization".into(), format!("Bearer {credential}")));
        }
    }
    headers.extend(c.additional_headers.iter().cloned());
    if c.preserve_host {
        headers.push(("x-forwarded-host".into(), req.host.to_owned()));
    }
    headers.push(("accept".into(), "application/json".into()));
    let method = c.force_method.clone().unwrap_or_else(|| req.method.to_ascii_uppercase());
    // Every forwarded header (each Cookie header, Authorization, configured ones) can decide
    // whom the answer is about, so the key is the whole call, not the first Cookie header.
    HttpCall { method, url, headers, body: Vec::new(), cache_key: None }.cacheable(c.cache_ttl_ms.is_some())
}

fn finish_session_check(
    c: &SessionCheck,
    outcome: Result<HttpResponse, String>,
    now_ms: i64,
) -> (Outcome, Option<i64>) {
    let response = match accepted(outcome, "the session endpoint", "The session is not valid", "session_invalid") {
        Ok(r) => r,
        Err(denial) => return (Outcome::Failed(denial), None),
    };
    let forbidden =
        |msg: &str| (Outcome::Failed(Denial::new(DenialKind::Forbidden, msg).with_reason("session_malformed")), None);
    let Ok(body) = serde_json::from_slice::<Value>(&response.body) else {
        return forbidden("The session endpoint did not answer with JSON");
    };
    let subject = match json_path(&body, &c.subject_from) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return forbidden("The session endpoint's answer has no subject"),
    };
    let extra = match json_path(&body, &c.extra_from) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return forbidden("The session endpoint's extra is not a JSON object"),
    };
    let cache_until = c.cache_ttl_ms.map(|ttl| now_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
    // A Kratos session says when it ends (`expires_at`): its answer is never used past that,
    // whatever the rule's ttl (as introspection answers end at the token's `exp`).
    let ends = body.get("expires_at").and_then(Value::as_str).and_then(crate::timestamp::unix_ms);
    let cache_until = cache_until.map(|until| ends.map_or(until, |ends| until.min(ends)));
    (Outcome::Authenticated(Session::new(subject, extra)), cache_until)
}

// --- jwt --------------------------------------------------------------------------------------

fn compile_jwt(h: &HandlerSpec, jwks: &BTreeMap<String, Value>) -> Result<Jwt, HandlerError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        jwks_urls: Vec<String>,
        allowed_algorithms: Option<Vec<String>>,
        #[serde(default)]
        scope_strategy: ScopeStrategy,
        #[serde(default)]
        required_scope: Vec<String>,
        #[serde(default)]
        target_audience: Vec<String>,
        #[serde(default)]
        trusted_issuers: Vec<String>,
        token_from: Option<TokenFromSpec>,
        /// Accepted for compatibility: the control plane fetches and refreshes key sets.
        #[expect(dead_code, reason = "an Oathkeeper option Portcullis accepts and does not need")]
        jwks_max_wait: Option<String>,
        #[expect(dead_code, reason = "an Oathkeeper option Portcullis accepts and does not need")]
        jwks_ttl: Option<String>,
        /// Portcullis: `false` accepts tokens without `exp` (they are then never cached).
        #[serde(default = "yes")]
        require_exp: bool,
        /// Portcullis: the token kinds accepted (see [`jwt::token_kind`]).
        allowed_token_types: Option<Vec<String>>,
    }
    fn yes() -> bool {
        true
    }
    let c: Spec = config::config(h)?;
    if c.jwks_urls.is_empty() {
        return Err(("config.jwks_urls".into(), "must list at least one JWKS URL".into()));
    }
    for (i, url) in c.jwks_urls.iter().enumerate() {
        if !["http://", "https://", "file://"].iter().any(|p| url.starts_with(p)) {
            return Err((format!("config.jwks_urls[{i}]"), "must be an http://, https:// or file:// URL".into()));
        }
    }
    let allowed_algorithms = match c.allowed_algorithms {
        None => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::ES256],
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Algorithm::parse(n).ok_or_else(|| {
                    (
                        format!("config.allowed_algorithms[{i}]"),
                        format!("{n:?} is not supported (RS256, RS384, RS512, ES256)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if !c.required_scope.is_empty() && c.scope_strategy == ScopeStrategy::None {
        // Oathkeeper accepts this and then rejects every token; say so when the rule loads.
        return Err((
            "config.scope_strategy".into(),
            "required_scope needs a scope strategy (exact, hierarchic or wildcard)".into(),
        ));
    }
    let allowed_token_types = match c.allowed_token_types {
        None => DEFAULT_TOKEN_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        Some(types) => {
            let mut kinds = Vec::with_capacity(types.len());
            for (i, t) in types.iter().enumerate() {
                let field = format!("config.allowed_token_types[{i}]");
                let kind = t.to_ascii_lowercase();
                let kind = kind.strip_prefix("application/").unwrap_or(&kind).to_owned();
                if kind.is_empty() || !kind.bytes().all(config::is_token_byte) {
                    return Err((field, format!("{t:?} is not a token type")));
                }
                if kind == "logout+jwt" {
                    return Err((field, "logout tokens are never accepted as credentials".into()));
                }
                kinds.push(kind);
            }
            if kinds.is_empty() {
                return Err(("config.allowed_token_types".into(), "must list at least one token type".into()));
            }
            kinds
        }
    };
    let mut keys = Vec::new();
    let mut keys_missing = false;
    for url in &c.jwks_urls {
        match jwks.get(url) {
            Some(set) => keys.extend(jwt::signing_keys(set).into_iter().map(Arc::new)),
            None => keys_missing = true,
        }
    }
    Ok(Jwt {
        keys,
        keys_missing,
        allowed_algorithms,
        scope_strategy: c.scope_strategy,
        required_scope: c.required_scope,
        target_audience: c.target_audience,
        trusted_issuers: c.trusted_issuers,
        token_from: token_source(c.token_from)?,
        require_exp: c.require_exp,
        allowed_token_types,
    })
}

fn invalid_token(message: &str, reason: &'static str) -> Denial {
    Denial::new(DenialKind::Unauthorized, message).with_bearer_error(BearerError::InvalidToken).with_reason(reason)
}

fn start_jwt(
    c: &Arc<Jwt>,
    token: &str,
    revoked: &crate::rule::Revoked,
    now_ms: i64,
    mut memo: Option<&mut Memo>,
) -> Outcome {
    // A token this configuration accepted before: a digest and a lookup, then the checks that
    // depend on the clock (and the revocations, first). Oversized tokens go to the parser,
    // which refuses them, and are never hashed.
    let mut known_digest = None;
    if let Some(memo) = memo.as_deref_mut().filter(|_| token.len() <= jwt::MAX_TOKEN_BYTES) {
        let digest = *known_digest.insert(memo.sha256(token));
        if !revoked.is_empty() && revoked.contains(&digest) {
            return Outcome::Failed(revoked_token());
        }
        let tokens: &mut AcceptedTokens = memo.tokens();
        if let Some(accepted) = tokens.get(&digest, c) {
            return match accepted.times.check(c, now_ms / 1000) {
                Ok(()) => Outcome::Authenticated(accepted.session.clone()),
                Err(denial) => {
                    tokens.forget(&digest, c);
                    Outcome::Failed(denial)
                }
            };
        }
    }
    let parsed = match UntrustedToken::parse(token, &c.allowed_algorithms) {
        Ok(t) => t,
        // An opaque token is someone else's: let introspection or bearer_token have a go.
        Err(TokenError::NotAJwt) => return Outcome::NotResponsible,
        Err(TokenError::AlgorithmNotAllowed(alg)) => {
            return Outcome::Failed(invalid_token(
                &format!("The token's algorithm {alg} is not allowed"),
                "algorithm_not_allowed",
            ));
        }
        Err(TokenError::Malformed(jwt::TOO_LARGE)) => {
            return Outcome::Failed(invalid_token(
                &format!("The token is larger than {} bytes", jwt::MAX_TOKEN_BYTES),
                "token_too_large",
            ));
        }
        Err(TokenError::Malformed(jwt::CRITICAL)) => {
            return Outcome::Failed(invalid_token(
                "The token requires header extensions (crit) this gateway does not understand",
                "unsupported_critical_header",
            ));
        }
        Err(TokenError::Malformed(part)) => {
            return Outcome::Failed(invalid_token(&format!("The token's {part} is malformed"), "malformed_token"));
        }
    };
    // Bounded by the parser's size limit before it is hashed (once per request).
    let token_digest = known_digest.unwrap_or_else(|| sha256(token, &mut memo));
    if !revoked.is_empty() && revoked.contains(&token_digest) {
        return Outcome::Failed(revoked_token());
    }
    let kind = jwt::token_kind(parsed.typ.as_deref(), &parsed.claims);
    if !c.allowed_token_types.contains(&kind) {
        return Outcome::Failed(invalid_token(
            &format!("A {kind} token is not accepted here"),
            "token_type_not_allowed",
        ));
    }
    let candidates = parsed.candidate_keys(&c.keys);
    if candidates.is_empty() {
        if c.keys_missing && c.keys.is_empty() {
            return Outcome::Failed(
                Denial::new(DenialKind::Unavailable, "The signing keys for this token are not available yet")
                    .with_reason("jwks_unavailable"),
            );
        }
        return Outcome::Failed(invalid_token("No known key signed this token", "unknown_key"));
    }
    let cache_until_ms =
        numeric_date(&parsed.claims, "exp").ok().flatten().map(|exp| exp.saturating_mul(1000)).filter(|t| *t > now_ms);
    let check = SignatureCheck {
        alg: parsed.alg,
        keys: candidates.into_iter().cloned().collect(),
        message: parsed.signing_input.to_vec(),
        signature: parsed.signature,
        token_digest,
        cache_until_ms,
    };
    Outcome::Verify(check, parsed.claims)
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional): `Ok(None)` when absent,
/// `Err` when present but not a number, which is refused rather than ignored.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => {
            v.as_i64().or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64)).map(Some).ok_or(())
        }
    }
}

/// A token's `exp`, `nbf` and `iat` (unix seconds), checked after a good signature and again
/// on every hit of the memo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenTimes {
    pub(crate) exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

impl TokenTimes {
    fn read(claims: &Map<String, Value>) -> Result<Self, Denial> {
        let (Ok(exp), Ok(nbf), Ok(iat)) =
            (numeric_date(claims, "exp"), numeric_date(claims, "nbf"), numeric_date(claims, "iat"))
        else {
            return Err(invalid_token("The token's exp, nbf or iat is not a number", "malformed_claims"));
        };
        Ok(Self { exp, nbf, iat })
    }

    /// 60 s leeway for clock skew; `exp` required unless the rule opts out.
    fn check(&self, c: &Jwt, now: i64) -> Result<(), Denial> {
        const LEEWAY: i64 = 60;
        match self.exp {
            None if c.require_exp => {
                return Err(invalid_token("The token has no expiry (exp)", "token_without_expiry"));
            }
            Some(exp) if exp <= now - LEEWAY => return Err(invalid_token("The token has expired", "token_expired")),
            _ => {}
        }
        if self.nbf.is_some_and(|nbf| nbf > now + LEEWAY) {
            return Err(invalid_token("The token is not valid yet", "token_not_yet_valid"));
        }
        if self.iat.is_some_and(|iat| iat > now + LEEWAY) {
            return Err(invalid_token("The token was issued in the future", "token_issued_in_future"));
        }
        Ok(())
    }
}

/// Claims checks after a good signature: times, issuer, audience, scope. Oathkeeper answers
/// 401 for all of them.
fn check_claims(c: &Jwt, claims: Map<String, Value>, now: i64) -> Outcome {
    if let Err(denial) = TokenTimes::read(&claims).and_then(|t| t.check(c, now)) {
        return Outcome::Failed(denial);
    }
    let iss = claims.get("iss").and_then(Value::as_str);
    let aud: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    // Scopes come as `scp`, `scope` or `scopes`, a list or a space-separated string.
    let granted: Vec<String> = ["scp", "scope", "scopes"]
        .iter()
        .find_map(|name| claims.get(*name))
        .map(|v| match v {
            Value::String(s) => scope::split(s).map(str::to_owned).collect(),
            Value::Array(list) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default();
    let granted_refs: Vec<&str> = granted.iter().map(String::as_str).collect();
    let rules = ClaimRules {
        trusted_issuers: &c.trusted_issuers,
        target_audience: &c.target_audience,
        scope_strategy: c.scope_strategy,
        required_scope: &c.required_scope,
    };
    // Oathkeeper: every jwt claim failure but scope is 401.
    if let Err(denial) = rules.check(iss, &aud, &granted_refs, DenialKind::Unauthorized) {
        return Outcome::Failed(denial);
    }
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut extra = claims;
    extra.insert("scp".into(), Value::from(granted));
    Outcome::Authenticated(Session::new(subject, extra))
}

// --- oauth2_client_credentials ----------------------------------------------------------------

fn compile_client_credentials(h: &HandlerSpec) -> Result<ClientCredentials, HandlerError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        token_url: String,
        #[serde(default)]
        required_scope: Vec<String>,
        cache: Option<CacheSpec>,
        #[expect(dead_code, reason = "an Oathkeeper option Portcullis accepts and does not need")]
        retry: Option<Value>,
    }
    let c: Spec = config::config(h)?;
    config::http_url("config.token_url", &c.token_url)?;
    for (i, s) in c.required_scope.iter().enumerate() {
        if !scope::is_valid_token(s) {
            return Err((format!("config.required_scope[{i}]"), format!("{s:?} is not a valid scope")));
        }
    }
    Ok(ClientCredentials {
        token_url: c.token_url,
        required_scope: c.required_scope,
        cache_ttl_ms: CacheSpec::ttl_ms(c.cache, DEFAULT_CACHE_TTL_MS)?,
    })
}

/// `Authorization: Basic base64(id:secret)`, both query-unescaped as Oathkeeper does.
fn basic_credentials(req: &Request<'_>) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, encoded) = req.header("authorization")?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    let (id, secret) = (super::form_decode(id)?, super::form_decode(secret)?);
    (!id.is_empty()).then_some((id, secret))
}

fn client_credentials_call(c: &ClientCredentials, id: &str, secret: &str) -> HttpCall {
    use base64::Engine as _;
    let mut body = String::from("grant_type=client_credentials");
    if !c.required_scope.is_empty() {
        body.push_str("&scope=");
        body.push_str(&form_encode(&c.required_scope.join(" ")));
    }
    // RFC 6749 §2.3.1: each part form-encoded before the Basic encoding.
    let credentials = format!("{}:{}", form_encode(id), form_encode(secret));
    let authorization = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
    HttpCall {
        method: "POST".into(),
        url: c.token_url.clone(),
        headers: vec![
            ("content-type".into(), "application/x-www-form-urlencoded".into()),
            ("accept".into(), "application/json".into()),
            ("authorization".into(), authorization),
        ],
        body: body.into_bytes(),
        cache_key: None,
    }
    .cacheable(c.cache_ttl_ms.is_some())
}

fn finish_client_credentials(
    c: &ClientCredentials,
    req: &Request<'_>,
    outcome: Result<HttpResponse, String>,
    now_ms: i64,
) -> (Outcome, Option<i64>) {
    let response =
        match accepted(outcome, "the token endpoint", "The client credentials are not valid", "client_invalid") {
            Ok(r) => r,
            Err(denial) => return (Outcome::Failed(denial), None),
        };
    let Ok(body) = serde_json::from_slice::<Value>(&response.body) else {
        return (Outcome::Failed(unavailable("the token endpoint")), None);
    };
    let Some((subject, _)) = basic_credentials(req) else {
        return (Outcome::Failed(Denial::new(DenialKind::Internal, "the credentials disappeared")), None);
    };
    let by_ttl = c.cache_ttl_ms.map(|ttl| now_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
    let by_token =
        body.get("expires_in").and_then(Value::as_i64).map(|s| now_ms.saturating_add(s.saturating_mul(1000)));
    let cache_until = match (by_ttl, by_token) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, Some(_)) => None,
    };
    let mut extra = Map::new();
    if let Some(scope) = body.get("scope") {
        extra.insert("scope".into(), scope.clone());
    }
    (Outcome::Authenticated(Session::new(subject, extra)), cache_until)
}
