//! The filter attacked through the mock host, as a client would attack Envoy: tokens replayed
//! across rules on one worker, answers cached for one user offered to another, spoofed identity
//! headers and header injection. Each test names the bypass it guards against.

use std::cell::RefCell;
use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use portcullis_shared::snapshot::{CompiledSnapshot, Snapshot};
use serde_json::{Value, json};

use crate::cache::WorkerCaches;
use crate::config::test_config;
use crate::host::Host as _;
use crate::mock::MockHost;
use crate::stream::{Action, Stream};

const NOW_MS: u64 = 1_700_000_000_000;
const NOW: u64 = NOW_MS / 1000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).unwrap()
}

fn jwks(key: &SigningKey, kid: &str) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()), "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())}]})
}

fn es256(key: &SigningKey, header: Value, claims: Value) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn x_user() -> Value {
    json!({"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}})
}

fn compile(rules: Value, jwks: &[(&str, Value)]) -> Rc<CompiledSnapshot> {
    let snapshot = Snapshot {
        version: "v1".into(),
        rules: serde_json::from_value(rules).unwrap(),
        jwks: jwks.iter().map(|(url, set)| ((*url).to_owned(), set.clone())).collect(),
        ..Snapshot::default()
    };
    Rc::new(snapshot.compile().unwrap())
}

/// Streams of one worker: they share its caches (and the mock's shared data).
struct Worker {
    snapshot: Rc<CompiledSnapshot>,
    caches: Rc<RefCell<WorkerCaches>>,
}

impl Worker {
    fn new(snapshot: Rc<CompiledSnapshot>) -> Self {
        Self { snapshot, caches: Rc::default() }
    }

    fn stream(&self) -> Stream {
        Stream::new(Rc::new(test_config()), Some(Rc::clone(&self.snapshot)), Rc::clone(&self.caches))
    }

    /// Sends a request; returns the stream (to answer its call-out) and what it did.
    fn send(&self, host: &MockHost, path: &str, headers: &[(&str, &str)]) -> (Stream, Action) {
        let mut all = vec![(":method", "GET"), (":scheme", "http"), (":authority", "gw"), (":path", path)];
        all.extend_from_slice(headers);
        host.set_request(&all);
        host.set_now(NOW_MS);
        let mut stream = self.stream();
        let action = stream.on_request_headers(host);
        (stream, action)
    }
}

/// The local reply's status and `error.reason`.
fn refusal(host: &MockHost) -> (u16, String) {
    let (status, _, body) = host.sent().expect("a local reply");
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, body["error"]["reason"].as_str().unwrap_or_default().to_owned())
}

/// Answers the stream's outstanding call-out.
fn answer(host: &MockHost, stream: &mut Stream, status: u16, body: &Value) -> Action {
    let call = host.calls().pop().expect("a call-out");
    host.answer(Some(status), &[], &body.to_string());
    stream.on_call_response(host, call.token, host.call_response(1, 0))
}

// --- bypass 1: the verified-signature cache ------------------------------------------------

const PARTNER_JWKS: &str = "https://partner.example/jwks.json";
const OWN_JWKS: &str = "https://login.example/jwks.json";
const OWN_ISSUER: &str = "https://login.example/";

/// `/partner/` trusts a partner IdP's key for any issuer; `/admin/` trusts only our own key and
/// issuer.
fn two_issuers() -> Rc<CompiledSnapshot> {
    compile(
        json!([
            {"id": "partner", "match": {"url": "http://gw/partner/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "jwt", "config": {"jwks_urls": [PARTNER_JWKS]}}],
             "authorizer": {"handler": "allow"}, "mutators": [x_user()]},
            {"id": "admin", "match": {"url": "http://gw/admin/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "jwt", "config": {"jwks_urls": [OWN_JWKS], "trusted_issuers": [OWN_ISSUER]}}],
             "authorizer": {"handler": "allow"}, "mutators": [x_user()]}
        ]),
        &[(PARTNER_JWKS, jwks(&key(1), "partner-1")), (OWN_JWKS, jwks(&key(2), "own-1"))],
    )
}

#[test]
fn a_signature_verified_for_one_rule_is_not_accepted_by_a_rule_that_does_not_trust_the_key() {
    let worker = Worker::new(two_issuers());
    let host = MockHost::default();
    // The partner signs a token claiming our issuer, without a kid (so every key of the
    // admin rule is a candidate), and spends it on the partner route first.
    let forged = es256(
        &key(1),
        json!({"alg": "ES256", "typ": "JWT"}),
        json!({"sub": "root", "iss": OWN_ISSUER, "exp": NOW + 300}),
    );
    let bearer = format!("Bearer {forged}");
    let (_, action) = worker.send(&host, "/partner/x", &[("authorization", &bearer)]);
    assert_eq!(action, Action::Continue, "the partner rule trusts the partner's key");
    assert_eq!(host.verifications(), 1);

    // Same worker, same token, the admin rule.
    let (_, action) = worker.send(&host, "/admin/x", &[("authorization", &bearer)]);
    assert_eq!(action, Action::Pause, "the admin rule must not accept a token its keys did not sign");
    assert_eq!(refusal(&host), (401, "bad_signature".to_owned()));

    // Our own token still verifies once and is then served from the cache on both visits.
    let own = es256(
        &key(2),
        json!({"alg": "ES256", "typ": "JWT", "kid": "own-1"}),
        json!({"sub": "alice", "iss": OWN_ISSUER, "exp": NOW + 300}),
    );
    let bearer = format!("Bearer {own}");
    let before = host.verifications();
    for _ in 0..2 {
        let (_, action) = worker.send(&host, "/admin/x", &[("authorization", &bearer)]);
        assert_eq!(action, Action::Continue);
        assert_eq!(host.request_header("x-user").as_deref(), Some("alice"));
    }
    assert_eq!(host.verifications(), before + 1, "a cache hit bound to a trusted key needs no verification");
}

#[test]
fn a_kid_naming_another_rules_key_is_refused_even_after_that_rule_verified_the_token() {
    let worker = Worker::new(two_issuers());
    let host = MockHost::default();
    // Signed by the partner, but naming our key id.
    let token = es256(
        &key(1),
        json!({"alg": "ES256", "kid": "own-1"}),
        json!({"sub": "root", "iss": OWN_ISSUER, "exp": NOW + 300}),
    );
    let bearer = format!("Bearer {token}");
    let (_, action) = worker.send(&host, "/partner/x", &[("authorization", &bearer)]);
    assert_eq!(action, Action::Pause);
    assert_eq!(refusal(&host), (401, "unknown_key".to_owned()), "the partner rule has no key own-1");
    let (_, action) = worker.send(&host, "/admin/x", &[("authorization", &bearer)]);
    assert_eq!(action, Action::Pause);
    assert_eq!(refusal(&host), (401, "bad_signature".to_owned()));
}

// --- bypass 4: session answers keyed on part of the credential ----------------------------

fn session_rules(handler: &str, config: Value) -> Rc<CompiledSnapshot> {
    let mut c = json!({"check_session_url": "http://idp.example:443/sessions/whoami", "preserve_path": true,
        "subject_from": "identity.id", "cache": {"enabled": true, "ttl": "60s"}});
    c.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
    compile(
        json!([{"id": "app", "match": {"url": "http://gw/app/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": handler, "config": c}],
            "authorizer": {"handler": "allow"}, "mutators": [x_user()]}]),
        &[],
    )
}

fn whoami(id: &str) -> Value {
    json!({"identity": {"id": id}})
}

/// User A's whoami answer is cached; user B shares A's first `Cookie` header but differs in
/// something else the session endpoint reads. B must be asked about, never given A's answer.
#[test]
fn a_cached_session_is_not_served_to_a_request_that_differs_in_another_forwarded_credential() {
    type Headers = [(&'static str, &'static str); 2];
    let cases: [(&str, Value, Headers, Headers); 3] = [
        (
            "a second Cookie header",
            json!({}),
            [("cookie", "theme=dark"), ("cookie", "ory_kratos_session=alice")],
            [("cookie", "theme=dark"), ("cookie", "ory_kratos_session=mallory")],
        ),
        (
            "the Authorization header (a Kratos session token)",
            json!({}),
            [("cookie", "theme=dark"), ("authorization", "Bearer alice-session-token")],
            [("cookie", "theme=dark"), ("authorization", "Bearer mallory-session-token")],
        ),
        (
            "a configured forwarded header",
            json!({"forward_http_headers": ["Cookie", "X-Session-Token"]}),
            [("cookie", "theme=dark"), ("x-session-token", "alice-session-token")],
            [("cookie", "theme=dark"), ("x-session-token", "mallory-session-token")],
        ),
    ];
    for (what, config, alice, mallory) in cases {
        let worker = Worker::new(session_rules("cookie_session", config));
        let host = MockHost::default();
        let (mut stream, action) = worker.send(&host, "/app/x", &alice);
        assert_eq!(action, Action::Pause, "{what}");
        assert_eq!(answer(&host, &mut stream, 200, &whoami("alice")), Action::Continue, "{what}");
        assert_eq!(host.request_header("x-user").as_deref(), Some("alice"), "{what}");

        let (mut stream, action) = worker.send(&host, "/app/x", &mallory);
        assert_eq!(action, Action::Pause, "{what}: mallory's session must be checked, not taken from alice's");
        assert_eq!(host.calls().len(), 2, "{what}");
        assert_eq!(answer(&host, &mut stream, 401, &json!({})), Action::Pause, "{what}");
        assert_eq!(refusal(&host).0, 401, "{what}");

        // Alice again: still cached.
        let (_, action) = worker.send(&host, "/app/x", &alice);
        assert_eq!((action, host.calls().len()), (Action::Continue, 2), "{what}: the cache still works");
    }
}

#[test]
fn a_cached_bearer_answer_is_not_served_for_another_cookie() {
    let worker = Worker::new(session_rules("bearer_token", json!({"subject_from": "sub"})));
    let host = MockHost::default();
    let alice = [("authorization", "Bearer shared"), ("cookie", "sid=alice")];
    let (mut stream, _) = worker.send(&host, "/app/x", &alice);
    assert_eq!(answer(&host, &mut stream, 200, &json!({"sub": "alice"})), Action::Continue);
    let (_, action) = worker.send(&host, "/app/x", &[("authorization", "Bearer shared"), ("cookie", "sid=mallory")]);
    assert_eq!(action, Action::Pause, "the cookie is forwarded, so it is part of the question");
    assert_eq!(host.calls().len(), 2);
}

#[test]
fn a_cached_session_answer_is_not_used_after_the_session_itself_expires() {
    let worker = Worker::new(session_rules("cookie_session", json!({})));
    let host = MockHost::default();
    let cookie = [("cookie", "ory_kratos_session=s1")];
    let (mut stream, _) = worker.send(&host, "/app/x", &cookie);
    // The session ends in 10 s; the rule would cache the answer for 60 s.
    let ends = "2023-11-14T22:13:30Z";
    assert_eq!(portcullis_shared::timestamp::unix_ms(ends), Some(NOW_MS as i64 + 10_000));
    let session = json!({"active": true, "expires_at": ends, "identity": {"id": "alice"}});
    assert_eq!(answer(&host, &mut stream, 200, &session), Action::Continue);
    let (_, action) = worker.send(&host, "/app/x", &cookie);
    assert_eq!((action, host.calls().len()), (Action::Continue, 1), "cached while the session lives");

    host.set_request(&[(":method", "GET"), (":scheme", "http"), (":authority", "gw"), (":path", "/app/x"), cookie[0]]);
    host.set_now(NOW_MS + 10_000);
    let mut stream = worker.stream();
    assert_eq!(stream.on_request_headers(&host), Action::Pause, "the session endpoint is asked again");
    assert_eq!(host.calls().len(), 2);
    assert_eq!(answer(&host, &mut stream, 401, &json!({"error": "expired"})), Action::Pause);
    assert_eq!(refusal(&host).0, 401);
}

// --- other caches: everything that decided the answer is in the key -----------------------

#[test]
fn an_introspection_answer_for_one_tenant_is_not_reused_for_another() {
    let rule = |id: &str, tenant: &str| {
        json!({"id": id, "match": {"url": format!("http://gw/{id}/<.*>"), "methods": ["GET"]},
            "authenticators": [{"handler": "oauth2_introspection", "config": {
                "introspection_url": "http://idp.example:443/introspect",
                "introspection_request_headers": {"X-Tenant": tenant},
                "cache": {"enabled": true, "ttl": "60s"}}}],
            "authorizer": {"handler": "allow"}, "mutators": [x_user()]})
    };
    let worker = Worker::new(compile(json!([rule("a", "tenant-a"), rule("b", "tenant-b")]), &[]));
    let host = MockHost::default();
    let auth = [("authorization", "Bearer tok")];
    let (mut stream, _) = worker.send(&host, "/a/x", &auth);
    let active = json!({"active": true, "sub": "alice", "exp": NOW + 600});
    assert_eq!(answer(&host, &mut stream, 200, &active), Action::Continue);
    let (_, action) = worker.send(&host, "/b/x", &auth);
    assert_eq!(action, Action::Pause, "tenant b's introspection endpoint is asked, not tenant a's answer reused");
    assert_eq!(host.calls().last().and_then(|c| c.header("x-tenant").map(str::to_owned)).as_deref(), Some("tenant-b"));
}

#[test]
fn a_hydrated_session_for_one_caller_is_not_reused_for_another_with_the_same_subject() {
    let worker = Worker::new(compile(
        json!([{"id": "h", "match": {"url": "http://gw/h/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"},
            "mutators": [
                {"handler": "hydrator", "config": {"api": {"url": "http://idp.example:443/hydrate"},
                    "cache": {"enabled": true, "ttl": "60s"}}},
                {"handler": "header", "config": {"headers": {"X-Plan": "{{ print .Extra.plan }}"}}}]}]),
        &[],
    ));
    let host = MockHost::default();
    let hydrated = |plan: &str| json!({"subject": "anonymous", "extra": {"plan": plan}});
    let (mut stream, _) = worker.send(&host, "/h/x", &[("x-api-key", "gold-customer")]);
    assert_eq!(answer(&host, &mut stream, 200, &hydrated("gold")), Action::Continue);
    assert_eq!(host.request_header("x-plan").as_deref(), Some("gold"));
    let (mut stream, action) = worker.send(&host, "/h/x", &[("x-api-key", "someone-else")]);
    assert_eq!(action, Action::Pause, "the hydrator sees the caller's headers, so it is asked again");
    assert_eq!(answer(&host, &mut stream, 200, &hydrated("free")), Action::Continue);
    assert_eq!(host.request_header("x-plan").as_deref(), Some("free"));
    // Per-request ids Envoy adds do not defeat the cache: they are not sent to a cached hydrator.
    let (_, action) = worker.send(&host, "/h/x", &[("x-api-key", "gold-customer"), ("x-request-id", "r-2")]);
    assert_eq!(action, Action::Continue);
    assert_eq!(host.request_header("x-plan").as_deref(), Some("gold"));
}

#[test]
fn every_cache_tells_two_callers_apart() {
    // Introspection: two tokens, two answers.
    let introspect = json!({"id": "i", "match": {"url": "http://gw/i/<.*>", "methods": ["GET"]},
        "authenticators": [{"handler": "oauth2_introspection", "config": {
            "introspection_url": "http://idp.example:443/introspect", "cache": {"enabled": true, "ttl": "60s"}}}],
        "authorizer": {"handler": "allow"}, "mutators": [x_user()]});
    // Client credentials: the same client id with the wrong secret is not the client.
    let client = json!({"id": "c", "match": {"url": "http://gw/c/<.*>", "methods": ["GET"]},
        "authenticators": [{"handler": "oauth2_client_credentials", "config": {
            "token_url": "http://idp.example:443/token", "cache": {"enabled": true, "ttl": "60s"}}}],
        "authorizer": {"handler": "allow"}, "mutators": [x_user()]});
    let worker = Worker::new(compile(json!([introspect, client]), &[]));
    let host = MockHost::default();

    let (mut s, _) = worker.send(&host, "/i/x", &[("authorization", "Bearer alice-token")]);
    assert_eq!(
        answer(&host, &mut s, 200, &json!({"active": true, "sub": "alice", "exp": NOW + 600})),
        Action::Continue
    );
    let (mut s, action) = worker.send(&host, "/i/x", &[("authorization", "Bearer bob-token")]);
    assert_eq!(action, Action::Pause);
    assert_eq!(answer(&host, &mut s, 200, &json!({"active": true, "sub": "bob", "exp": NOW + 600})), Action::Continue);
    assert_eq!(host.request_header("x-user").as_deref(), Some("bob"));
    let (_, action) = worker.send(&host, "/i/x", &[("authorization", "Bearer alice-token")]);
    assert_eq!((action, host.request_header("x-user").as_deref()), (Action::Continue, Some("alice")));

    let basic =
        |secret: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("svc:{secret}")));
    let (good, wrong) = (basic("right"), basic("wrong"));
    let (mut s, _) = worker.send(&host, "/c/x", &[("authorization", &good)]);
    assert_eq!(answer(&host, &mut s, 200, &json!({"access_token": "t", "expires_in": 600})), Action::Continue);
    let calls = host.calls().len();
    let (mut s, action) = worker.send(&host, "/c/x", &[("authorization", &wrong)]);
    assert_eq!((action, host.calls().len()), (Action::Pause, calls + 1), "a wrong secret is asked about");
    assert_eq!(answer(&host, &mut s, 401, &json!({"error": "invalid_client"})), Action::Pause);
    assert_eq!(refusal(&host).0, 401);
}

// --- remembered conclusions: a parsed answer is reused only where it was concluded ---------

/// Two rules that send the very same introspection call (so they share its cached answer) but
/// ask different scopes of the token.
fn scoped_introspection(revoked: &[&str]) -> Rc<CompiledSnapshot> {
    let rule = |id: &str, scope: &str| {
        json!({"id": id, "match": {"url": format!("http://gw/{id}/<.*>"), "methods": ["GET"]},
            "authenticators": [{"handler": "oauth2_introspection", "config": {
                "introspection_url": "http://idp.example:443/introspect", "scope_strategy": "exact",
                "required_scope": [scope], "cache": {"enabled": true, "ttl": "60s"}}}],
            "authorizer": {"handler": "allow"}, "mutators": [x_user()]})
    };
    let snapshot = Snapshot {
        version: "v1".into(),
        rules: serde_json::from_value(json!([rule("read", "read"), rule("admin", "admin")])).unwrap(),
        revoked: revoked
            .iter()
            .map(|t| portcullis_shared::pipeline::sha256(t).iter().map(|b| format!("{b:02x}")).collect())
            .collect(),
        ..Snapshot::default()
    };
    Rc::new(snapshot.compile().unwrap())
}

const READER: [(&str, &str); 1] = [("authorization", "Bearer reader-token")];

/// A worker whose read rule has accepted `READER` (scope `read`) through an introspection call.
fn reader_accepted() -> (Worker, MockHost) {
    let worker = Worker::new(scoped_introspection(&[]));
    let host = MockHost::default();
    let (mut stream, _) = worker.send(&host, "/read/x", &READER);
    let reader = json!({"active": true, "sub": "alice", "scope": "read", "exp": NOW + 600});
    assert_eq!(answer(&host, &mut stream, 200, &reader), Action::Continue);
    (worker, host)
}

#[test]
fn a_session_one_rule_concluded_from_a_shared_answer_is_not_accepted_by_a_rule_that_asks_more() {
    let (worker, host) = reader_accepted();
    let auth = READER;
    let (_, action) = worker.send(&host, "/read/y", &auth);
    assert_eq!((action, host.calls().len()), (Action::Continue, 1), "the read rule remembers its conclusion");

    // The admin rule sends the same call, so the cached answer is reused without a call-out;
    // what the read rule concluded from it is not.
    let (_, action) = worker.send(&host, "/admin/x", &auth);
    assert_eq!((action, host.calls().len()), (Action::Pause, 1));
    assert_eq!(refusal(&host), (403, "insufficient_scope".to_owned()));
}

#[test]
fn a_remembered_session_ends_with_the_cached_answer_and_with_a_revocation() {
    let (worker, host) = reader_accepted();
    let auth = READER;

    // A minute later (the cache's ttl) the endpoint is asked again, and its answer counts.
    host.set_request(&[(":method", "GET"), (":scheme", "http"), (":authority", "gw"), (":path", "/read/x"), auth[0]]);
    host.set_now(NOW_MS + 60_000);
    let mut stream = worker.stream();
    assert_eq!(stream.on_request_headers(&host), Action::Pause, "the remembered session ended with the answer");
    assert_eq!(answer(&host, &mut stream, 200, &json!({"active": false})), Action::Pause);
    assert_eq!(refusal(&host), (401, "token_inactive".to_owned()));

    // A revocation in the next snapshot refuses a token whose session is remembered.
    let (mut stream, _) = worker.send(&host, "/read/x", &[("authorization", "Bearer other-token")]);
    let other = json!({"active": true, "sub": "bob", "scope": "read", "exp": NOW + 600});
    assert_eq!(answer(&host, &mut stream, 200, &other), Action::Continue);
    let revoked = Worker { snapshot: scoped_introspection(&["other-token"]), caches: Rc::clone(&worker.caches) };
    let (_, action) = revoked.send(&host, "/read/x", &[("authorization", "Bearer other-token")]);
    assert_eq!(action, Action::Pause);
    assert_eq!(refusal(&host), (401, "token_revoked".to_owned()));
}

/// A worker for `rules`, whose snapshot carries a gateway signing key made from `seed`.
fn id_token_worker(rules: Value, seed: u8) -> Worker {
    use p256::pkcs8::EncodePrivateKey;
    let snapshot = Snapshot {
        version: "v1".into(),
        rules: serde_json::from_value(rules).unwrap(),
        signing_key: Some(portcullis_shared::snapshot::SigningKey {
            kid: "id-1".into(),
            alg: portcullis_shared::jwt::Algorithm::ES256,
            pkcs8: base64::engine::general_purpose::STANDARD.encode(key(seed).to_pkcs8_der().unwrap().as_bytes()),
        }),
        ..Snapshot::default()
    };
    Worker::new(Rc::new(snapshot.compile().unwrap()))
}

/// The claims of the bearer token the filter forwarded upstream.
fn forwarded_claims(host: &MockHost) -> Value {
    let bearer = host.request_header("authorization").unwrap();
    let payload = bearer.strip_prefix("Bearer ").unwrap().split('.').nth(1).unwrap().to_owned();
    serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn minted_id_tokens_are_never_handed_to_another_subject() {
    let worker = id_token_worker(
        json!([{"id": "p", "match": {"url": "http://gw/p/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "bearer_token", "config": {
                "check_session_url": "http://idp.example:443/whoami", "preserve_path": true,
                "cache": {"enabled": true, "ttl": "60s"}}}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "id_token", "config": {"issuer_url": "https://gw.example/"}}]}]),
        4,
    );
    let host = MockHost::default();
    let subject_of = |host: &MockHost| forwarded_claims(host)["sub"].clone();
    for user in ["alice", "bob", "alice"] {
        let token = format!("Bearer {user}-token");
        let (mut s, action) = worker.send(&host, "/p/x", &[("authorization", &token)]);
        if action == Action::Pause {
            assert_eq!(answer(&host, &mut s, 200, &json!({"sub": user})), Action::Continue);
        }
        assert_eq!(subject_of(&host), json!(user));
    }
    assert_eq!(host.signatures(), 2, "alice's second request reuses her token, bob gets his own");
}

#[test]
fn a_minted_id_token_is_never_reused_for_other_claims_of_the_same_subject() {
    // The cache key is the rendered claims, so a claim taken from the request (here a tenant
    // header) can never come back from another request's token.
    let worker = id_token_worker(
        json!([{"id": "t", "match": {"url": "http://gw/t/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous"}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "id_token", "config": {"issuer_url": "https://gw.example/",
                "claims": "{\"tenant\": {{ .MatchContext.Header.Get \"x-tenant\" | toJson }}}"}}]}]),
        5,
    );
    let host = MockHost::default();
    let claims_of = forwarded_claims;
    for tenant in ["acme", "evil", "acme", "evil"] {
        let (_s, action) = worker.send(&host, "/t/x", &[("x-tenant", tenant)]);
        assert_eq!(action, Action::Continue);
        assert_eq!(claims_of(&host)["tenant"], json!(tenant));
    }
    assert_eq!(host.signatures(), 2, "one token per tenant, each reused for its own tenant only");
    // A header that would break out of the JSON string is escaped by toJson; one that renders
    // no object is refused, not signed.
    let (_s, action) = worker.send(&host, "/t/x", &[("x-tenant", "x\", \"sub\": \"admin")]);
    assert_eq!(action, Action::Continue);
    assert_eq!(claims_of(&host)["tenant"], json!("x\", \"sub\": \"admin"));
    assert_eq!(claims_of(&host)["sub"], json!("anonymous"));
}

// --- bypass 6: the address Keto is told ----------------------------------------------------

fn keto_rules() -> Rc<CompiledSnapshot> {
    compile(
        json!([{"id": "k", "match": {"url": "http://gw/k/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous"}],
            "authorizer": {"handler": "keto_engine_acp_ory", "config": {"base_url": "http://idp.example:443",
                "required_action": "read", "required_resource": "docs"}}}]),
        &[],
    )
}

#[test]
fn keto_is_told_the_address_envoy_vouches_for_not_x_forwarded_for() {
    let worker = Worker::new(keto_rules());
    for (source, expected) in [("10.1.2.3:5555", "10.1.2.3"), ("[2001:db8::7]:443", "2001:db8::7"), ("@pipe", "")] {
        let host = MockHost::default();
        host.set_source_address(source);
        let (_, action) = worker.send(&host, "/k/x", &[("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "6.6.6.6")]);
        assert_eq!(action, Action::Pause);
        let sent: Value = serde_json::from_slice(&host.calls().pop().unwrap().body).unwrap();
        assert_eq!(sent["context"]["remoteIpAddress"], expected, "{source}");
    }
    // Rule sets without such an authorizer do not pay for the host call.
    let host = MockHost::default();
    let (_, action) = Worker::new(two_issuers()).send(&host, "/nope", &[]);
    assert_eq!((action, host.source_reads()), (Action::Pause, 0));
}

// --- header bytes the filter cannot read as text ------------------------------------------

#[test]
fn a_header_value_that_is_not_utf8_is_refused_with_its_name_and_the_worker_goes_on() {
    let worker = Worker::new(compile(
        json!([{"id": "public", "match": {"url": "http://gw/public/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"},
            "mutators": [x_user()]}]),
        &[],
    ));
    let host = MockHost::default();
    for (name, value) in [("x-name", &b"caf\xe9"[..]), ("authorization", b"Bearer \xff\xfe"), ("x-user", b"r\xf6ot")] {
        host.set_raw_request(&[
            (":method", b"GET"),
            (":scheme", b"http"),
            (":authority", b"gw"),
            (":path", b"/public/x"),
            (name, value),
        ]);
        let mut stream = worker.stream();
        assert_eq!(stream.on_request_headers(&host), Action::Pause, "{name}");
        assert_eq!(refusal(&host), (400, "header_not_utf8".to_owned()), "{name}");
        let (status, _, body) = host.sent().unwrap();
        assert!(body.contains(name), "{status}: the answer names the header: {body}");
    }
    let (_, action) = worker.send(&host, "/public/x", &[("x-name", "café")]);
    assert_eq!((action, host.request_header("x-user").as_deref()), (Action::Continue, Some("anonymous")));
}

// --- spoofed identity headers and header injection ----------------------------------------

#[test]
fn identity_headers_a_client_sends_are_all_removed_even_when_repeated() {
    let worker = Worker::new(compile(
        json!([{"id": "open", "match": {"url": "http://gw/open/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}", "X-Roles": "guest"}}}]},
          {"id": "closed", "match": {"url": "http://gw/closed", "methods": ["GET"]},
            "authenticators": [{"handler": "unauthorized"}], "authorizer": {"handler": "allow"}}]),
        &[],
    ));
    let host = MockHost::default();
    let spoofed = [("x-user", "root"), ("x-roles", "admin"), ("x-user", "root2"), ("x-roles", "admin2")];
    let (_, action) = worker.send(&host, "/open/x", &spoofed);
    assert_eq!(action, Action::Continue);
    assert_eq!(host.request_header_values("x-user"), ["anonymous"]);
    assert_eq!(host.request_header_values("x-roles"), ["guest"]);
    // Also on a request another rule refuses or no rule matches: nothing reaches upstream.
    for path in ["/closed", "/unknown"] {
        let (_, action) = worker.send(&host, path, &spoofed);
        assert_eq!(action, Action::Pause);
        assert!(host.request_header_values("x-user").is_empty(), "{path}");
    }
}

#[test]
fn a_claim_with_a_line_break_never_becomes_a_second_header() {
    let issuer = key(5);
    let worker = Worker::new(compile(
        json!([{"id": "api", "match": {"url": "http://gw/api/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "jwt", "config": {"jwks_urls": [OWN_JWKS]}}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}", "X-Email": "{{ print .Extra.email }}"}}}]}]),
        &[(OWN_JWKS, jwks(&issuer, "k"))],
    ));
    for (sub, email) in [("alice\r\nX-Admin: 1", "a@x"), ("alice", "a@x\nX-Admin: 1"), ("alice", "a@x\u{0}")] {
        let host = MockHost::default();
        let token =
            es256(&issuer, json!({"alg": "ES256", "kid": "k"}), json!({"sub": sub, "email": email, "exp": NOW + 60}));
        let bearer = format!("Bearer {token}");
        let (_, action) = worker.send(&host, "/api/x", &[("authorization", &bearer)]);
        assert_eq!(action, Action::Pause, "{sub:?} {email:?}");
        assert_eq!(refusal(&host), (500, "mutator_invalid_value".to_owned()));
        assert!(host.request_header("x-admin").is_none() && host.request_header("x-user").is_none());
    }
}

#[test]
fn a_hydrator_cannot_set_a_pseudo_header_a_framing_header_or_a_line_break() {
    let worker = Worker::new(compile(
        json!([{"id": "h", "match": {"url": "http://gw/h/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "hydrator", "config": {"api": {"url": "http://idp.example:443/hydrate"}}}]}]),
        &[],
    ));
    let host = MockHost::default();
    let (mut s, _) = worker.send(&host, "/h/x", &[]);
    let header =
        json!({":path": ["/admin"], "Transfer-Encoding": ["chunked"], "X-A": ["1\r\nX-B: 2"], "X-Plan": ["gold"]});
    assert_eq!(answer(&host, &mut s, 200, &json!({"subject": "anonymous", "header": header})), Action::Continue);
    assert_eq!(host.request_header(":path").as_deref(), Some("/h/x"));
    assert_eq!(host.request_header("transfer-encoding"), None);
    assert_eq!(host.request_header("x-a"), None);
    assert_eq!(host.request_header("x-plan").as_deref(), Some("gold"));
}

#[test]
fn the_last_check_before_envoy_refuses_what_would_break_the_header_block() {
    use crate::stream::is_sendable;
    assert!(is_sendable("x-user", "alice"));
    for (name, value) in [
        ("x-user", "a\r\nx-admin: 1"),
        ("x-user", "a\n"),
        ("x-user", "a\0"),
        (":path", "/"),
        ("x user", "a"),
        ("", "a"),
    ] {
        assert!(!is_sendable(name, value), "{name:?}: {value:?}");
    }
}

#[test]
fn client_addresses_are_read_as_envoy_writes_them() {
    use crate::stream::client_ip;
    assert_eq!(client_ip("192.0.2.1:80"), Some("192.0.2.1"));
    assert_eq!(client_ip("192.0.2.1"), Some("192.0.2.1"));
    assert_eq!(client_ip("[::1]:80"), Some("::1"));
    assert_eq!(client_ip("::1"), Some("::1"));
    assert_eq!(client_ip("envoy://internal"), None);
    assert_eq!(client_ip("6.6.6.6, 1.1.1.1"), None);
}
