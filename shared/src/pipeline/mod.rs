//! The decision pipeline as a sans-IO state machine: match a rule, run its authenticators in
//! order, then its authorizer and its mutators, and on a denial pick the rule's error handler.
//! Whenever a handler needs the network (token introspection, a session check, a remote
//! authorizer, a hydrator) the pipeline returns [`Step::Call`]; the caller — the Envoy filter,
//! or the control plane's decisions API — performs it, or answers it from its cache, and hands
//! the response to [`Evaluation::resume`]. Nothing here does I/O or reads a clock.
//!
//! Authenticator semantics are Oathkeeper's: "not responsible" passes to the next one,
//! "responsible and failed" stops with its error — unless the authenticator says
//! `on_invalid: continue`, Portcullis's explicit fall-through (an expired cookie falling back to
//! `anonymous`).

pub mod authn;
pub mod authz;
mod config;
pub mod errors;
mod memo;
pub mod mutate;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::denial::{Denial, DenialKind, LocalResponse};
use crate::matching::request_url;
use crate::rule::{CompiledRule, RuleSet};
use crate::template::Context;

pub use config::{HandlerError, is_header_name};
pub use memo::{Memo, sha256};

/// The parts of a request the pipeline reads.
pub struct Request<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub host: &'a str,
    /// The raw request target: path and query, as received.
    pub target: &'a str,
    /// Header names lower-cased.
    pub headers: &'a [(&'a str, &'a str)],
    /// The client's IP address as the proxy vouches for it (Envoy's `source.address` without
    /// the port, the peer a trusted proxy names for `/decisions`), never one a client wrote.
    /// `None` when unknown; read only where [`RuleSet::needs_client_address`] says so.
    pub remote_addr: Option<&'a str>,
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    pub fn query(&self) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        Some(query.split('#').next().unwrap_or(""))
    }

    pub(crate) fn query_parameter(&self, name: &str) -> Option<String> {
        self.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k).as_deref() == Some(name)).then(|| form_decode(v)).flatten()
        })
    }

    pub(crate) fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().filter(|(n, _)| *n == "cookie").flat_map(|(_, v)| v.split(';')).filter_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            Some((k.trim(), v.trim().trim_matches('"')))
        })
    }

    pub(crate) fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The URL the request was made to, for redirects and `return_to`.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.target)
    }
}

pub(crate) fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters: safe in a query value,
/// a form field and a path segment.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTTP call the caller must perform and answer with [`Evaluation::resume`].
#[derive(Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub method: String,
    /// Absolute `http(s)://` URL.
    pub url: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When set, a response may be reused for later calls with the same key (the caller hashes
    /// it; it contains credentials) until the expiry [`Evaluation::resume`] reports. The key is
    /// the call itself (see [`HttpCall::cacheable`]).
    pub cache_key: Option<String>,
}

impl HttpCall {
    /// Makes the call's answer reusable (or not) under a key that is the whole call: method,
    /// URL, every header in order, and the body. Whatever the endpoint can base its answer on
    /// is in the key, so an answer is reused only for the same question — a second `Cookie`
    /// header, an `Authorization` header, a tenant header or another audience asks another one.
    pub(crate) fn cacheable(mut self, cacheable: bool) -> Self {
        self.cache_key = if cacheable { self.exact_key() } else { None };
        self
    }

    /// Length-prefixed parts, so no two calls share a key; `None` (not cacheable) for a body
    /// that is not UTF-8, which the handlers never build.
    fn exact_key(&self) -> Option<String> {
        use std::fmt::Write as _;
        let body = std::str::from_utf8(&self.body).ok()?;
        let size = self.headers.iter().map(|(n, v)| n.len() + v.len() + 12).sum::<usize>();
        let mut key = String::with_capacity(self.method.len() + self.url.len() + body.len() + size + 40);
        let mut put = |part: &str| {
            let _ = write!(key, "{}:", part.len());
            key.push_str(part);
        };
        put(&self.method);
        put(&self.url);
        put(&self.headers.len().to_string());
        for (name, value) in &self.headers {
            put(name);
            put(value);
        }
        put(body);
        Some(key)
    }
}

/// Calls carry credentials (the token being introspected, forwarded cookies): `Debug` shows
/// where they go, not what they carry.
impl std::fmt::Debug for HttpCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpCall")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("header_names", &names)
            .field("body_len", &self.body.len())
            .field("cacheable", &self.cache_key.is_some())
            .finish()
    }
}

/// The answer to an [`HttpCall`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the request, after setting `headers` on it (names lower-cased); add
    /// `response_headers` (CORS) to the upstream's response.
    Allow { rule_id: String, subject: String, headers: Vec<(String, String)>, response_headers: Vec<(String, String)> },
    /// Answer with `response`; `denial` says why.
    Deny { denial: Denial, response: LocalResponse },
    /// A CORS preflight, answered without authentication.
    Preflight(LocalResponse),
}

/// A signature the caller must check (Envoy's `verify_signature` in the filter, RustCrypto in
/// the control plane) and report with [`Evaluation::resume_verified`].
///
/// A caller may remember that a key verified a token (by `token_digest`, until
/// `cache_until_ms`), but must bind what it remembers to that key's `spki_sha256`, and answer
/// from memory only when that key is among `keys`: the keys this rule trusts for this token.
/// A token verified for a rule trusting a partner's key is otherwise "verified" for every rule.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    pub alg: crate::jwt::Algorithm,
    /// The keys that may have signed (SPKI DER and its SHA-256); one verifying is enough.
    pub keys: Vec<Arc<crate::jwt::VerifyingKey>>,
    pub message: Vec<u8>,
    /// DER-encoded for ECDSA.
    pub signature: Vec<u8>,
    /// SHA-256 of the token.
    pub token_digest: [u8; 32],
    /// Until when a good signature may be remembered (the token's `exp`, unix ms); `None`: do
    /// not remember.
    pub cache_until_ms: Option<i64>,
}

impl std::fmt::Debug for SignatureCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureCheck").field("alg", &self.alg).field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Call(HttpCall),
    Verify(SignatureCheck),
    /// Sign a token (or reuse one minted for the same key) and report it with
    /// [`Evaluation::resume_minted`].
    Mint(mutate::MintRequest),
    Done(Verdict),
}

/// One empty `extra` for every session without one (an anonymous caller, a request still being
/// authenticated): no allocation per request.
fn no_extra() -> Arc<Map<String, Value>> {
    static EMPTY: std::sync::LazyLock<Arc<Map<String, Value>>> = std::sync::LazyLock::new(Arc::default);
    Arc::clone(&EMPTY)
}

impl Default for Session {
    fn default() -> Self {
        Self { subject: String::new(), extra: no_extra(), header: Vec::new() }
    }
}

/// What the handlers learn about the caller, and what they pass to the upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub subject: String,
    /// Shared, because a remembered session (an accepted JWT's claims, a cached whoami answer
    /// of a few kB) is handed to every request that repeats the credential: a reference
    /// count, not a deep copy. Handlers that change it replace it whole.
    pub extra: Arc<Map<String, Value>>,
    /// Headers to set on the upstream request (names lower-cased, last write wins).
    pub header: Vec<(String, String)>,
}

impl Session {
    pub fn new(subject: impl Into<String>, extra: Map<String, Value>) -> Self {
        let extra = if extra.is_empty() { no_extra() } else { Arc::new(extra) };
        Self { subject: subject.into(), extra, header: Vec::new() }
    }

    pub(crate) fn set_header(&mut self, name: &str, value: String) {
        self.header.retain(|(n, _)| n != name);
        self.header.push((name.to_owned(), value));
    }

    pub(crate) fn context<'a>(&'a self, req: &'a Request<'_>, captures: &'a [String]) -> Context<'a> {
        Context { subject: &self.subject, extra: &self.extra, captures, headers: req.headers }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Authenticator(usize),
    Authorizer,
    Mutator(usize),
}

/// An evaluation waiting for a call-out result.
#[derive(Debug)]
pub struct Evaluation {
    rule: Arc<CompiledRule>,
    captures: Arc<[String]>,
    session: Session,
    stage: Stage,
    /// CORS headers every answer to this request carries (empty without an allowed Origin).
    cors: Vec<(String, String)>,
    revoked: Arc<crate::rule::Revoked>,
    signing_kid: Option<String>,
    /// The generation of the rule set the rule came from (what a memory is bound to).
    generation: u64,
    now_ms: i64,
    /// How many calls the current authenticator has made for this request.
    phase: u8,
    /// Claims of a token whose signature is being checked, and the token's SHA-256.
    pending_claims: Option<(Map<String, Value>, [u8; 32])>,
}

/// The result of resuming: the next step, and how long the response just handed in may be
/// reused for calls with the same cache key (unix milliseconds), when it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub step: Step,
    pub cache_until_ms: Option<i64>,
}

/// Starts judging a request. Returns the evaluation to resume when the step is an effect.
pub fn begin(rules: &RuleSet, req: &Request<'_>, now_ms: i64) -> (Option<Evaluation>, Step) {
    begin_in(rules, req, now_ms, None)
}

/// [`begin`] with a worker's [`Memo`]: a request line seen before selects its rule from memory,
/// and a JWT this rule's authenticator accepted before is not parsed or checked again (but for
/// its times and revocation). Report signature checks with [`Evaluation::resume_verified_by`]
/// so accepted tokens are remembered.
pub fn begin_remembering(
    rules: &RuleSet,
    req: &Request<'_>,
    now_ms: i64,
    memo: &mut Memo,
) -> (Option<Evaluation>, Step) {
    begin_in(rules, req, now_ms, Some(memo))
}

fn begin_in(
    rules: &RuleSet,
    req: &Request<'_>,
    now_ms: i64,
    mut memo: Option<&mut Memo>,
) -> (Option<Evaluation>, Step) {
    let origin = req.header("origin");
    let line = [req.method, req.scheme, req.host, req.target];
    let preflight = req.method.eq_ignore_ascii_case("OPTIONS") && origin.is_some();
    let remembered = match memo.as_deref_mut() {
        Some(m) if !preflight => m.selections().get(rules, line),
        _ => None,
    };
    let (rule, captures) = match remembered {
        Some(Some(selected)) => selected,
        Some(None) => {
            let cors = cors_headers(rules.cors_for(None), origin);
            return (None, Step::Done(with_cors(errors::respond(&[], Denial::no_rule(), req), &cors)));
        }
        None => match select(rules, req, origin) {
            Ok(selected) => {
                if let Some(m) = memo.as_deref_mut().filter(|_| !preflight) {
                    m.selections().put(rules, line, &selected);
                }
                match selected {
                    Some(selected) => selected,
                    None => {
                        let cors = cors_headers(rules.cors_for(None), origin);
                        return (None, Step::Done(with_cors(errors::respond(&[], Denial::no_rule(), req), &cors)));
                    }
                }
            }
            Err(step) => return (None, *step),
        },
    };
    let cors = cors_headers(rules.cors_for(Some(&rule)), origin);
    let mut evaluation = Evaluation {
        rule,
        captures,
        session: Session::default(),
        stage: Stage::Authenticator(0),
        cors,
        revoked: Arc::clone(rules.revoked()),
        signing_kid: rules.signing_kid().map(str::to_owned),
        generation: rules.generation(),
        now_ms,
        phase: 0,
        pending_claims: None,
    };
    let step = evaluation.authenticate_from(0, req, now_ms, memo);
    match step {
        Step::Call(_) | Step::Verify(_) | Step::Mint(_) => (Some(evaluation), step),
        Step::Done(_) => (None, step),
    }
}

/// Selects the rule for a request: `Ok(None)` when none matches, `Err` with the answer when the
/// request is judged before any rule (a malformed URL, a CORS preflight).
/// (Boxed: the rare path carries the large value.)
fn select(rules: &RuleSet, req: &Request<'_>, origin: Option<&str>) -> Result<memo::Selected, Box<Step>> {
    let url = match request_url(req.scheme, req.host, req.target) {
        Ok(url) => url,
        Err(e) => {
            let denial = Denial::new(DenialKind::BadRequest, e.to_string()).with_reason(e.reason());
            let cors = cors_headers(rules.cors_for(None), origin);
            return Err(Box::new(Step::Done(with_cors(errors::respond(&[], denial, req), &cors))));
        }
    };
    if let (true, Some(origin), Some(method)) =
        (req.method.eq_ignore_ascii_case("OPTIONS"), origin, req.header("access-control-request-method"))
    {
        // A preflight is judged by the rule of the request it announces, before authentication.
        let rule = rules.select(method.trim(), &url).map(|(r, _)| r);
        if let Some(policy) = rules.cors_for(rule.as_deref()) {
            let response = policy.preflight(origin, method.trim(), req.header("access-control-request-headers"));
            return Err(Box::new(Step::Done(Verdict::Preflight(response))));
        }
    }
    Ok(rules.select(req.method, &url).map(|(rule, captures)| (rule, Arc::from(captures))))
}

fn cors_headers(policy: Option<&crate::cors::CorsPolicy>, origin: Option<&str>) -> Vec<(String, String)> {
    match (policy, origin) {
        (Some(p), Some(o)) => p.response_headers(o),
        _ => Vec::new(),
    }
}

/// Adds CORS headers to a denial, so a browser app can read why it was refused.
fn with_cors(verdict: Verdict, cors: &[(String, String)]) -> Verdict {
    match verdict {
        Verdict::Deny { denial, mut response } => {
            response.headers.extend(cors.iter().cloned());
            Verdict::Deny { denial, response }
        }
        other => other,
    }
}

impl Evaluation {
    pub fn rule_id(&self) -> &str {
        &self.rule.id
    }

    /// Continues with the outcome of the outstanding call: its response, or why it failed
    /// (unreachable, timeout, refused by the host).
    pub fn resume(&mut self, req: &Request<'_>, outcome: Result<HttpResponse, String>, now_ms: i64) -> Resumed {
        self.resume_in(req, outcome, now_ms, None)
    }

    /// [`Evaluation::resume`] for the answer to a cacheable call whose cache key has the SHA-256
    /// `digest`: a session an authenticator concludes from it is remembered in `memo` until the
    /// answer may no longer be used, which is when the cache says (`cached_until_ms`, unix
    /// ms; `None` for an answer that just arrived) or earlier.
    pub fn resume_remembering(
        &mut self,
        req: &Request<'_>,
        outcome: Result<HttpResponse, String>,
        now_ms: i64,
        (digest, cached_until_ms): (&[u8; 32], Option<i64>),
        memo: &mut Memo,
    ) -> Resumed {
        self.resume_in(req, outcome, now_ms, Some((memo, digest, cached_until_ms)))
    }

    /// The next step without the call, when an authenticator has already concluded a session
    /// from a live answer to the same call (cache key SHA-256 `digest`); `None` otherwise.
    pub fn resume_remembered(
        &mut self,
        req: &Request<'_>,
        digest: &[u8; 32],
        now_ms: i64,
        memo: &mut Memo,
    ) -> Option<Step> {
        let Stage::Authenticator(i) = self.stage else { return None };
        let reader = memo::Reader { rule: Arc::clone(&self.rule), index: i, phase: self.phase };
        let session = memo.conclusions().get(self.generation, digest, &reader, now_ms)?;
        self.now_ms = now_ms;
        self.phase = 0;
        Some(self.after_authenticator(i, authn::Outcome::Authenticated(session), req, now_ms))
    }

    fn resume_in(
        &mut self,
        req: &Request<'_>,
        outcome: Result<HttpResponse, String>,
        now_ms: i64,
        remember: Option<(&mut Memo, &[u8; 32], Option<i64>)>,
    ) -> Resumed {
        self.now_ms = now_ms;
        let rule = Arc::clone(&self.rule);
        match self.stage {
            Stage::Authenticator(i) => {
                let Some(authenticator) = rule.authenticators.get(i) else {
                    return self.internal("no authenticator call was outstanding");
                };
                let (result, cache_until_ms) = authenticator.finish(req, outcome, now_ms, self.phase);
                if let (authn::Outcome::Authenticated(session), Some(until), Some((memo, digest, cached_until))) =
                    (&result, cache_until_ms, remember)
                {
                    let reader = memo::Reader { rule: Arc::clone(&rule), index: i, phase: self.phase };
                    let until = cached_until.map_or(until, |c| c.min(until));
                    memo.conclusions().put(self.generation, digest, reader, until, session.clone());
                }
                self.phase = if matches!(result, authn::Outcome::Call(_)) { self.phase.saturating_add(1) } else { 0 };
                Resumed { step: self.after_authenticator(i, result, req, now_ms), cache_until_ms }
            }
            Stage::Authorizer => {
                let step = match rule.authorizer.finish(outcome, &mut self.session) {
                    Ok(()) => self.mutate_from(0, req),
                    Err(denial) => self.deny(denial, req),
                };
                Resumed { step, cache_until_ms: None }
            }
            Stage::Mutator(i) => {
                let Some(mutator) = rule.mutators.get(i) else {
                    return self.internal("no mutator call was outstanding");
                };
                let (result, cache_until_ms) = mutator.finish(outcome, &mut self.session, now_ms);
                let step = match result {
                    Ok(()) => self.mutate_from(i + 1, req),
                    Err(denial) => self.deny(denial, req),
                };
                Resumed { step, cache_until_ms }
            }
        }
    }

    /// Continues with the verifier's answer to the outstanding [`Step::Verify`].
    pub fn resume_verified(&mut self, req: &Request<'_>, verified: bool, now_ms: i64) -> Step {
        self.verified(req, verified, None, now_ms)
    }

    /// Continues with the verifier's answer: `verified_by` is the SHA-256 of the SPKI of the
    /// key that verified the signature (one of the check's keys), `None` when none did. An
    /// accepted token is remembered in `memo`, bound to that key.
    pub fn resume_verified_by(
        &mut self,
        req: &Request<'_>,
        verified_by: Option<[u8; 32]>,
        now_ms: i64,
        memo: &mut Memo,
    ) -> Step {
        let remember = verified_by.map(|key| (memo.tokens(), key));
        self.verified(req, verified_by.is_some(), remember, now_ms)
    }

    fn verified(
        &mut self,
        req: &Request<'_>,
        verified: bool,
        remember: Option<(&mut memo::AcceptedTokens, [u8; 32])>,
        now_ms: i64,
    ) -> Step {
        self.now_ms = now_ms;
        let rule = Arc::clone(&self.rule);
        let (Stage::Authenticator(i), Some((claims, digest))) = (self.stage, self.pending_claims.take()) else {
            return self.internal("no signature check was outstanding").step;
        };
        let Some(authenticator) = rule.authenticators.get(i) else {
            return self.internal("no signature check was outstanding").step;
        };
        let remember = remember.map(|(memo, key)| (memo, digest, key));
        self.after_authenticator(i, authenticator.finish_verified(verified, claims, now_ms, remember), req, now_ms)
    }

    /// Continues with the token minted for the outstanding [`Step::Mint`], or why it could not
    /// be signed.
    pub fn resume_minted(&mut self, req: &Request<'_>, token: Result<String, String>, now_ms: i64) -> Step {
        self.now_ms = now_ms;
        let Stage::Mutator(i) = self.stage else {
            return self.internal("no token was being minted").step;
        };
        match token {
            Ok(token) => {
                self.session.set_header("authorization", format!("Bearer {token}"));
                self.mutate_from(i + 1, req)
            }
            Err(_) => self.deny(
                Denial::new(DenialKind::Unavailable, "The id token could not be signed").with_reason("signing_failed"),
                req,
            ),
        }
    }

    /// Where an authenticator's outcome leads: on to authorization, to the next authenticator,
    /// to a denial, or to another effect.
    fn after_authenticator(&mut self, i: usize, outcome: authn::Outcome, req: &Request<'_>, now_ms: i64) -> Step {
        let authenticator = &self.rule.authenticators[i];
        match outcome {
            authn::Outcome::Authenticated(session) => {
                self.session = session;
                self.authorize(req)
            }
            authn::Outcome::NotResponsible => self.authenticate_from(i + 1, req, now_ms, None),
            authn::Outcome::Failed(denial) if authenticator.continue_on_invalid(&denial) => {
                self.authenticate_from(i + 1, req, now_ms, None)
            }
            authn::Outcome::Failed(denial) => self.deny(denial, req),
            authn::Outcome::Call(call) => {
                self.stage = Stage::Authenticator(i);
                Step::Call(call)
            }
            authn::Outcome::Verify(check, claims) => {
                self.stage = Stage::Authenticator(i);
                self.pending_claims = Some((claims, check.token_digest));
                Step::Verify(check)
            }
        }
    }

    fn internal(&self, message: &str) -> Resumed {
        let denial = Denial::new(DenialKind::Internal, message).with_reason("pipeline_state");
        let response = denial.to_response();
        Resumed { step: Step::Done(Verdict::Deny { denial, response }), cache_until_ms: None }
    }

    fn deny(&self, denial: Denial, req: &Request<'_>) -> Step {
        Step::Done(with_cors(errors::respond(&self.rule.errors, denial, req), &self.cors))
    }

    fn authenticate_from(&mut self, start: usize, req: &Request<'_>, now_ms: i64, mut memo: Option<&mut Memo>) -> Step {
        let rule = Arc::clone(&self.rule);
        for (i, authenticator) in rule.authenticators.iter().enumerate().skip(start) {
            self.phase = 0;
            match authenticator.start(req, &self.revoked, now_ms, memo.as_deref_mut()) {
                authn::Outcome::NotResponsible => continue,
                authn::Outcome::Failed(denial) if authenticator.continue_on_invalid(&denial) => continue,
                outcome => return self.after_authenticator(i, outcome, req, now_ms),
            }
        }
        self.deny(Denial::unauthorized().with_reason("no_credentials"), req)
    }

    fn authorize(&mut self, req: &Request<'_>) -> Step {
        match self.rule.authorizer.start(&self.session, req, &self.captures) {
            authz::Start::Allow => self.mutate_from(0, req),
            authz::Start::Deny(denial) => self.deny(denial, req),
            authz::Start::Call(call) => {
                self.stage = Stage::Authorizer;
                Step::Call(call)
            }
        }
    }

    fn mutate_from(&mut self, start: usize, req: &Request<'_>) -> Step {
        let rule = Arc::clone(&self.rule);
        for (i, mutator) in rule.mutators.iter().enumerate().skip(start) {
            match mutator.apply(&mut self.session, req, &self.captures, self.now_ms, self.signing_kid.as_deref()) {
                Ok(None) => {}
                Ok(Some(effect)) => {
                    self.stage = Stage::Mutator(i);
                    return match effect {
                        mutate::Effect::Call(call) => Step::Call(call),
                        mutate::Effect::Mint(request) => Step::Mint(request),
                    };
                }
                Err(denial) => return self.deny(denial, req),
            }
        }
        Step::Done(Verdict::Allow {
            rule_id: rule.id.clone(),
            subject: self.session.subject.clone(),
            headers: std::mem::take(&mut self.session.header),
            response_headers: std::mem::take(&mut self.cors),
        })
    }
}

/// Reads a value from JSON with the GJSON path subset rule configs use: dotted keys, array
/// indexes (`a.0.b`), and `@this` for the whole document.
pub(crate) fn json_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() || path == "@this" {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(list) => key.parse::<usize>().ok().and_then(|i| list.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod adversarial;
#[cfg(test)]
mod tests;
