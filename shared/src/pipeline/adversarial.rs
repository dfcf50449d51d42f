//! The pipeline attacked: JWTs an attacker can craft (alg tricks, kid tricks, foreign keys,
//! claims and header games, oversized and ambiguous encodings), cache keys that would let one
//! caller's answer serve another, a client-chosen Keto address, and header injection through
//! templated values. Every test states what must be refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

use super::tests::jwt::{verified_by, verify};
use super::tests::{allowed, call, denied, headers, ok, owned, request, rule};
use super::*;
use crate::rule::{Environment, parse_rules};

const NOW_MS: i64 = 1_700_000_000_000;
const NOW: i64 = NOW_MS / 1000;
const JWKS_URL: &str = "https://issuer.example/jwks.json";
const ISSUER: &str = "https://issuer.example/";

fn compile(rules: Value, env: &Environment) -> Result<RuleSet, crate::rule::RuleError> {
    RuleSet::compile_in(&parse_rules(rules).unwrap(), env)
}

// --- JWT -------------------------------------------------------------------------------------

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32].into()).unwrap()
}

fn jwk(key: &SigningKey, kid: &str) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()), "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())})
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// Signs raw header and claims text (so a test can write duplicate keys or odd JSON).
fn sign_raw(key: &SigningKey, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn sign(header: Value, claims: Value) -> String {
    sign_raw(&key(), &header.to_string(), &claims.to_string())
}

fn es256() -> Value {
    json!({"alg": "ES256", "typ": "JWT", "kid": "k1"})
}

fn claims() -> Value {
    json!({"sub": "alice", "iss": ISSUER, "aud": ["api"], "exp": NOW + 300, "iat": NOW - 10})
}

fn with(mut value: Value, changes: Value) -> Value {
    if let (Some(v), Value::Object(c)) = (value.as_object_mut(), changes) {
        for (k, x) in c {
            if x.is_null() {
                v.remove(&k);
            } else {
                v.insert(k, x);
            }
        }
    }
    value
}

fn jwt_rules(config: Value) -> RuleSet {
    let mut c = json!({"jwks_urls": [JWKS_URL], "trusted_issuers": [ISSUER], "target_audience": ["api"]});
    c.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
    let mut env = Environment::default();
    env.jwks.insert(JWKS_URL.into(), json!({"keys": [jwk(&key(), "k1")]}));
    let x_user = json!([{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]);
    compile(
        json!([rule(
            "api",
            "/api/<.*>",
            json!([{"handler": "jwt", "config": c}]),
            json!({"handler": "allow"}),
            x_user
        )]),
        &env,
    )
    .unwrap()
}

/// Judges without a memo, then twice with a fresh worker memo (the second answer may come from
/// it): every attack in this file must get the same answer whether or not the worker has seen
/// the token before.
fn judge_at(rules: &RuleSet, token: &str, now_ms: i64) -> Step {
    let fresh = judge_path(rules, "/api/x", token, now_ms, None);
    let mut memo = Memo::default();
    for round in ["first", "remembered"] {
        let step = judge_path(rules, "/api/x", token, now_ms, Some(&mut memo));
        assert_eq!(step, fresh, "the {round} answer with a memo differs from the answer without one");
    }
    fresh
}

fn judge_path(rules: &RuleSet, path: &str, token: &str, now_ms: i64, memo: Option<&mut Memo>) -> Step {
    let bearer = format!("Bearer {token}");
    let h = headers(&[("authorization", &bearer)]);
    let req = request(path, &h);
    match memo {
        None => {
            let (mut evaluation, step) = begin(rules, &req, now_ms);
            match step {
                Step::Verify(check) => evaluation.as_mut().unwrap().resume_verified(&req, verify(&check), now_ms),
                other => other,
            }
        }
        Some(memo) => {
            let (mut evaluation, step) = begin_remembering(rules, &req, now_ms, memo);
            match step {
                Step::Verify(check) => {
                    evaluation.as_mut().unwrap().resume_verified_by(&req, verified_by(&check), now_ms, memo)
                }
                other => other,
            }
        }
    }
}

#[test]
fn a_remembered_token_is_checked_against_the_clock_on_every_hit() {
    let rules = jwt_rules(json!({}));
    let token = sign(es256(), with(claims(), json!({"exp": NOW + 300, "nbf": NOW - 5})));
    let mut memo = Memo::default();
    assert_eq!(allowed(&judge_path(&rules, "/api/x", &token, NOW_MS, Some(&mut memo))).0, "alice");
    assert_eq!(memo.len(), (1, 1, 0), "the token is remembered after its first acceptance");
    // From memory, no signature check: a Verify step here would mean the memo was not used.
    let (_, step) = begin_remembering(
        &rules,
        &request("/api/y", &headers(&[("authorization", &format!("Bearer {token}"))])),
        NOW_MS,
        &mut memo,
    );
    assert_eq!(allowed(&step).0, "alice");
    // 300 s later plus the 60 s leeway it has expired, memory or not.
    let late = NOW_MS + 361_000;
    assert_eq!(denied(&judge_path(&rules, "/api/x", &token, late, Some(&mut memo))), (401, "token_expired"));
    assert_eq!(memo.len().1, 0, "an expired token is forgotten");
}

#[test]
fn a_token_remembered_for_one_rule_is_judged_afresh_by_another() {
    // Same keys, same issuer; /admin wants another audience. A token accepted on /api must
    // not be let through /admin because the worker remembers it.
    let mut env = Environment::default();
    env.jwks.insert(JWKS_URL.into(), json!({"keys": [jwk(&key(), "k1")]}));
    let jwt = |aud: &str| json!([{"handler": "jwt", "config": {"jwks_urls": [JWKS_URL], "trusted_issuers": [ISSUER], "target_audience": [aud]}}]);
    let rules = compile(
        json!([
            rule("api", "/api/<.*>", jwt("api"), json!({"handler": "allow"}), json!([{"handler": "noop"}])),
            rule("admin", "/admin/<.*>", jwt("admin"), json!({"handler": "allow"}), json!([{"handler": "noop"}])),
        ]),
        &env,
    )
    .unwrap();
    let token = sign(es256(), claims());
    let mut memo = Memo::default();
    assert_eq!(allowed(&judge_path(&rules, "/api/x", &token, NOW_MS, Some(&mut memo))).0, "alice");
    assert_eq!(allowed(&judge_path(&rules, "/api/x", &token, NOW_MS, Some(&mut memo))).0, "alice");
    let (status, _) = denied(&judge_path(&rules, "/admin/x", &token, NOW_MS, Some(&mut memo)));
    assert_eq!(status, 401, "the admin rule's audience check runs for a token the api rule accepted");
}

#[test]
fn a_remembered_token_revoked_or_signed_by_a_removed_key_is_refused_with_the_next_rules() {
    let token = sign(es256(), claims());
    let mut memo = Memo::default();
    assert_eq!(allowed(&judge_path(&jwt_rules(json!({})), "/api/x", &token, NOW_MS, Some(&mut memo))).0, "alice");
    // The next snapshot revokes it.
    use sha2::Digest;
    let mut env = Environment::default();
    env.jwks.insert(JWKS_URL.into(), json!({"keys": [jwk(&key(), "k1")]}));
    let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    env.revoked = Arc::new(crate::rule::Revoked::from_iter([digest]));
    let x_user = json!([{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]);
    let config = json!({"jwks_urls": [JWKS_URL], "trusted_issuers": [ISSUER], "target_audience": ["api"]});
    let spec = json!([rule(
        "api",
        "/api/<.*>",
        json!([{"handler": "jwt", "config": config}]),
        json!({"handler": "allow"}),
        x_user
    )]);
    let revoked = compile(spec.clone(), &env).unwrap();
    assert_eq!(denied(&judge_path(&revoked, "/api/x", &token, NOW_MS, Some(&mut memo))), (401, "token_revoked"));
    // The next snapshot rotates the key away.
    let other = SigningKey::from_bytes(&[8u8; 32].into()).unwrap();
    let mut env = Environment::default();
    env.jwks.insert(JWKS_URL.into(), json!({"keys": [jwk(&other, "k2")]}));
    let rotated = compile(spec, &env).unwrap();
    assert_eq!(denied(&judge_path(&rotated, "/api/x", &token, NOW_MS, Some(&mut memo))).0, 401);
}

fn judge(rules: &RuleSet, token: &str) -> Step {
    judge_at(rules, token, NOW_MS)
}

#[test]
fn a_good_token_passes() {
    assert_eq!(allowed(&judge(&jwt_rules(json!({})), &sign(es256(), claims()))).0, "alice");
}

#[test]
fn unsigned_and_symmetric_algorithms_are_refused() {
    let rules = jwt_rules(json!({}));
    let body = b64(&claims().to_string());
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "NONE"}),
        json!({"alg": "None"}),
        json!({"typ": "JWT"}),
        json!({"alg": null}),
        json!({"alg": ["ES256"]}),
        json!({"alg": "HS256"}),
        json!({"alg": "es256"}),
    ] {
        let token = format!("{}.{body}.", b64(&header.to_string()));
        let (status, reason) = denied(&judge(&rules, &token));
        assert_eq!(status, 401, "{header}");
        assert!(matches!(reason, "algorithm_not_allowed" | "malformed_token"), "{header}: {reason}");
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // The classic confusion: an HMAC over the token keyed with the verifier's public key.
    use sha2::Digest;
    let rules = jwt_rules(json!({}));
    let spki = {
        let keys = crate::jwt::signing_keys(&json!({"keys": [jwk(&key(), "k1")]}));
        keys[0].spki_der.clone()
    };
    let input = format!("{}.{}", b64(r#"{"alg":"HS256","kid":"k1"}"#), b64(&claims().to_string()));
    // HMAC-SHA256 by hand: the crate has no hmac dependency, and the value does not matter.
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&sha2::Sha256::digest(&spki));
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(input.bytes()).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(sha2::Sha256::digest(&inner)).collect();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&outer)));
    assert_eq!(denied(&judge(&rules, &token)), (401, "algorithm_not_allowed"));
    // Even a rule that names HS256 cannot: the filter verifies asymmetric signatures only.
    let bad = json!([rule(
        "r",
        "/api/<.*>",
        json!([{"handler": "jwt", "config": {"jwks_urls": [JWKS_URL], "allowed_algorithms": ["HS256"]}}]),
        json!({"handler": "allow"}),
        json!([])
    )]);
    assert_eq!(
        compile(bad, &Environment::default()).unwrap_err().field,
        "authenticators[0].config.allowed_algorithms[0]"
    );
}

#[test]
fn an_rs256_token_cannot_be_checked_against_an_ec_key() {
    let rules = jwt_rules(json!({}));
    let token = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","kid":"k1"}"#),
        b64(&claims().to_string()),
        URL_SAFE_NO_PAD.encode([1u8; 256])
    );
    assert_eq!(denied(&judge(&rules, &token)), (401, "unknown_key"));
}

#[test]
fn kid_tricks_and_foreign_keys_are_refused() {
    let rules = jwt_rules(json!({}));
    let foreign = SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
    let cases = [
        ("an unknown kid", sign(with(es256(), json!({"kid": "k2"})), claims()), "unknown_key"),
        ("a kid that is not a string", sign(with(es256(), json!({"kid": 1})), claims()), "malformed_token"),
        ("a path in the kid", sign(with(es256(), json!({"kid": "../../k1"})), claims()), "unknown_key"),
        (
            "a foreign key naming our kid",
            sign_raw(&foreign, &es256().to_string(), &claims().to_string()),
            "bad_signature",
        ),
        ("a foreign key without kid", sign_raw(&foreign, r#"{"alg":"ES256"}"#, &claims().to_string()), "bad_signature"),
        (
            // The verifier never takes a key from the token itself.
            "a foreign key embedded as jwk",
            sign_raw(
                &foreign,
                &json!({"alg": "ES256", "kid": "k1", "jwk": jwk(&foreign, "k1"), "jku": "https://evil.example/jwks"})
                    .to_string(),
                &claims().to_string(),
            ),
            "bad_signature",
        ),
    ];
    for (what, token, reason) in cases {
        assert_eq!(denied(&judge(&rules, &token)), (401, reason), "{what}");
    }
}

#[test]
fn time_claims_are_enforced_and_exp_is_required() {
    let rules = jwt_rules(json!({}));
    let cases = [
        ("expired", json!({"exp": NOW - 61}), "token_expired"),
        ("not valid yet", json!({"nbf": NOW + 3600}), "token_not_yet_valid"),
        ("issued far in the future", json!({"iat": NOW + 3600}), "token_issued_in_future"),
        ("without exp", json!({"exp": null}), "token_without_expiry"),
        ("exp as a string", json!({"exp": (NOW + 300).to_string()}), "malformed_claims"),
        ("nbf as a string", json!({"nbf": (NOW + 3600).to_string()}), "malformed_claims"),
        ("iat as an object", json!({"iat": {}}), "malformed_claims"),
    ];
    for (what, change, reason) in cases {
        assert_eq!(denied(&judge(&rules, &sign(es256(), with(claims(), change)))), (401, reason), "{what}");
    }
    // Fractional NumericDates are dates (RFC 7519 §2).
    let fractional = with(claims(), json!({"exp": (NOW + 300) as f64 + 0.5}));
    assert_eq!(allowed(&judge(&rules, &sign(es256(), fractional))).0, "alice");
    // A rule can opt out of exp, explicitly.
    let lenient = jwt_rules(json!({"require_exp": false}));
    assert_eq!(allowed(&judge(&lenient, &sign(es256(), with(claims(), json!({"exp": null}))))).0, "alice");
    let bad = json!([rule(
        "r",
        "/api/<.*>",
        json!([{"handler": "jwt", "config": {"jwks_urls": [JWKS_URL], "require_exp": "no"}}]),
        json!({"handler": "allow"}),
        json!([])
    )]);
    assert_eq!(compile(bad, &Environment::default()).unwrap_err().field, "authenticators[0].config.require_exp");
}

#[test]
fn wrong_audience_or_issuer_is_refused() {
    let rules = jwt_rules(json!({}));
    for (what, change, reason) in [
        ("another audience", json!({"aud": ["other"]}), "audience_mismatch"),
        ("no audience", json!({"aud": null}), "audience_mismatch"),
        ("the audience as a number", json!({"aud": 1}), "audience_mismatch"),
        ("another issuer", json!({"iss": "https://evil.example/"}), "untrusted_issuer"),
        ("the issuer with a different case", json!({"iss": "https://ISSUER.example/"}), "untrusted_issuer"),
        ("no issuer", json!({"iss": null}), "untrusted_issuer"),
    ] {
        assert_eq!(denied(&judge(&rules, &sign(es256(), with(claims(), change)))), (401, reason), "{what}");
    }
}

#[test]
fn critical_header_extensions_are_refused() {
    let rules = jwt_rules(json!({}));
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("b64")] {
        let token = sign(with(es256(), json!({"crit": crit, "b64": false})), claims());
        assert_eq!(denied(&judge(&rules, &token)), (401, "unsupported_critical_header"), "crit {crit}");
    }
}

#[test]
fn logout_tokens_and_id_tokens_are_not_access_tokens() {
    let rules = jwt_rules(json!({}));
    let events = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let cases = [
        ("a logout token by its typ", with(es256(), json!({"typ": "logout+jwt"})), claims()),
        (
            "a logout token by its typ, spelled as a media type",
            with(es256(), json!({"typ": "application/logout+JWT"})),
            claims(),
        ),
        ("a logout token typed JWT", es256(), with(claims(), json!({"events": events, "sid": "s1"}))),
        ("an ID token (at_hash)", es256(), with(claims(), json!({"at_hash": "abc", "auth_time": NOW}))),
        ("an ID token (nonce)", es256(), with(claims(), json!({"nonce": "n-1"}))),
        ("an ID token without typ", with(es256(), json!({"typ": null})), with(claims(), json!({"c_hash": "x"}))),
        ("a DPoP proof", with(es256(), json!({"typ": "dpop+jwt"})), claims()),
        ("a typ that is not a string", with(es256(), json!({"typ": 1})), claims()),
    ];
    for (what, header, claims) in cases {
        let (status, reason) = denied(&judge(&rules, &sign(header, claims)));
        assert_eq!(status, 401, "{what}");
        assert!(matches!(reason, "token_type_not_allowed" | "malformed_token"), "{what}: {reason}");
    }
    // Access tokens as issuers type them.
    for typ in [json!("JWT"), json!("jwt"), json!("at+jwt"), json!("application/at+jwt"), Value::Null] {
        let token = sign(with(es256(), json!({"typ": typ})), claims());
        assert_eq!(allowed(&judge(&rules, &token)).0, "alice", "typ {typ}");
    }
    // A rule that means to accept ID tokens says so; logout tokens it cannot accept.
    let id_tokens = jwt_rules(json!({"allowed_token_types": ["id_token"]}));
    let id_token = sign(es256(), with(claims(), json!({"at_hash": "abc"})));
    assert_eq!(allowed(&judge(&id_tokens, &id_token)).0, "alice");
    assert_eq!(denied(&judge(&id_tokens, &sign(es256(), claims()))), (401, "token_type_not_allowed"));
    let bad = json!([rule(
        "r",
        "/api/<.*>",
        json!([{"handler": "jwt", "config": {"jwks_urls": [JWKS_URL], "allowed_token_types": ["logout+jwt"]}}]),
        json!({"handler": "allow"}),
        json!([])
    )]);
    assert_eq!(
        compile(bad, &Environment::default()).unwrap_err().field,
        "authenticators[0].config.allowed_token_types[0]"
    );
}

#[test]
fn duplicate_json_members_are_refused_wherever_they_are() {
    let rules = jwt_rules(json!({}));
    let good_claims = claims().to_string();
    let dup_claims = format!(r#"{{"sub":"admin",{}"#, &good_claims[1..]);
    let nested = format!(r#"{{"ext":{{"role":"user","role":"admin"}},{}"#, &good_claims[1..]);
    let cases = [
        ("a duplicate alg", r#"{"alg":"none","alg":"ES256","kid":"k1"}"#.to_owned(), good_claims.clone()),
        ("a duplicate kid", r#"{"alg":"ES256","kid":"k2","kid":"k1"}"#.to_owned(), good_claims.clone()),
        ("a duplicate sub", es256().to_string(), dup_claims),
        ("a duplicate nested member", es256().to_string(), nested),
    ];
    for (what, header, claims) in cases {
        assert_eq!(denied(&judge(&rules, &sign_raw(&key(), &header, &claims))), (401, "malformed_token"), "{what}");
    }
}

#[test]
fn encodings_have_one_spelling() {
    let rules = jwt_rules(json!({}));
    let token = sign(es256(), claims());
    let (header, rest) = token.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let padded = |s: &str| format!("{s}{}", "=".repeat(((4 - s.len() % 4) % 4).max(1)));
    let std_alphabet = |s: &str| s.replace('-', "+").replace('_', "/");
    let cases = [
        ("padding on the header", format!("{}.{payload}.{signature}", padded(header))),
        ("padding on the signature", format!("{header}.{payload}.{}", padded(signature))),
        ("a space in the payload", format!("{header}.{} {}.{signature}", &payload[..4], &payload[4..])),
        ("a newline in the header", format!("{}\n{}.{payload}.{signature}", &header[..4], &header[4..])),
        ("standard base64", format!("{}.{}.{}", std_alphabet(header), std_alphabet(payload), std_alphabet(signature))),
        ("a fourth part", format!("{token}.x")),
        ("JSON with a byte-order mark", sign_raw(&key(), &format!("\u{feff}{}", es256()), &claims().to_string())),
        ("a payload that is not an object", sign_raw(&key(), &es256().to_string(), "[1]")),
    ];
    for (what, token) in cases {
        let step = judge(&rules, &token);
        let refused = match &step {
            Step::Done(Verdict::Deny { response, .. }) => response.status == 401,
            _ => false,
        };
        assert!(refused, "{what}: {step:?}");
    }
}

#[test]
fn huge_and_deep_tokens_are_refused_quickly() {
    let rules = jwt_rules(json!({}));
    let huge = sign(es256(), with(claims(), json!({"pad": "x".repeat(4 << 20)})));
    let garbage = format!("{}.{}.{}", "A".repeat(3 << 20), "B".repeat(3 << 20), "C".repeat(3 << 20));
    // Under the size limit, nested deeper than any parser should follow.
    let deep = format!(r#"{{"sub":"a","x":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    let nested = format!(r#"{{"sub":"a","x":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
    let (deep, nested) =
        (sign_raw(&key(), &es256().to_string(), &deep), sign_raw(&key(), &es256().to_string(), &nested));
    assert!(deep.len() < crate::jwt::MAX_TOKEN_BYTES);
    let started = std::time::Instant::now();
    assert_eq!(denied(&judge(&rules, &huge)), (401, "token_too_large"));
    assert_eq!(denied(&judge(&rules, &garbage)), (401, "token_too_large"));
    assert_eq!(denied(&judge(&rules, &deep)), (401, "malformed_token"));
    assert_eq!(denied(&judge(&rules, &nested)), (401, "malformed_token"));
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "took {:?}", started.elapsed());
}

// --- Keto's remoteIpAddress ------------------------------------------------------------------

#[test]
fn a_spoofed_x_forwarded_for_never_becomes_ketos_remote_ip_address() {
    let keto = json!({"handler": "keto_engine_acp_ory", "config": {"base_url": "http://keto:4456",
        "required_action": "read", "required_resource": "docs"}});
    let rules = compile(
        json!([rule("k", "/doc", json!([{"handler": "anonymous"}]), keto, json!([]))]),
        &Environment::default(),
    )
    .unwrap();
    assert!(rules.needs_client_address(), "the filter reads source.address only for such rules");
    let h = headers(&[("x-forwarded-for", "10.0.0.1, 6.6.6.6")]);
    let remote_ip = |req: &Request<'_>| -> Value {
        let step = begin(&rules, req, NOW_MS).1;
        let sent: Value = serde_json::from_slice(&call(&step).body).unwrap();
        sent["context"]["remoteIpAddress"].clone()
    };
    assert_eq!(remote_ip(&request("/doc", &h)), "", "unknown is empty, not what the client wrote");
    let vouched = Request { remote_addr: Some("192.0.2.1"), ..request("/doc", &h) };
    assert_eq!(remote_ip(&vouched), "192.0.2.1");
    let plain = compile(
        json!([rule("p", "/p", json!([{"handler": "anonymous"}]), json!({"handler": "allow"}), json!([]))]),
        &Environment::default(),
    )
    .unwrap();
    assert!(!plain.needs_client_address());
}

// --- cache keys ------------------------------------------------------------------------------

fn cache_key(rules: &RuleSet, path: &str, h: &[(&str, &str)]) -> Option<String> {
    let h = headers(h);
    match begin(rules, &request(path, &h), NOW_MS).1 {
        Step::Call(c) => c.cache_key,
        other => panic!("expected a call, got {other:?}"),
    }
}

#[test]
fn a_session_answer_is_keyed_on_every_forwarded_credential() {
    let session = json!({"handler": "cookie_session", "config": {
        "check_session_url": "http://kratos/sessions/whoami", "preserve_path": true,
        "forward_http_headers": ["Authorization", "Cookie", "X-Session-Token"],
        "cache": {"enabled": true, "ttl": "1m"}}});
    let rules = compile(
        json!([rule("s", "/s", json!([session]), json!({"handler": "allow"}), json!([]))]),
        &Environment::default(),
    )
    .unwrap();
    let alice = [("cookie", "theme=dark"), ("cookie", "ory_kratos_session=alice")];
    let key = cache_key(&rules, "/s", &alice).unwrap();
    assert_eq!(cache_key(&rules, "/s", &alice).unwrap(), key, "the same request hits the cache");
    let unforwarded = [("cookie", "theme=dark"), ("cookie", "ory_kratos_session=alice"), ("x-request-id", "r2")];
    assert_eq!(cache_key(&rules, "/s", &unforwarded).unwrap(), key, "a header that is not sent is not in the key");
    for mallory in [
        &[("cookie", "theme=dark"), ("cookie", "ory_kratos_session=mallory")][..],
        &[("cookie", "theme=dark")][..],
        &[("cookie", "theme=dark"), ("cookie", "ory_kratos_session=alice"), ("authorization", "Bearer x")][..],
        &[("cookie", "theme=dark"), ("cookie", "ory_kratos_session=alice"), ("x-session-token", "x")][..],
    ] {
        assert_ne!(cache_key(&rules, "/s", mallory).unwrap(), key, "{mallory:?}");
    }
}

#[test]
fn a_pre_authorization_token_is_keyed_on_its_audience() {
    let rule_for = |id: &str, audience: &str| {
        rule(
            id,
            &format!("/{id}"),
            json!([{"handler": "oauth2_introspection", "config": {"introspection_url": "http://idp/introspect",
                "pre_authorization": {"enabled": true, "client_id": "gw", "client_secret": "s",
                    "token_url": "http://idp/token", "audience": audience}}}]),
            json!({"handler": "allow"}),
            json!([]),
        )
    };
    let rules =
        compile(json!([rule_for("a", "https://a/"), rule_for("b", "https://b/")]), &Environment::default()).unwrap();
    let auth = [("authorization", "Bearer t")];
    assert_ne!(cache_key(&rules, "/a", &auth), cache_key(&rules, "/b", &auth));
}

#[test]
fn a_minted_id_token_is_keyed_on_its_lifetime() {
    let rule_for = |id: &str, ttl: &str| {
        rule(
            id,
            &format!("/{id}"),
            json!([{"handler": "anonymous"}]),
            json!({"handler": "allow"}),
            json!([{"handler": "id_token", "config": {"issuer_url": "https://gw/", "ttl": ttl}}]),
        )
    };
    let env = Environment { signing_kid: Some("k".into()), ..Environment::default() };
    let rules = compile(json!([rule_for("short", "1m"), rule_for("long", "1h")]), &env).unwrap();
    let mint = |path: &str| match begin(&rules, &request(path, &[]), NOW_MS).1 {
        Step::Mint(m) => m,
        other => panic!("{other:?}"),
    };
    assert_ne!(mint("/short").cache_key, mint("/long").cache_key, "a 1h token must not be handed out for a 1m rule");
}

// --- header injection ------------------------------------------------------------------------

#[test]
fn templated_values_never_inject_a_header() {
    let mutators = json!([{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]);
    let cookie = json!([{"handler": "cookie", "config": {"cookies": {"user": "{{ print .Subject }}"}}}]);
    for subject in
        ["alice\r\nX-Admin: 1", "alice\nX-Admin: 1", "alice\rX-Admin: 1", "alice\0", "a\r\n\r\nGET / HTTP/1.1"]
    {
        let anon = json!([{"handler": "anonymous", "config": {"subject": subject}}]);
        for (what, m) in [("header", &mutators), ("cookie", &cookie)] {
            let rules = compile(
                json!([rule("r", "/x", anon.clone(), json!({"handler": "allow"}), m.clone())]),
                &Environment::default(),
            )
            .unwrap();
            let step = begin(&rules, &request("/x", &[]), NOW_MS).1;
            assert_eq!(denied(&step), (500, "mutator_invalid_value"), "{what} {subject:?}");
        }
    }
}

#[test]
fn a_hydrator_cannot_inject_a_header_either() {
    let rules = compile(
        json!([rule(
            "r",
            "/x",
            json!([{"handler": "anonymous"}]),
            json!({"handler": "allow"}),
            json!([{"handler": "hydrator", "config": {"api": {"url": "http://h/"}}}])
        )]),
        &Environment::default(),
    )
    .unwrap();
    let req = request("/x", &[]);
    let (mut evaluation, _) = begin(&rules, &req, NOW_MS);
    let answer =
        json!({"subject": "anonymous", "header": {"X-Admin": ["1\r\nX-Root: 1"], "X-Ok": ["fine"], "Bad Name": ["x"]}});
    let step = evaluation.as_mut().unwrap().resume(&req, ok(answer), NOW_MS).step;
    assert_eq!(allowed(&step).1, owned(&[("x-ok", "fine")]));
}
