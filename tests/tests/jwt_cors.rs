//! `jwt` tokens verified in a real Envoy (ES256, `verify_signature`) and the decisions API; CORS preflight before authn

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use portcullis_e2e::{Testbed, now_secs, put_rules, send, testbed};
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).expect("a valid P-256 scalar")
}

/// The JWKS publishing `key`'s public half as `k1`.
fn jwks(key: &SigningKey) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
        "x": b64(point.x().expect("an uncompressed point")),
        "y": b64(point.y().expect("an uncompressed point")),
    }]})
}

/// A compact ES256 JWS of `claims`, signed by `key` (the signature is JOSE's `r || s`).
fn es256(key: &SigningKey, claims: &Value) -> String {
    let header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

const ISSUER: &str = "https://issuer.test/";

fn claims(sub: &str, iss: &str, scope: &str, exp: i64) -> Value {
    json!({"sub": sub, "iss": iss, "scope": scope, "iat": now_secs() - 5, "exp": exp})
}

fn envoy_log_lines(t: &Testbed, needles: &[&str]) -> String {
    let log = std::fs::read_to_string(t.dir.join("envoy.log")).unwrap_or_default();
    log.lines().filter(|l| needles.iter().any(|n| l.contains(n))).take(20).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn jwt_tokens_are_verified_in_envoy() {
    let t = testbed().await;
    let issuer_key = key(7);
    let jwks_path = t.dir.join("jwks.json");
    std::fs::write(&jwks_path, jwks(&issuer_key).to_string()).unwrap();
    put_rules(
        &t,
        json!([{
            "id": "jwt-api",
            "match": {"url": "<http|https>://<[^/]+>/jwt/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "jwt", "config": {
                "jwks_urls": [format!("file://{}", jwks_path.display())],
                "trusted_issuers": [ISSUER],
                "scope_strategy": "exact",
                "required_scope": ["read"],
            }}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]
        }]),
    )
    .await;

    let in_an_hour = now_secs() + 3600;
    let good = es256(&issuer_key, &claims("user-42", ISSUER, "read profile", in_an_hour));
    let good_auth = format!("Bearer {good}");
    let url = t.gateway("/jwt/x");
    // The control plane fetches the JWKS and pushes it; until then the rule answers 503.
    let settled = t
        .wait_settled("a good token to pass on every worker", "envoy.log", || async {
            send("GET", &url, &[("authorization", &good_auth)]).await.status == 200
        })
        .await;
    if let Err(e) = settled {
        let last = send("GET", &url, &[("authorization", &good_auth)]).await;
        panic!(
            "{e}\nlast answer: {} {}\nenvoy.log about signatures:\n{}",
            last.status,
            last.text,
            envoy_log_lines(&t, &["verify_signature", "cannot verify signatures", "signature"])
        );
    }

    let reply = send("GET", &url, &[("authorization", &good_auth), ("x-user", "admin")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.upstream("x-user"), json!(["user-42"]), "the client's X-User is replaced by the subject");
    let again = send("GET", &url, &[("authorization", &good_auth)]).await;
    assert_eq!(again.status, 200, "the same token again (from the worker's cache): {}", again.text);
    assert_eq!(again.upstream("x-user"), json!(["user-42"]));

    let forged = es256(&key(9), &claims("user-42", ISSUER, "read", in_an_hour));
    let expired = es256(&issuer_key, &claims("user-42", ISSUER, "read", now_secs() - 600));
    let wrong_issuer = es256(&issuer_key, &claims("user-42", "https://evil.test/", "read", in_an_hour));
    let write_only = es256(&issuer_key, &claims("user-42", ISSUER, "write", in_an_hour));
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims("user-42", ISSUER, "read", in_an_hour).to_string().as_bytes())
    );
    let refused: [(&str, &str, u16, &str); 6] = [
        ("another key's signature", &forged, 401, "bad_signature"),
        ("an expired token", &expired, 401, "token_expired"),
        ("an untrusted issuer", &wrong_issuer, 401, "untrusted_issuer"),
        ("a token without the read scope", &write_only, 403, "insufficient_scope"),
        ("alg none", &unsigned, 401, "algorithm_not_allowed"),
        ("an opaque token", "abc", 401, "no_credentials"),
    ];
    for (what, token, status, reason) in refused {
        let auth = format!("Bearer {token}");
        let reply = send("GET", &url, &[("authorization", &auth)]).await;
        assert_eq!((reply.status, reply.reason()), (status, Some(reason)), "Envoy, {what}: {}", reply.text);
        if reason != "no_credentials" {
            let challenge = reply.header("www-authenticate").unwrap_or_default();
            let expected = if status == 403 { "insufficient_scope" } else { "invalid_token" };
            assert!(challenge.contains(expected), "Envoy, {what}: WWW-Authenticate {challenge:?}");
        }
    }

    // The decisions API judges the same rule with RustCrypto instead of BoringSSL: same verdicts.
    let decisions = t.admin("/decisions/jwt/x");
    let allowed = send("GET", &decisions, &[("authorization", &good_auth), ("x-user", "admin")]).await;
    assert_eq!(allowed.status, 200, "decisions, good token: {}", allowed.text);
    assert_eq!(allowed.header("x-user"), Some("user-42"));
    for (what, token, status, reason) in refused {
        let auth = format!("Bearer {token}");
        let reply = send("GET", &decisions, &[("authorization", &auth)]).await;
        assert_eq!((reply.status, reply.reason()), (status, Some(reason)), "decisions, {what}: {}", reply.text);
    }
}

#[tokio::test]
async fn cors_preflight_is_answered_before_authentication() {
    let t = testbed().await;
    let cors = json!({
        "allowed_origins": ["https://app.example"],
        "allow_credentials": true,
        "max_age": 600,
        "allowed_headers": ["Authorization", "Content-Type"],
    });
    put_rules(
        &t,
        json!([
            {
                "id": "api",
                "match": {"url": "<http|https>://<[^/]+>/api/<.*>", "methods": ["GET", "POST"]},
                "authenticators": [{"handler": "oauth2_introspection", "config": {
                    "introspection_url": t.admin("/admin/oauth2/introspect"),
                    "introspection_request_headers": t.introspection_headers(),
                    "scope_strategy": "exact",
                    "required_scope": ["read"],
                }}],
                "authorizer": {"handler": "allow"},
                "mutators": [{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}],
                "cors": cors,
            },
            {
                "id": "open",
                "match": {"url": "<http|https>://<[^/]+>/open/<.*>", "methods": ["GET"]},
                "authenticators": [{"handler": "anonymous"}],
                "authorizer": {"handler": "allow"},
                "mutators": [{"handler": "noop"}],
                "cors": cors,
            }
        ]),
    )
    .await;
    let (api_probe, open_probe) = (t.gateway("/api/probe"), t.gateway("/open/probe"));
    let settled = t
        .wait_settled("the CORS rules on every worker", "envoy.log", || async {
            send("GET", &api_probe, &[]).await.reason() == Some("no_credentials")
                && send("GET", &open_probe, &[]).await.status == 200
        })
        .await;
    if let Err(e) = settled {
        panic!("{e}");
    }

    const APP: &str = "https://app.example";
    let api = t.gateway("/api/x");
    let preflight = send(
        "OPTIONS",
        &api,
        &[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204, "a preflight to a protected rule is no 401: {}", preflight.text);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(APP));
    assert_eq!(preflight.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    assert!(
        preflight
            .header("access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")),
        "{:?}",
        preflight.headers
    );
    assert!(preflight.text.is_empty(), "answered by the filter, not the upstream: {}", preflight.text);

    let evil =
        send("OPTIONS", &api, &[("origin", "https://evil.example"), ("access-control-request-method", "POST")]).await;
    assert_eq!(evil.status, 403, "{}", evil.text);
    assert_eq!(evil.header("access-control-allow-origin"), None);
    assert!(evil.text.is_empty(), "answered by the filter, not the upstream: {}", evil.text);

    // The real request is still authenticated; its 401 is readable by the app.
    let denied = send("GET", &api, &[("origin", APP)]).await;
    assert_eq!((denied.status, denied.reason()), (401, Some("no_credentials")), "{}", denied.text);
    assert_eq!(denied.header("access-control-allow-origin"), Some(APP));
    assert_eq!(denied.header("access-control-allow-credentials"), Some("true"));

    let allowed = send("GET", &t.gateway("/open/x"), &[("origin", APP)]).await;
    assert_eq!(allowed.status, 200, "{}", allowed.text);
    assert_eq!(allowed.body["method"], "GET", "the upstream answered: {}", allowed.text);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(APP), "added by the filter");
    assert_eq!(allowed.header("access-control-allow-credentials"), Some("true"));
    let other = send("GET", &t.gateway("/open/x"), &[("origin", "https://evil.example")]).await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(other.header("access-control-allow-origin"), None, "no CORS headers for another origin");
}
