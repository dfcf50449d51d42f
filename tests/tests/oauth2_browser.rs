//! The OAuth2 authorization-code flow with PKCE in headless Chromium, through the built-in
//! sign-in and consent pages, ending at an API behind Envoy: the JWT access token the flow
//! produced is verified inside the filter (the control plane's JWKS, pushed in the snapshot),
//! the upstream learns who signed in, and revoking the token makes the next request 401.
//!
//! The "application" is the echo upstream: its `/callback` shows the browser the query the
//! authorization server redirected with, and the test plays the application's back end,
//! redeeming the code at the token endpoint. Screenshots: `target/browser-screenshots/<test>/`.

use portcullis_e2e::browser::{self, Browser};
use portcullis_e2e::{Extras, Testbed, put_rules, send, testbed_with, verified_claims};
use portcullis_model::crypto::{b64url, random_bytes, sha256};
use portcullis_testkit::SmtpSink;
use serde_json::{Value, json};

const PASSWORD: &str = "portcullis-Browser-7f3a9c";

async fn testbed(sink: &SmtpSink) -> Testbed {
    let config = json!({"courier": {"smtp": {"connection_uri": sink.connection_uri()}}});
    testbed_with(|_| Extras { host: "localhost".into(), config: config.clone() }).await
}

/// The value of `name` in the query of `url`.
fn query_param(url: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn browser_authorization_code_with_pkce_reaches_an_api_behind_envoy_until_revoked() {
    let test = "browser_authorization_code_with_pkce_reaches_an_api_behind_envoy_until_revoked";
    browser::available(test);
    let sink = SmtpSink::start().await;
    let t = testbed(&sink).await;
    let issuer = t.public("/");
    let callback = format!("http://localhost:{}/callback", t.ports.upstream);
    let secret = "app-secret-0123456789abcdef";
    let created = t
        .admin_post("/admin/clients")
        .json(&json!({
            "client_id": "shop",
            "client_name": "The Shop",
            "client_secret": secret,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [callback],
            "scope": "openid offline_access email orders.read",
            "access_token_strategy": "jwt",
        }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap_or_default());

    put_rules(
        &t,
        json!([{
            "id": "orders",
            "match": {"url": format!("http://localhost:{}/orders/<**>", t.ports.gateway), "methods": ["GET"], "strategy": "glob"},
            "authenticators": [{"handler": "jwt", "config": {
                "jwks_urls": [format!("http://127.0.0.1:{}/.well-known/jwks.json", t.ports.public)],
                "trusted_issuers": [issuer],
                "required_scope": ["orders.read"],
                "scope_strategy": "exact",
            }}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}],
        }]),
    )
    .await;

    // A user with an account, signed out.
    let b = Browser::launch(test).await;
    let email = "erin@example.com";
    b.goto(&t.public("/self-service/registration/browser")).await;
    b.wait_for_url(&t.public("/ui/registration?flow=")).await;
    b.fill("traits.email", email).await;
    b.fill("password", PASSWORD).await;
    b.press("method", "password").await;
    b.wait_for_url(&t.public("/ui/welcome")).await;
    let (_, whoami) = b.fetch("/sessions/whoami").await;
    let user_id = whoami["identity"]["id"].as_str().unwrap_or_else(|| panic!("whoami: {whoami}")).to_owned();
    b.goto(&t.public("/self-service/logout/browser")).await;
    let logout = b.json().await;
    b.goto(logout["logout_url"].as_str().unwrap_or_else(|| panic!("logout: {logout}"))).await;
    b.wait_for_url(&t.public("/ui/login")).await;

    // The application sends the browser to the authorization endpoint with PKCE.
    let verifier = b64url(&random_bytes::<48>());
    let challenge = b64url(&sha256(verifier.as_bytes()));
    let state = b64url(&random_bytes::<12>());
    let nonce = b64url(&random_bytes::<12>());
    let mut authorize = reqwest::Url::parse(&t.public("/oauth2/auth")).unwrap_or_else(|e| panic!("{e}"));
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "shop")
        .append_pair("redirect_uri", &callback)
        .append_pair("scope", "openid offline_access email orders.read")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    b.goto(authorize.as_str()).await;

    // Signed out: the built-in login page, then back into the flow.
    b.wait_for_url(&t.public("/ui/login?flow=")).await;
    b.shot("sign-in").await;
    b.fill("identifier", email).await;
    b.fill("password", PASSWORD).await;
    b.press("method", "password").await;

    // Consent: the client's name and the scopes it asks for, then Allow.
    b.wait_for_url(&t.public("/ui/oauth2/consent")).await;
    b.wait_for_text("The Shop").await;
    b.wait_for_text("orders.read").await;
    b.shot("consent").await;
    b.press("action", "allow").await;

    // Back at the application with a code and the state it sent.
    b.wait_for_url(&callback).await;
    b.shot("callback").await;
    let landed = b.url().await;
    assert_eq!(query_param(&landed, "state").as_deref(), Some(state.as_str()), "{landed}");
    assert_eq!(query_param(&landed, "iss").as_deref(), Some(issuer.as_str()), "RFC 9207 iss: {landed}");
    let code = query_param(&landed, "code").unwrap_or_else(|| panic!("no code in {landed}"));

    // The application's back end redeems it; a wrong verifier fails, the right one works once.
    let redeem = |verifier: String| {
        let t = &t;
        let code = code.clone();
        let callback = callback.clone();
        async move {
            let r = t
                .http
                .post(t.public("/oauth2/token"))
                .basic_auth("shop", Some(secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", callback.as_str()),
                    ("code_verifier", verifier.as_str()),
                ])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, wrong) = redeem(b64url(&random_bytes::<48>())).await;
    assert_eq!((status, wrong["error"].as_str()), (400, Some("invalid_grant")), "{wrong}");
    let (status, tokens) = redeem(verifier.clone()).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["refresh_token"].is_string(), "offline_access was granted: {tokens}");
    let id_token = verified_claims(&t, tokens["id_token"].as_str().unwrap_or_else(|| panic!("{tokens}"))).await;
    assert_eq!(id_token["sub"], user_id.as_str());
    assert_eq!(id_token["aud"], json!(["shop"]));
    assert_eq!(id_token["nonce"], nonce.as_str());
    assert_eq!(id_token["amr"], json!(["pwd"]));
    let access = tokens["access_token"].as_str().unwrap_or_else(|| panic!("{tokens}")).to_owned();
    let claims = verified_claims(&t, &access).await;
    assert_eq!(claims["sub"], user_id.as_str(), "a JWT access token: {claims}");

    // The API behind Envoy: no token → 401; the access token → the upstream sees the user.
    let api = t.gateway("/orders/1");
    let bearer = format!("Bearer {access}");
    t.wait_settled("the access token to pass on every worker", "envoy.log", || async {
        send("GET", &api, &[("authorization", &bearer)]).await.status == 200
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let through = send("GET", &api, &[("authorization", &bearer)]).await;
    assert_eq!(through.upstream("x-user"), json!([user_id]), "{}", through.text);
    assert_eq!(send("GET", &api, &[]).await.status, 401);

    // Revoked (RFC 7009): the digest is pushed to the filters, which refuse the token.
    let revoked = t
        .http
        .post(t.public("/oauth2/revoke"))
        .basic_auth("shop", Some(secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(revoked.status(), 200);
    t.wait_settled("every worker to refuse the revoked token", "envoy.log", || async {
        send("GET", &api, &[("authorization", &bearer)]).await.status == 401
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // A code works once; its replay (RFC 6749 §4.1.2) revokes what it produced.
    let (status, replay) = redeem(verifier).await;
    assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")), "a code works once: {replay}");
    b.close().await;
}
