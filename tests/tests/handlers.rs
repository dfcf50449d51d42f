//! Rule handlers through a real Envoy against mock external services, as users write them.

use portcullis_e2e::{Reply, Testbed, put_rules, send, testbed};
use serde_json::{Value, json};

/// Sends a request through Envoy on a new connection, without following redirects.
async fn gateway(t: &Testbed, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(method, &t.gateway(path), headers).await
}

async fn get(t: &Testbed, path: &str, headers: &[(&str, &str)]) -> Reply {
    gateway(t, "GET", path, headers).await
}

/// Replaces the API rules and waits until every Envoy worker judges `probe` (a GET without
/// credentials) with one of them, i.e. no longer answers "no rule matches".
async fn put_rules_and_wait(t: &Testbed, rules: Value, probe: &str) {
    put_rules(t, rules).await;
    let settled = t
        .wait_settled(&format!("the new rules judging {probe}"), "envoy.log", || async {
            let reply = get(t, probe, &[]).await;
            reply.reason() != Some("no_rule") && reply.status != 503
        })
        .await;
    if let Err(e) = settled {
        panic!("{e}");
    }
}

fn kratos_session(t: &Testbed, extra: Value) -> Value {
    let mut config = json!({
        "check_session_url": t.mock("/sessions/whoami"),
        "preserve_path": true,
        "subject_from": "identity.id",
        "extra_from": "@this",
        "only": ["ory_kratos_session"],
    });
    if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
        config.extend(extra);
    }
    json!({"handler": "cookie_session", "config": config})
}

fn x_user() -> Value {
    json!({"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}})
}

fn anonymous_rule(id: &str, url: &str, subject: &str) -> Value {
    json!({
        "id": id, "match": {"url": url, "methods": ["GET"]},
        "authenticators": [{"handler": "anonymous", "config": {"subject": subject}}],
        "authorizer": {"handler": "allow"},
        "mutators": [x_user()]
    })
}

const VALID: &str = "ory_kratos_session=valid";
const BOGUS: &str = "ory_kratos_session=expired";

#[tokio::test]
async fn cookie_session_asks_kratos_whoami_and_caches_when_told() {
    let t = testbed().await;
    let mutator = json!({"handler": "header", "config": {"headers": {
        "X-User": "{{ print .Subject }}",
        "X-Email": "{{ .Extra.identity.traits.email }}",
    }}});
    let rules = json!([
        {
            "id": "session", "match": {"url": "<http|https>://<[^/]+>/session/<.*>", "methods": ["GET"]},
            "authenticators": [kratos_session(&t, json!({}))],
            "authorizer": {"handler": "allow"}, "mutators": [mutator]
        },
        {
            "id": "session-cached", "match": {"url": "<http|https>://<[^/]+>/cached/<.*>", "methods": ["GET"]},
            "authenticators": [kratos_session(&t, json!({"cache": {"enabled": true, "ttl": "30s"}}))],
            "authorizer": {"handler": "allow"}, "mutators": [mutator]
        }
    ]);
    put_rules_and_wait(&t, rules, "/session/probe").await;

    let cookie = format!("{VALID}; theme=dark");
    let reply = get(&t, "/session/a?x=1", &[("cookie", &cookie), ("x-user", "admin"), ("x-email", "root@evil")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.upstream("x-user"), json!(["user-1"]), "the spoofed X-User is replaced");
    assert_eq!(reply.upstream("x-email"), json!(["a@example.com"]));
    let asked = t.mocks.requests("/sessions/whoami");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].method, "GET");
    assert_eq!(asked[0].header("cookie"), Some(cookie.as_str()), "the cookies are forwarded to Kratos");

    let reply = get(&t, "/session/a", &[("cookie", BOGUS)]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.reason(), Some("session_invalid"));
    let reply = get(&t, "/session/a", &[("cookie", "unrelated=1")]).await;
    assert_eq!(reply.status, 401, "a cookie not listed in `only` is no session: {}", reply.body);

    // Without a cache every request asks Kratos; with one, the second is answered from it.
    let before = t.mocks.count("/sessions/whoami");
    assert_eq!(get(&t, "/session/b", &[("cookie", VALID)]).await.status, 200);
    assert_eq!(t.mocks.count("/sessions/whoami"), before + 1);
    let first = get(&t, "/cached/a", &[("cookie", VALID)]).await;
    assert_eq!((first.status, first.upstream("x-user")), (200, json!(["user-1"])));
    let second = get(&t, "/cached/a", &[("cookie", VALID)]).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.upstream("x-user"), json!(["user-1"]), "the cached session still names the user");
    assert_eq!(second.upstream("x-email"), json!(["a@example.com"]));
    assert_eq!(t.mocks.count("/sessions/whoami"), before + 2, "the second cached request did not ask Kratos");
}

#[tokio::test]
async fn kratos_rule_falls_back_to_anonymous_on_a_missing_or_invalid_session() {
    let t = testbed().await;
    let rules = json!([{
        "id": "kratos-app",
        "match": {
            "url": "<http|https>://<[^/]+>/app/<.*>",
            "methods": ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        },
        "authenticators": [kratos_session(&t, json!({"on_invalid": "continue"})), {"handler": "anonymous"}],
        "authorizer": {"handler": "allow"},
        "mutators": [x_user()]
    }]);
    put_rules_and_wait(&t, rules, "/app/probe").await;

    let reply = get(&t, "/app/home", &[("x-user", "admin")]).await;
    assert_eq!((reply.status, reply.upstream("x-user")), (200, json!(["anonymous"])), "{}", reply.body);
    let preflight = gateway(&t, "OPTIONS", "/app/home", &[("origin", "http://app.example")]).await;
    assert_eq!(preflight.status, 200, "{}", preflight.body);
    assert_eq!(preflight.body["method"], "OPTIONS");
    assert_eq!(preflight.upstream("x-user"), json!(["anonymous"]));
    assert_eq!(t.mocks.count("/sessions/whoami"), 0, "no session cookie, no call to Kratos");

    let reply = get(&t, "/app/home", &[("cookie", BOGUS)]).await;
    assert_eq!(reply.status, 200, "an invalid session falls back to anonymous: {}", reply.body);
    assert_eq!(reply.upstream("x-user"), json!(["anonymous"]));
    assert_eq!(t.mocks.count("/sessions/whoami"), 1, "the invalid session was checked");

    let reply = get(&t, "/app/home", &[("cookie", VALID)]).await;
    assert_eq!((reply.status, reply.upstream("x-user")), (200, json!(["user-1"])));

    // Kratos failing is not an invalid session: no fall-back, the request fails closed.
    let reply = get(&t, "/app/home", &[("cookie", "ory_kratos_session=down")]).await;
    assert_eq!((reply.status, reply.reason()), (503, Some("upstream_unavailable")), "{}", reply.body);
}

#[tokio::test]
async fn bearer_token_is_checked_by_the_remote_endpoint() {
    let t = testbed().await;
    let rules = json!([{
        "id": "service-api", "match": {"url": "<http|https>://<[^/]+>/svc/<.*>", "methods": ["GET"]},
        "authenticators": [{"handler": "bearer_token", "config": {
            "check_session_url": t.mock("/check"), "preserve_path": true
        }}],
        "authorizer": {"handler": "allow"},
        "mutators": [{"handler": "header", "config": {"headers": {
            "X-User": "{{ print .Subject }}", "X-Role": "{{ .Extra.role }}"
        }}}]
    }]);
    put_rules_and_wait(&t, rules, "/svc/probe").await;

    let reply = get(&t, "/svc/items", &[("authorization", "Bearer good-token")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.upstream("x-user"), json!(["svc-1"]));
    assert_eq!(reply.upstream("x-role"), json!(["reader"]));
    let asked = t.mocks.requests("/check");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].header("authorization"), Some("Bearer good-token"));

    let reply = get(&t, "/svc/items", &[("authorization", "Bearer bad-token")]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.reason(), Some("session_invalid"));
    assert_eq!(get(&t, "/svc/items", &[]).await.status, 401, "no token at all");
}

#[tokio::test]
async fn remote_json_authorizer_asks_keto_and_forwards_its_answer_header() {
    let t = testbed().await;
    let rules = json!([{
        "id": "reports",
        "match": {"url": format!("http://127.0.0.1:{}/reports/<[a-z]+>", t.ports.gateway), "methods": ["GET"]},
        "authenticators": [kratos_session(&t, json!({}))],
        "authorizer": {"handler": "remote_json", "config": {
            "remote": t.mock("/relation-tuples/check"),
            "payload": r#"{"namespace": "reports", "object": "{{ printIndex .MatchContext.RegexpCaptureGroups 0 }}", "relation": "view", "subject_id": "{{ print .Subject }}"}"#,
            "forward_response_headers_to_upstream": ["X-Permission"]
        }},
        "mutators": [x_user()]
    }]);
    put_rules_and_wait(&t, rules, "/reports/probe").await;

    let reply = get(&t, "/reports/report", &[("cookie", VALID), ("x-permission", "spoofed")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.upstream("x-permission"), json!(["granted"]), "Keto's header, not the client's");
    assert_eq!(reply.upstream("x-user"), json!(["user-1"]));
    let asked = t.mocks.requests("/relation-tuples/check");
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].json(),
        json!({"namespace": "reports", "object": "report", "relation": "view", "subject_id": "user-1"})
    );
    assert_eq!(asked[0].header("content-type"), Some("application/json"));

    let reply = get(&t, "/reports/secret", &[("cookie", VALID), ("x-permission", "granted")]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.reason(), Some("denied_by_authorizer"));
    assert_eq!(t.mocks.requests("/relation-tuples/check")[1].json()["object"], "secret");
}

#[tokio::test]
async fn hydrator_enriches_the_session_and_the_cookie_mutator_passes_it_on() {
    let t = testbed().await;
    let rules = json!([{
        "id": "account", "match": {"url": "<http|https>://<[^/]+>/account/<.*>", "methods": ["GET"]},
        "authenticators": [kratos_session(&t, json!({}))],
        "authorizer": {"handler": "allow"},
        "mutators": [
            {"handler": "hydrator", "config": {"api": {"url": t.mock("/hydrate")}}},
            {"handler": "cookie", "config": {"cookies": {"plan": "{{ .Extra.plan }}"}}},
            x_user()
        ]
    }]);
    put_rules_and_wait(&t, rules, "/account/probe").await;

    let reply = get(&t, "/account/billing", &[("cookie", "ory_kratos_session=valid; theme=dark; plan=free")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let values = reply.upstream("cookie");
    let joined: Vec<&str> = values.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let mut cookies: Vec<&str> = joined.iter().flat_map(|v| v.split(';')).map(str::trim).collect();
    cookies.sort_unstable();
    assert_eq!(cookies, ["ory_kratos_session=valid", "plan=gold", "theme=dark"], "{values}");
    assert_eq!(reply.upstream("x-user"), json!(["user-1"]));

    let hydrated = t.mocks.requests("/hydrate");
    assert_eq!(hydrated.len(), 1);
    let session = hydrated[0].json();
    assert_eq!(session["subject"], "user-1");
    assert_eq!(session["extra"]["identity"]["traits"]["email"], "a@example.com");
}

#[tokio::test]
async fn error_handlers_redirect_browsers_challenge_api_clients_and_explain_in_json() {
    let t = testbed().await;
    let errors = json!([
        {"handler": "redirect", "config": {
            "to": "https://login.example/login", "return_to_query_param": "return_to",
            "when": [{"error": ["unauthorized"], "request": {"header": {"accept": ["text/html"]}}}]
        }},
        {"handler": "www_authenticate", "config": {
            "realm": "Portcullis API",
            "when": [{"error": ["unauthorized"], "request": {"header": {"accept": ["application/json"]}}}]
        }}
    ]);
    let rules = json!([
        {
            "id": "portal", "match": {"url": "<http|https>://<[^/]+>/portal/<.*>", "methods": ["GET"]},
            "authenticators": [kratos_session(&t, json!({}))],
            "authorizer": {"handler": "allow"}, "mutators": [x_user()], "errors": errors
        },
        {
            "id": "portal-admin", "match": {"url": "<http|https>://<[^/]+>/portal-admin/<.*>", "methods": ["GET"]},
            "authenticators": [kratos_session(&t, json!({}))],
            "authorizer": {"handler": "deny"}, "mutators": [x_user()], "errors": errors
        }
    ]);
    put_rules_and_wait(&t, rules, "/portal/probe").await;

    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let reply = get(&t, "/portal/page?tab=1", &[("accept", browser), ("cookie", BOGUS)]).await;
    assert_eq!(reply.status, 302);
    let location = reply.header("location").unwrap_or_default();
    let original = format!("http%3A%2F%2F127.0.0.1%3A{}%2Fportal%2Fpage%3Ftab%3D1", t.ports.gateway);
    assert_eq!(location, format!("https://login.example/login?return_to={original}"));
    let reply = get(&t, "/portal/page", &[("accept", browser)]).await;
    assert_eq!(reply.status, 302, "no session at all redirects a browser too");

    let reply = get(&t, "/portal/page", &[("accept", "application/json"), ("cookie", BOGUS)]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), Some(r#"Basic realm="Portcullis API""#));
    assert!(reply.header("location").is_none());

    // Neither handler is responsible: the default JSON error, with a reason and the request id.
    let reply = get(&t, "/portal/page", &[("accept", "text/plain"), ("cookie", BOGUS)]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], 401);
    assert_eq!(reply.reason(), Some("session_invalid"));
    let request_id = reply.body["error"]["request_id"].as_str().unwrap_or_default();
    assert!(!request_id.is_empty(), "Envoy's x-request-id is in the error: {}", reply.body);

    // `when` limits the redirect to 401s: a browser refused with 403 gets the JSON error.
    let reply = get(&t, "/portal-admin/page", &[("accept", browser), ("cookie", VALID)]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.reason(), Some("denied_by_rule"));
}

#[tokio::test]
async fn glob_strategy_rule_matches_through_envoy() {
    let t = testbed().await;
    let mut rule = anonymous_rule(
        "glob-docs",
        &format!("http://127.0.0.1:{}/glob/<{{alpha,beta}}>/<*>", t.ports.gateway),
        "glob-reader",
    );
    rule["match"]["strategy"] = json!("glob");
    put_rules_and_wait(&t, json!([rule]), "/glob/alpha/probe").await;

    for path in ["/glob/alpha/intro", "/glob/beta/intro"] {
        let reply = get(&t, path, &[]).await;
        assert_eq!((reply.status, reply.upstream("x-user")), (200, json!(["glob-reader"])), "{path}");
    }
    for path in ["/glob/gamma/intro", "/glob/alpha/a/b", "/glob/alpha/intro.txt", "/glob/alpha,beta/intro"] {
        let reply = get(&t, path, &[]).await;
        assert_eq!((reply.status, reply.reason()), (404, Some("no_rule")), "{path} must not match");
    }
}

#[tokio::test]
async fn priority_then_specificity_decide_between_overlapping_rules() {
    let t = testbed().await;
    let gateway = t.ports.gateway;
    let mut urgent = anonymous_rule("prio-urgent", "<http|https>://<[^/]+>/prio/<.*>", "urgent");
    urgent["priority"] = json!(10);
    let rules = json!([
        anonymous_rule("prio-specific", "<http|https>://<[^/]+>/prio/report", "specific"),
        urgent,
        anonymous_rule("spec-regex", "<http|https>://<[^/]+>/spec/<.*>", "regex"),
        anonymous_rule("spec-literal", &format!("http://127.0.0.1:{gateway}/spec/exact"), "literal"),
    ]);
    put_rules_and_wait(&t, rules, "/spec/probe").await;

    let reply = get(&t, "/prio/report", &[]).await;
    assert_eq!(reply.upstream("x-user"), json!(["urgent"]), "priority 10 beats a more specific rule");
    let reply = get(&t, "/spec/exact", &[]).await;
    assert_eq!(reply.upstream("x-user"), json!(["literal"]), "equal priority: the literal URL wins");
    let reply = get(&t, "/spec/other", &[]).await;
    assert_eq!(reply.upstream("x-user"), json!(["regex"]));
}

#[tokio::test]
async fn encoded_separators_and_dot_segments_never_reach_a_protected_path() {
    // The demo rules: /ratings needs a token, /public is anonymous. Envoy refuses %2F and %5C
    // (400, no JSON body) and resolves dot segments, %2e and `..;` first; the filter refuses
    // what remains ambiguous (`;` parameters). tests/tests/paths.rs covers thousands more.
    let t = testbed().await;
    for (sneaky, status, reason) in [
        ("/public/..%2Fratings/1", 400, None),
        ("/public/..%2fratings/1", 400, None),
        ("/public/..%5Cratings/1", 400, None),
        ("/public/%2e%2e/ratings/1", 401, Some("no_credentials")),
        ("/public/..;/ratings/1", 401, Some("no_credentials")),
        ("/ratings;x=1/1", 400, Some("ambiguous_path")),
        ("/public/%252e%252e/ratings/1", 400, Some("ambiguous_path")),
    ] {
        let reply = get(&t, sneaky, &[]).await;
        assert_eq!((reply.status, reply.reason()), (status, reason), "{sneaky}: {}", reply.text);
        assert!(reply.body.get("path").is_none(), "{sneaky} must not reach the upstream");
    }
    let reply = get(&t, "//public///hello", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["path"], "/public/hello");
    assert_eq!(reply.upstream("x-user"), json!(["anonymous"]));
}

#[tokio::test]
async fn explain_names_the_rule_and_the_reason_of_a_denial() {
    let t = testbed().await;
    let rules = json!([{
        "id": "explained", "match": {"url": "<http|https>://<[^/]+>/explained/<.*>", "methods": ["GET"]},
        "authenticators": [kratos_session(&t, json!({}))],
        "authorizer": {"handler": "allow"}, "mutators": [x_user()]
    }]);
    put_rules_and_wait(&t, rules, "/explained/probe").await;
    let url = t.gateway("/explained/page");

    let explain = async |request: Value| -> Value {
        let response = t.admin_post("/admin/rules/explain").json(&request).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    };
    let why = explain(json!({"method": "GET", "url": url, "headers": {"Cookie": BOGUS}})).await;
    assert_eq!(why["rule"], "explained", "{why}");
    assert_eq!((why["decision"].as_str(), why["status"].as_u64()), (Some("deny"), Some(401)), "{why}");
    assert_eq!(why["reason"], "session_invalid", "{why}");
    assert_eq!(why["calls"][0]["url"], t.mock("/sessions/whoami"), "{why}");
    assert_eq!(why["calls"][0]["status"], 401, "{why}");
    assert!(!why.to_string().contains("expired"), "the cookie's value is not echoed: {why}");

    let through_envoy = get(&t, "/explained/page", &[("cookie", BOGUS)]).await;
    assert_eq!((through_envoy.status, through_envoy.reason()), (401, Some("session_invalid")), "same verdict");

    let why = explain(json!({"url": url, "headers": {"Cookie": VALID}})).await;
    assert_eq!((why["decision"].as_str(), why["subject"].as_str()), (Some("allow"), Some("user-1")), "{why}");
    let why = explain(json!({"url": t.gateway("/nowhere")})).await;
    assert_eq!((why["rule"].clone(), why["reason"].as_str()), (Value::Null, Some("no_rule")), "{why}");
}
