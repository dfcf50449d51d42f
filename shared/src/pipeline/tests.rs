//! The pipeline end to end on compiled rules: every handler family, call-outs answered by the
//! test as the filter or the decisions API would answer them.

use serde_json::{Value, json};

use super::*;
use crate::rule::parse_rules;

const NOW_MS: i64 = 1_700_000_000_000;
const NOW: i64 = NOW_MS / 1000;

fn ruleset(rules: Value) -> RuleSet {
    RuleSet::compile(&parse_rules(rules).unwrap()).unwrap()
}

fn user_header() -> Value {
    json!({"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}", "X-Scope": "{{ .Extra.scope }}"}}})
}

fn introspect(extra: Value) -> Value {
    let mut config = json!({"introspection_url": "http://cp/admin/oauth2/introspect",
        "scope_strategy": "exact", "required_scope": ["read"], "cache": {"enabled": true, "ttl": "10s"}});
    if let (Some(c), Value::Object(e)) = (config.as_object_mut(), extra) {
        c.extend(e);
    }
    json!({"handler": "oauth2_introspection", "config": config})
}

pub(super) fn rule(id: &str, path: &str, authenticators: Value, authorizer: Value, mutators: Value) -> Value {
    json!({"id": id, "match": {"url": format!("<http|https>://<[^/]+>{path}"), "methods": ["GET", "POST"]},
           "authenticators": authenticators, "authorizer": authorizer, "mutators": mutators})
}

fn basic_rules() -> RuleSet {
    let allow = json!({"handler": "allow"});
    ruleset(json!([
        rule("ratings", "/ratings/<.*>", json!([introspect(json!({}))]), allow.clone(), json!([user_header()])),
        rule("public", "/public/<.*>", json!([{"handler": "anonymous"}]), allow.clone(), json!([user_header()])),
        rule(
            "chain",
            "/chain",
            json!([introspect(json!({})), {"handler": "anonymous", "config": {"subject": "guest"}}]),
            allow.clone(),
            json!([user_header()])
        ),
        rule("closed", "/closed", json!([{"handler": "noop"}]), json!({"handler": "deny"}), json!([])),
    ]))
}

pub(super) fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    pairs.to_vec()
}

/// Header pairs as the pipeline hands them out (to set, to send).
pub(super) fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

pub(super) fn request<'a>(target: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
    Request { method: "GET", scheme: "http", host: "h", target, headers, remote_addr: None }
}

pub(super) fn ok(body: Value) -> Result<HttpResponse, String> {
    Ok(HttpResponse { status: 200, headers: vec![], body: body.to_string().into_bytes() })
}

fn status(status: u16) -> Result<HttpResponse, String> {
    Ok(HttpResponse { status, headers: vec![], body: vec![] })
}

fn active(scope: &str) -> Value {
    json!({"active": true, "sub": "my-client", "client_id": "my-client", "scope": scope, "exp": NOW + 60})
}

pub(super) fn denied(step: &Step) -> (u16, &'static str) {
    match step {
        Step::Done(Verdict::Deny { denial, response }) => (response.status, denial.reason),
        other => panic!("expected a denial, got {other:?}"),
    }
}

pub(super) fn allowed(step: &Step) -> (&str, &[(String, String)]) {
    match step {
        Step::Done(Verdict::Allow { subject, headers, .. }) => (subject, headers),
        other => panic!("expected to be allowed, got {other:?}"),
    }
}

pub(super) fn call(step: &Step) -> &HttpCall {
    match step {
        Step::Call(c) => c,
        other => panic!("expected a call, got {other:?}"),
    }
}

/// Begins and answers every call with `answers` in order.
fn run(rules: &RuleSet, req: &Request<'_>, answers: Vec<Result<HttpResponse, String>>) -> (Step, Vec<HttpCall>) {
    let (mut evaluation, mut step) = begin(rules, req, NOW_MS);
    let mut calls = Vec::new();
    for answer in answers {
        calls.push(call(&step).clone());
        step = evaluation.as_mut().unwrap().resume(req, answer, NOW_MS).step;
    }
    if let Step::Done(Verdict::Deny { .. } | Verdict::Allow { .. }) = &step {
        evaluation = None;
    }
    assert!(evaluation.is_none() || matches!(step, Step::Call(_)));
    (step, calls)
}

#[test]
fn bearer_token_is_introspected_then_mutated() {
    let rules = basic_rules();
    let h = headers(&[("authorization", "Bearer tok+1")]);
    let req = request("/ratings/1", &h);
    let (mut evaluation, step) = begin(&rules, &req, NOW_MS);
    let c = call(&step);
    assert_eq!((c.method.as_str(), c.url.as_str()), ("POST", "http://cp/admin/oauth2/introspect"));
    assert_eq!(c.body, b"token=tok%2B1");
    assert!(c.cache_key.as_deref().unwrap().contains("token=tok%2B1"), "the key is the call, token included");
    let resumed = evaluation.as_mut().unwrap().resume(&req, ok(active("read write")), NOW_MS);
    assert_eq!(resumed.cache_until_ms, Some(NOW_MS + 10_000), "the TTL, as the token lives longer");
    let (subject, set) = allowed(&resumed.step);
    assert_eq!(subject, "my-client");
    assert_eq!(set, owned(&[("x-scope", "read write"), ("x-user", "my-client")]));
}

#[test]
fn cache_never_outlives_the_token() {
    let rules = basic_rules();
    let h = headers(&[("authorization", "Bearer t")]);
    let req = request("/ratings/1", &h);
    let mut e = begin(&rules, &req, NOW_MS).0.unwrap();
    let short = json!({"active": true, "sub": "c", "scope": "read", "exp": NOW + 2});
    assert_eq!(e.resume(&req, ok(short), NOW_MS).cache_until_ms, Some((NOW + 2) * 1000));
    let mut e = begin(&rules, &req, NOW_MS).0.unwrap();
    assert_eq!(e.resume(&req, ok(json!({"active": false})), NOW_MS).cache_until_ms, None, "never cache a refusal");
}

#[test]
fn missing_or_foreign_credentials_are_401() {
    let rules = basic_rules();
    let none = headers(&[]);
    assert_eq!(denied(&begin(&rules, &request("/ratings/1", &none), NOW_MS).1), (401, "no_credentials"));
    let basic = headers(&[("authorization", "Basic abc")]);
    assert_eq!(denied(&begin(&rules, &request("/ratings/1", &basic), NOW_MS).1).0, 401);
}

#[test]
fn introspection_answers_are_checked_every_time() {
    let rules = basic_rules();
    let h = headers(&[("authorization", "bearer t")]);
    let req = request("/ratings/1", &h);
    let check = |answer| denied(&run(&rules, &req, vec![answer]).0);
    assert_eq!(check(ok(json!({"active": false}))), (401, "token_inactive"));
    assert_eq!(check(ok(json!({"active": true, "scope": "read", "exp": NOW}))), (401, "token_expired"));
    assert_eq!(check(ok(active("write"))), (403, "insufficient_scope"));
    let mut refresh = active("read");
    refresh["token_use"] = json!("refresh_token");
    assert_eq!(check(ok(refresh)), (403, "not_an_access_token"));
    // Fail closed: an unreachable or broken introspection endpoint never lets a request through.
    assert_eq!(check(Err("connection refused".into())), (503, "upstream_unavailable"));
    assert_eq!(check(status(500)), (503, "upstream_unavailable"));
    assert_eq!(check(Ok(HttpResponse { status: 200, headers: vec![], body: b"<html>".to_vec() })).0, 503);
}

#[test]
fn audience_issuer_and_delegated_scope() {
    let rules = ruleset(json!([rule(
        "r",
        "/x",
        json!([introspect(json!({
        "target_audience": ["api"], "trusted_issuers": ["https://issuer/"]}))]),
        json!({"handler": "allow"}),
        json!([])
    )]));
    let h = headers(&[("authorization", "Bearer t")]);
    let req = request("/x", &h);
    let mut answer = active("read");
    answer["aud"] = json!("api");
    answer["iss"] = json!("https://issuer/");
    assert!(matches!(run(&rules, &req, vec![ok(answer.clone())]).0, Step::Done(Verdict::Allow { .. })));
    answer["aud"] = json!(["other"]);
    assert_eq!(denied(&run(&rules, &req, vec![ok(answer.clone())]).0), (403, "audience_mismatch"));
    answer["aud"] = json!(["api"]);
    answer["iss"] = json!("https://evil/");
    assert_eq!(denied(&run(&rules, &req, vec![ok(answer)]).0), (403, "untrusted_issuer"));

    let delegated = ruleset(json!([rule(
        "r",
        "/x",
        json!([introspect(json!({"scope_strategy": "none"}))]),
        json!({"handler": "allow"}),
        json!([])
    )]));
    let (step, _) = run(&delegated, &req, vec![]);
    assert_eq!(call(&step).body, b"token=t&scope=read");
    assert_eq!(call(&step).cache_key, None, "a server-checked scope makes the answer uncacheable");
}

#[test]
fn anonymous_noop_and_fall_through() {
    let rules = basic_rules();
    let none = headers(&[]);
    let (_, step) = begin(&rules, &request("/public/hello", &none), NOW_MS);
    let (subject, set) = allowed(&step);
    assert_eq!(subject, "anonymous");
    assert!(set.contains(&("x-user".into(), "anonymous".into())));
    // No token: introspection is not responsible, the anonymous authenticator takes over.
    let (_, step) = begin(&rules, &request("/chain", &none), NOW_MS);
    assert_eq!(allowed(&step).0, "guest");
    // A token that fails does not fall back to anonymous (Oathkeeper semantics)...
    let h = headers(&[("authorization", "Bearer bad")]);
    let req = request("/chain", &h);
    assert_eq!(denied(&run(&rules, &req, vec![ok(json!({"active": false}))]).0).0, 401);
}

#[test]
fn on_invalid_continue_falls_back_explicitly() {
    let session = json!({"handler": "cookie_session", "config": {
        "check_session_url": "http://idp/sessions/whoami", "preserve_path": true, "on_invalid": "continue"}});
    let rules = ruleset(json!([rule(
        "r",
        "/x",
        json!([session, {"handler": "anonymous"}]),
        json!({"handler": "allow"}),
        json!([])
    )]));
    let h = headers(&[("cookie", "ory_kratos_session=expired")]);
    let req = request("/x", &h);
    let (step, _) = run(&rules, &req, vec![status(401)]);
    assert_eq!(allowed(&step).0, "anonymous", "the expired cookie falls back because the rule says so");
    // ...but an unreachable session store is not an invalid cookie: still closed.
    assert_eq!(denied(&run(&rules, &req, vec![Err("reset".into())]).0).0, 503);
    let bad = json!([{"id": "r", "match": {"url": "http://h/", "methods": ["GET"]},
        "authenticators": [{"handler": "anonymous", "config": {"on_invalid": "maybe"}}], "authorizer": {"handler": "allow"}}]);
    assert_eq!(RuleSet::compile(&parse_rules(bad).unwrap()).unwrap_err().field, "authenticators[0].config.on_invalid");
}

#[test]
fn cookie_session_asks_the_session_endpoint_like_oathkeeper() {
    let kratos = json!({"handler": "cookie_session", "config": {
        "check_session_url": "http://kratos:4433/sessions/whoami", "preserve_path": true,
        "only": ["ory_kratos_session"], "subject_from": "identity.id", "extra_from": "@this",
        "force_method": "GET", "cache": {"enabled": true, "ttl": "5s"}}});
    let rules = ruleset(json!([rule(
        "r",
        "/x",
        json!([kratos]),
        json!({"handler": "allow"}),
        json!([
        {"handler": "header", "config": {"headers": {"X-Email": "{{ .Extra.identity.traits.email }}"}}}])
    )]));
    let h = headers(&[("cookie", "other=1; ory_kratos_session=abc"), ("authorization", "Bearer x"), ("x-other", "no")]);
    let req = Request { method: "POST", scheme: "http", host: "h", target: "/x?q=1", headers: &h, remote_addr: None };
    let whoami = json!({"id": "sess", "identity": {"id": "user-1", "traits": {"email": "a@example.com"}}});
    let (step, calls) = run(&rules, &req, vec![ok(whoami)]);
    let c = &calls[0];
    assert_eq!((c.method.as_str(), c.url.as_str()), ("GET", "http://kratos:4433/sessions/whoami"));
    assert!(c.headers.contains(&("cookie".into(), "other=1; ory_kratos_session=abc".into())));
    assert!(c.headers.contains(&("authorization".into(), "Bearer x".into())));
    assert!(!c.headers.iter().any(|(n, _)| n == "x-other"));
    assert!(c.cache_key.is_some());
    let (subject, set) = allowed(&step);
    assert_eq!(subject, "user-1");
    assert_eq!(set, owned(&[("x-email", "a@example.com")]));

    // Not responsible without one of the `only` cookies.
    let h = headers(&[("cookie", "other=1")]);
    assert_eq!(denied(&begin(&rules, &request("/x", &h), NOW_MS).1), (401, "no_credentials"));
    // Status mapping.
    let h = headers(&[("cookie", "ory_kratos_session=abc")]);
    let req = request("/x", &h);
    assert_eq!(denied(&run(&rules, &req, vec![status(401)]).0), (401, "session_invalid"));
    assert_eq!(denied(&run(&rules, &req, vec![status(429)]).0).0, 429);
    assert_eq!(denied(&run(&rules, &req, vec![ok(json!({"identity": {}}))]).0), (403, "session_malformed"));
}

#[test]
fn session_check_url_follows_preserve_path_and_query() {
    let check = |config: Value, target: &str| -> String {
        let mut c = json!({"check_session_url": "http://idp:1/whoami?x=1"});
        c.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
        let rules = ruleset(json!([rule(
            "r",
            "/<.*>",
            json!([{"handler": "bearer_token", "config": c}]),
            json!({"handler": "allow"}),
            json!([])
        )]));
        let h = headers(&[("authorization", "Bearer t")]);
        let (_, step) = begin(&rules, &request(target, &h), NOW_MS);
        call(&step).url.clone()
    };
    assert_eq!(check(json!({}), "/api/a?y=2"), "http://idp:1/api/a?x=1", "Oathkeeper replaces the path by default");
    assert_eq!(check(json!({"preserve_path": true}), "/api/a?y=2"), "http://idp:1/whoami?x=1");
    assert_eq!(check(json!({"preserve_path": true, "preserve_query": false}), "/a?y=2"), "http://idp:1/whoami?y=2");
}

#[test]
fn bearer_token_reads_sub_and_forwards_the_token() {
    let bearer = json!({"handler": "bearer_token", "config": {"check_session_url": "http://idp/introspect",
        "preserve_path": true, "token_from": {"query_parameter": "token"}}});
    let rules = ruleset(json!([rule("r", "/x", json!([bearer]), json!({"handler": "allow"}), json!([]))]));
    let req =
        Request { method: "GET", scheme: "http", host: "h", target: "/x?token=abc", headers: &[], remote_addr: None };
    let (step, calls) = run(&rules, &req, vec![ok(json!({"sub": "alice", "extra": {"role": "admin"}}))]);
    assert!(calls[0].headers.contains(&("authorization".into(), "Bearer abc".into())));
    assert_eq!(allowed(&step).0, "alice");
}

#[test]
fn remote_json_authorizer_keto_style() {
    let keto = json!({"handler": "remote_json", "config": {"remote": "http://keto:4466/relation-tuples/check",
        "payload": r#"{"namespace":"files","object":"{{ printIndex .MatchContext.RegexpCaptureGroups 2 }}","relation":"view","subject_id":"{{ print .Subject }}"}"#,
        "headers": {"X-Tenant": "{{ .MatchContext.Header.Get \"X-Tenant\" }}"},
        "forward_response_headers_to_upstream": ["X-Permission"]}});
    let rules = ruleset(json!([rule(
        "r",
        "/files/<[^/]+>",
        json!([{"handler": "anonymous", "config": {"subject": "bob"}}]),
        keto,
        json!([])
    )]));
    let h = headers(&[("x-tenant", "acme")]);
    let req = request("/files/report", &h);
    let granted = Ok(HttpResponse { status: 200, headers: owned(&[("X-Permission", "view")]), body: vec![] });
    let (step, calls) = run(&rules, &req, vec![granted]);
    let payload: Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(payload, json!({"namespace": "files", "object": "report", "relation": "view", "subject_id": "bob"}));
    assert!(calls[0].headers.contains(&("x-tenant".into(), "acme".into())));
    assert_eq!(allowed(&step).1, owned(&[("x-permission", "view")]));
    assert_eq!(denied(&run(&rules, &req, vec![status(403)]).0), (403, "denied_by_authorizer"));
    assert_eq!(denied(&run(&rules, &req, vec![status(404)]).0).0, 500);
    assert_eq!(denied(&run(&rules, &req, vec![Err("timeout".into())]).0).0, 503);
    assert_eq!(rules.guarded_headers(), ["x-permission"], "clients cannot send what the authorizer vouches for");
}

#[test]
fn cookie_mutator_merges_and_hydrator_enriches() {
    let hydrator = json!({"handler": "hydrator", "config": {"api": {"url": "http://hydra.tor/enrich",
        "auth": {"basic": {"username": "u", "password": "p"}}}}});
    let cookie = json!({"handler": "cookie", "config": {"cookies": {"user": "{{ print .Subject }}", "plan": "{{ .Extra.plan }}"}}});
    let rules = ruleset(json!([rule(
        "r",
        "/x",
        json!([{"handler": "anonymous", "config": {"subject": "carol"}}]),
        json!({"handler": "allow"}),
        json!([hydrator, cookie])
    )]));
    let h = headers(&[("cookie", "user=spoofed; theme=dark")]);
    let req = Request { method: "GET", scheme: "http", host: "h", target: "/x?a=1", headers: &h, remote_addr: None };
    let enriched = ok(json!({"subject": "carol", "extra": {"plan": "gold"}}));
    let (step, calls) = run(&rules, &req, vec![enriched]);
    assert_eq!(calls[0].url, "http://hydra.tor/enrich?a=1");
    assert!(calls[0].headers.contains(&("authorization".into(), "Basic dTpw".into())));
    let sent: Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(sent["subject"], "carol");
    assert_eq!(allowed(&step).1, owned(&[("cookie", "plan=gold; user=carol; theme=dark")]));
    let changed = ok(json!({"subject": "mallory", "extra": {}}));
    assert_eq!(denied(&run(&rules, &req, vec![changed]).0), (500, "hydrator_error"));
}

#[test]
fn error_handlers_redirect_browsers_and_challenge_others() {
    let errors = json!([
        {"handler": "redirect", "config": {"to": "https://login.example/", "return_to_query_param": "return_to",
            "when": [{"error": ["unauthorized"], "request": {"header": {"accept": ["text/html"]}}}]}},
        {"handler": "www_authenticate", "config": {"realm": "api", "when": [{"error": ["unauthorized"]}]}}
    ]);
    let mut r = rule("r", "/x", json!([{"handler": "unauthorized"}]), json!({"handler": "allow"}), json!([]));
    r["errors"] = errors;
    let rules = ruleset(json!([r]));
    let browser = headers(&[
        ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        // Spoofed by the client: must not steer return_to anywhere else.
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "javascript"),
    ]);
    let (_, step) = begin(&rules, &request("/x?y=1", &browser), NOW_MS);
    let Step::Done(Verdict::Deny { response, .. }) = &step else { panic!() };
    assert_eq!(response.status, 302);
    assert_eq!(
        response.headers[0],
        ("location".into(), "https://login.example/?return_to=http%3A%2F%2Fh%2Fx%3Fy%3D1".into())
    );
    let api = headers(&[("accept", "application/json"), ("x-request-id", "req-7")]);
    let (_, step) = begin(&rules, &request("/x", &api), NOW_MS);
    let Step::Done(Verdict::Deny { response, .. }) = &step else { panic!() };
    assert_eq!(response.status, 401);
    assert!(response.headers.contains(&("www-authenticate".into(), "Basic realm=\"api\"".into())));
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        (body["error"]["reason"].as_str(), body["error"]["request_id"].as_str()),
        (Some("unauthorized_handler"), Some("req-7"))
    );
}

#[test]
fn unmatched_unreadable_and_denied_requests() {
    let rules = basic_rules();
    let none = headers(&[]);
    assert_eq!(denied(&begin(&rules, &request("/nothing", &none), NOW_MS).1), (404, "no_rule"));
    assert_eq!(denied(&begin(&rules, &request("/ratings/%zz", &none), NOW_MS).1), (400, "unreadable_path"));
    assert_eq!(denied(&begin(&rules, &request("/closed", &none), NOW_MS).1), (403, "denied_by_rule"));
    // A path an upstream may read differently is refused, never judged under one reading:
    // `/ratings/..%2Fpublic/x` is `/ratings/...` to many routers, not the anonymous `/public/x`.
    for ambiguous in
        ["/ratings/..%2Fpublic/x", "/public/..%2Fratings/1", "/public/..;/ratings/1", "/public/../ratings/1"]
    {
        assert_eq!(
            denied(&begin(&rules, &request(ambiguous, &none), NOW_MS).1),
            (400, "ambiguous_path"),
            "{ambiguous}"
        );
    }
    // Hosts match case-insensitively.
    let upper =
        Request { method: "GET", scheme: "http", host: "H", target: "/public/a", headers: &none, remote_addr: None };
    assert_eq!(allowed(&begin(&rules, &upper, NOW_MS).1).0, "anonymous");
}

#[test]
fn header_injection_through_claims_is_refused() {
    let rules = basic_rules();
    let h = headers(&[("authorization", "Bearer t")]);
    let req = request("/ratings/1", &h);
    let mut evil = active("read");
    evil["sub"] = json!("x\r\nX-Admin: yes");
    assert_eq!(denied(&run(&rules, &req, vec![ok(evil)]).0), (500, "mutator_invalid_value"));
}

#[test]
fn a_template_that_renders_too_much_is_refused() {
    // Found by the `template` fuzz target: each `quote` doubles the escapes of the one before,
    // so a short rule asked for gigabytes per request. The request is refused, not forwarded
    // with a cut or missing header.
    let quoted = format!("{{{{ .Subject{} }}}}", " | quote".repeat(24));
    let mutator = json!({"handler": "header", "config": {"headers": {"X-User": quoted}}});
    let rules = ruleset(json!([rule(
        "ratings",
        "/ratings/<.*>",
        json!([introspect(json!({}))]),
        json!({"handler": "allow"}),
        json!([mutator])
    )]));
    let h = headers(&[("authorization", "Bearer t")]);
    let mut answer = active("read");
    answer["sub"] = json!("a\"b");
    assert_eq!(denied(&run(&rules, &request("/ratings/1", &h), vec![ok(answer)]).0), (500, "template_too_large"));
}

#[test]
fn tokens_from_query_and_cookie_and_json_paths() {
    let q = Request {
        method: "GET",
        scheme: "http",
        host: "h",
        target: "/x?a=1&access_token=a%2Bb+c",
        headers: &[],
        remote_addr: None,
    };
    assert_eq!(q.query_parameter("access_token").as_deref(), Some("a+b c"));
    let h = headers(&[("cookie", "a=1; session=\"abc\"")]);
    let c = request("/x", &h);
    assert_eq!(c.cookie("session"), Some("abc"));
    assert_eq!(c.cookie("missing"), None);
    let doc = json!({"identity": {"ids": ["x", "y"]}});
    assert_eq!(json_path(&doc, "identity.ids.1"), Some(&json!("y")));
    assert_eq!(json_path(&doc, "@this"), Some(&doc));
    assert_eq!(json_path(&doc, "identity.nope"), None);
}

pub(super) mod jwt {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::signature::{Signer, Verifier};
    use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
    use p256::pkcs8::DecodePublicKey;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32].into()).unwrap()
    }

    fn jwks() -> Value {
        let point = key().verifying_key().to_encoded_point(false);
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()), "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())}]})
    }

    fn token(claims: Value, kid: Option<&str>) -> String {
        let header = match kid {
            Some(k) => json!({"alg": "ES256", "typ": "JWT", "kid": k}),
            None => json!({"alg": "ES256", "typ": "JWT"}),
        };
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature: Signature = key().sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// What the control plane's verifier does: SPKI DER key, DER signature.
    pub(in crate::pipeline) fn verify(check: &SignatureCheck) -> bool {
        verified_by(check).is_some()
    }

    /// The SPKI digest of the check's key that verifies the signature, as the filter reports it.
    pub(in crate::pipeline) fn verified_by(check: &SignatureCheck) -> Option<[u8; 32]> {
        check.keys.iter().find_map(|k| {
            let (Ok(key), Ok(sig)) =
                (VerifyingKey::from_public_key_der(&k.spki_der), Signature::from_der(&check.signature))
            else {
                return None;
            };
            key.verify(&check.message, &sig).is_ok().then_some(k.spki_sha256)
        })
    }

    fn rules(config: Value) -> RuleSet {
        let mut c = json!({"jwks_urls": ["https://issuer.example/.well-known/jwks.json"]});
        c.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
        let specs = parse_rules(json!([rule(
            "r",
            "/api/<.*>",
            json!([{"handler": "jwt", "config": c}, {"handler": "anonymous"}]),
            json!({"handler": "allow"}),
            json!([user_header()])
        )]))
        .unwrap();
        let mut env = crate::rule::Environment::default();
        env.jwks.insert("https://issuer.example/.well-known/jwks.json".into(), jwks());
        RuleSet::compile_in(&specs, &env).unwrap()
    }

    fn judge(rules: &RuleSet, token: &str) -> Step {
        let bearer = format!("Bearer {token}");
        let h = headers(&[("authorization", bearer.as_str())]);
        let req = request("/api/x", &h);
        let (mut evaluation, step) = begin(rules, &req, NOW_MS);
        match step {
            Step::Verify(check) => {
                assert_eq!(check.cache_until_ms, check.cache_until_ms.filter(|t| *t > NOW_MS));
                evaluation.as_mut().unwrap().resume_verified(&req, verify(&check), NOW_MS)
            }
            other => other,
        }
    }

    #[test]
    fn a_signed_token_authenticates_with_its_claims() {
        let rules = rules(json!({"trusted_issuers": ["https://issuer.example/"], "target_audience": ["api"],
            "scope_strategy": "exact", "required_scope": ["read"]}));
        let claims = json!({"sub": "user-9", "iss": "https://issuer.example/", "aud": ["api"], "scope": "read write",
            "exp": NOW + 300, "iat": NOW});
        let step = judge(&rules, &token(claims, Some("k1")));
        assert_eq!(allowed(&step), ("user-9", &owned(&[("x-scope", "read write"), ("x-user", "user-9")])[..]));
        // No kid: every EC key is tried.
        let step = judge(
            &rules,
            &token(
                json!({"sub": "u", "iss": "https://issuer.example/", "aud": "api", "scp": ["read"], "exp": NOW + 60}),
                None,
            ),
        );
        assert_eq!(allowed(&step).0, "u");
    }

    #[test]
    fn tampering_and_bad_claims_are_refused() {
        let rules = rules(
            json!({"trusted_issuers": ["https://issuer.example/"], "scope_strategy": "exact", "required_scope": ["read"]}),
        );
        let good = json!({"sub": "u", "iss": "https://issuer.example/", "scope": "read", "exp": NOW + 60});
        let t = token(good.clone(), Some("k1"));
        let (head, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{sig}",
            URL_SAFE_NO_PAD
                .encode(json!({"sub": "admin", "iss": "https://issuer.example/", "scope": "read"}).to_string())
        );
        assert_eq!(denied(&judge(&rules, &forged)), (401, "bad_signature"));
        let mut expired = good.clone();
        expired["exp"] = json!(NOW - 120);
        assert_eq!(denied(&judge(&rules, &token(expired, Some("k1")))), (401, "token_expired"));
        let mut foreign = good.clone();
        foreign["iss"] = json!("https://evil.example/");
        assert_eq!(denied(&judge(&rules, &token(foreign, Some("k1")))), (401, "untrusted_issuer"));
        let mut narrow = good.clone();
        narrow["scope"] = json!("write");
        assert_eq!(denied(&judge(&rules, &token(narrow, Some("k1")))), (403, "insufficient_scope"));
        assert_eq!(denied(&judge(&rules, &token(good, Some("other")))), (401, "unknown_key"));
        let none =
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#));
        assert_eq!(denied(&judge(&rules, &none)), (401, "algorithm_not_allowed"));
    }

    #[test]
    fn opaque_tokens_pass_on_and_missing_keys_fail_closed() {
        let rules = rules(json!({}));
        // Not a JWT: the jwt authenticator is not responsible; anonymous is not either
        // (an Authorization header is present), so the request is unauthorized.
        assert_eq!(denied(&judge(&rules, "opaque-token")), (401, "no_credentials"));
        let specs = parse_rules(json!([rule(
            "r",
            "/api/<.*>",
            json!([{"handler": "jwt", "config": {"jwks_urls": ["https://not-fetched/jwks"]}}]),
            json!({"handler": "allow"}),
            json!([])
        )]))
        .unwrap();
        let unfetched = RuleSet::compile(&specs).unwrap();
        assert_eq!(denied(&judge(&unfetched, &token(json!({"sub": "u"}), Some("k1")))), (503, "jwks_unavailable"));
        let bad = parse_rules(json!([rule(
            "r",
            "/x",
            json!([{"handler": "jwt", "config": {"jwks_urls": ["https://i/j"], "required_scope": ["a"]}}]),
            json!({"handler": "allow"}),
            json!([])
        )]))
        .unwrap();
        assert_eq!(RuleSet::compile(&bad).unwrap_err().field, "authenticators[0].config.scope_strategy");
    }
}

#[test]
fn cors_preflights_are_answered_before_authentication() {
    let mut own =
        rule("own", "/own/<.*>", json!([{"handler": "unauthorized"}]), json!({"handler": "allow"}), json!([]));
    own["cors"] = json!({"allowed_origins": ["https://own.example"]});
    let protected =
        rule("api", "/api/<.*>", json!([{"handler": "unauthorized"}]), json!({"handler": "allow"}), json!([]));
    let specs = parse_rules(json!([own, protected])).unwrap();
    let global = crate::cors::CorsPolicy::compile(
        &serde_json::from_value(json!({"allowed_origins": ["https://app.example"]})).unwrap(),
    )
    .unwrap();
    let rules = RuleSet::compile_in(&specs, &crate::rule::Environment { cors: global, ..Default::default() }).unwrap();
    let preflight = |path: &str, origin: &str| {
        let h = headers(&[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization"),
        ]);
        let req =
            Request { method: "OPTIONS", scheme: "https", host: "gw", target: path, headers: &h, remote_addr: None };
        match begin(&rules, &req, NOW_MS).1 {
            Step::Done(Verdict::Preflight(r)) => r,
            other => panic!("{other:?}"),
        }
    };
    let r = preflight("/api/x", "https://app.example");
    assert_eq!(r.status, 204, "no 401 for a preflight to a protected rule");
    assert!(r.headers.contains(&("access-control-allow-origin".into(), "https://app.example".into())));
    assert_eq!(preflight("/api/x", "https://evil.example").status, 403);
    assert_eq!(preflight("/own/x", "https://own.example").status, 204, "the rule's own policy");
    assert_eq!(preflight("/own/x", "https://app.example").status, 403);
    assert_eq!(preflight("/no-rule", "https://app.example").status, 204, "global policy even without a rule");
    // The real request is judged as usual, and its denial is readable by the browser.
    let h = headers(&[("origin", "https://app.example")]);
    let (_, step) = begin(
        &rules,
        &Request { method: "POST", scheme: "https", host: "gw", target: "/api/x", headers: &h, remote_addr: None },
        NOW_MS,
    );
    let Step::Done(Verdict::Deny { response, .. }) = step else { panic!() };
    assert_eq!(response.status, 401);
    assert!(response.headers.contains(&("access-control-allow-origin".into(), "https://app.example".into())));
}

#[test]
fn revoked_tokens_are_refused_before_any_call_or_cache() {
    use sha2::Digest;
    let specs = parse_rules(json!([rule(
        "ratings",
        "/ratings/<.*>",
        json!([introspect(json!({}))]),
        json!({"handler": "allow"}),
        json!([])
    )]))
    .unwrap();
    let digest: [u8; 32] = sha2::Sha256::digest(b"revoked-token").into();
    let env = crate::rule::Environment { revoked: std::sync::Arc::new([digest].into()), ..Default::default() };
    let rules = RuleSet::compile_in(&specs, &env).unwrap();
    let h = headers(&[("authorization", "Bearer revoked-token")]);
    assert_eq!(denied(&begin(&rules, &request("/ratings/1", &h), NOW_MS).1), (401, "token_revoked"));
    let other = headers(&[("authorization", "Bearer live-token")]);
    assert!(matches!(begin(&rules, &request("/ratings/1", &other), NOW_MS).1, Step::Call(_)));
}

#[test]
fn a_signed_out_session_cookie_is_refused_before_its_cached_whoami_answer() {
    use sha2::Digest;
    let session = json!({"handler": "cookie_session", "config": {
        "check_session_url": "http://portcullis/sessions/whoami", "preserve_path": true, "only": ["ory_kratos_session"]}});
    let specs =
        parse_rules(json!([rule("app", "/app/<.*>", json!([session]), json!({"handler": "allow"}), json!([]))]))
            .unwrap();
    let digest: [u8; 32] = sha2::Sha256::digest(b"pc_st_gone").into();
    let env = crate::rule::Environment { revoked: std::sync::Arc::new([digest].into()), ..Default::default() };
    let rules = RuleSet::compile_in(&specs, &env).unwrap();
    let h = headers(&[("cookie", "theme=dark; ory_kratos_session=pc_st_gone")]);
    assert_eq!(denied(&begin(&rules, &request("/app/x", &h), NOW_MS).1), (401, "token_revoked"));
    // Another cookie with a revoked-looking value does not matter: only the session cookie counts.
    let h = headers(&[("cookie", "theme=pc_st_gone; ory_kratos_session=pc_st_live")]);
    assert!(matches!(begin(&rules, &request("/app/x", &h), NOW_MS).1, Step::Call(_)));
}

#[test]
fn client_credentials_are_exchanged_at_the_token_endpoint_and_cached() {
    let cc = json!({"handler": "oauth2_client_credentials", "config": {"token_url": "http://idp/oauth2/token",
        "required_scope": ["read"], "cache": {"enabled": true, "ttl": "5m"}}});
    let rules = ruleset(json!([rule(
        "r",
        "/x",
        json!([cc, {"handler": "anonymous"}]),
        json!({"handler": "allow"}),
        json!([user_header()])
    )]));
    // base64("svc 1:p@ss") with the id form-encoded as a client would: "svc+1:p%40ss".
    let h = headers(&[("authorization", "Basic c3ZjKzE6cCU0MHNz")]);
    let req = request("/x", &h);
    let granted = ok(json!({"access_token": "t", "token_type": "bearer", "expires_in": 60, "scope": "read"}));
    let (mut evaluation, step) = begin(&rules, &req, NOW_MS);
    let c = call(&step).clone();
    assert_eq!(c.body, b"grant_type=client_credentials&scope=read");
    let sent = c.headers.iter().find(|(n, _)| n == "authorization").unwrap().1.strip_prefix("Basic ").unwrap();
    use base64::Engine as _;
    let sent = base64::engine::general_purpose::STANDARD.decode(sent).unwrap();
    assert_eq!(sent, b"svc%201:p%40ss", "RFC 6749 §2.3.1: each part form-encoded");
    let resumed = evaluation.as_mut().unwrap().resume(&req, granted, NOW_MS);
    assert_eq!(resumed.cache_until_ms, Some(NOW_MS + 60_000), "the token's lifetime bounds the cache");
    assert_eq!(allowed(&resumed.step).0, "svc 1");
    assert_eq!(denied(&run(&rules, &req, vec![status(401)]).0), (401, "client_invalid"));
    assert_eq!(denied(&run(&rules, &req, vec![status(503)]).0).0, 503);
    // Without Basic credentials the authenticator is not responsible.
    let none = headers(&[]);
    assert_eq!(allowed(&begin(&rules, &request("/x", &none), NOW_MS).1).0, "anonymous");
}

#[test]
fn id_token_mutator_asks_for_a_signed_token_and_forwards_it() {
    let id_token = json!({"handler": "id_token", "config": {"issuer_url": "https://gw.example/", "ttl": "10m",
        "claims": "{\"email\": \"{{ .Extra.email }}\", \"sub\": \"forged\"}"}});
    let specs = parse_rules(json!([rule(
        "r",
        "/x",
        json!([{"handler": "anonymous", "config": {"subject": "u1"}}]),
        json!({"handler": "allow"}),
        json!([id_token])
    )]))
    .unwrap();
    let env = crate::rule::Environment { signing_kid: Some("k9".into()), ..Default::default() };
    let rules = RuleSet::compile_in(&specs, &env).unwrap();
    let none = headers(&[]);
    let req = request("/x", &none);
    let (mut evaluation, step) = begin(&rules, &req, NOW_MS);
    let Step::Mint(m) = step else { panic!("{step:?}") };
    assert_eq!(m.kid, "k9");
    assert_eq!(m.cache_until_ms, (NOW + 600 - 60) * 1000);
    use base64::Engine as _;
    let signing_input = m.signing_input().unwrap();
    let (header, claims) = signing_input.split_once('.').unwrap();
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "ES256", "typ": "JWT", "kid": "k9"}));
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["sub"], "u1", "sub cannot be overridden by the template");
    assert_eq!(claims["exp"], NOW + 600);
    assert_eq!(claims["email"], "", "null-safe: a missing value renders empty");
    let step = evaluation.as_mut().unwrap().resume_minted(&req, Ok("h.p.s".into()), NOW_MS);
    assert_eq!(allowed(&step).1, owned(&[("authorization", "Bearer h.p.s")]));
    // No key yet: closed, with a reason.
    let keyless = RuleSet::compile(&specs).unwrap();
    assert_eq!(denied(&begin(&keyless, &req, NOW_MS).1), (503, "signing_key_unavailable"));
}

#[test]
fn pre_authorization_fetches_a_client_token_then_introspects_with_it() {
    let rules = ruleset(json!([rule(
        "r",
        "/x",
        json!([introspect(json!({"pre_authorization": {"enabled": true,
        "client_id": "gw", "client_secret": "s3cret", "token_url": "http://idp/oauth2/token", "scope": ["introspect"]}}))]),
        json!({"handler": "allow"}),
        json!([user_header()])
    )]));
    let h = headers(&[("authorization", "Bearer user-token")]);
    let req = request("/x", &h);
    let (mut evaluation, step) = begin(&rules, &req, NOW_MS);
    let first = call(&step).clone();
    assert_eq!(first.url, "http://idp/oauth2/token");
    assert_eq!(first.body, b"grant_type=client_credentials&scope=introspect");
    assert!(first.cache_key.is_some(), "the gateway's own token is reused");
    let e = evaluation.as_mut().unwrap();
    let resumed = e.resume(&req, ok(json!({"access_token": "gw-at", "expires_in": 3600})), NOW_MS);
    assert_eq!(resumed.cache_until_ms, Some(NOW_MS + (3600 - 30) * 1000));
    let second = call(&resumed.step).clone();
    assert_eq!(second.url, "http://cp/admin/oauth2/introspect");
    assert!(second.headers.contains(&("authorization".into(), "Bearer gw-at".into())));
    assert_eq!(second.body, b"token=user-token");
    let done = e.resume(&req, ok(active("read")), NOW_MS);
    assert_eq!(allowed(&done.step).0, "my-client");
    // A failing token endpoint fails closed.
    assert_eq!(denied(&run(&rules, &req, vec![status(500)]).0), (503, "upstream_unavailable"));
    let bad = parse_rules(json!([rule(
        "r",
        "/x",
        json!([introspect(json!({"pre_authorization": {"enabled": true, "client_id": "gw"}}))]),
        json!({"handler": "allow"}),
        json!([])
    )]))
    .unwrap();
    assert_eq!(RuleSet::compile(&bad).unwrap_err().field, "authenticators[0].config.pre_authorization.token_url");
}

#[test]
fn remote_with_a_body_template_and_legacy_keto() {
    let remote = json!({"handler": "remote", "config": {"remote": "http://authz/check", "body": "{{ print .Subject }} wants {{ printIndex .MatchContext.RegexpCaptureGroups 2 }}"}});
    let rules = ruleset(json!([rule(
        "r",
        "/doc/<[a-z]+>",
        json!([{"handler": "anonymous", "config": {"subject": "ann"}}]),
        remote,
        json!([])
    )]));
    let none = headers(&[]);
    let req = request("/doc/report", &none);
    let (step, calls) = run(&rules, &req, vec![status(200)]);
    assert_eq!(calls[0].body, b"ann wants report");
    assert!(matches!(step, Step::Done(Verdict::Allow { .. })));

    let keto = json!({"handler": "keto_engine_acp_ory", "config": {"base_url": "http://keto:4456/",
        "required_action": "read", "required_resource": "docs:{{ printIndex .MatchContext.RegexpCaptureGroups 2 }}"}});
    let rules = ruleset(json!([rule(
        "k",
        "/doc/<[a-z]+>",
        json!([{"handler": "anonymous", "config": {"subject": "ann"}}]),
        keto,
        json!([])
    )]));
    // The address Envoy vouches for, not the client-written X-Forwarded-For.
    let h = headers(&[("x-forwarded-for", "198.51.100.9, 10.0.0.1")]);
    let req = Request { remote_addr: Some("203.0.113.7"), ..request("/doc/report", &h) };
    let (step, calls) = run(&rules, &req, vec![ok(json!({"allowed": true}))]);
    assert_eq!(calls[0].url, "http://keto:4456/engines/acp/ory/regex/allowed");
    let sent: Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"action": "read", "resource": "docs:report", "subject": "ann", "context": {"remoteIpAddress": "203.0.113.7"}})
    );
    assert!(matches!(step, Step::Done(Verdict::Allow { .. })));
    assert_eq!(denied(&run(&rules, &req, vec![ok(json!({"allowed": false}))]).0), (403, "denied_by_authorizer"));
    assert_eq!(denied(&run(&rules, &req, vec![status(403)]).0).0, 403);
}

#[test]
fn a_literal_host_rule_cannot_be_dodged_with_a_trailing_dot_or_default_port() {
    let admin = json!({"id": "admin", "match": {"url": "https://api.example.com/admin", "methods": ["GET"]},
        "authenticators": [{"handler": "unauthorized"}], "authorizer": {"handler": "allow"}});
    let open = json!({"id": "open", "match": {"url": "<.*>", "methods": ["GET"]},
        "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"}});
    let rules = ruleset(json!([admin, open]));
    for host in
        ["api.example.com", "API.EXAMPLE.COM", "api.example.com.", "api.example.com:443", "api.example.com.:443"]
    {
        let req = Request { method: "GET", scheme: "https", host, target: "/admin", headers: &[], remote_addr: None };
        assert_eq!(denied(&begin(&rules, &req, NOW_MS).1).0, 401, "{host}");
    }
}

#[test]
fn effects_do_not_print_the_credentials_they_carry() {
    let rules = basic_rules();
    let h = headers(&[("authorization", "Bearer secret-token-123")]);
    let (_, step) = begin(&rules, &request("/ratings/1", &h), NOW_MS);
    let printed = format!("{step:?}");
    assert!(
        printed.contains("http://cp/admin/oauth2/introspect") && !printed.contains("secret-token-123"),
        "{printed}"
    );
}
