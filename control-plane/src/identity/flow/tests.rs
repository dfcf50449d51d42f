//! In-process tests of the self-service flows and sessions through the public router, as a
//! native app (API flows) and as a browser (cookies, CSRF, redirects).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::config::Config;
use crate::testing::{FILTER_TOKEN, Harness, Reply, flow_action, message_ids};

/// Registers with a password as a native app; returns the session token.
async fn register(h: &Harness, email: &str, password: &str) -> Reply {
    let flow = h.api_flow("registration", &[]).await;
    h.post_json(
        &flow_action(&flow),
        json!({"method": "password", "traits": {"email": email}, "password": password}),
        &[],
    )
    .await
}

async fn login(h: &Harness, identifier: &str, password: &str) -> Reply {
    let flow = h.api_flow("login", &[]).await;
    h.post_json(&flow_action(&flow), json!({"method": "password", "identifier": identifier, "password": password}), &[])
        .await
}

async fn whoami(h: &Harness, token: &str) -> Reply {
    h.get("/sessions/whoami", &[("x-session-token", token)]).await
}

/// The code in the newest courier message to `to`, read from the store: the admin API masks
/// codes. The clock moves on a second so the next message is strictly newer.
async fn mailed_code(h: &Harness, to: &str) -> String {
    let filter = crate::store::courier::CourierFilter { recipient: Some(to.into()), ..Default::default() };
    let rows = h.state.store.list_courier_messages(&filter, None, 1).await.unwrap();
    let row = rows.first().expect("a message was queued");
    let code = row.secret.clone().expect("the queued message still holds its code");
    assert!(row.body.contains(&code), "the e-mail carries the code");
    h.clock.advance(1);
    code
}

#[tokio::test]
async fn password_registration_signs_in_and_whoami_shows_the_identity() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let r = register(&h, "Alice@Example.com", "violet-tractor-umbrella").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        let body = r.json();
        let token = body["session_token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("pc_st_"));
        assert_eq!(body["identity"]["traits"]["email"], "Alice@Example.com");
        let me = whoami(&h, &token).await;
        assert_eq!(me.status, StatusCode::OK);
        let session = me.json();
        assert_eq!(session["active"], true);
        assert_eq!(session["authentication_methods"][0]["method"], "password");
        assert_eq!(session["identity"]["verifiable_addresses"][0]["value"], "alice@example.com");
        assert!(session["identity"].get("metadata_admin").is_none(), "whoami never shows admin metadata");
        assert_eq!(me.header("x-kratos-authenticated-identity-id"), session["identity"]["id"].as_str().unwrap());
        // The identifier is case-insensitive for e-mail addresses.
        assert_eq!(login(&h, "ALICE@example.com", "violet-tractor-umbrella").await.status, StatusCode::OK);
        // Nothing about the password is ever returned.
        assert!(!String::from_utf8_lossy(&r.bytes).contains("argon2"));
    }
}

#[tokio::test]
async fn registration_errors_name_the_field_with_kratos_ids() {
    let h = Harness::new().await;
    let r = register(&h, "not-an-address", "violet-tractor-umbrella").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let flow = r.json();
    let email =
        flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == "traits.email").unwrap();
    assert_eq!(email["messages"][0]["id"], 4_000_001);
    assert_eq!(email["attributes"]["value"], "not-an-address", "what the user typed is kept");
    assert_eq!(message_ids(&register(&h, "b@example.com", "short").await.json()), [4_000_032]);
    assert_eq!(message_ids(&register(&h, "b@example.com", "password123").await.json()), [4_000_034]);
    assert_eq!(register(&h, "b@example.com", "violet-tractor-umbrella").await.status, StatusCode::OK);
    let dup = register(&h, "B@example.com", "another-long-passphrase").await;
    assert_eq!(message_ids(&dup.json()), [4_000_007]);
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_then_rate_limited() {
    let mut config = Config::default();
    config.selfservice.methods.password.max_failures = 3;
    for (backend, h) in Harness::all_with_config(config).await {
        eprintln!("backend: {backend}");
        assert_eq!(register(&h, "carol@example.com", "violet-tractor-umbrella").await.status, StatusCode::OK);
        for _ in 0..3 {
            let r = login(&h, "carol@example.com", "wrong-password").await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert_eq!(message_ids(&r.json()), [4_000_006]);
        }
        // An unknown account gets the same answer.
        assert_eq!(message_ids(&login(&h, "nobody@example.com", "wrong-password").await.json()), [4_000_006]);
        let locked = login(&h, "carol@example.com", "violet-tractor-umbrella").await;
        assert_eq!(message_ids(&locked.json()), [4_000_045], "locked even with the right password");
        h.clock.advance(15 * 60 + 1);
        assert_eq!(login(&h, "carol@example.com", "violet-tractor-umbrella").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn code_registration_and_login_by_email() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let flow = h.api_flow("registration", &[]).await;
        let sent = h
            .post_json(&flow_action(&flow), json!({"method": "code", "traits": {"email": "dan@example.com"}}), &[])
            .await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.json());
        assert_eq!(sent.json()["state"], "sent_email");
        let code = mailed_code(&h, "dan@example.com").await;
        let wrong = h.post_json(&flow_action(&flow), json!({"method": "code", "code": "000000"}), &[]).await;
        assert_eq!(message_ids(&wrong.json()), [4_040_003]);
        let done = h.post_json(&flow_action(&flow), json!({"method": "code", "code": code}), &[]).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.json());
        let identity = &done.json()["identity"];
        assert_eq!(identity["verifiable_addresses"][0]["verified"], true, "the code proved the address");
        // The same code cannot be used twice.
        let again = h.post_json(&flow_action(&flow), json!({"method": "code", "code": code}), &[]).await;
        assert_ne!(again.status, StatusCode::OK);

        let flow = h.api_flow("login", &[]).await;
        let sent =
            h.post_json(&flow_action(&flow), json!({"method": "code", "identifier": "dan@example.com"}), &[]).await;
        assert_eq!(message_ids(&sent.json()), [1_010_014]);
        let code = mailed_code(&h, "dan@example.com").await;
        let done = h.post_json(&flow_action(&flow), json!({"method": "code", "code": code}), &[]).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.json());
        assert_eq!(done.json()["session"]["authentication_methods"][0]["method"], "code");
    }
}

#[tokio::test]
async fn login_codes_expire_and_allow_few_tries_and_unknown_addresses_look_the_same() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let flow = h.api_flow("login", &[]).await;
        let sent =
            h.post_json(&flow_action(&flow), json!({"method": "code", "identifier": "ghost@example.com"}), &[]).await;
        assert_eq!(message_ids(&sent.json()), [1_010_014], "no hint that the account does not exist");
        let r = h.admin_json(Method::GET, "/admin/courier/messages?recipient=ghost@example.com", None).await;
        assert_eq!(r.json().as_array().unwrap().len(), 0, "but nothing is mailed");

        assert_eq!(register(&h, "erin@example.com", "violet-tractor-umbrella").await.status, StatusCode::OK);
        let flow = h.api_flow("login", &[]).await;
        h.post_json(&flow_action(&flow), json!({"method": "code", "identifier": "erin@example.com"}), &[]).await;
        let code = mailed_code(&h, "erin@example.com").await;
        for _ in 0..5 {
            h.post_json(&flow_action(&flow), json!({"method": "code", "code": "999999"}), &[]).await;
        }
        let spent = h.post_json(&flow_action(&flow), json!({"method": "code", "code": code}), &[]).await;
        assert_eq!(spent.status, StatusCode::BAD_REQUEST, "five wrong tries burn the code");

        let flow = h.api_flow("login", &[]).await;
        h.post_json(&flow_action(&flow), json!({"method": "code", "identifier": "erin@example.com"}), &[]).await;
        let code = mailed_code(&h, "erin@example.com").await;
        h.clock.advance(15 * 60 + 1);
        let late = h.post_json(&flow_action(&flow), json!({"method": "code", "code": code}), &[]).await;
        assert_eq!(late.status, StatusCode::BAD_REQUEST, "codes live 15 minutes");
    }
}

#[tokio::test]
async fn the_registration_policy_applies_to_every_method() {
    let mut config = Config::default();
    config.selfservice.policy.allowed_email_domains = vec!["example.com".into()];
    let h = Harness::with_config(config).await;
    let r = register(&h, "mallory@evil.test", "violet-tractor-umbrella").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(message_ids(&r.json()), [4_000_040], "the password method: the policy's message id");
    let flow = h.api_flow("registration", &[]).await;
    let by_code =
        h.post_json(&flow_action(&flow), json!({"method": "code", "traits": {"email": "m@evil.test"}}), &[]).await;
    assert_eq!(message_ids(&by_code.json()), [4_000_040]);
    let flow = h.api_flow("login", &[]).await;
    let login_code =
        h.post_json(&flow_action(&flow), json!({"method": "code", "identifier": "m@evil.test"}), &[]).await;
    assert_eq!(message_ids(&login_code.json()), [4_000_040]);
    assert_eq!(register(&h, "ok@example.com", "violet-tractor-umbrella").await.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_revokes_the_session_and_pushes_the_digest_to_filters() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let token = register(&h, "fay@example.com", "violet-tractor-umbrella").await.json()["session_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let del = Request::delete("/self-service/logout/api")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"session_token": token}).to_string()))
            .unwrap();
        assert_eq!(Harness::send(h.public(), del).await.status, StatusCode::NO_CONTENT);
        let me = whoami(&h, &token).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED);
        assert_eq!(me.json()["error"], "session_inactive");
        let snap = Harness::send(
            h.admin(),
            Request::get("/admin/snapshot")
                .header("authorization", format!("Bearer {FILTER_TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let digest = crate::crypto::sha256_hex(token.as_bytes());
        assert!(snap.json()["revoked"].as_array().unwrap().iter().any(|d| d == &json!(digest)));
    }
}

/// A browser: starts a flow, keeps the CSRF cookie, posts forms.
#[derive(Clone)]
struct Browser {
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn absorb(&mut self, r: &Reply) {
        for v in r.headers.get_all(header::SET_COOKIE) {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !val.is_empty() {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    async fn start(&mut self, h: &Harness, kind: &str) -> Value {
        let r = h.get(&format!("/self-service/{kind}/browser"), &[("cookie", &self.cookie_header())]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        self.absorb(&r);
        let id = r.header("location").split("flow=").nth(1).unwrap().to_owned();
        let f = h.get(&format!("/self-service/{kind}/flows?id={id}"), &[("cookie", &self.cookie_header())]).await;
        assert_eq!(f.status, StatusCode::OK, "{}", String::from_utf8_lossy(&f.bytes));
        f.json()
    }

    async fn submit(&mut self, h: &Harness, flow: &Value, pairs: &[(&str, &str)]) -> Reply {
        let csrf = flow["ui"]["nodes"][0]["attributes"]["value"].as_str().unwrap().to_owned();
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend_from_slice(pairs);
        let r = h.form(false, &flow_action(flow), &all, &[("cookie", &self.cookie_header())]).await;
        self.absorb(&r);
        r
    }
}

#[tokio::test]
async fn browser_forms_redirect_set_cookies_and_need_the_csrf_cookie() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let mut b = Browser { cookies: Vec::new() };
        let flow = b.start(&h, "registration").await;
        assert_eq!(flow["ui"]["nodes"][0]["attributes"]["name"], "csrf_token");
        let r = b
            .submit(&h, &flow, &[("method", "password"), ("traits.email", "gus@example.com"), ("password", "short")])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "a form error goes back to the page");
        assert!(r.header("location").contains("/ui/registration?flow="));
        let r = b
            .submit(
                &h,
                &flow,
                &[("method", "password"), ("traits.email", "gus@example.com"), ("password", "violet-tractor-umbrella")],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(r.header("location").ends_with("/ui/welcome"));
        let set =
            r.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
        let session = set.iter().find(|c| c.starts_with("ory_kratos_session=pc_st_")).expect("session cookie");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
        let me = h.get("/sessions/whoami", &[("cookie", &b.cookie_header())]).await;
        assert_eq!(me.status, StatusCode::OK);

        // Signed in: a new login flow is not needed.
        let again = h.get("/self-service/login/browser", &[("cookie", &b.cookie_header())]).await;
        assert_eq!(again.status, StatusCode::SEE_OTHER);
        assert!(again.header("location").ends_with("/ui/welcome"));
        let json = h
            .get("/self-service/login/browser", &[("cookie", &b.cookie_header()), ("accept", "application/json")])
            .await;
        assert_eq!(json.json()["error"]["id"], "session_already_available");

        // Another site cannot submit for this browser: its form lacks the cookie.
        let mut stranger = Browser { cookies: Vec::new() };
        let flow = stranger.start(&h, "login").await;
        let csrf = flow["ui"]["nodes"][0]["attributes"]["value"].as_str().unwrap();
        let forged = h
            .form(
                false,
                &flow_action(&flow),
                &[("csrf_token", csrf), ("method", "password"), ("identifier", "x"), ("password", "y")],
                &[("accept", "application/json")],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(forged.json()["error"]["id"], "security_csrf_violation");

        // Logout in the browser.
        let logout = h.get("/self-service/logout/browser", &[("cookie", &b.cookie_header())]).await;
        let url = logout.json()["logout_url"].as_str().unwrap().to_owned();
        let path = &url[url.find("/self-service").unwrap()..];
        let done = h.get(path, &[("cookie", &b.cookie_header())]).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER);
        b.absorb(&done);
        let forged_logout = h.get(path, &[]).await;
        assert_eq!(forged_logout.status, StatusCode::UNAUTHORIZED, "a logout link works only in its browser");
        assert_eq!(h.get("/sessions/whoami", &[("cookie", &b.cookie_header())]).await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn return_to_must_be_allowed() {
    let mut config = Config::default();
    config.selfservice.allowed_return_urls = vec!["https://app.example".into()];
    let h = Harness::with_config(config).await;
    let ok = h
        .get("/self-service/login/browser?return_to=https://app.example/after", &[("accept", "application/json")])
        .await;
    assert_eq!(ok.json()["return_to"], "https://app.example/after");
    for bad in ["https://app.example.evil.io/", "https://evil.io/", "javascript:alert(1)"] {
        let r = h
            .get(
                &format!("/self-service/login/browser?return_to={}", crate::testing::enc(bad)),
                &[("accept", "application/json")],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json()["error"]["id"], "self_service_flow_return_to_forbidden");
    }
}

#[tokio::test]
async fn settings_change_the_password_only_with_a_recent_sign_in() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let token = register(&h, "hal@example.com", "violet-tractor-umbrella").await.json()["session_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let flow = h.get("/self-service/settings/api", &[("x-session-token", &token)]).await.json();
        let email =
            flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == "traits.email").unwrap();
        assert_eq!(email["attributes"]["value"], "hal@example.com");
        let r = h
            .post_json(
                &flow_action(&flow),
                json!({"method": "password", "password": "new-secret-phrase-42"}),
                &[("x-session-token", &token)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        assert_eq!(message_ids(&r.json()), [1_050_001]);
        assert_eq!(login(&h, "hal@example.com", "new-secret-phrase-42").await.status, StatusCode::OK);

        h.clock.advance(2 * 3600);
        let flow = h.get("/self-service/settings/api", &[("x-session-token", &token)]).await.json();
        let r = h
            .post_json(
                &flow_action(&flow),
                json!({"method": "password", "password": "yet-another-phrase-43"}),
                &[("x-session-token", &token)],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.json()["error"]["id"], "session_refresh_required");
        // Without a session there is no settings flow.
        assert_eq!(h.get("/self-service/settings/api", &[]).await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn recovery_by_code_signs_in_and_opens_settings() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        assert_eq!(register(&h, "ivy@example.com", "violet-tractor-umbrella").await.status, StatusCode::OK);
        let mut b = Browser { cookies: Vec::new() };
        let flow = b.start(&h, "recovery").await;
        let r = b.submit(&h, &flow, &[("method", "code"), ("email", "ivy@example.com")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let code = mailed_code(&h, "ivy@example.com").await;
        let r = b.submit(&h, &flow, &[("method", "code"), ("code", &code)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(r.header("location").contains("/ui/settings?flow="), "{}", r.header("location"));
        assert_eq!(h.get("/sessions/whoami", &[("cookie", &b.cookie_header())]).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn verification_by_code_marks_the_address() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let token = register(&h, "jo@example.com", "violet-tractor-umbrella").await.json()["session_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let flow = h.api_flow("verification", &[]).await;
        h.post_json(&flow_action(&flow), json!({"method": "code", "email": "jo@example.com"}), &[]).await;
        let code = mailed_code(&h, "jo@example.com").await;
        let r = h.post_json(&flow_action(&flow), json!({"method": "code", "code": code}), &[]).await;
        assert_eq!(message_ids(&r.json()), [1_080_002]);
        assert_eq!(whoami(&h, &token).await.json()["identity"]["verifiable_addresses"][0]["verified"], true);
    }
}

#[tokio::test]
async fn sessions_slide_and_tokenize_into_a_signed_jwt() {
    let mut config = Config::default();
    config.session.whoami.tokenizer.templates.insert(
        "api".into(),
        serde_json::from_value(
            json!({"ttl": "5m", "claims": {"email": "{{ print .Extra.identity.traits.email }}", "team": "blue"}}),
        )
        .unwrap(),
    );
    for (backend, h) in Harness::all_with_config(config).await {
        eprintln!("backend: {backend}");
        let token = register(&h, "kim@example.com", "violet-tractor-umbrella").await.json()["session_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let first = whoami(&h, &token).await.json();
        h.clock.advance(13 * 3600);
        let later = whoami(&h, &token).await.json();
        assert_ne!(first["expires_at"], later["expires_at"], "used after half its life, the session was extended");
        let t = h.get("/sessions/whoami?tokenize_as=api", &[("x-session-token", &token)]).await.json();
        let jwt = t["tokenized"].as_str().unwrap();
        let payload: Value =
            serde_json::from_slice(&crate::crypto::b64url_decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(payload["email"], "kim@example.com");
        assert_eq!(payload["team"], "blue");
        assert_eq!(payload["sub"], t["identity"]["id"]);
        assert_eq!(payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(), 300);
        let jwks = h.get("/.well-known/jwks.json", &[]).await.json();
        let header: Value =
            serde_json::from_slice(&crate::crypto::b64url_decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
        assert!(
            jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == header["kid"]),
            "verifiable with the public JWKS"
        );
        let unknown = h.get("/sessions/whoami?tokenize_as=nope", &[("x-session-token", &token)]).await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn my_sessions_and_the_admin_session_api() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let a = register(&h, "lee@example.com", "violet-tractor-umbrella").await.json();
        let first = a["session_token"].as_str().unwrap().to_owned();
        let identity = a["identity"]["id"].as_str().unwrap().to_owned();
        let second = login(&h, "lee@example.com", "violet-tractor-umbrella").await.json()["session_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let others = h.get("/sessions", &[("x-session-token", &first)]).await.json();
        assert_eq!(others.as_array().unwrap().len(), 1, "the current session is not in the list");
        let listed = h.admin_json(Method::GET, &format!("/admin/identities/{identity}/sessions"), None).await.json();
        assert_eq!(listed.as_array().unwrap().len(), 2);
        let id = others[0]["id"].as_str().unwrap();
        let extended = h.admin_json(Method::PATCH, &format!("/admin/sessions/{id}/extend"), None).await;
        assert_eq!(extended.status, StatusCode::OK);
        let r = Harness::send(
            h.public(),
            Request::delete("/sessions").header("x-session-token", &first).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.json()["count"], 1);
        assert_eq!(whoami(&h, &second).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(whoami(&h, &first).await.status, StatusCode::OK);
        let d = h
            .admin_json(
                Method::DELETE,
                &format!("/admin/sessions/{}", whoami(&h, &first).await.json()["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(d.status, StatusCode::NO_CONTENT);
        assert_eq!(whoami(&h, &first).await.status, StatusCode::UNAUTHORIZED);
    }
}

/// A registration web hook on a local port: refuses `blocked@…` with Kratos's message shape
/// and stamps `metadata_public` on everyone else.
async fn hook_server() -> String {
    crate::identity::hooks::test_server(|body: Value| {
        let email = body["identity"]["traits"]["email"].as_str().unwrap_or("").to_owned();
        if email.starts_with("blocked@") {
            let refusal = json!({"messages": [{"instance_ptr": "#/traits/email",
                "messages": [{"id": 4_000_099, "text": "This address is on the block list.", "type": "error"}]}]});
            (403, refusal.to_string())
        } else {
            (200, json!({"identity": {"metadata_public": {"plan": "free"}}}).to_string())
        }
    })
    .await
}

#[tokio::test]
async fn an_interrupting_web_hook_can_refuse_or_amend_a_registration() {
    let url = hook_server().await;
    let mut config = Config::default();
    config.selfservice.flows.registration.after = serde_json::from_value(json!([
        {"hook": "web_hook", "config": {"url": url, "can_interrupt": true}},
        {"hook": "session"}
    ]))
    .unwrap();
    for (backend, h) in Harness::all_with_config(config).await {
        eprintln!("backend: {backend}");
        let refused = register(&h, "blocked@example.com", "violet-tractor-umbrella").await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(message_ids(&refused.json()), [4_000_099]);
        assert!(h.state.store.find_identity_by_identifier("password", "blocked@example.com").await.unwrap().is_none());
        let ok = register(&h, "welcome@example.com", "violet-tractor-umbrella").await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.json());
        assert_eq!(ok.json()["identity"]["metadata_public"]["plan"], "free", "the hook's change was stored");
    }
}

#[tokio::test]
async fn an_unreachable_interrupting_hook_refuses_and_without_the_session_hook_nobody_is_signed_in() {
    let mut config = Config::default();
    config.selfservice.flows.registration.after = serde_json::from_value(
        json!([{"hook": "web_hook", "config": {"url": "http://127.0.0.1:9/hook", "can_interrupt": true}}]),
    )
    .unwrap();
    let h = Harness::with_config(config).await;
    let r = register(&h, "x@example.com", "violet-tractor-umbrella").await;
    assert_eq!(message_ids(&r.json()), [5_000_001], "fail closed");
    let mut config = Config::default();
    config.selfservice.flows.registration.after = Vec::new();
    let h = Harness::with_config(config).await;
    let r = register(&h, "y@example.com", "violet-tractor-umbrella").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json().get("session_token").is_none(), "registered, not signed in");
    assert_eq!(r.json()["identity"]["traits"]["email"], "y@example.com");
}

fn login_hooks(after: Value) -> Config {
    let mut config = Config::default();
    config.selfservice.flows.login.after = serde_json::from_value(after).unwrap();
    config
}

/// Answers a login hook by the local part of the address signing in, the way a CRM or policy
/// service would.
fn login_hook_answer(body: Value) -> (u16, String) {
    let traits = &body["identity"]["traits"];
    let email = traits["email"].as_str().unwrap_or("").to_owned();
    let local = email.split('@').next().unwrap_or("");
    match local {
        "invalid" => (200, json!({"identity": {"traits": {"email": "not an address"}}}).to_string()),
        "blocked" => {
            let refusal = json!({"messages": [{"instance_ptr": "#/traits/email",
                "messages": [{"id": 4_000_099, "text": "Your subscription has ended.", "type": "error"}]}]});
            (403, refusal.to_string())
        }
        "broken" => (500, "{}".into()),
        "garbage" => (200, "<html>oops</html>".into()),
        "unchanged" => (204, String::new()),
        _ => {
            let changed = json!({"identity": {
                "traits": {"email": email, "name": "Ada Lovelace"},
                "metadata_public": {"plan": "pro", "method": body["flow"]["active"]},
                "metadata_admin": {"crm_id": 7},
            }});
            (200, changed.to_string())
        }
    }
}

#[tokio::test]
async fn a_parsing_login_hook_sets_traits_and_metadata_before_the_session() {
    let url = crate::identity::hooks::test_server(login_hook_answer).await;
    let config =
        login_hooks(json!({"hooks": [{"hook": "web_hook", "config": {"url": url, "response": {"parse": true}}}]}));
    for (backend, h) in Harness::all_with_config(config).await {
        eprintln!("backend: {backend}");
        let r = register(&h, "ada@example.com", "violet-tractor-umbrella").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        assert!(r.json()["identity"]["traits"].get("name").is_none(), "login hooks do not run at registration");
        let r = login(&h, "ada@example.com", "violet-tractor-umbrella").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        let token = r.json()["session_token"].as_str().unwrap().to_owned();
        let me = whoami(&h, &token).await.json();
        assert_eq!(me["identity"]["traits"]["name"], "Ada Lovelace");
        assert_eq!(me["identity"]["metadata_public"], json!({"plan": "pro", "method": "password"}));
        assert!(me["identity"].get("metadata_admin").is_none());
        let id = me["identity"]["id"].as_str().unwrap();
        let stored = h.state.store.get_identity(id).await.unwrap().unwrap();
        assert_eq!(stored.body.metadata_admin, json!({"crm_id": 7}), "the change was stored");
        assert_eq!(stored.body.traits["name"], "Ada Lovelace");

        register(&h, "unchanged@example.com", "violet-tractor-umbrella").await;
        let r = login(&h, "unchanged@example.com", "violet-tractor-umbrella").await;
        assert_eq!(r.status, StatusCode::OK, "204 means no change: {}", r.json());
        assert_eq!(r.json()["session"]["identity"]["traits"], json!({"email": "unchanged@example.com"}));
    }
}

#[tokio::test]
async fn a_login_hook_that_refuses_fails_or_answers_nonsense_interrupts_and_changes_nothing() {
    let url = crate::identity::hooks::test_server(login_hook_answer).await;
    let config = login_hooks(json!({"hooks": [{"hook": "web_hook", "config": {"url": url, "can_interrupt": true}}]}));
    for (backend, h) in Harness::all_with_config(config).await {
        eprintln!("backend: {backend}");
        for (local, ids, text) in [
            ("invalid", [5_000_002], "an account check answered something invalid"),
            ("garbage", [5_000_002], "an account check answered something invalid"),
            ("blocked", [4_000_099], "Your subscription has ended."),
            ("broken", [5_000_001], "Signing in is unavailable right now"),
        ] {
            let email = format!("{local}@example.com");
            let r = register(&h, &email, "violet-tractor-umbrella").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json());
            let id = r.json()["identity"]["id"].as_str().unwrap().to_owned();
            let before = h.state.store.get_identity(&id).await.unwrap().unwrap();
            let r = login(&h, &email, "violet-tractor-umbrella").await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{local}: {}", r.json());
            assert!(r.json().get("session_token").is_none(), "{local}: nobody is signed in");
            assert_eq!(message_ids(&r.json()), ids, "{local}");
            let shown = r.json()["ui"]["messages"][0]["text"].as_str().unwrap().to_owned();
            assert!(shown.contains(text), "{local}: {shown}");
            let after = h.state.store.get_identity(&id).await.unwrap().unwrap();
            assert_eq!(after, before, "{local}: the identity is unchanged");
        }
    }
    let config = login_hooks(
        json!({"hooks": [{"hook": "web_hook", "config": {"url": "http://127.0.0.1:9/hook", "response": {"parse": true}}}]}),
    );
    let h = Harness::with_config(config).await;
    register(&h, "x@example.com", "violet-tractor-umbrella").await;
    let r = login(&h, "x@example.com", "violet-tractor-umbrella").await;
    assert_eq!(message_ids(&r.json()), [5_000_001], "an unreachable hook fails closed");
}

#[tokio::test]
async fn per_method_login_hooks_replace_the_default_and_may_change_the_login_identifier() {
    let stamp = crate::identity::hooks::test_server(|_| {
        (200, json!({"identity": {"metadata_public": {"hook": "default"}}}).to_string())
    })
    .await;
    let rename = crate::identity::hooks::test_server(|body: Value| {
        assert_eq!(body["flow"]["active"], "code");
        (200, json!({"identity": {"traits": {"email": "renamed@example.com"}}}).to_string())
    })
    .await;
    let config = login_hooks(json!({
        "hooks": [{"hook": "web_hook", "config": {"url": stamp, "response": {"parse": true}}}],
        "code": {"hooks": [{"hook": "web_hook", "config": {"url": rename, "response": {"parse": true}}}]},
    }));
    for (backend, h) in Harness::all_with_config(config).await {
        eprintln!("backend: {backend}");
        register(&h, "eve@example.com", "violet-tractor-umbrella").await;
        let r = login(&h, "eve@example.com", "violet-tractor-umbrella").await;
        assert_eq!(r.json()["session"]["identity"]["metadata_public"]["hook"], "default");

        let flow = h.api_flow("login", &[]).await;
        h.post_json(&flow_action(&flow), json!({"method": "code", "identifier": "eve@example.com"}), &[]).await;
        let code = mailed_code(&h, "eve@example.com").await;
        let done = h.post_json(&flow_action(&flow), json!({"method": "code", "code": code}), &[]).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.json());
        let identity = &done.json()["session"]["identity"];
        assert_eq!(identity["traits"]["email"], "renamed@example.com");
        assert_eq!(identity["metadata_public"]["hook"], "default", "the code list replaced the default list");
        assert_eq!(identity["verifiable_addresses"][0]["value"], "renamed@example.com");

        let old = login(&h, "eve@example.com", "violet-tractor-umbrella").await;
        assert_eq!(message_ids(&old.json()), [4_000_006], "the old address no longer signs in");
        let new = login(&h, "renamed@example.com", "violet-tractor-umbrella").await;
        assert_eq!(new.status, StatusCode::OK, "the password follows the new address: {}", new.json());
    }
}

#[tokio::test]
async fn traits_a_registration_hook_sets_must_pass_the_policy_and_become_the_identifiers() {
    let url = crate::identity::hooks::test_server(|body: Value| {
        let email = body["identity"]["traits"]["email"].as_str().unwrap_or("").replace("@example.com", "");
        let to =
            if email == "outsider" { "outsider@elsewhere.org".to_owned() } else { format!("{email}@corp.example.com") };
        (200, json!({"identity": {"traits": {"email": to}}}).to_string())
    })
    .await;
    let mut config = Config::default();
    config.selfservice.policy.allowed_email_domains = vec!["example.com".into(), "*.example.com".into()];
    config.selfservice.flows.registration.after = serde_json::from_value(json!([
        {"hook": "web_hook", "config": {"url": url, "response": {"parse": true}}},
        {"hook": "session"}
    ]))
    .unwrap();
    for (backend, h) in Harness::all_with_config(config).await {
        eprintln!("backend: {backend}");
        let r = register(&h, "outsider@example.com", "violet-tractor-umbrella").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json());
        assert_eq!(message_ids(&r.json()), [u64::from(crate::identity::policy::MESSAGE_ID)]);
        assert!(
            h.state.store.find_identity_by_identifier("password", "outsider@elsewhere.org").await.unwrap().is_none()
        );
        let r = register(&h, "lee@example.com", "violet-tractor-umbrella").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        assert_eq!(r.json()["identity"]["traits"]["email"], "lee@corp.example.com");
        assert_eq!(login(&h, "lee@corp.example.com", "violet-tractor-umbrella").await.status, StatusCode::OK);
        assert_eq!(login(&h, "lee@example.com", "violet-tractor-umbrella").await.status, StatusCode::BAD_REQUEST);
    }
}

mod attacks;
