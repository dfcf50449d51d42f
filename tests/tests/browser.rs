//! Real-browser journeys in headless Chromium: the built-in pages, the self-service flows,
//! sessions, one-time codes read from an in-process SMTP sink, passkeys with a WebAuthn virtual
//! authenticator, the registration policy, and an Envoy-protected app that sends signed-out
//! browsers to the login page. Each test asserts what the user would notice and saves a
//! screenshot per step under `target/browser-screenshots/<test>/`.
//!
//! Everything a browser sees is on `http://localhost:<port>`, the public listener and the
//! gateway alike: cookies are per host (so one session serves both), and passkeys need an RP
//! ID of `localhost` (`127.0.0.1` is not a valid one). Without Chromium and chromedriver these
//! tests fail with the command that installs them (`PORTCULLIS_TEST_SKIP_BROWSER=1 ./just test`
//! leaves them out and says so).

use std::time::{Duration, Instant};

use portcullis_e2e::browser::{self, Browser};
use portcullis_e2e::{Extras, Ports, Testbed, fresh_client, put_rules, testbed_with};
use portcullis_testkit::{SmtpSink, six_digit_code};
use serde_json::{Value, json};

/// The message id of "Now confirm with your passkey." on the passkey sign-up step.
const PASSKEY_CONFIRM: u32 = 1_040_901;

/// The message id of the registration policy's refusal ("Only e-mail addresses at ... can be
/// used here.").
const POLICY_REFUSED: u32 = portcullis_model::identity::REGISTRATION_POLICY_MESSAGE_ID;

/// Strong enough for any length or similarity policy, and in no breach list.
const PASSWORD: &str = "portcullis-Browser-7f3a9c";

/// A testbed whose browser-facing URLs are on `localhost`, whose courier mails the sink, and
/// whose flows may return to the gateway; `extra` is merged into the control plane's config.
async fn testbed(sink: &SmtpSink, extra: impl Fn(&Ports) -> Value) -> Testbed {
    testbed_with(|ports| {
        let mut config = json!({
            "courier": {"smtp": {"connection_uri": sink.connection_uri()}},
            "selfservice": {"allowed_return_urls": [format!("http://localhost:{}", ports.gateway)]},
        });
        merge(&mut config, extra(ports));
        Extras { host: "localhost".into(), config }
    })
    .await
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (k, v) in extra {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (_, Value::Null) => {}
        (base, extra) => *base = extra,
    }
}

fn no_extra(_: &Ports) -> Value {
    Value::Null
}

/// The welcome page after a sign-in, showing who is signed in.
async fn assert_signed_in(t: &Testbed, b: &Browser, email: &str, step: &str) {
    b.wait_for_url(&t.public("/ui/welcome")).await;
    b.wait_for_text(email).await;
    b.shot(step).await;
    let (status, session) = b.fetch("/sessions/whoami").await;
    assert_eq!(status, 200, "whoami after {step}: {session}");
    assert_eq!(session["active"], true);
    assert_eq!(session["identity"]["traits"]["email"], email);
}

/// Signs out as a user would: the sign-out control on `/ui/logout`, which must be there.
/// Returns when the sign-out was clicked.
async fn sign_out(t: &Testbed, b: &Browser) -> Instant {
    b.goto(&t.public("/ui/logout")).await;
    b.shot("logout-page").await;
    let control = "a[href*=\"/self-service/logout?\"], form[action*=\"/self-service/logout\"] button, \
                   form[action*=\"/self-service/logout\"] input[type=submit]";
    // `element` waits for the control and fails the test, with a screenshot, when it never comes.
    let link = b.element(control).await;
    let clicked = Instant::now();
    if let Err(e) = link.click().await {
        b.fail(&format!("clicking the sign-out control: {e}")).await;
    }
    b.wait_for_url(&t.public("/ui/login")).await;
    b.shot("signed-out").await;
    let (status, body) = b.fetch("/sessions/whoami").await;
    assert_eq!(status, 401, "whoami after signing out: {body}");
    clicked
}

/// The code e-mailed to `to`, waiting for the courier.
async fn mailed_code(sink: &SmtpSink, to: &str) -> String {
    let Some(mail) = sink.wait_for(to, Duration::from_secs(20)).await else {
        panic!(
            "no e-mail to {to} within 20 s; the sink holds {:?}",
            sink.messages().iter().map(|m| &m.to).collect::<Vec<_>>()
        );
    };
    six_digit_code(&mail.text).unwrap_or_else(|| panic!("no six-digit code in the e-mail to {to}:\n{}", mail.text))
}

#[tokio::test]
async fn browser_register_with_password_and_see_whoami() {
    let test = "browser_register_with_password_and_see_whoami";
    browser::available(test);
    let sink = SmtpSink::start().await;
    let t = testbed(&sink, no_extra).await;
    let b = Browser::launch(test).await;

    b.goto(&t.public("/self-service/registration/browser")).await;
    b.wait_for_url(&t.public("/ui/registration?flow=")).await;
    b.element("[name=\"traits.email\"]").await;
    b.shot("registration-form").await;
    b.fill("traits.email", "alice@example.com").await;
    b.fill("password", PASSWORD).await;
    b.shot("registration-filled").await;
    b.press("method", "password").await;
    assert_signed_in(&t, &b, "alice@example.com", "welcome").await;

    b.goto(&t.public("/sessions/whoami")).await;
    let session = b.json().await;
    b.shot("whoami").await;
    assert_eq!(session["active"], true, "{session}");
    assert_eq!(session["identity"]["traits"]["email"], "alice@example.com");
    assert_eq!(session["authentication_methods"][0]["method"], "password");
    assert!(b.cookie("ory_kratos_session").await.is_some(), "the session cookie is set for localhost");
    b.close().await;
}

#[tokio::test]
async fn browser_register_and_sign_in_with_emailed_code() {
    let test = "browser_register_and_sign_in_with_emailed_code";
    browser::available(test);
    let sink = SmtpSink::start().await;
    let t = testbed(&sink, no_extra).await;
    let b = Browser::launch(test).await;
    let email = "bob@example.com";

    b.goto(&t.public("/self-service/registration/browser")).await;
    b.wait_for_url(&t.public("/ui/registration?flow=")).await;
    b.fill("traits.email", email).await;
    b.shot("registration-email").await;
    b.press("method", "code").await;
    b.element("input[name=\"code\"]").await;
    b.shot("registration-code-sent").await;
    let code = mailed_code(&sink, email).await;
    b.fill("code", &code).await;
    b.shot("registration-code-entered").await;
    b.press("method", "code").await;
    assert_signed_in(&t, &b, email, "registered").await;
    let (_, session) = b.fetch("/sessions/whoami").await;
    assert_eq!(session["identity"]["verifiable_addresses"][0]["verified"], true, "the code verified the address");

    sign_out(&t, &b).await;

    b.goto(&t.public("/self-service/login/browser")).await;
    b.wait_for_url(&t.public("/ui/login?flow=")).await;
    b.fill("identifier", email).await;
    b.shot("login-email").await;
    b.press("method", "code").await;
    b.element("input[name=\"code\"]").await;
    b.shot("login-code-sent").await;
    let code = mailed_code(&sink, email).await;
    b.fill("code", &code).await;
    b.press("method", "code").await;
    assert_signed_in(&t, &b, email, "signed-in-with-code").await;
    let (_, session) = b.fetch("/sessions/whoami").await;
    assert_eq!(session["authentication_methods"][0]["method"], "code");
    b.close().await;
}

#[tokio::test]
async fn browser_register_and_sign_in_with_a_passkey() {
    let test = "browser_register_and_sign_in_with_a_passkey";
    browser::available(test);
    let sink = SmtpSink::start().await;
    let t = testbed(&sink, no_extra).await;
    let b = Browser::launch(test).await;
    let authenticator = b.add_virtual_authenticator().await;
    let email = "carol@example.com";

    b.goto(&t.public("/self-service/registration/browser")).await;
    b.wait_for_url(&t.public("/ui/registration?flow=")).await;
    b.fill("traits.email", email).await;
    b.shot("registration-email").await;
    // "Sign up with passkey" sends the traits first; the server checks them and answers with
    // the ceremony's challenge and a button that runs it (webauthn.js, loaded async).
    b.press("method", "passkey").await;
    let create = "[data-portcullis-trigger=\"oryPasskeyRegistration\"]";
    b.element(create).await;
    b.wait_for_message(PASSKEY_CONFIRM).await;
    b.wait_for_js("webauthn.js", "typeof window.oryPasskeyRegistration === 'function'").await;
    b.shot("registration-passkey-challenge").await;
    b.click(create).await;
    assert_signed_in(&t, &b, email, "registered-with-passkey").await;
    let credentials = b.authenticator_credentials(&authenticator).await;
    assert_eq!(credentials.len(), 1, "one passkey on the authenticator: {credentials:?}");
    assert_eq!(credentials[0]["rpId"], "localhost");
    assert_eq!(credentials[0]["isResidentCredential"], true, "a discoverable credential");

    sign_out(&t, &b).await;

    b.goto(&t.public("/self-service/login/browser")).await;
    b.wait_for_url(&t.public("/ui/login?flow=")).await;
    let sign_in = "[data-portcullis-trigger=\"oryPasskeyLogin\"]";
    b.element(sign_in).await;
    b.wait_for_js("webauthn.js", "typeof window.oryPasskeyLogin === 'function'").await;
    b.shot("login-page").await;
    b.click(sign_in).await;
    assert_signed_in(&t, &b, email, "signed-in-with-passkey").await;
    let (_, session) = b.fetch("/sessions/whoami").await;
    assert_eq!(session["authentication_methods"][0]["method"], "passkey");
    b.close().await;
}

#[tokio::test]
async fn browser_disallowed_email_domain_is_refused_with_a_message() {
    let test = "browser_disallowed_email_domain_is_refused_with_a_message";
    browser::available(test);
    let sink = SmtpSink::start().await;
    let t = testbed(&sink, |_| json!({"selfservice": {"policy": {"allowed_email_domains": ["example.com"]}}})).await;
    let b = Browser::launch(test).await;

    b.goto(&t.public("/self-service/registration/browser")).await;
    b.wait_for_url(&t.public("/ui/registration?flow=")).await;
    b.fill("traits.email", "mallory@evil.test").await;
    b.fill("password", PASSWORD).await;
    b.press("method", "password").await;
    let message = b.wait_for_message(POLICY_REFUSED).await;
    assert!(message.contains("example.com"), "the message names the allowed domain: {message}");
    b.shot("refused-password").await;
    assert!(b.url().await.starts_with(&t.public("/ui/registration?flow=")), "still on the registration page");
    let (status, _) = b.fetch("/sessions/whoami").await;
    assert_eq!(status, 401, "not signed in");

    // The code method refuses before anything is mailed.
    b.fill("traits.email", "mallory@evil.test").await;
    b.mark_page().await;
    b.press("method", "code").await;
    b.wait_for_new_page().await;
    b.wait_for_message(POLICY_REFUSED).await;
    b.shot("refused-code").await;
    assert!(!b.has("input[name=\"code\"]").await, "no code step");

    // No e-mail, judged by the courier's own state rather than by waiting a while: every
    // message the courier will ever send is in its queue first, and there is none for mallory.
    // An allowed address asked for afterwards gets its code, and once the queue is drained the
    // mail server has received everything it will: only that one.
    let courier = async |query: &str| -> Vec<Value> {
        let r = t.admin_get(&format!("/admin/courier/messages?{query}")).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 200, "courier messages ?{query}");
        r.json().await.unwrap_or_else(|e| panic!("courier messages ?{query}: {e}"))
    };
    assert_eq!(courier("recipient=mallory%40evil.test").await, Vec::<Value>::new(), "nothing was queued for mallory");
    b.fill("traits.email", "olivia@example.com").await;
    b.press("method", "code").await;
    b.element("input[name=\"code\"]").await;
    mailed_code(&sink, "olivia@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !courier("status=queued").await.is_empty() || !courier("status=processing").await.is_empty() {
        assert!(Instant::now() < deadline, "the courier never drained its queue: {:?}", courier("").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = courier("recipient=olivia%40example.com").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["status"], "sent", "{sent:?}");
    assert_eq!(courier("recipient=mallory%40evil.test").await, Vec::<Value>::new(), "still nothing for mallory");
    let received: Vec<Vec<String>> = sink.messages().into_iter().map(|m| m.to).collect();
    assert_eq!(received, [["olivia@example.com"]], "only olivia's code reached the mail server");
    b.close().await;
}

#[tokio::test]
async fn browser_logout_ends_the_session() {
    let test = "browser_logout_ends_the_session";
    browser::available(test);
    let sink = SmtpSink::start().await;
    let t = testbed(&sink, no_extra).await;
    let b = Browser::launch(test).await;

    b.goto(&t.public("/self-service/registration/browser")).await;
    b.wait_for_url(&t.public("/ui/registration?flow=")).await;
    b.fill("traits.email", "erin@example.com").await;
    b.fill("password", PASSWORD).await;
    b.press("method", "password").await;
    assert_signed_in(&t, &b, "erin@example.com", "signed-in").await;

    sign_out(&t, &b).await;
    assert!(b.cookie("ory_kratos_session").await.is_none(), "the session cookie is gone");
    b.goto(&t.public("/sessions/whoami")).await;
    b.shot("whoami-after-logout").await;
    let (status, body) = b.fetch("/sessions/whoami").await;
    assert_eq!(status, 401, "{body}");
    b.close().await;
}

#[tokio::test]
async fn browser_envoy_sends_signed_out_users_to_login_and_signed_in_ones_through() {
    let test = "browser_envoy_sends_signed_out_users_to_login_and_signed_in_ones_through";
    browser::available(test);
    let sink = SmtpSink::start().await;
    let t = testbed(&sink, no_extra).await;
    let login = t.public("/self-service/login/browser");
    put_rules(
        &t,
        json!([{
            "id": "app",
            "match": {"url": format!("http://localhost:{}/app/<**>", t.ports.gateway), "methods": ["GET", "POST"], "strategy": "glob"},
            "authenticators": [{"handler": "cookie_session", "config": {
                "check_session_url": format!("http://127.0.0.1:{}/sessions/whoami", t.ports.public),
                "preserve_path": true,
                "only": ["ory_kratos_session"],
                "subject_from": "identity.id",
                "extra_from": "@this",
            }}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "header", "config": {"headers": {"X-User-Email": "{{ print .Extra.identity.traits.email }}"}}}],
            "errors": [{"handler": "redirect", "config": {
                "to": login,
                "return_to_query_param": "return_to",
                "when": [{"request": {"header": {"accept": ["text/html"]}}}],
            }}],
        }]),
    )
    .await;
    let app = t.gateway("/app/hello");
    let client = fresh_client().unwrap_or_else(|e| panic!("{e}"));
    t.wait_settled("the app rule to redirect to login", "envoy.log", || async {
        client.get(&app).header("accept", "text/html").send().await.is_ok_and(|r| {
            r.status().as_u16() == 302
                && r.headers().get("location").and_then(|l| l.to_str().ok()).is_some_and(|l| l.starts_with(&login))
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let b = Browser::launch(test).await;
    let email = "dave@example.com";
    b.goto(&t.public("/self-service/registration/browser")).await;
    b.wait_for_url(&t.public("/ui/registration?flow=")).await;
    b.fill("traits.email", email).await;
    b.fill("password", PASSWORD).await;
    b.press("method", "password").await;
    assert_signed_in(&t, &b, email, "registered").await;
    sign_out(&t, &b).await;

    // Signed out: the app sends the browser to sign in, and back afterwards.
    b.goto(&app).await;
    b.wait_for_url(&t.public("/ui/login?flow=")).await;
    b.shot("app-sends-to-login").await;
    b.fill("identifier", email).await;
    b.fill("password", PASSWORD).await;
    b.press("method", "password").await;
    b.wait_for_url(&app).await;
    b.wait_for_text("x-user-email").await;
    b.shot("app-reached").await;
    let echoed = b.json().await;
    assert_eq!(echoed["path"], "/app/hello", "{echoed}");
    assert_eq!(echoed["headers"]["x-user-email"], json!([email]), "the upstream learns who signed in: {echoed}");
    let Some(cookie) = b.cookie("ory_kratos_session").await else {
        b.fail("no session cookie after signing in").await;
    };

    // The session cookie, replayed by another client, passes too (and is now in the filter's
    // whoami cache)...
    let replay = || async {
        let r = client
            .get(&app)
            .header("accept", "text/html")
            .header("cookie", format!("ory_kratos_session={cookie}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {app}: {e}"));
        r.status().as_u16()
    };
    assert_eq!(replay().await, 200, "the session cookie passes the gateway while signed in");

    // ...until the user signs out: the revocation is pushed to the filter, which refuses the
    // replayed cookie, cached answer or not; and the browser itself is sent to sign in again.
    // Replays run alongside the sign-out, so the first refusal is timed to within a probe.
    let probing = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_passed = None;
        loop {
            let sent = Instant::now();
            if replay().await == 302 {
                return (sent, last_passed);
            }
            last_passed = Some(sent);
            assert!(Instant::now() < deadline, "the signed-out session still passes the gateway after 30 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (clicked, (refused, last_passed)) = tokio::join!(sign_out(&t, &b), probing);
    let after =
        |at: Instant| at.checked_duration_since(clicked).map_or("before the click".into(), |d| format!("{d:?}"));
    t.wait_settled("every Envoy worker to refuse the signed-out session", "envoy.log", || async {
        replay().await == 302
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "revocation: a replay of the signed-out session cookie sent {} after the sign-out click was refused \
         (the last one that passed was sent {}); every worker refused it, probed until {:?}",
        after(refused),
        last_passed.map_or("never".into(), after),
        clicked.elapsed()
    );
    b.goto(&app).await;
    b.wait_for_url(&t.public("/ui/login?flow=")).await;
    b.shot("app-sends-to-login-after-logout").await;
    b.close().await;
}
