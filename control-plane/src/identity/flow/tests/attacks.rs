//! The self-service flows attacked from outside (issue 13): a stale stolen session, parallel
//! password and code guesses, sign-in/sign-out loops against the revocation list, forged
//! browser forms and foreign `return_to` targets. Each test is what an attacker would send.

use std::time::Duration;

use super::*;
use crate::clock::Clock as _;
use crate::testing::T0;

const PASSWORD: &str = "violet-tractor-umbrella";
/// Longer than the revocation debounce: a trailing publication has happened by then.
const PUBLISH_WAIT: Duration = Duration::from_millis(600);

fn session_token(r: &Reply) -> String {
    r.json()["session_token"].as_str().unwrap_or_else(|| panic!("no session token: {}", r.json())).to_owned()
}

/// POSTs all `requests` at once (each on its own task) and returns the answers in order.
async fn concurrently(h: &Harness, requests: Vec<Request<Body>>) -> Vec<Reply> {
    let mut set = tokio::task::JoinSet::new();
    for (i, req) in requests.into_iter().enumerate() {
        let router = h.public();
        set.spawn(async move { (i, Harness::send(router, req).await) });
    }
    let mut replies: Vec<(usize, Reply)> = Vec::new();
    while let Some(done) = set.join_next().await {
        replies.push(done.unwrap());
    }
    replies.sort_by_key(|(i, _)| *i);
    replies.into_iter().map(|(_, r)| r).collect()
}

fn json_post(path: &str, body: Value, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req =
        Request::post(path).header(header::CONTENT_TYPE, "application/json").header(header::ACCEPT, "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

async fn change_traits(h: &Harness, token: &str, traits: Value) -> Reply {
    let flow = h.get("/self-service/settings/api", &[("x-session-token", token)]).await.json();
    h.post_json(&flow_action(&flow), json!({"method": "profile", "traits": traits}), &[("x-session-token", token)])
        .await
}

async fn messages_to(h: &Harness, to: &str) -> Vec<crate::store::courier::CourierMessageRow> {
    let filter = crate::store::courier::CourierFilter { recipient: Some(to.into()), ..Default::default() };
    h.state.store.list_courier_messages(&filter, None, 100).await.unwrap()
}

async fn snapshot_revoked(h: &Harness) -> Vec<String> {
    let snapshot: Value = serde_json::from_slice(&h.state.rules.current().body).unwrap();
    snapshot["revoked"]
        .as_array()
        .map(|a| a.iter().map(|d| d.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

async fn logout_api(h: &Harness, token: &str) -> StatusCode {
    let del = Request::delete("/self-service/logout/api")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"session_token": token}).to_string()))
        .unwrap();
    Harness::send(h.public(), del).await.status
}

// --- 5: a stale session cannot take the account over -------------------------------------

#[tokio::test]
async fn a_stale_session_cannot_move_the_sign_in_address_and_the_old_address_is_told() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let stale = session_token(&register(&h, "kim@example.com", PASSWORD).await);
        // The thief's copy of the session is sixteen minutes old.
        h.clock.advance(16 * 60);
        let renamed = change_traits(&h, &stale, json!({"email": "kim@example.com", "name": "Kim"})).await;
        assert_eq!(renamed.status, StatusCode::OK, "a display name is not a credential: {}", renamed.json());

        let moved = change_traits(&h, &stale, json!({"email": "mallory@evil.test"})).await;
        assert_eq!(moved.status, StatusCode::FORBIDDEN, "{}", moved.json());
        assert_eq!(moved.json()["error"]["id"], "session_refresh_required");
        let me = whoami(&h, &stale).await.json();
        assert_eq!(me["identity"]["traits"]["email"], "kim@example.com", "nothing changed");
        assert_eq!(me["identity"]["recovery_addresses"][0]["value"], "kim@example.com");
        assert!(h.state.store.find_identity_by_identifier("code", "mallory@evil.test").await.unwrap().is_none());
        assert!(messages_to(&h, "kim@example.com").await.is_empty(), "nothing to tell yet");

        // A fresh sign-in (the owner's) may change it, and the old address is told.
        h.clock.advance(60);
        let fresh = session_token(&login(&h, "kim@example.com", PASSWORD).await);
        let moved = change_traits(&h, &fresh, json!({"email": "kim@new.example"})).await;
        assert_eq!(moved.status, StatusCode::OK, "{}", moved.json());
        assert_eq!(whoami(&h, &fresh).await.json()["identity"]["traits"]["email"], "kim@new.example");
        let told = messages_to(&h, "kim@example.com").await;
        assert_eq!(told.len(), 1, "exactly one notice to the old address");
        assert_eq!(told[0].template_type, "settings_address_changed");
        assert!(told[0].secret.is_none(), "no secret in it");
        assert!(
            told[0].body.contains("kim@example.com") && !told[0].body.contains("kim@new.example"),
            "{}",
            told[0].body
        );
        let when = crate::rfc3339(T0 + 17 * 60);
        assert!(told[0].body.contains(&when[..16].replace('T', " ")), "says when: {}", told[0].body);
        assert!(messages_to(&h, "kim@new.example").await.iter().all(|m| m.template_type != "settings_address_changed"));
    }
}

#[tokio::test]
async fn a_stale_browser_session_is_sent_to_sign_in_again_before_changing_the_address() {
    let h = Harness::new().await;
    let mut b = Browser { cookies: Vec::new() };
    let flow = b.start(&h, "registration").await;
    let r = b
        .submit(&h, &flow, &[("method", "password"), ("traits.email", "ned@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    h.clock.advance(16 * 60);
    let settings = b.start(&h, "settings").await;
    let form = b.submit(&h, &settings, &[("method", "profile"), ("traits.email", "mallory@evil.test")]).await;
    assert_eq!(form.status, StatusCode::SEE_OTHER);
    let public = h.state.config.urls.self_.public_base().to_owned();
    let to = form.header("location");
    assert!(to.starts_with(&format!("{public}/self-service/login/browser?refresh=true&return_to=")), "{to}");
    let csrf = settings["ui"]["nodes"][0]["attributes"]["value"].as_str().unwrap().to_owned();
    let spa = h
        .form(
            false,
            &flow_action(&settings),
            &[("csrf_token", &csrf), ("method", "profile"), ("traits.email", "mallory@evil.test")],
            &[("cookie", &b.cookie_header()), ("accept", "application/json")],
        )
        .await;
    assert_eq!(spa.status, StatusCode::FORBIDDEN);
    assert_eq!(spa.json()["error"]["id"], "session_refresh_required");
    assert!(spa.json()["redirect_browser_to"].as_str().unwrap().contains("refresh=true"));
    let me = h.get("/sessions/whoami", &[("cookie", &b.cookie_header())]).await.json();
    assert_eq!(me["identity"]["traits"]["email"], "ned@example.com");
}

// --- 7: password guesses are counted before they are checked ------------------------------

#[tokio::test]
async fn parallel_password_guesses_beyond_the_limit_are_refused_unchecked() {
    let mut config = Config::default();
    config.selfservice.methods.password.max_failures = 3;
    for (backend, h) in Harness::all_with_config(config).await {
        eprintln!("backend: {backend}");
        assert_eq!(register(&h, "olga@example.com", PASSWORD).await.status, StatusCode::OK);
        let mut requests = Vec::new();
        for i in 0..12 {
            let flow = h.api_flow("login", &[]).await;
            let body =
                json!({"method": "password", "identifier": "olga@example.com", "password": format!("guess-{i}")});
            requests.push(json_post(&flow_action(&flow), body, &[]));
        }
        let answers = concurrently(&h, requests).await;
        let ids: Vec<Vec<u64>> = answers.iter().map(|r| message_ids(&r.json())).collect();
        let checked = ids.iter().filter(|m| *m == &[4_000_006]).count();
        let locked = ids.iter().filter(|m| *m == &[4_000_045]).count();
        assert_eq!(checked + locked, 12, "{ids:?}");
        assert!(checked <= 3, "{checked} guesses were checked against the password, the limit is 3: {ids:?}");
        let right = login(&h, "olga@example.com", PASSWORD).await;
        assert_eq!(message_ids(&right.json()), [4_000_045], "locked, even for the right password");
    }
}

#[tokio::test]
async fn password_guesses_from_one_address_are_limited_across_identifiers() {
    let mut config = Config::default();
    config.selfservice.methods.password.max_failures = 2;
    let h = Harness::with_config(config).await;
    assert_eq!(register(&h, "pam@example.com", PASSWORD).await.status, StatusCode::OK);
    let from = [("x-forwarded-for", "203.0.113.7")];
    // Spraying one password over many accounts: the address allows five times the limit.
    for i in 0..10 {
        let flow = h.api_flow("login", &[]).await;
        let body =
            json!({"method": "password", "identifier": format!("user{i}@example.com"), "password": "Spring2026!"});
        let r = h.post_json(&flow_action(&flow), body, &from).await;
        assert_eq!(message_ids(&r.json()), [4_000_006], "attempt {i}");
    }
    let flow = h.api_flow("login", &[]).await;
    let body = json!({"method": "password", "identifier": "pam@example.com", "password": PASSWORD});
    let r = h.post_json(&flow_action(&flow), body.clone(), &from).await;
    assert_eq!(message_ids(&r.json()), [4_000_045], "the address is locked out");
    let elsewhere = h.post_json(&flow_action(&h.api_flow("login", &[]).await), body, &[]).await;
    assert_eq!(elsewhere.status, StatusCode::OK, "the account itself is not");
}

// --- one-time codes ------------------------------------------------------------------------

/// Starts a code flow of `kind` for `address` as a native app; returns the flow and the code.
async fn code_flow(h: &Harness, kind: &str, address: &str) -> (Value, String) {
    let flow = h.api_flow(kind, &[]).await;
    let body = match kind {
        "registration" => json!({"method": "code", "traits": {"email": address}}),
        "login" => json!({"method": "code", "identifier": address}),
        _ => json!({"method": "code", "email": address}),
    };
    let sent = h.post_json(&flow_action(&flow), body, &[]).await;
    assert_eq!(sent.status, StatusCode::OK, "{kind}: {}", sent.json());
    (flow, mailed_code(h, address).await)
}

#[tokio::test]
async fn every_code_is_burnt_after_five_wrong_tries() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        assert_eq!(register(&h, "quinn@example.com", PASSWORD).await.status, StatusCode::OK);
        for (kind, address) in [
            ("login", "quinn@example.com"),
            ("registration", "rae@example.com"),
            ("recovery", "quinn@example.com"),
            ("verification", "quinn@example.com"),
        ] {
            let (flow, code) = code_flow(&h, kind, address).await;
            let wrong = if code == "000000" { "111111" } else { "000000" };
            for i in 0..5 {
                let r = h.post_json(&flow_action(&flow), json!({"method": "code", "code": wrong}), &[]).await;
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{kind}: wrong try {i}");
            }
            let late = h.post_json(&flow_action(&flow), json!({"method": "code", "code": code}), &[]).await;
            assert_eq!(late.status, StatusCode::BAD_REQUEST, "{kind}: the right code after five wrong ones");
            assert!(late.json().get("session_token").is_none());
        }
        let me = h.admin_json(Method::GET, "/admin/identities?credentials_identifier=rae@example.com", None).await;
        assert_eq!(me.json().as_array().unwrap().len(), 0, "the burnt registration created nobody");
    }
}

#[tokio::test]
async fn a_code_guessed_in_a_request_that_loses_the_race_changes_nothing() {
    for (backend, h) in Harness::all().await {
        eprintln!("backend: {backend}");
        let token = session_token(&register(&h, "ruth@example.com", PASSWORD).await);
        let (flow, code) = code_flow(&h, "verification", "ruth@example.com").await;
        // Nineteen wrong guesses and the right one, all at once.
        let mut requests = Vec::new();
        for i in 0..20 {
            let guess = if i == 19 {
                code.clone()
            } else {
                format!("{:06}", (code.parse::<u32>().unwrap() + 1 + i) % 1_000_000)
            };
            requests.push(json_post(&flow_action(&flow), json!({"method": "code", "code": guess}), &[]));
        }
        let answers = concurrently(&h, requests).await;
        let right = &answers[19];
        let verified = whoami(&h, &token).await.json()["identity"]["verifiable_addresses"][0]["verified"] == true;
        let told = right.status == StatusCode::OK && message_ids(&right.json()) == [1_080_002];
        assert_eq!(verified, told, "the address was verified by a request that answered {}", right.status);
    }
}

// --- 9: the revocation list stays bounded ----------------------------------------------------

#[tokio::test]
async fn a_sign_in_sign_out_loop_cannot_grow_the_revocation_list_without_bound() {
    let h = Harness::new().await;
    assert_eq!(register(&h, "sam@example.com", PASSWORD).await.status, StatusCode::OK);
    let mut refused = None;
    for i in 0..40 {
        let r = login(&h, "sam@example.com", PASSWORD).await;
        if r.status != StatusCode::OK {
            refused = Some((i, r));
            break;
        }
        assert_eq!(logout_api(&h, &session_token(&r)).await, StatusCode::NO_CONTENT);
    }
    let (at, r) = refused.expect("forty sessions in a row were issued to one identity");
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(at <= 30, "refused only after {at} sessions");
    assert!(r.header("retry-after").parse::<u64>().is_ok_and(|s| s > 0), "{:?}", r.headers);
    tokio::time::sleep(PUBLISH_WAIT).await;
    assert!(snapshot_revoked(&h).await.len() <= 30);
}

#[tokio::test]
async fn a_burst_of_revocations_is_published_as_few_versions_and_none_is_lost() {
    let h = Harness::new().await;
    let r = register(&h, "tia@example.com", PASSWORD).await;
    let identity: crate::identity::Identity =
        h.state.store.get_identity(r.json()["identity"]["id"].as_str().unwrap()).await.unwrap().unwrap();
    let mut tokens = vec![session_token(&r)];
    for _ in 0..19 {
        let issued = crate::identity::session::issue(&h.state, &identity, "password", &Default::default()).await;
        tokens.push(issued.unwrap_or_else(|e| panic!("{e:?}")).token);
    }
    let mut rx = h.state.rules.subscribe();
    rx.borrow_and_update();
    let mut versions = 0;
    for token in &tokens {
        assert_eq!(logout_api(&h, token).await, StatusCode::NO_CONTENT);
        if rx.has_changed().unwrap() {
            rx.borrow_and_update();
            versions += 1;
        }
    }
    let digests: Vec<String> = tokens.iter().map(|t| crate::crypto::sha256_hex(t.as_bytes())).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let revoked = snapshot_revoked(&h).await;
        if digests.iter().all(|d| revoked.contains(d)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a revocation never reached the snapshot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if rx.has_changed().unwrap() {
        versions += 1;
    }
    assert!(versions <= 5, "20 revocations in a burst made {versions} snapshot versions");
}

#[tokio::test]
async fn expired_revocations_leave_the_snapshot() {
    let h = Harness::new().await;
    let token = session_token(&register(&h, "uma@example.com", PASSWORD).await);
    assert_eq!(logout_api(&h, &token).await, StatusCode::NO_CONTENT);
    assert_eq!(snapshot_revoked(&h).await, [crate::crypto::sha256_hex(token.as_bytes())]);
    h.clock.advance(24 * 3600 + 1);
    // What the periodic refresher does every two seconds.
    h.state.rules.reload_revocations(&h.state.store, h.clock.now()).await.unwrap();
    assert!(snapshot_revoked(&h).await.is_empty(), "the session would have expired: nothing left to refuse");
}

// --- CSRF and open redirects on every browser form ------------------------------------------

/// A browser signed in through the registration form.
async fn signed_in_browser(h: &Harness, email: &str) -> Browser {
    let mut b = Browser { cookies: Vec::new() };
    let flow = b.start(h, "registration").await;
    let r = b.submit(h, &flow, &[("method", "password"), ("traits.email", email), ("password", PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    b
}

#[tokio::test]
async fn every_browser_form_refuses_a_missing_or_wrong_csrf_token() {
    let h = Harness::new().await;
    let victim = signed_in_browser(&h, "vic@example.com").await;
    let forms: &[(&str, &[(&str, &str)])] = &[
        ("login", &[("method", "password"), ("identifier", "vic@example.com"), ("password", PASSWORD)]),
        ("login", &[("method", "code"), ("identifier", "vic@example.com")]),
        ("login", &[("method", "passkey"), ("passkey_login", "{}")]),
        ("registration", &[("method", "password"), ("traits.email", "x@example.com"), ("password", PASSWORD)]),
        ("registration", &[("method", "code"), ("traits.email", "x@example.com")]),
        ("registration", &[("method", "passkey"), ("traits.email", "x@example.com")]),
        ("settings", &[("method", "profile"), ("traits.email", "mallory@evil.test")]),
        ("settings", &[("method", "password"), ("password", "attacker-chosen-phrase")]),
        ("settings", &[("method", "passkey"), ("passkey_remove", "x")]),
        ("recovery", &[("method", "code"), ("email", "vic@example.com")]),
        ("verification", &[("method", "code"), ("email", "vic@example.com")]),
    ];
    for (kind, fields) in forms {
        // Login and registration need a browser without a session.
        let mut b =
            if matches!(*kind, "login" | "registration") { Browser { cookies: Vec::new() } } else { victim.clone() };
        let flow = b.start(&h, kind).await;
        let good = flow["ui"]["nodes"][0]["attributes"]["value"].as_str().unwrap().to_owned();
        let cases: [(&str, Option<&str>, bool); 4] = [
            ("no csrf_token", None, true),
            ("a wrong csrf_token", Some("forged-token-forged-token-forged-token-1234"), true),
            ("an empty csrf_token", Some(""), true),
            ("the right token but not the browser's cookie", Some(&good), false),
        ];
        for (what, token, with_cookie) in cases {
            let mut pairs: Vec<(&str, &str)> = fields.to_vec();
            if let Some(t) = token {
                pairs.push(("csrf_token", t));
            }
            let cookie = if with_cookie { b.cookie_header() } else { String::new() };
            for accept in ["text/html", "application/json"] {
                let r = h.form(false, &flow_action(&flow), &pairs, &[("cookie", &cookie), ("accept", accept)]).await;
                if accept == "application/json" {
                    assert_eq!(r.status, StatusCode::FORBIDDEN, "{kind} {fields:?} with {what}");
                    assert_eq!(r.json()["error"]["id"], "security_csrf_violation", "{kind} with {what}");
                } else {
                    assert_eq!(r.status, StatusCode::SEE_OTHER, "{kind} with {what}");
                    assert!(r.header("location").ends_with("/ui/error?id=security_csrf_violation"), "{kind}: {what}");
                }
                assert!(r.headers.get(header::SET_COOKIE).is_none(), "{kind} with {what} set a cookie");
            }
        }
    }
    let me = h.get("/sessions/whoami", &[("cookie", &victim.cookie_header())]).await.json();
    assert_eq!(me["identity"]["traits"]["email"], "vic@example.com", "no forged form changed anything");
    assert_eq!(login(&h, "vic@example.com", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_api_flow_is_refused_to_a_browser_and_never_sets_a_cookie() {
    let h = Harness::new().await;
    let victim = signed_in_browser(&h, "wes@example.com").await;
    assert_eq!(register(&h, "mallory@example.com", PASSWORD).await.status, StatusCode::OK);
    // Login CSRF: the attacker recovers their own account through an API flow (no CSRF token)
    // and has the victim's browser post the last step, hoping to plant a session cookie.
    let (flow, code) = code_flow(&h, "recovery", "mallory@example.com").await;
    for headers in [
        vec![("cookie", victim.cookie_header()), ("origin", "https://evil.example".to_owned())],
        vec![("origin", "https://evil.example".to_owned())],
        vec![("cookie", victim.cookie_header())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = h.form(false, &flow_action(&flow), &[("method", "code"), ("code", &code)], &headers).await;
        let refused = r.status == StatusCode::BAD_REQUEST || r.header("location").ends_with("/ui/error?id=bad_request");
        assert!(refused, "{headers:?}: {} {}", r.status, String::from_utf8_lossy(&r.bytes));
        assert!(r.headers.get(header::SET_COOKIE).is_none(), "{headers:?}");
    }
    // The native app itself gets its session as a token in the body, never as a cookie.
    let r = h.post_json(&flow_action(&flow), json!({"method": "code", "code": code}), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let set: Vec<&str> = r.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    assert!(set.is_empty(), "an API flow answered with cookies: {set:?}");
    let token = r.json()["continue_with"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "set_ory_session_token")
        .map(|c| c["ory_session_token"].as_str().unwrap().to_owned())
        .expect("set_ory_session_token in continue_with");
    assert_eq!(whoami(&h, &token).await.json()["identity"]["traits"]["email"], "mallory@example.com");
    let me = h.get("/sessions/whoami", &[("cookie", &victim.cookie_header())]).await.json();
    assert_eq!(me["identity"]["traits"]["email"], "wes@example.com", "the victim's browser is still the victim's");
}

#[tokio::test]
async fn no_flow_redirects_to_a_foreign_origin() {
    let mut config = Config::default();
    config.selfservice.allowed_return_urls = vec!["https://app.example".into()];
    let h = Harness::with_config(config).await;
    let foreign = [
        "https://evil.example",
        "https://evil.example/",
        "//evil.example",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "https:evil.example",
        "https:/evil.example",
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://app.example.evil.example/",
        "https://app.example@evil.example/",
        "https://evil.example/?https://app.example/",
        "http://app.example/",
        " https://evil.example",
        "https://evil.example\r\nX: y",
        "/relative",
    ];
    let public = h.state.config.urls.self_.public_base().to_owned();
    let ours =
        |location: &str| location.starts_with(&format!("{public}/")) || location.starts_with("https://app.example/");
    for kind in ["login", "registration", "recovery", "verification", "settings"] {
        for target in foreign {
            let path = format!("/self-service/{kind}/browser?return_to={}", crate::testing::enc(target));
            let html = h.get(&path, &[]).await;
            assert!(ours(html.header("location")), "{kind} return_to={target:?} → {:?}", html.header("location"));
            let json = h.get(&path, &[("accept", "application/json")]).await;
            assert_eq!(json.status, StatusCode::BAD_REQUEST, "{kind} return_to={target:?}");
            assert_eq!(json.json()["error"]["id"], "self_service_flow_return_to_forbidden", "{kind} {target:?}");
            let page = h.get(&format!("/ui/{kind}?return_to={}", crate::testing::enc(target)), &[]).await;
            let to = page.header("location");
            assert!(to.is_empty() || ours(to), "/ui/{kind} return_to={target:?} → {to:?}");
        }
    }
    // Logout with a foreign return_to ends nothing and sends nowhere.
    let b = signed_in_browser(&h, "xia@example.com").await;
    let logout = h.get("/self-service/logout/browser", &[("cookie", &b.cookie_header())]).await.json();
    let url = logout["logout_url"].as_str().unwrap();
    let path = &url[url.find("/self-service").unwrap()..];
    for target in foreign {
        let r = h
            .get(&format!("{path}&return_to={}", crate::testing::enc(target)), &[("cookie", &b.cookie_header())])
            .await;
        assert!(!r.status.is_redirection() || ours(r.header("location")), "logout return_to={target:?}");
        assert_ne!(r.status, StatusCode::SEE_OTHER, "logout return_to={target:?} → {:?}", r.header("location"));
    }
    assert_eq!(h.get("/sessions/whoami", &[("cookie", &b.cookie_header())]).await.status, StatusCode::OK);
    // An allowed return_to survives the whole flow.
    let mut c = Browser { cookies: Vec::new() };
    let r = h.get("/self-service/login/browser?return_to=https%3A%2F%2Fapp.example%2Fafter", &[]).await;
    c.absorb(&r);
    let id = r.header("location").split("flow=").nth(1).unwrap().to_owned();
    let flow = h.get(&format!("/self-service/login/flows?id={id}"), &[("cookie", &c.cookie_header())]).await.json();
    let done =
        c.submit(&h, &flow, &[("method", "password"), ("identifier", "xia@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(done.header("location"), "https://app.example/after");
}

// --- 7: password hashing is bounded ---------------------------------------------------------

#[tokio::test]
async fn a_saturated_server_refuses_password_work_instead_of_queueing_it() {
    let mut config = Config::default();
    config.hashers.argon2 = serde_json::from_value(json!({"max_concurrent": 1, "max_queued": 0})).unwrap();
    let h = Harness::with_config(config).await;
    assert_eq!(register(&h, "val@example.com", PASSWORD).await.status, StatusCode::OK);
    h.client(
        json!({"client_id": "svc", "client_secret": "an operator-chosen secret", "grant_types": ["client_credentials"],
        "scope": "read", "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    let held = h.state.hashing.saturate();
    let runs = h.state.hashing.runs();

    let signin = login(&h, "val@example.com", PASSWORD).await;
    assert_eq!(signin.status, StatusCode::TOO_MANY_REQUESTS, "{}", String::from_utf8_lossy(&signin.bytes));
    assert_eq!(signin.json()["error"]["id"], "self_service_flow_busy");
    assert!(signin.json()["error"]["reason"].as_str().unwrap().contains("try again"));
    assert!(signin.header("retry-after").parse::<u64>().is_ok_and(|s| s >= 1));
    let signup = register(&h, "wyn@example.com", PASSWORD).await;
    assert_eq!(signup.status, StatusCode::TOO_MANY_REQUESTS);
    let token = h
        .form(
            false,
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "svc"),
                ("client_secret", "an operator-chosen secret"),
            ],
            &[],
        )
        .await;
    assert_eq!(token.status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&token.bytes));
    assert_eq!(token.json()["error"], "temporarily_unavailable");
    assert_eq!(token.header("retry-after"), "1");
    assert_eq!(h.state.hashing.runs(), runs, "nothing was hashed while saturated");

    drop(held);
    // A refused sign-in cost no attempt: the account is not closer to a lockout.
    for _ in 0..3 {
        assert_eq!(login(&h, "val@example.com", PASSWORD).await.status, StatusCode::OK);
    }
    assert_eq!(h.token("svc", "an operator-chosen secret", "read").await["token_type"], "bearer");
}

#[tokio::test]
async fn parallel_guesses_are_checked_at_most_the_limit_times() {
    let mut config = Config::default();
    config.selfservice.methods.password.max_failures = 4;
    let h = Harness::with_config(config).await;
    assert_eq!(register(&h, "xan@example.com", PASSWORD).await.status, StatusCode::OK);
    let runs = h.state.hashing.runs();
    let mut requests = Vec::new();
    for i in 0..16 {
        let flow = h.api_flow("login", &[]).await;
        let body = json!({"method": "password", "identifier": "xan@example.com", "password": format!("guess-{i}")});
        requests.push(json_post(&flow_action(&flow), body, &[("x-forwarded-for", "198.51.100.4")]));
    }
    concurrently(&h, requests).await;
    assert_eq!(h.state.hashing.runs() - runs, 4, "argon2 ran once per allowed guess, never for the others");
}

// --- 9: the cap on live revocations -----------------------------------------------------------

#[tokio::test]
async fn a_full_revocation_list_pauses_new_sessions_but_never_sign_out() {
    let mut config = Config::default();
    config.session.revocation_list.max_entries = 3;
    let h = Harness::with_config(config).await;
    let first = session_token(&register(&h, "yui@example.com", PASSWORD).await);
    let mut live = vec![first];
    for _ in 0..3 {
        live.push(session_token(&login(&h, "yui@example.com", PASSWORD).await));
    }
    // Four sessions, three sign-outs: the list is full.
    for token in live.drain(..3) {
        assert_eq!(logout_api(&h, &token).await, StatusCode::NO_CONTENT);
    }
    let refused = login(&h, "yui@example.com", PASSWORD).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.json());
    assert_eq!(refused.json()["error"]["id"], "session_revocation_list_full");
    let wait: i64 = refused.header("retry-after").parse().unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    // Signing out still works, and is still pushed to filters.
    assert_eq!(logout_api(&h, &live[0]).await, StatusCode::NO_CONTENT);
    tokio::time::sleep(PUBLISH_WAIT).await;
    let revoked = snapshot_revoked(&h).await;
    assert!(revoked.contains(&crate::crypto::sha256_hex(live[0].as_bytes())));
    assert_eq!(revoked.len(), 4, "over the cap only by the sessions that were already live");
    // Once the revocations expire, sign-in resumes.
    h.clock.advance(24 * 3600 + 1);
    h.state.rules.reload_revocations(&h.state.store, h.clock.now()).await.unwrap();
    assert!(snapshot_revoked(&h).await.is_empty());
    assert_eq!(login(&h, "yui@example.com", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn sign_ins_from_one_address_are_rate_limited() {
    let mut config = Config::default();
    config.session.rate_limit.per_address = 2;
    let h = Harness::with_config(config).await;
    for who in ["zed", "amy", "bob"] {
        assert_eq!(register(&h, &format!("{who}@example.com"), PASSWORD).await.status, StatusCode::OK);
    }
    let from = [("x-forwarded-for", "192.0.2.1")];
    for who in ["zed", "amy"] {
        let flow = h.api_flow("login", &[]).await;
        let body = json!({"method": "password", "identifier": format!("{who}@example.com"), "password": PASSWORD});
        assert_eq!(h.post_json(&flow_action(&flow), body, &from).await.status, StatusCode::OK);
    }
    let flow = h.api_flow("login", &[]).await;
    let body = json!({"method": "password", "identifier": "bob@example.com", "password": PASSWORD});
    let r = h.post_json(&flow_action(&flow), body.clone(), &from).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"]["id"], "self_service_flow_rate_limited");
    assert!(r.json()["error"]["reason"].as_str().unwrap().contains("this address"));
    let flow = h.api_flow("login", &[]).await;
    let elsewhere = h.post_json(&flow_action(&flow), body, &[("x-forwarded-for", "192.0.2.2")]).await;
    assert_eq!(elsewhere.status, StatusCode::OK);
}
