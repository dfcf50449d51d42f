//! One HTTP request through the filter: strip identity headers a client may not send, judge
//! the request with the shared pipeline, answer introspection call-outs from the shared cache
//! or the network, then forward with the mutated headers or reply with the denial.

use std::rc::Rc;

use portcullis_shared::denial::{Denial, DenialKind, LocalResponse};
use portcullis_shared::jwt;
use portcullis_shared::pipeline::mutate::MintRequest;
use portcullis_shared::pipeline::{self, Evaluation, HttpCall, HttpResponse, Request, SignatureCheck, Step, Verdict};
use portcullis_shared::snapshot::CompiledSnapshot;

use std::cell::RefCell;

use crate::cache::{Answer, Lookup, WorkerCaches};
use crate::config::Config;
use crate::headers::{HeaderBlock, HeaderError};
use crate::host::{CallResponse, Host, Level};

/// What the host should do with the request after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// The request as read once in `on_http_request_headers`, kept while a call-out is pending:
/// Envoy's header map in one block, and which of its pairs the pipeline sees.
struct RequestParts {
    block: HeaderBlock,
    /// Where `:method`, `:scheme`, `:authority` and `:path` are in the block.
    pseudo: [Option<usize>; 4],
    /// The other pairs, minus those a mutator owns (removed from the request).
    visible: Vec<usize>,
    /// The client IP Envoy vouches for, read only when a rule sends it somewhere.
    remote_addr: Option<String>,
}

impl RequestParts {
    /// The headers the pipeline sees, borrowed from the block (one vector per callback).
    fn headers(&self) -> Vec<(&str, &str)> {
        self.visible.iter().filter_map(|&i| self.block.get(i)).collect()
    }

    fn view<'a>(&'a self, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        let pseudo = |i: usize| self.pseudo[i].and_then(|at| self.block.get(at)).map_or("", |(_, v)| v);
        Request {
            method: pseudo(0),
            scheme: pseudo(1),
            host: pseudo(2),
            target: pseudo(3),
            headers,
            remote_addr: self.remote_addr.as_deref(),
        }
    }
}

struct Pending {
    token: u32,
    evaluation: Evaluation,
    cache: Option<Lookup>,
}

pub struct Stream {
    config: Rc<Config>,
    snapshot: Option<Rc<CompiledSnapshot>>,
    caches: Rc<RefCell<WorkerCaches>>,
    request: Option<RequestParts>,
    pending: Option<Pending>,
    /// CORS headers for the upstream's response.
    response_headers: Vec<(String, String)>,
}

impl Stream {
    pub fn new(config: Rc<Config>, snapshot: Option<Rc<CompiledSnapshot>>, caches: Rc<RefCell<WorkerCaches>>) -> Self {
        Self { config, snapshot, caches, request: None, pending: None, response_headers: Vec::new() }
    }

    pub fn on_request_headers(&mut self, host: &impl Host) -> Action {
        let Some(snapshot) = self.snapshot.clone() else {
            return reply(
                host,
                &Denial::new(DenialKind::Unavailable, "The gateway has not received its access rules yet")
                    .with_reason("rules_not_loaded")
                    .to_response(),
            );
        };
        let block = match HeaderBlock::parse(&host.request_headers()) {
            Ok(block) => block,
            Err(e) => return refuse_headers(host, &e),
        };
        let (mut pseudo, mut visible) = ([None; 4], Vec::new());
        for (i, (name, _)) in block.pairs().enumerate() {
            match name {
                ":method" => pseudo[0] = Some(i),
                ":scheme" => pseudo[1] = Some(i),
                ":authority" => pseudo[2] = Some(i),
                ":path" => pseudo[3] = Some(i),
                // Sorted and deduplicated when the rules are compiled.
                _ if snapshot.rules.guarded_headers().binary_search_by(|g| g.as_str().cmp(name)).is_ok() => {
                    // A client-sent X-User (or any header a mutator owns) never reaches upstream.
                    host.set_request_header(name, None);
                }
                _ => visible.push(i),
            }
        }
        // A host call per request only for rule sets that need it (Keto's remoteIpAddress).
        let remote_addr = if snapshot.rules.needs_client_address() {
            host.source_address().as_deref().and_then(client_ip).map(str::to_owned)
        } else {
            None
        };
        let request = self.request.insert(RequestParts { block, pseudo, visible, remote_addr });
        // One clock read per callback: the host call costs more than the drift within one.
        let now = now_ms(host);
        let headers = request.headers();
        let (evaluation, step) = pipeline::begin_remembering(
            &snapshot.rules,
            &request.view(&headers),
            now,
            &mut self.caches.borrow_mut().memo,
        );
        self.drive(host, evaluation, step, now)
    }

    pub fn on_call_response(&mut self, host: &impl Host, token: u32, response: CallResponse) -> Action {
        let Some(pending) = self.pending.take_if(|p| p.token == token) else {
            return Action::Pause;
        };
        let outcome = match response.status {
            Some(status) => Ok(HttpResponse { status, headers: response.headers, body: response.body }),
            None => Err("unreachable".to_owned()),
        };
        if let Ok(r) = &outcome {
            if r.status >= 500 {
                host.log(
                    Level::Warn,
                    &format!("rule {}: call-out answered {}", pending.evaluation.rule_id(), r.status),
                );
            }
        } else {
            host.log(Level::Warn, &format!("rule {}: call-out failed", pending.evaluation.rule_id()));
        }
        let cached = outcome.as_ref().ok().map(|r| (r.status, r.body.clone()));
        let mut evaluation = pending.evaluation;
        let Some(request) = &self.request else { return Action::Pause };
        let now = now_ms(host);
        let headers = request.headers();
        let resumed = match &pending.cache {
            Some(lookup) => evaluation.resume_remembering(
                &request.view(&headers),
                outcome,
                now,
                (lookup.digest(), None),
                &mut self.caches.borrow_mut().memo,
            ),
            None => evaluation.resume(&request.view(&headers), outcome, now),
        };
        if let (Some(lookup), Some(until), Some((status, body))) = (&pending.cache, resumed.cache_until_ms, cached) {
            let (now, until_ms) = (u64::try_from(now).unwrap_or(0), u64::try_from(until).unwrap_or(0));
            lookup.put(host, now, until_ms, status, &body);
            self.caches.borrow_mut().answers.insert(*lookup.digest(), Answer { until_ms, status, body }, now);
        }
        let action = self.drive(host, Some(evaluation), resumed.step, now);
        if action == Action::Continue {
            host.resume_request();
        }
        action
    }

    /// Runs the pipeline until it needs the network or has decided.
    /// `now`: the callback's clock reading, in milliseconds.
    fn drive(&mut self, host: &impl Host, mut evaluation: Option<Evaluation>, mut step: Step, now: i64) -> Action {
        loop {
            match step {
                Step::Done(Verdict::Allow { headers, response_headers, .. }) => {
                    // The pipeline refuses such values already; a header that could end the
                    // line or the header block must never reach Envoy's codec whatever a
                    // future handler does.
                    if let Some((name, _)) = headers.iter().find(|(n, v)| !is_sendable(n, v)) {
                        let rule = evaluation.as_ref().map_or("-", |e| e.rule_id());
                        host.log(Level::Error, &format!("rule {rule}: refusing to set an unsendable header {name:?}"));
                        let denial = Denial::new(DenialKind::Internal, "A mutator produced an invalid header")
                            .with_reason("invalid_mutation");
                        return reply(host, &denial.to_response());
                    }
                    for (name, value) in &headers {
                        host.set_request_header(name, Some(value));
                    }
                    self.response_headers = response_headers;
                    return Action::Continue;
                }
                Step::Done(Verdict::Preflight(response)) => return reply(host, &response),
                Step::Done(Verdict::Deny { denial, response }) => {
                    // One line per denial, so a 401/403 can be explained from the gateway's log.
                    let rule = evaluation.as_ref().map_or("-", |e| e.rule_id());
                    let request = self.request.as_ref();
                    let headers = request.map(RequestParts::headers).unwrap_or_default();
                    let view = request.map(|r| r.view(&headers));
                    host.log(
                        Level::Info,
                        &format!(
                            "denied {} {} status={} rule={rule} reason={} request_id={}",
                            view.as_ref().map_or("", |v| v.method),
                            view.as_ref().map_or("", |v| v.path()),
                            response.status,
                            if denial.reason.is_empty() { "-" } else { denial.reason },
                            view.as_ref().and_then(|v| v.header("x-request-id")).unwrap_or("-"),
                        ),
                    );
                    return reply(host, &response);
                }
                Step::Mint(request) => {
                    let Some(parts) = &self.request else { return Action::Pause };
                    let Some(current) = evaluation.as_mut() else {
                        let denial = Denial::new(DenialKind::Internal, "Lost track of the evaluation");
                        return reply(host, &denial.to_response());
                    };
                    let token = self.mint(host, &request, now);
                    if let Err(e) = &token {
                        host.log(Level::Error, &format!("rule {}: cannot sign an id_token: {e}", current.rule_id()));
                    }
                    step = current.resume_minted(&parts.view(&parts.headers()), token, now);
                }
                Step::Verify(check) => {
                    let Some(request) = &self.request else { return Action::Pause };
                    let Some(current) = evaluation.as_mut() else {
                        let denial = Denial::new(DenialKind::Internal, "Lost track of the evaluation");
                        return reply(host, &denial.to_response());
                    };
                    let verified = match self.verify(host, &check, now) {
                        Ok(v) => v,
                        Err(e) => {
                            host.log(
                                Level::Error,
                                &format!("rule {}: cannot verify signatures: {e}", current.rule_id()),
                            );
                            let denial =
                                Denial::new(DenialKind::Unavailable, "The token's signature cannot be checked")
                                    .with_reason("verifier_unavailable");
                            return reply(host, &denial.to_response());
                        }
                    };
                    step = current.resume_verified_by(
                        &request.view(&request.headers()),
                        verified,
                        now,
                        &mut self.caches.borrow_mut().memo,
                    );
                }
                Step::Call(call) => {
                    let Some(mut current) = evaluation.take() else {
                        let denial = Denial::new(DenialKind::Internal, "Lost track of the evaluation");
                        return reply(host, &denial.to_response());
                    };
                    let Some(request) = &self.request else { return Action::Pause };
                    let cache = call.cache_key.as_deref().map(|key| {
                        let digest = self.caches.borrow_mut().memo.sha256(key);
                        Lookup::new(self.config.introspection_cache_slots, digest)
                    });
                    if let Some(lookup) = &cache {
                        let headers = request.headers();
                        // What an authenticator concluded from this answer before: no copy of
                        // the answer, no parsing, no checks again.
                        let remembered = current.resume_remembered(
                            &request.view(&headers),
                            lookup.digest(),
                            now,
                            &mut self.caches.borrow_mut().memo,
                        );
                        if let Some(next) = remembered {
                            step = next;
                            evaluation = Some(current);
                            continue;
                        }
                        if let Some(answer) = self.cached_answer(host, lookup, now) {
                            let until = i64::try_from(answer.until_ms).ok();
                            let cached = HttpResponse { status: answer.status, headers: Vec::new(), body: answer.body };
                            step = current
                                .resume_remembering(
                                    &request.view(&headers),
                                    Ok(cached),
                                    now,
                                    (lookup.digest(), until),
                                    &mut self.caches.borrow_mut().memo,
                                )
                                .step;
                            evaluation = Some(current);
                            continue;
                        }
                    }
                    return match self.dispatch(host, &call) {
                        Ok(token) => {
                            self.pending = Some(Pending { token, evaluation: current, cache });
                            Action::Pause
                        }
                        Err(message) => {
                            host.log(Level::Error, &format!("rule {}: {message}", current.rule_id()));
                            let denial = Denial::new(DenialKind::Internal, "The access rule cannot be evaluated")
                                .with_reason("callout_misconfigured");
                            reply(host, &denial.to_response())
                        }
                    };
                }
            }
        }
    }

    /// Adds the CORS headers decided for this request to the upstream's response.
    pub fn on_response_headers(&mut self, host: &impl Host) {
        for (name, value) in std::mem::take(&mut self.response_headers) {
            host.set_response_header(&name, &value);
        }
    }

    /// A live cached call-out answer: this worker's copy, else shared data's (then copied).
    fn cached_answer(&self, host: &impl Host, lookup: &Lookup, now: i64) -> Option<Answer> {
        let now = u64::try_from(now).unwrap_or(0);
        if let Some(answer) = self.caches.borrow().answers.get(lookup.digest(), now) {
            return Some(answer.clone());
        }
        let answer = lookup.get(host, now)?;
        self.caches.borrow_mut().answers.insert(*lookup.digest(), answer.clone(), now);
        Some(answer)
    }

    /// Signs an id_token with the snapshot's key, or reuses one this worker signed for the same
    /// key, subject and claims.
    fn mint(&self, host: &impl Host, request: &MintRequest, now: i64) -> Result<String, String> {
        let digest = self.caches.borrow_mut().memo.sha256(&request.cache_key);
        let now = u64::try_from(now).unwrap_or(0);
        if let Some(token) = self.caches.borrow().minted.get(&digest, now) {
            return Ok(token.to_owned());
        }
        let key = self.snapshot.as_ref().and_then(|s| s.signing_key.as_ref()).filter(|k| k.kid == request.kid);
        let key = key.ok_or("the snapshot has no signing key with that kid")?;
        let signing_input = request.signing_input()?;
        let signature = host.sign("sha256", &key.pkcs8_der, signing_input.as_bytes())?;
        let token =
            jwt::compact_es256(&signing_input, &signature).ok_or("the signer returned a malformed signature")?;
        if let Ok(until) = u64::try_from(request.cache_until_ms) {
            self.caches.borrow_mut().minted.insert(digest, token.clone(), until, now);
        }
        Ok(token)
    }

    /// Checks a token's signature, or finds it already verified by this worker with a key this
    /// rule trusts: a hit is one lookup and a comparison with each candidate key's digest.
    /// Answers the SHA-256 of the SPKI of the key that verified it, `None` when none did.
    fn verify(&self, host: &impl Host, check: &SignatureCheck, now: i64) -> Result<Option<[u8; 32]>, String> {
        let now = u64::try_from(now).unwrap_or(0);
        if let Some(verified_by) = self.caches.borrow().verified.verified_by(&check.token_digest, now) {
            if check.keys.iter().any(|k| k.spki_sha256 == *verified_by) {
                return Ok(Some(*verified_by));
            }
        }
        for key in &check.keys {
            if host.verify_signature(check.alg.hash(), &key.spki_der, &check.signature, &check.message)? {
                if let Some(until) = check.cache_until_ms.and_then(|t| u64::try_from(t).ok()) {
                    self.caches.borrow_mut().verified.insert(check.token_digest, key.spki_sha256, until, now);
                }
                return Ok(Some(key.spki_sha256));
            }
        }
        Ok(None)
    }

    fn dispatch(&self, host: &impl Host, call: &HttpCall) -> Result<u32, String> {
        let target =
            self.config.route(&call.url).ok_or_else(|| format!("no Envoy cluster is configured for {}", call.url))?;
        let mut headers: Vec<(&str, &str)> =
            vec![(":method", &call.method), (":path", &target.path), (":authority", &target.authority)];
        headers.extend(call.headers.iter().filter(|(n, _)| !n.starts_with(':')).map(|(n, v)| (n.as_str(), v.as_str())));
        host.http_call(target.cluster, &headers, &call.body, self.config.call_timeout_ms)
    }
}

/// A request whose header map the filter cannot read as text is refused, never judged on a
/// value the upstream would read differently (see `headers`).
fn refuse_headers(host: &impl Host, error: &HeaderError) -> Action {
    let denial = match error {
        HeaderError::NotUtf8 { name } => {
            host.log(Level::Info, &format!("refused a request: header {name:?} is not UTF-8"));
            Denial::new(DenialKind::BadRequest, format!("The value of the request header {name} is not valid UTF-8"))
                .with_reason("header_not_utf8")
        }
        HeaderError::Malformed => {
            host.log(Level::Error, "the host handed over a malformed header map");
            Denial::new(DenialKind::Internal, "The request headers cannot be read").with_reason("headers_unreadable")
        }
    };
    reply(host, &denial.to_response())
}

fn reply(host: &impl Host, response: &LocalResponse) -> Action {
    host.send_response(response.status, &response.headers, &response.body);
    Action::Pause
}

fn now_ms(host: &impl Host) -> i64 {
    i64::try_from(host.now_ms()).unwrap_or(i64::MAX)
}

/// The IP of an Envoy address (`1.2.3.4:5678`, `[::1]:5678`); `None` for anything that is not
/// an IP address (a pipe, an internal listener).
pub(crate) fn client_ip(address: &str) -> Option<&str> {
    let ip = match address.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => match address.rsplit_once(':') {
            Some((ip, _port)) if !ip.contains(':') => ip,
            _ => address,
        },
    };
    ip.parse::<std::net::IpAddr>().is_ok().then_some(ip)
}

/// A header Envoy can forward as it is: a token name (no pseudo-header), a value without CR,
/// LF or NUL.
pub(crate) fn is_sendable(name: &str, value: &str) -> bool {
    pipeline::is_header_name(name) && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;
    use crate::mock::MockHost;
    use crate::sync::snapshot_json;
    use serde_json::json;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn snapshot() -> Rc<CompiledSnapshot> {
        let header = json!({"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}});
        let rules = json!([
            {"id": "ratings", "match": {"url": "http://<[^/]+>/ratings/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "oauth2_introspection", "config": {
                 "introspection_url": "http://cp:4445/admin/oauth2/introspect",
                 "cache": {"enabled": true, "ttl": "30s"}}}],
             "authorizer": {"handler": "allow"}, "mutators": [header]},
            {"id": "public", "match": {"url": "http://<[^/]+>/public/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"}, "mutators": [header]},
            {"id": "elsewhere", "match": {"url": "http://<[^/]+>/elsewhere", "methods": ["GET"]},
             "authenticators": [{"handler": "oauth2_introspection", "config": {
                 "introspection_url": "http://not-configured:1/introspect"}}],
             "authorizer": {"handler": "allow"}}
        ]);
        let snapshot: portcullis_shared::snapshot::Snapshot =
            serde_json::from_str(&snapshot_json("v1", rules)).unwrap();
        Rc::new(snapshot.compile().unwrap())
    }

    fn stream() -> Stream {
        Stream::new(Rc::new(test_config()), Some(snapshot()), Rc::default())
    }

    fn request(host: &MockHost, path: &str, extra: &[(&str, &str)]) {
        let mut headers = vec![(":method", "GET"), (":scheme", "http"), (":authority", "gw:8080"), (":path", path)];
        headers.extend_from_slice(extra);
        host.set_request(&headers);
        host.set_now(NOW_MS);
    }

    fn active_body() -> String {
        json!({"active": true, "sub": "my-client", "client_id": "my-client", "exp": NOW_MS / 1000 + 600}).to_string()
    }

    #[test]
    fn valid_token_is_introspected_forwarded_with_x_user_and_cached() {
        let host = MockHost::default();
        let mut s = stream();
        request(&host, "/ratings/1", &[("authorization", "Bearer tok+1"), ("x-user", "admin")]);
        assert_eq!(s.on_request_headers(&host), Action::Pause);
        assert_eq!(host.request_header("x-user"), None, "spoofed X-User is removed before anything else");
        let call = host.calls().pop().unwrap();
        assert_eq!(call.cluster, "cp");
        assert_eq!(call.header(":path"), Some("/admin/oauth2/introspect"));
        assert_eq!(call.body, b"token=tok%2B1");
        host.answer(Some(200), &[], &active_body());
        assert_eq!(s.on_call_response(&host, call.token, host.call_response(1, 0)), Action::Continue);
        assert!(host.resumed());
        assert_eq!(host.request_header("x-user").as_deref(), Some("my-client"));

        // The next request with the same token is answered from the shared cache.
        let mut again = stream();
        request(&host, "/ratings/2", &[("authorization", "Bearer tok+1")]);
        assert_eq!(again.on_request_headers(&host), Action::Continue);
        assert_eq!(host.calls().len(), 1);
        assert_eq!(host.request_header("x-user").as_deref(), Some("my-client"));
    }

    #[test]
    fn a_workers_copy_of_a_cached_answer_serves_until_the_cache_ttl_and_not_after() {
        let host = MockHost::default();
        let (config, snap, caches) = (Rc::new(test_config()), snapshot(), Rc::<RefCell<WorkerCaches>>::default());
        let worker = || Stream::new(Rc::clone(&config), Some(Rc::clone(&snap)), Rc::clone(&caches));
        let mut first = worker();
        request(&host, "/ratings/1", &[("authorization", "Bearer tok-w")]);
        assert_eq!(first.on_request_headers(&host), Action::Pause);
        let call = host.calls().pop().unwrap();
        host.answer(Some(200), &[], &active_body());
        assert_eq!(first.on_call_response(&host, call.token, host.call_response(1, 0)), Action::Continue);

        request(&host, "/ratings/2", &[("authorization", "Bearer tok-w")]);
        host.set_now(NOW_MS + 29_999);
        assert_eq!(worker().on_request_headers(&host), Action::Continue, "answered from the worker's copy");
        assert_eq!(host.calls().len(), 1);
        assert_eq!(host.request_header("x-user").as_deref(), Some("my-client"));

        // The rule's cache ttl is 30 s: then the control plane is asked again.
        request(&host, "/ratings/3", &[("authorization", "Bearer tok-w")]);
        host.set_now(NOW_MS + 30_000);
        assert_eq!(worker().on_request_headers(&host), Action::Pause);
        assert_eq!(host.calls().len(), 2, "an expired answer is not served from either cache");
    }

    #[test]
    fn inactive_or_missing_tokens_get_401_with_a_bearer_challenge() {
        let host = MockHost::default();
        let mut s = stream();
        request(&host, "/ratings/1", &[]);
        assert_eq!(s.on_request_headers(&host), Action::Pause);
        let (status, headers, _) = host.sent().unwrap();
        assert_eq!(status, 401);
        assert!(headers.contains(&("www-authenticate".into(), "Bearer".into())));

        let mut s = stream();
        request(&host, "/ratings/1", &[("authorization", "Bearer qwertyuio23456789")]);
        s.on_request_headers(&host);
        let token = host.calls().pop().unwrap().token;
        host.answer(Some(200), &[], r#"{"active":false}"#);
        assert_eq!(s.on_call_response(&host, token, host.call_response(1, 0)), Action::Pause);
        assert_eq!(host.sent().unwrap().0, 401);
        assert!(!host.resumed());
        assert!(host.shared_values().is_empty(), "inactive answers are not cached");
    }

    #[test]
    fn fails_closed_when_the_control_plane_is_down_or_misconfigured() {
        let host = MockHost::default();
        let mut s = stream();
        request(&host, "/ratings/1", &[("authorization", "Bearer t")]);
        s.on_request_headers(&host);
        let token = host.calls().pop().unwrap().token;
        host.answer(None, &[], "");
        s.on_call_response(&host, token, host.call_response(0, 0));
        assert_eq!(host.sent().unwrap().0, 503);
        assert!(!host.resumed());

        let mut s = stream();
        request(&host, "/ratings/1", &[("authorization", "Bearer t")]);
        s.on_request_headers(&host);
        let token = host.calls().pop().unwrap().token;
        host.answer(Some(500), &[], "oops");
        s.on_call_response(&host, token, host.call_response(1, 0));
        assert_eq!(host.sent().unwrap().0, 503);

        let mut s = stream();
        request(&host, "/elsewhere", &[("authorization", "Bearer t")]);
        s.on_request_headers(&host);
        assert_eq!(host.sent().unwrap().0, 500);

        host.fail_calls(true);
        let mut s = stream();
        request(&host, "/ratings/1", &[("authorization", "Bearer t")]);
        s.on_request_headers(&host);
        assert_eq!(host.sent().unwrap().0, 500, "a call-out Envoy refuses is an error, not a pass");
        host.fail_calls(false);

        let mut s = Stream::new(Rc::new(test_config()), None, Rc::default());
        request(&host, "/public/hello", &[]);
        assert_eq!(s.on_request_headers(&host), Action::Pause);
        assert_eq!(host.sent().unwrap().0, 503, "no rules yet: closed, not open");
    }

    #[test]
    fn anonymous_rule_forwards_and_still_strips_spoofed_headers() {
        let host = MockHost::default();
        let mut s = stream();
        request(&host, "/public/hello", &[("x-user", "root")]);
        assert_eq!(s.on_request_headers(&host), Action::Continue);
        assert_eq!(host.request_header("x-user").as_deref(), Some("anonymous"));
        assert!(host.sent().is_none());
    }

    #[test]
    fn cors_preflight_is_answered_and_real_responses_get_allow_origin() {
        let mut snapshot: portcullis_shared::snapshot::Snapshot = serde_json::from_str(&snapshot_json(
            "v1",
            json!([
            {"id": "public", "match": {"url": "http://<[^/]+>/public/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"}}]),
        ))
        .unwrap();
        snapshot.cors = Some(serde_json::from_value(json!({"allowed_origins": ["https://app.example"]})).unwrap());
        let compiled = Rc::new(snapshot.compile().unwrap());
        let host = MockHost::default();
        let mut s = Stream::new(Rc::new(test_config()), Some(Rc::clone(&compiled)), Rc::default());
        request(&host, "/public/x", &[("origin", "https://app.example"), ("access-control-request-method", "GET")]);
        host.set_request(&[
            (":method", "OPTIONS"),
            (":scheme", "http"),
            (":authority", "gw"),
            (":path", "/public/x"),
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ]);
        assert_eq!(s.on_request_headers(&host), Action::Pause);
        assert_eq!(host.sent().unwrap().0, 204);

        let mut s = Stream::new(Rc::new(test_config()), Some(compiled), Rc::default());
        request(&host, "/public/x", &[("origin", "https://app.example")]);
        assert_eq!(s.on_request_headers(&host), Action::Continue);
        s.on_response_headers(&host);
        assert!(
            host.response_headers().contains(&("access-control-allow-origin".into(), "https://app.example".into()))
        );
    }

    #[test]
    fn unknown_paths_are_404_and_calls_for_other_tokens_are_ignored() {
        let host = MockHost::default();
        let mut s = stream();
        request(&host, "/nope?secret=1", &[("x-request-id", "req-1")]);
        s.on_request_headers(&host);
        assert_eq!(host.sent().unwrap().0, 404);
        let logged = host.logs().pop().unwrap().1;
        assert_eq!(
            logged, "denied GET /nope status=404 rule=- reason=no_rule request_id=req-1",
            "no query: it may hold secrets"
        );
        assert_eq!(s.on_call_response(&host, 42, CallResponse::default()), Action::Pause);
    }
}

#[cfg(test)]
mod jwt_tests {
    use super::*;
    use crate::config::test_config;
    use crate::mock::MockHost;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use portcullis_shared::snapshot::Snapshot;
    use serde_json::json;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = bytes.as_ref();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    fn setup() -> (Stream, SigningKey, Rc<RefCell<WorkerCaches>>, Rc<Config>, Rc<CompiledSnapshot>) {
        let key = SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let snapshot = Snapshot {
            version: "v1".into(),
            rules: serde_json::from_value(json!([{"id": "api", "match": {"url": "http://<[^/]+>/api/<.*>", "methods": ["GET"]},
                "authenticators": [{"handler": "jwt", "config": {"jwks_urls": ["http://cp:4444/.well-known/jwks.json"]}}],
                "authorizer": {"handler": "allow"},
                "mutators": [{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]}]))
            .unwrap(),
            jwks: [("http://cp:4444/.well-known/jwks.json".to_owned(), json!({"keys": [{"kty": "EC", "crv": "P-256",
                "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}]}))]
            .into(),
            ..Snapshot::default()
        };
        let compiled = Rc::new(snapshot.compile().unwrap());
        let verified = Rc::new(RefCell::new(WorkerCaches::default()));
        let config = Rc::new(test_config());
        (
            Stream::new(Rc::clone(&config), Some(Rc::clone(&compiled)), Rc::clone(&verified)),
            key,
            verified,
            config,
            compiled,
        )
    }

    fn token(key: &SigningKey, sub: &str) -> String {
        let input = format!(
            "{}.{}",
            b64(r#"{"alg":"ES256"}"#),
            b64(json!({"sub": sub, "exp": NOW_MS / 1000 + 60}).to_string())
        );
        let signature: Signature = key.sign(input.as_bytes());
        format!("{input}.{}", b64(signature.to_bytes()))
    }

    fn request(host: &MockHost, token: &str) {
        let bearer = format!("Bearer {token}");
        host.set_request(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "gw"),
            (":path", "/api/x"),
            ("authorization", &bearer),
        ]);
        host.set_now(NOW_MS);
    }

    #[test]
    fn jwt_is_verified_natively_once_per_worker_and_forwarded() {
        let (mut stream, key, verified, config, snapshot) = setup();
        let host = MockHost::default();
        let t = token(&key, "alice");
        request(&host, &t);
        assert_eq!(stream.on_request_headers(&host), Action::Continue);
        assert_eq!(host.request_header("x-user").as_deref(), Some("alice"));
        assert_eq!(host.verifications(), 1);
        assert!(host.calls().is_empty(), "no call-out for a JWT");

        let mut again = Stream::new(config, Some(snapshot), verified);
        request(&host, &t);
        assert_eq!(again.on_request_headers(&host), Action::Continue);
        assert_eq!(host.verifications(), 1, "the same token is not verified twice on a worker");
    }

    #[test]
    fn a_forged_token_is_refused() {
        let (mut stream, _, _, _, _) = setup();
        let other = SigningKey::from_bytes(&[3u8; 32].into()).unwrap();
        let host = MockHost::default();
        request(&host, &token(&other, "mallory"));
        assert_eq!(stream.on_request_headers(&host), Action::Pause);
        let (status, _, body) = host.sent().unwrap();
        assert_eq!(status, 401);
        assert!(body.contains("bad_signature"), "{body}");
    }

    #[test]
    fn id_tokens_are_signed_natively_once_per_subject_and_verify() {
        use base64::Engine as _;
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::EncodePrivateKey;
        let key = SigningKey::from_bytes(&[4u8; 32].into()).unwrap();
        let pkcs8 = key.to_pkcs8_der().unwrap();
        let snapshot = Snapshot {
            version: "v1".into(),
            rules: serde_json::from_value(json!([{"id": "p", "match": {"url": "http://<[^/]+>/p/<.*>", "methods": ["GET"]},
                "authenticators": [{"handler": "anonymous", "config": {"subject": "guest"}}], "authorizer": {"handler": "allow"},
                "mutators": [{"handler": "id_token", "config": {"issuer_url": "https://gw.example/", "claims": "{\"aud\": [\"api\"]}"}}]}]))
            .unwrap(),
            signing_key: Some(portcullis_shared::snapshot::SigningKey {
                kid: "id-1".into(),
                alg: portcullis_shared::jwt::Algorithm::ES256,
                pkcs8: base64::engine::general_purpose::STANDARD.encode(pkcs8.as_bytes()),
            }),
            ..Snapshot::default()
        };
        let compiled = Rc::new(snapshot.compile().unwrap());
        let caches = Rc::new(RefCell::new(WorkerCaches::default()));
        let host = MockHost::default();
        for _ in 0..2 {
            let mut s = Stream::new(Rc::new(test_config()), Some(Rc::clone(&compiled)), Rc::clone(&caches));
            host.set_request(&[(":method", "GET"), (":scheme", "http"), (":authority", "gw"), (":path", "/p/x")]);
            host.set_now(NOW_MS);
            assert_eq!(s.on_request_headers(&host), Action::Continue);
        }
        assert_eq!(host.signatures(), 1, "the second request reuses the worker's token");
        let bearer = host.request_header("authorization").unwrap();
        let token = bearer.strip_prefix("Bearer ").unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).unwrap();
        let signature = Signature::from_slice(&raw).unwrap();
        assert!(key.verifying_key().verify(input.as_bytes(), &signature).is_ok(), "verifiable with the public key");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(input.split_once('.').unwrap().1).unwrap(),
        )
        .unwrap();
        assert_eq!((claims["sub"].as_str(), claims["iss"].as_str()), (Some("guest"), Some("https://gw.example/")));
        assert_eq!(claims["aud"], json!(["api"]));
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    }
}
