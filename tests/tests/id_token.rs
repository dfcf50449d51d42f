//! The id_token mutator through a real Envoy: the filter signs with Envoy's `sign` foreign
//! function (BoringSSL) using the gateway key the control plane pushed, and the token verifies
//! against the gateway's `/.well-known/gateway-jwks.json`, never against the OAuth2 server's
//! `/.well-known/jwks.json` (issue 13 #3: a gateway token must not pass for an ID token).

use portcullis_e2e::{put_rules, send, testbed, verified_gateway_claims, verifies_at};
use serde_json::json;

#[tokio::test]
async fn envoy_signs_id_tokens_that_verify_with_the_gateway_jwks_only() {
    let t = testbed().await;
    put_rules(
        &t,
        json!([{
            "id": "with-id-token", "match": {"url": "<http|https>://<[^/]+>/idt/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous", "config": {"subject": "guest-7"}}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "id_token", "config": {"issuer_url": t.public("/"),
                "claims": "{\"aud\": [\"orders\"], \"tenant\": \"{{ .MatchContext.Header.Get \"X-Tenant\" }}\"}"}}]
        }]),
    )
    .await;

    let mut reply = None;
    let mut last = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        // No Authorization of our own: `anonymous` is only responsible without one (Oathkeeper).
        let r = send("GET", &t.gateway("/idt/x"), &[("x-tenant", "acme")]).await;
        last = format!("{} {}", r.status, r.text);
        if r.status == 200 {
            reply = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let reply = reply.unwrap_or_else(|| {
        let log = std::fs::read_to_string(t.dir.join("envoy.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("sign") || l.contains("denied")).collect();
        panic!("the rule never answered 200 with a minted token; last reply: {last}; envoy.log:\n{}", lines.join("\n"))
    });
    let bearer = reply.upstream("authorization")[0].as_str().unwrap().to_owned();
    let token = bearer.strip_prefix("Bearer ").expect("the upstream gets a Bearer id_token");

    let claims = verified_gateway_claims(&t, token).await;
    assert_eq!(claims["sub"], "guest-7");
    assert_eq!(claims["iss"], t.public("/"));
    assert_eq!(claims["aud"], json!(["orders"]));
    assert_eq!(claims["tenant"], "acme");

    assert!(
        !verifies_at(&t, "/.well-known/jwks.json", token).await,
        "a token the gateway minted verifies with the OAuth2 server's JWKS"
    );
}
