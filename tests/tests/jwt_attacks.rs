//! Attacks on the gateway's caches through a real Envoy: a token verified for one rule replayed
//! on another on the same keep-alive connection (so the same worker and its verified-token
//! cache), and a cached session answer offered to a caller who differs in a credential the
//! session endpoint reads; also spoofed identity headers sent twice.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use portcullis_e2e::{Testbed, now_secs, put_rules, send, testbed};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).expect("a valid P-256 scalar")
}

fn jwks(key: &SigningKey, kid: &str) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": b64(point.x().expect("an uncompressed point")),
        "y": b64(point.y().expect("an uncompressed point")),
    }]})
}

fn es256(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

/// One HTTP/1.1 keep-alive connection to the gateway: every request on it is handled by the
/// same Envoy worker.
struct Connection {
    stream: BufReader<TcpStream>,
    authority: String,
}

struct RawReply {
    status: u16,
    body: Value,
}

impl Connection {
    async fn open(t: &Testbed) -> Connection {
        let authority = format!("127.0.0.1:{}", t.ports.gateway);
        let stream = TcpStream::connect(&authority).await.unwrap_or_else(|e| panic!("connect {authority}: {e}"));
        Connection { stream: BufReader::new(stream), authority }
    }

    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> RawReply {
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n", self.authority);
        for (n, v) in headers {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
        request.push_str("\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await.unwrap_or_else(|e| panic!("write: {e}"));
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).await.unwrap_or_else(|e| panic!("read: {e}"));
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            panic!("not an HTTP status line: {status_line:?}");
        });
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).await.unwrap_or_else(|e| panic!("read: {e}"));
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match (name.to_ascii_lowercase().as_str(), value.trim()) {
                ("content-length", v) => length = v.parse().unwrap_or(0),
                ("transfer-encoding", v) => chunked = v.eq_ignore_ascii_case("chunked"),
                ("connection", v) => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                self.stream.read_line(&mut size).await.unwrap_or_else(|e| panic!("read: {e}"));
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await.unwrap_or_else(|e| panic!("read: {e}"));
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        } else {
            body.resize(length, 0);
            self.stream.read_exact(&mut body).await.unwrap_or_else(|e| panic!("read: {e}"));
        }
        assert!(!close, "Envoy closed the connection after {path}: the next request would go to another worker");
        RawReply { status, body: serde_json::from_slice(&body).unwrap_or(Value::Null) }
    }
}

const OWN_ISSUER: &str = "https://login.test/";

#[tokio::test]
async fn a_token_verified_for_a_partner_rule_is_refused_by_our_rule_on_the_same_connection() {
    let t = testbed().await;
    let (partner, own) = (key(21), key(22));
    let partner_jwks = t.dir.join("partner-jwks.json");
    let own_jwks = t.dir.join("own-jwks.json");
    std::fs::write(&partner_jwks, jwks(&partner, "partner-1").to_string()).unwrap();
    std::fs::write(&own_jwks, jwks(&own, "own-1").to_string()).unwrap();
    let x_user = json!([{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]);
    put_rules(
        &t,
        json!([
            {"id": "partner", "match": {"url": "<http|https>://<[^/]+>/partner/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "jwt", "config": {"jwks_urls": [format!("file://{}", partner_jwks.display())]}}],
             "authorizer": {"handler": "allow"}, "mutators": x_user},
            {"id": "own", "match": {"url": "<http|https>://<[^/]+>/own/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "jwt", "config": {
                 "jwks_urls": [format!("file://{}", own_jwks.display())], "trusted_issuers": [OWN_ISSUER]}}],
             "authorizer": {"handler": "allow"}, "mutators": x_user}
        ]),
    )
    .await;
    let exp = now_secs() + 3600;
    let ours =
        es256(&own, &json!({"alg": "ES256", "kid": "own-1"}), &json!({"sub": "alice", "iss": OWN_ISSUER, "exp": exp}));
    let theirs =
        es256(&partner, &json!({"alg": "ES256", "kid": "partner-1"}), &json!({"sub": "p", "iss": "x", "exp": exp}));
    let (ours_auth, theirs_auth) = (format!("Bearer {ours}"), format!("Bearer {theirs}"));
    let (own_url, partner_url) = (t.gateway("/own/probe"), t.gateway("/partner/probe"));
    let settled = t
        .wait_settled("both key sets on every worker", "envoy.log", || async {
            send("GET", &own_url, &[("authorization", &ours_auth)]).await.status == 200
                && send("GET", &partner_url, &[("authorization", &theirs_auth)]).await.status == 200
        })
        .await;
    if let Err(e) = settled {
        panic!("{e}");
    }

    // The partner signs a token claiming our issuer, without kid, so our key set is a candidate.
    let forged =
        es256(&partner, &json!({"alg": "ES256", "typ": "JWT"}), &json!({"sub": "root", "iss": OWN_ISSUER, "exp": exp}));
    let forged_auth = format!("Bearer {forged}");
    let mut connection = Connection::open(&t).await;
    for round in 0..3 {
        let on_partner = connection.get("/partner/x", &[("authorization", &forged_auth)]).await;
        assert_eq!(
            on_partner.status, 200,
            "round {round}: the partner rule trusts the partner key: {}",
            on_partner.body
        );
        assert_eq!(on_partner.body["headers"]["x-user"], json!(["root"]));
        let on_own = connection.get("/own/x", &[("authorization", &forged_auth)]).await;
        assert_eq!(
            (on_own.status, on_own.body["error"]["reason"].as_str()),
            (401, Some("bad_signature")),
            "round {round}: replayed on our rule over the same connection: {}",
            on_own.body
        );
        // Our own token keeps working on the same connection (and worker).
        let good = connection.get("/own/x", &[("authorization", &ours_auth)]).await;
        assert_eq!((good.status, good.body["headers"]["x-user"].clone()), (200, json!(["alice"])), "round {round}");
    }
}

/// A `bearer_token` rule whose session endpoint (Kratos's whoami) also reads the cookie: the
/// answer about a valid session cookie must not be reused for a request with the same bearer
/// token and another cookie.
#[tokio::test]
async fn a_cached_session_answer_is_not_reused_for_a_caller_with_another_cookie() {
    let t = testbed().await;
    let cached = json!({"enabled": true, "ttl": "60s"});
    let x_user = json!([{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]);
    put_rules(
        &t,
        json!([
            {"id": "bearer", "match": {"url": "<http|https>://<[^/]+>/bearer/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "bearer_token", "config": {
                 "check_session_url": t.mock("/sessions/whoami"), "preserve_path": true,
                 "subject_from": "identity.id", "cache": cached}}],
             "authorizer": {"handler": "allow"}, "mutators": x_user}
        ]),
    )
    .await;
    let probe = t.gateway("/bearer/probe");
    let settled = t
        .wait_settled("the session rules on every worker", "envoy.log", || async {
            send("GET", &probe, &[]).await.status == 401
        })
        .await;
    if let Err(e) = settled {
        panic!("{e}");
    }

    // Through Envoy: the victim's request is answered and cached...
    let url = t.gateway("/bearer/x");
    let victim = send("GET", &url, &[("authorization", "Bearer shared"), ("cookie", "ory_kratos_session=valid")]).await;
    assert_eq!((victim.status, victim.upstream("x-user")), (200, json!(["user-1"])), "{}", victim.text);
    let asked = t.mocks.count("/sessions/whoami");
    // ...and the attacker's, with the same token but no valid session, is asked about.
    let attacker =
        send("GET", &url, &[("authorization", "Bearer shared"), ("cookie", "ory_kratos_session=stolen")]).await;
    assert_eq!(attacker.status, 401, "Envoy served the victim's cached session: {}", attacker.text);
    assert_eq!(t.mocks.count("/sessions/whoami"), asked + 1);
    let again = send("GET", &url, &[("authorization", "Bearer shared"), ("cookie", "ory_kratos_session=valid")]).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(t.mocks.count("/sessions/whoami"), asked + 1, "the victim's own answer is still cached");
}

/// Through `/decisions` a second `Cookie` header reaches the pipeline as it is (Envoy joins
/// them into one): the answer about the first caller's cookies is not the second's.
#[tokio::test]
async fn a_cached_decision_is_not_reused_for_a_caller_with_another_cookie_header() {
    let t = testbed().await;
    put_rules(
        &t,
        json!([{"id": "app", "match": {"url": "<http|https>://<[^/]+>/app/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "cookie_session", "config": {
                 "check_session_url": t.mock("/sessions/whoami"), "preserve_path": true,
                 "subject_from": "identity.id", "cache": {"enabled": true, "ttl": "60s"}}}],
             "authorizer": {"handler": "allow"},
             "mutators": [{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]}]),
    )
    .await;
    let decisions = t.admin("/decisions/app/x");
    let victim_cookies = [("host", "api.test"), ("cookie", "theme=dark"), ("cookie", "ory_kratos_session=valid")];
    let reply = send("GET", &decisions, &victim_cookies).await;
    assert_eq!((reply.status, reply.header("x-user")), (200, Some("user-1")), "{}", reply.text);
    let attacker_cookies = [("host", "api.test"), ("cookie", "theme=dark"), ("cookie", "ory_kratos_session=stolen")];
    let reply = send("GET", &decisions, &attacker_cookies).await;
    assert_eq!(reply.status, 401, "/decisions served the victim's cached session: {}", reply.text);
}

#[tokio::test]
async fn identity_headers_sent_twice_never_reach_the_upstream() {
    let t = testbed().await;
    // The demo rule `public` sets X-User: a client's X-User, however repeated, is replaced.
    let mut connection = Connection::open(&t).await;
    let reply = connection
        .get(
            "/public/x",
            &[("x-user", "root"), ("X-User", "root2"), ("x-USER", "root3"), ("x-forwarded-for", "6.6.6.6")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["headers"]["x-user"], json!(["anonymous"]), "{}", reply.body);
}

/// Sends one HTTP/1.1 request made of raw bytes and answers its status.
async fn raw_status(t: &Testbed, request: &[u8]) -> u16 {
    let authority = format!("127.0.0.1:{}", t.ports.gateway);
    let mut stream = TcpStream::connect(&authority).await.unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    stream.write_all(request).await.unwrap_or_else(|e| panic!("write: {e}"));
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).await.unwrap_or_else(|e| panic!("read: {e}"));
    status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {status_line:?}"))
}

#[tokio::test]
async fn a_header_value_that_is_not_utf8_neither_crashes_the_filter_nor_passes_it() {
    let t = testbed().await;
    let host = format!("127.0.0.1:{}", t.ports.gateway);
    // HTTP allows bytes above 0x7f in a value (obs-text, e.g. Latin-1); Envoy forwards them.
    // Filters that read the header map as UTF-8 strings panic on them, and a wasm panic takes
    // the filter's VM down for every request that follows.
    for (name, path) in [("x-name", "/public/x"), ("authorization", "/ratings/x"), ("cookie", "/public/x")] {
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{name}: caf").into_bytes();
        request.extend_from_slice(b"\xe9 \xff\r\nconnection: close\r\n\r\n");
        let status = raw_status(&t, &request).await;
        assert!(status < 500, "{name}: a value with Latin-1 bytes was answered {status}");
        let after =
            raw_status(&t, format!("GET /public/x HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes())
                .await;
        assert_eq!(after, 200, "{name}: the filter still serves the next request");
    }
    let denied = format!("GET /ratings/x HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    assert_eq!(raw_status(&t, denied.as_bytes()).await, 401, "and still refuses what it must");
}
