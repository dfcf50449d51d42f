//! Configurations written for Ory Oathkeeper (and Hydra/Kratos setups) work through Envoy unchanged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis_e2e::{Reply, Testbed, put_rules, send, testbed, verified_gateway_claims};
use serde_json::{Value, json};

/// Replaces the API rules and waits until every Envoy worker judges `probe` (a GET without
/// credentials) with one of them, i.e. no longer answers "no rule matches".
async fn put_rules_and_wait(t: &Testbed, rules: Value, probe: &str) {
    put_rules(t, rules).await;
    let url = t.gateway(probe);
    let settled = t
        .wait_settled(&format!("the new rules judging {probe}"), "envoy.log", || async {
            let reply = send("GET", &url, &[]).await;
            reply.reason() != Some("no_rule") && reply.status != 503
        })
        .await;
    if let Err(e) = settled {
        panic!("{e}");
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// The `Bearer` token the upstream received in `Authorization`.
fn upstream_bearer(reply: &Reply) -> String {
    let values = reply.upstream("authorization");
    let bearer = values[0].as_str().unwrap_or_else(|| panic!("the upstream got no Authorization: {}", reply.text));
    assert_eq!(values.as_array().map(Vec::len), Some(1), "exactly one Authorization upstream: {values}");
    bearer.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a Bearer token: {bearer}")).to_owned()
}

#[tokio::test]
async fn oauth2_client_credentials_authenticates_basic_credentials_through_envoy() {
    let t = testbed().await;
    let created = t
        .admin_post("/admin/clients")
        .json(&json!({
            "client_name": "e2e-service",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "read",
        }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /admin/clients: {e}"));
    assert_eq!(created.status(), 201, "the client is created");
    let created: Value = created.json().await.unwrap_or_else(|e| panic!("{e}"));
    let id = created["client_id"].as_str().unwrap_or_else(|| panic!("no client_id in {created}")).to_owned();
    let secret =
        created["client_secret"].as_str().unwrap_or_else(|| panic!("no client_secret in {created}")).to_owned();

    put_rules_and_wait(
        &t,
        json!([{
            "id": "client-credentials", "match": {"url": "<http|https>://<[^/]+>/svc/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "oauth2_client_credentials", "config": {
                "token_url": t.public("/oauth2/token"),
                "required_scope": ["read"],
                "cache": {"enabled": true, "ttl": "1m"},
            }}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]
        }]),
        "/svc/probe",
    )
    .await;

    // Several requests on fresh connections: each Envoy worker exchanges (or reuses) the
    // credentials at the control plane's token endpoint through the `portcullis_public` cluster.
    for _ in 0..4 {
        let ok = send("GET", &t.gateway("/svc/orders"), &[("authorization", &basic(&id, &secret))]).await;
        assert_eq!(ok.status, 200, "valid client credentials pass: {}", ok.text);
        assert_eq!(ok.upstream("x-user"), json!([id]), "the subject is the client id");
    }

    let wrong = send("GET", &t.gateway("/svc/orders"), &[("authorization", &basic(&id, "not-the-secret"))]).await;
    assert_eq!(wrong.status, 401, "a wrong secret is refused: {}", wrong.text);
    assert_eq!(wrong.reason(), Some("client_invalid"), "{}", wrong.text);

    let unknown = send("GET", &t.gateway("/svc/orders"), &[("authorization", &basic("no-such-client", &secret))]).await;
    assert_eq!(unknown.status, 401, "an unknown client is refused: {}", unknown.text);
    assert_eq!(unknown.reason(), Some("client_invalid"), "{}", unknown.text);

    let none = send("GET", &t.gateway("/svc/orders"), &[]).await;
    assert_eq!(none.status, 401, "no credentials, no access: {}", none.text);
}

/// The access rule people deploy in front of an app that uses Ory Kratos sessions, as a YAML
/// rule file for Oathkeeper: a Kratos session cookie, or else anonymous; an id_token for the
/// upstream with claims from the session.
const KRATOS_RULE_FILE: &str = r#"
- id: kratos-protected
  upstream:
    preserve_host: true
    url: http://127.0.0.1:{{upstream_port}}
  match:
    url: <http|https>://<[^/]+>/app/<.*>
    methods:
      - GET
      - POST
      - OPTIONS
  authenticators:
    - handler: cookie_session
      config:
        check_session_url: {{whoami_url}}
        preserve_path: true
        extra_from: "@this"
        subject_from: identity.id
        only:
          - ory_kratos_session
        on_invalid: continue
    - handler: anonymous
  authorizer:
    handler: allow
  mutators:
    - handler: id_token
      config:
        issuer_url: {{issuer_url}}
        claims: |
          {
            "email": "{{ print .Extra.identity.traits.email }}",
            "session": "{{ print .Extra.id }}"
          }
    - handler: header
      config:
        headers:
          X-User: "{{ print .Subject }}"
"#;

#[tokio::test]
async fn a_kratos_style_rule_file_works_unchanged() {
    let t = testbed().await;
    let yaml = KRATOS_RULE_FILE
        .replace("{{upstream_port}}", &t.ports.upstream.to_string())
        .replace("{{whoami_url}}", &t.mock("/sessions/whoami"))
        .replace("{{issuer_url}}", &t.public("/"));
    let rules: Value = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("the rule file is YAML: {e}"));
    put_rules_and_wait(&t, rules, "/app/probe").await;

    // A Kratos session: the id_token carries the identity, signed by Envoy, verifiable with the
    // control plane's gateway JWKS.
    let valid = send("GET", &t.gateway("/app/dashboard"), &[("cookie", "ory_kratos_session=valid")]).await;
    assert_eq!(valid.status, 200, "a Kratos session passes: {}", valid.text);
    assert_eq!(valid.upstream("x-user"), json!(["user-1"]));
    let claims = verified_gateway_claims(&t, &upstream_bearer(&valid)).await;
    assert_eq!(claims["sub"], "user-1", "{claims}");
    assert_eq!(claims["email"], "a@example.com", "{claims}");
    assert_eq!(claims["session"], "s1", "{claims}");
    assert_eq!(claims["iss"], t.public("/"), "{claims}");
    let whoami = t.mocks.requests("/sessions/whoami");
    assert!(
        whoami.iter().any(|r| r.header("cookie").is_some_and(|c| c.contains("ory_kratos_session=valid"))),
        "Kratos was asked with the session cookie"
    );

    // POST with a session too (the rule's methods are GET, POST, OPTIONS).
    let post = send("POST", &t.gateway("/app/form"), &[("cookie", "ory_kratos_session=valid")]).await;
    assert_eq!(post.status, 200, "POST with a session passes: {}", post.text);
    assert_eq!(post.upstream("x-user"), json!(["user-1"]));

    // No session: anonymous, and the claims template is null-safe (Oathkeeper answers 500 on
    // `.Extra.identity.traits.email` with no identity).
    let anonymous = send("GET", &t.gateway("/app/dashboard"), &[]).await;
    assert_eq!(anonymous.status, 200, "no session: anonymous: {}", anonymous.text);
    assert_eq!(anonymous.upstream("x-user"), json!(["anonymous"]));
    let claims = verified_gateway_claims(&t, &upstream_bearer(&anonymous)).await;
    assert_eq!(claims["sub"], "anonymous", "{claims}");
    assert_eq!(claims["email"], "", "{claims}");
    assert_eq!(claims["session"], "", "{claims}");
    assert_eq!(claims["iss"], t.public("/"), "{claims}");

    // OPTIONS without an Origin is no CORS preflight: the rule judges it, as anonymous.
    let options = send("OPTIONS", &t.gateway("/app/dashboard"), &[]).await;
    assert_eq!(options.status, 200, "OPTIONS without a session: anonymous: {}", options.text);
    assert_eq!(options.body["method"], "OPTIONS", "the upstream answered: {}", options.text);
    assert_eq!(options.upstream("x-user"), json!(["anonymous"]));

    // A session Kratos refuses: `on_invalid: continue` falls back to anonymous.
    let asked = t.mocks.count("/sessions/whoami");
    let bad = send("GET", &t.gateway("/app/dashboard"), &[("cookie", "ory_kratos_session=expired")]).await;
    assert_eq!(bad.status, 200, "a refused session falls back to anonymous: {}", bad.text);
    assert_eq!(bad.upstream("x-user"), json!(["anonymous"]));
    let claims = verified_gateway_claims(&t, &upstream_bearer(&bad)).await;
    assert_eq!(claims["sub"], "anonymous", "{claims}");
    assert_eq!(claims["email"], "", "{claims}");
    assert!(t.mocks.count("/sessions/whoami") > asked, "Kratos was asked about the refused session");

    // A method the rule does not list is not matched.
    let delete = send("DELETE", &t.gateway("/app/dashboard"), &[("cookie", "ory_kratos_session=valid")]).await;
    assert_eq!(delete.reason(), Some("no_rule"), "DELETE is not in the rule's methods: {}", delete.text);
}
