//! The decision pipeline as a sans-IO state machine: match a rule, run its authenticators in
//! order, then its authorizer and mutators. When an authenticator needs the network (token
//! introspection) the pipeline returns [`Step::Introspect`] and the caller — the filter, or
//! the control plane's decisions API — performs the call (or answers it from a cache) and
//! hands the result to [`Evaluation::resume`]. Authenticator semantics are Oathkeeper's: "not
//! responsible" passes to the next one, "responsible and failed" stops with its error.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::denial::{BearerError, Denial, DenialKind};
use crate::introspection::IntrospectionResponse;
use crate::matching::{matched_url, normalise_path};
use crate::rule::{Authenticator, Authorizer, CompiledRule, IntrospectionAuthenticator, Mutator, RuleSet, TokenSource};
use crate::scope::{self, ScopeStrategy};
use crate::template::Context;

/// The parts of a request the pipeline reads.
pub struct Request<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub host: &'a str,
    /// The raw request target: path and query, as received.
    pub target: &'a str,
    /// Header names lower-cased.
    pub headers: &'a [(String, String)],
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn query_parameter(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1.split('#').next()?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k).as_deref() == Some(name)).then(|| form_decode(v)).flatten()
        })
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.headers.iter().filter(|(n, _)| n == "cookie").flat_map(|(_, v)| v.split(';')).find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
    }
}

fn form_decode(s: &str) -> Option<String> {
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

/// A token-introspection call the caller must perform (POST `token=...` form to `url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionCall {
    pub url: String,
    pub token: String,
    /// Sent as the `scope` form field when the rule delegates scope checks to the server.
    pub scope: Option<String>,
    pub headers: Vec<(String, String)>,
    /// How long an active answer may be reused (never past the token's `exp`); `None`: never.
    pub cache_ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the request, after setting these headers (names lower-cased).
    Allow {
        rule_id: String,
        subject: String,
        headers: Vec<(String, String)>,
    },
    Deny(Denial),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Introspect(IntrospectionCall),
    Done(Verdict),
}

/// An evaluation waiting for a call-out result.
#[derive(Debug)]
pub struct Evaluation {
    rule: Arc<CompiledRule>,
    captures: Vec<String>,
    /// Index of the authenticator whose call-out is outstanding.
    pending: usize,
}

/// Starts judging a request. Returns the evaluation to resume when the step is a call-out.
pub fn begin(rules: &RuleSet, req: &Request<'_>, now: i64) -> (Option<Evaluation>, Step) {
    let path = match normalise_path(req.target) {
        Ok(p) => p,
        Err(e) => {
            return (None, deny(Denial::new(DenialKind::BadRequest, e.to_string())));
        }
    };
    let url = matched_url(req.scheme, req.host, &path);
    let Some((rule, captures)) = rules.select(req.method, &url) else {
        return (None, deny(Denial::no_rule()));
    };
    let mut evaluation = Evaluation { rule, captures, pending: 0 };
    let step = evaluation.authenticate_from(0, req, now);
    match step {
        Step::Introspect(_) => (Some(evaluation), step),
        Step::Done(_) => (None, step),
    }
}

fn deny(d: Denial) -> Step {
    Step::Done(Verdict::Deny(d))
}

impl Evaluation {
    pub fn rule_id(&self) -> &str {
        &self.rule.id
    }

    /// Continues with the outcome of the outstanding introspection call: its response, or why
    /// the call failed (unreachable, timeout, non-200, unreadable body).
    pub fn resume(&mut self, req: &Request<'_>, outcome: Result<IntrospectionResponse, String>, now: i64) -> Step {
        let rule = Arc::clone(&self.rule);
        let Some(Authenticator::OAuth2Introspection(config)) = rule.authenticators.get(self.pending) else {
            return deny(Denial::new(DenialKind::Internal, "no introspection call was outstanding"));
        };
        let response = match outcome {
            Ok(r) => r,
            Err(_) => {
                return deny(Denial::new(
                    DenialKind::Unavailable,
                    "The token could not be checked: the introspection endpoint is unavailable",
                ));
            }
        };
        match check_introspection(config, response, now) {
            Ok(session) => self.authorize_and_mutate(session, req),
            Err(d) => deny(d),
        }
    }

    fn authenticate_from(&mut self, start: usize, req: &Request<'_>, _now: i64) -> Step {
        let rule = Arc::clone(&self.rule);
        for (i, authenticator) in rule.authenticators.iter().enumerate().skip(start) {
            match authenticator {
                Authenticator::Noop => return self.authorize_and_mutate(Session::default(), req),
                Authenticator::Unauthorized => return deny(Denial::unauthorized()),
                Authenticator::Anonymous { subject } => {
                    if req.header("authorization").is_some() {
                        continue;
                    }
                    let session = Session { subject: subject.clone(), extra: Map::new() };
                    return self.authorize_and_mutate(session, req);
                }
                Authenticator::OAuth2Introspection(config) => {
                    let Some(token) = bearer_token(req, &config.token_from) else {
                        continue;
                    };
                    if !token.starts_with(config.prefix.as_str()) {
                        continue;
                    }
                    self.pending = i;
                    return Step::Introspect(introspection_call(config, token));
                }
            }
        }
        deny(Denial::unauthorized())
    }

    fn authorize_and_mutate(&self, session: Session, req: &Request<'_>) -> Step {
        if self.rule.authorizer == Authorizer::Deny {
            return deny(Denial::new(
                DenialKind::Forbidden,
                "Access credentials are not sufficient to access this resource",
            ));
        }
        let ctx = Context {
            subject: &session.subject,
            extra: &session.extra,
            captures: &self.captures,
            headers: req.headers,
        };
        let mut headers = Vec::new();
        for mutator in &self.rule.mutators {
            if let Mutator::Header(templates) = mutator {
                for (name, template) in templates {
                    let value = template.render(&ctx);
                    // A value with CR, LF or NUL would let a token's claims inject headers.
                    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                        return deny(Denial::new(
                            DenialKind::Internal,
                            format!("The header mutator produced an invalid value for {name}"),
                        ));
                    }
                    headers.push((name.clone(), value));
                }
            }
        }
        Step::Done(Verdict::Allow { rule_id: self.rule.id.clone(), subject: session.subject, headers })
    }
}

#[derive(Default)]
struct Session {
    subject: String,
    extra: Map<String, Value>,
}

fn bearer_token<'r>(req: &'r Request<'_>, source: &TokenSource) -> Option<std::borrow::Cow<'r, str>> {
    use std::borrow::Cow;
    let token = match source {
        TokenSource::AuthorizationBearer => {
            let value = req.header("authorization")?.trim();
            let (scheme, token) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            Cow::Borrowed(token.trim())
        }
        TokenSource::Header(name) => Cow::Borrowed(req.header(name)?.trim()),
        TokenSource::QueryParameter(name) => Cow::Owned(req.query_parameter(name)?),
        TokenSource::Cookie(name) => Cow::Borrowed(req.cookie(name)?),
    };
    (!token.is_empty()).then_some(token)
}

fn introspection_call(config: &IntrospectionAuthenticator, token: std::borrow::Cow<'_, str>) -> IntrospectionCall {
    let delegate_scope = config.scope_strategy == ScopeStrategy::None && !config.required_scope.is_empty();
    IntrospectionCall {
        url: config.introspection_url.clone(),
        token: token.into_owned(),
        scope: delegate_scope.then(|| config.required_scope.join(" ")),
        headers: config.request_headers.clone(),
        // Oathkeeper disables the cache when the server checks scopes: the answer depends on them.
        cache_ttl_ms: if delegate_scope { None } else { config.cache_ttl_ms },
    }
}

fn check_introspection(
    config: &IntrospectionAuthenticator,
    r: IntrospectionResponse,
    now: i64,
) -> Result<Session, Denial> {
    let invalid = |msg: &str| Denial::new(DenialKind::Unauthorized, msg).with_bearer_error(BearerError::InvalidToken);
    let forbidden = |msg: String| Denial::new(DenialKind::Forbidden, msg);
    if r.token_use.as_deref().is_some_and(|u| !u.is_empty() && u != "access_token") {
        return Err(forbidden("The token is not an access token".into()));
    }
    if !r.active {
        return Err(invalid("The access token is not active"));
    }
    if r.exp.is_some_and(|exp| exp <= now) {
        return Err(invalid("The access token has expired"));
    }
    let aud = r.aud.clone().unwrap_or_default();
    if let Some(missing) = config.target_audience.iter().find(|a| !aud.contains(a)) {
        return Err(forbidden(format!("The token is not intended for audience {missing}")));
    }
    if !config.trusted_issuers.is_empty() && !r.iss.as_ref().is_some_and(|iss| config.trusted_issuers.contains(iss)) {
        return Err(forbidden("The token was issued by an untrusted issuer".into()));
    }
    if config.scope_strategy != ScopeStrategy::None {
        let granted: Vec<&str> = scope::split(r.scope.as_deref().unwrap_or("")).collect();
        if let Some(missing) =
            config.required_scope.iter().find(|s| !config.scope_strategy.covers(granted.iter().copied(), s))
        {
            return Err(Denial::new(DenialKind::Forbidden, format!("The token lacks the required scope {missing}"))
                .with_bearer_error(BearerError::InsufficientScope));
        }
    }
    let mut extra = r.ext.unwrap_or_default();
    for (key, value) in [("username", r.username), ("client_id", r.client_id), ("scope", r.scope)] {
        if let Some(v) = value {
            extra.insert(key.into(), Value::String(v));
        }
    }
    extra.insert("aud".into(), Value::from(aud));
    Ok(Session { subject: r.sub.unwrap_or_default(), extra })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse_rules;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn rules() -> RuleSet {
        let introspect = json!({"handler": "oauth2_introspection", "config": {
            "introspection_url": "http://cp/admin/oauth2/introspect",
            "scope_strategy": "exact", "required_scope": ["read"],
            "cache": {"enabled": true, "ttl": "10s"}
        }});
        let user_header = json!({"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}", "X-Scope": "{{ .Extra.scope }}"}}});
        RuleSet::compile(
            &parse_rules(json!([
                {"id": "ratings", "match": {"url": "<http|https>://<[^/]+>/ratings/<.*>", "methods": ["GET"]},
                 "authenticators": [introspect], "authorizer": {"handler": "allow"}, "mutators": [user_header]},
                {"id": "public", "match": {"url": "<http|https>://<[^/]+>/public/<.*>", "methods": ["GET"]},
                 "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"}, "mutators": [user_header]},
                {"id": "chain", "match": {"url": "http://h/chain", "methods": ["GET"]},
                 "authenticators": [introspect, {"handler": "anonymous", "config": {"subject": "guest"}}],
                 "authorizer": {"handler": "allow"}, "mutators": [user_header]},
                {"id": "closed", "match": {"url": "http://h/closed", "methods": ["GET"]},
                 "authenticators": [{"handler": "noop"}], "authorizer": {"handler": "deny"}}
            ]))
            .unwrap(),
        )
        .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn request<'a>(target: &'a str, headers: &'a [(String, String)]) -> Request<'a> {
        Request { method: "GET", scheme: "http", host: "h", target, headers }
    }

    fn active(scope: &str) -> IntrospectionResponse {
        IntrospectionResponse {
            active: true,
            sub: Some("my-client".into()),
            client_id: Some("my-client".into()),
            scope: Some(scope.into()),
            exp: Some(NOW + 60),
            ..Default::default()
        }
    }

    fn denied_status(step: &Step) -> u16 {
        match step {
            Step::Done(Verdict::Deny(d)) => d.kind.status(),
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn bearer_token_is_introspected_then_mutated() {
        let rules = rules();
        let h = headers(&[("authorization", "Bearer tok-1")]);
        let req = request("/ratings/1", &h);
        let (evaluation, step) = begin(&rules, &req, NOW);
        let Step::Introspect(call) = step else { panic!("{step:?}") };
        assert_eq!(call.token, "tok-1");
        assert_eq!(call.url, "http://cp/admin/oauth2/introspect");
        assert_eq!(call.cache_ttl_ms, Some(10_000));
        let step = evaluation.unwrap().resume(&req, Ok(active("read write")), NOW);
        assert_eq!(
            step,
            Step::Done(Verdict::Allow {
                rule_id: "ratings".into(),
                subject: "my-client".into(),
                headers: headers(&[("x-scope", "read write"), ("x-user", "my-client")]),
            })
        );
    }

    #[test]
    fn missing_or_foreign_credentials_are_401() {
        let rules = rules();
        let none = headers(&[]);
        let (_, step) = begin(&rules, &request("/ratings/1", &none), NOW);
        assert_eq!(denied_status(&step), 401);
        let basic = headers(&[("authorization", "Basic abc")]);
        assert_eq!(denied_status(&begin(&rules, &request("/ratings/1", &basic), NOW).1), 401);
    }

    #[test]
    fn introspection_answers_are_checked_every_time() {
        let rules = rules();
        let h = headers(&[("authorization", "bearer t")]);
        let req = request("/ratings/1", &h);
        let resume =
            |r: Result<IntrospectionResponse, String>| begin(&rules, &req, NOW).0.unwrap().resume(&req, r, NOW);
        assert_eq!(denied_status(&resume(Ok(IntrospectionResponse::inactive()))), 401);
        assert_eq!(denied_status(&resume(Ok(IntrospectionResponse { exp: Some(NOW), ..active("read") }))), 401);
        assert_eq!(denied_status(&resume(Ok(active("write")))), 403);
        let refresh = IntrospectionResponse { token_use: Some("refresh_token".into()), ..active("read") };
        assert_eq!(denied_status(&resume(Ok(refresh))), 403);
        // Fail closed: an unreachable introspection endpoint never lets the request through.
        assert_eq!(denied_status(&resume(Err("connection refused".into()))), 503);
    }

    #[test]
    fn anonymous_rule_sets_the_subject_and_not_responsible_falls_through() {
        let rules = rules();
        let none = headers(&[]);
        let (_, step) = begin(&rules, &request("/public/hello", &none), NOW);
        let Step::Done(Verdict::Allow { subject, headers: set, .. }) = step else { panic!("{step:?}") };
        assert_eq!(subject, "anonymous");
        assert!(set.contains(&("x-user".into(), "anonymous".into())));
        assert!(set.contains(&("x-scope".into(), String::new())));
        // No token: introspection is not responsible, the anonymous authenticator takes over.
        let (_, step) = begin(&rules, &request("/chain", &none), NOW);
        assert!(matches!(step, Step::Done(Verdict::Allow { ref subject, .. }) if subject == "guest"));
        // A token that fails does not fall back to anonymous.
        let h = headers(&[("authorization", "Bearer bad")]);
        let req = request("/chain", &h);
        let (e, _) = begin(&rules, &req, NOW);
        assert_eq!(denied_status(&e.unwrap().resume(&req, Ok(IntrospectionResponse::inactive()), NOW)), 401);
    }

    #[test]
    fn unmatched_unreadable_and_denied_requests() {
        let rules = rules();
        let none = headers(&[]);
        assert_eq!(denied_status(&begin(&rules, &request("/nothing", &none), NOW).1), 404);
        assert_eq!(denied_status(&begin(&rules, &request("/ratings/%zz", &none), NOW).1), 400);
        assert_eq!(denied_status(&begin(&rules, &request("/closed", &none), NOW).1), 403);
        // Dot segments cannot smuggle a protected path past its rule.
        assert_eq!(denied_status(&begin(&rules, &request("/public/..%2Fratings/1", &none), NOW).1), 401);
    }

    #[test]
    fn header_injection_through_claims_is_refused() {
        let rules = rules();
        let h = headers(&[("authorization", "Bearer t")]);
        let req = request("/ratings/1", &h);
        let evil = IntrospectionResponse { sub: Some("x\r\nX-Admin: yes".into()), ..active("read") };
        assert_eq!(denied_status(&begin(&rules, &req, NOW).0.unwrap().resume(&req, Ok(evil), NOW)), 500);
    }

    #[test]
    fn tokens_from_query_and_cookie() {
        let q =
            Request { method: "GET", scheme: "http", host: "h", target: "/x?a=1&access_token=a%2Bb+c", headers: &[] };
        assert_eq!(q.query_parameter("access_token").as_deref(), Some("a+b c"));
        let h = headers(&[("cookie", "a=1; session=\"abc\"")]);
        let c = request("/x", &h);
        assert_eq!(c.cookie("session"), Some("abc"));
        assert_eq!(c.cookie("missing"), None);
    }
}
