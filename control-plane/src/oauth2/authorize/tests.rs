//! `/oauth2/auth` and the login/consent contract through the routers, as a browser (with a
//! cookie jar) and as a login/consent app (the admin API).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::oauth2::code::{self, Redeemed};
use crate::testing::{Harness, Reply, enc};

const PUBLIC: &str = "http://127.0.0.1:4444";
const CB: &str = "https://app.example/cb";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const STATE: &str = "state-123456";

/// A browser: follows nothing by itself, keeps cookies.
#[derive(Default, Clone)]
struct Browser {
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn absorb(&mut self, r: &Reply) {
        for v in r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let pair = v.split(';').next().unwrap_or_default();
            let Some((k, val)) = pair.split_once('=') else { continue };
            self.cookies.retain(|(name, _)| name != k);
            if !val.is_empty() && !v.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    async fn get(&mut self, h: &Harness, url: &str) -> Reply {
        let path = url.strip_prefix(PUBLIC).unwrap_or(url);
        let mut req = Request::get(path);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.header());
        }
        let r = Harness::send(h.public(), req.body(Body::empty()).unwrap()).await;
        self.absorb(&r);
        r
    }

    async fn post_form(&mut self, h: &Harness, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let cookie = self.header();
        let r = h.form(false, path, pairs, &[("cookie", &cookie)]).await;
        self.absorb(&r);
        r
    }
}

fn location(r: &Reply) -> String {
    assert!(r.status.is_redirection(), "{}: {}", r.status, String::from_utf8_lossy(&r.bytes));
    r.header("location").to_owned()
}

fn query_of(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    crate::error::parse_urlencoded(q.as_bytes())
}

fn q(url: &str, name: &str) -> Option<String> {
    query_of(url).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

async fn web_client(h: &Harness) {
    h.client(json!({
        "client_id": "web",
        "client_name": "Web & Co",
        "client_secret": "web-secret",
        "redirect_uris": [CB, "https://app.example/other"],
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid offline_access profile api.*",
        "audience": ["https://api.example/user"],
    }))
    .await;
}

fn auth_url(extra: &str) -> String {
    format!(
        "/oauth2/auth?response_type=code&client_id=web&redirect_uri={}&scope=openid+api.read&state={STATE}\
         &code_challenge={CHALLENGE}&code_challenge_method=S256&nonce=n-0S6_WzA2Mj{extra}",
        enc(CB)
    )
}

async fn admin(h: &Harness, method: Method, path: &str, body: Option<Value>) -> Reply {
    h.admin_json(method, path, body).await
}

/// Runs the browser to the login app; returns the login challenge.
async fn to_login(h: &Harness, b: &mut Browser, url: &str) -> String {
    let r = b.get(h, url).await;
    let to = location(&r);
    assert!(to.starts_with(&format!("{PUBLIC}/ui/oauth2/login?login_challenge=")), "{to}");
    q(&to, "login_challenge").unwrap()
}

async fn accept_login(h: &Harness, challenge: &str, body: Value) -> String {
    let r = admin(
        h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/login/accept?login_challenge={challenge}"),
        Some(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    r.json()["redirect_to"].as_str().unwrap().to_owned()
}

/// Follows a login `redirect_to`; returns the consent challenge.
async fn to_consent(h: &Harness, b: &mut Browser, redirect_to: &str) -> String {
    let r = b.get(h, redirect_to).await;
    let to = location(&r);
    assert!(to.starts_with(&format!("{PUBLIC}/ui/oauth2/consent?consent_challenge=")), "{to}");
    q(&to, "consent_challenge").unwrap()
}

async fn accept_consent(h: &Harness, challenge: &str, body: Value) -> String {
    let r = admin(
        h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/consent/accept?consent_challenge={challenge}"),
        Some(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    r.json()["redirect_to"].as_str().unwrap().to_owned()
}

/// Follows the consent `redirect_to` to the client; returns the callback URL.
async fn to_client(h: &Harness, b: &mut Browser, redirect_to: &str) -> String {
    let r = b.get(h, redirect_to).await;
    let to = location(&r);
    assert!(to.starts_with(CB), "{to}");
    to
}

async fn full_dance(h: &Harness, b: &mut Browser, remember: bool) -> String {
    let login = to_login(h, b, &auth_url("")).await;
    let to = accept_login(
        h,
        &login,
        json!({"subject": "alice", "remember": remember, "remember_for": 3600, "acr": "aal1", "amr": ["pwd"], "context": {"k": 1}}),
    )
    .await;
    let consent = to_consent(h, b, &to).await;
    let to = accept_consent(
        h,
        &consent,
        json!({"grant_scope": ["openid", "api.read"], "remember": remember, "remember_for": 0,
               "session": {"access_token": {"team": "x"}, "id_token": {"email": "a@example.com"}}}),
    )
    .await;
    to_client(h, b, &to).await
}

#[tokio::test]
async fn the_full_dance_ends_with_a_code_that_redeems_to_the_grant() {
    let h = Harness::new().await;
    web_client(&h).await;
    let mut b = Browser::default();
    let login = to_login(
        &h,
        &mut b,
        &auth_url(
            "&prompt=consent&max_age=600&login_hint=alice%40example.com&acr_values=aal1&ui_locales=de+en&display=page",
        ),
    )
    .await;
    assert!(b.header().contains("portcullis_oauth2_flow_"), "the flow is bound to the browser");
    assert!(login.len() < 64, "short handles, not Hydra's 1 kB blobs: {login}");

    let r = admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/login?login_challenge={login}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let req = r.json();
    assert_eq!(req["challenge"], login);
    assert_eq!(req["skip"], false);
    assert_eq!(req["client"]["client_id"], "web");
    assert!(req["client"].get("client_secret").is_none(), "{req}");
    assert_eq!(req["requested_scope"], json!(["openid", "api.read"]));
    assert_eq!(req["oidc_context"]["login_hint"], "alice@example.com");
    assert_eq!(req["oidc_context"]["ui_locales"], json!(["de", "en"]));
    assert_eq!(req["oidc_context"]["acr_values"], json!(["aal1"]));
    assert!(req["request_url"].as_str().unwrap().starts_with(&format!("{PUBLIC}/oauth2/auth?")));
    let sid = req["session_id"].as_str().unwrap().to_owned();

    let bad = admin(
        &h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/login/accept?login_challenge={login}"),
        Some(json!({})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error_description"].as_str().unwrap().contains("subject"));
    let typo = admin(
        &h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/login/accept?login_challenge={login}"),
        Some(json!({"subjekt": "a"})),
    )
    .await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);

    h.clock.advance(5);
    let to =
        accept_login(&h, &login, json!({"subject": "alice", "acr": "aal1", "amr": ["pwd"], "context": {"k": 1}})).await;
    assert!(to.starts_with(&format!("{PUBLIC}/oauth2/auth?login_verifier=")), "{to}");
    let again =
        admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/login?login_challenge={login}"), None).await;
    assert_eq!(again.status, StatusCode::GONE, "a handled login request is gone");
    assert!(again.json()["redirect_to"].as_str().unwrap().contains("/oauth2/auth?"), "{}", again.json());
    let twice = admin(
        &h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/login/accept?login_challenge={login}"),
        Some(json!({"subject": "mallory"})),
    )
    .await;
    assert_eq!(twice.status, StatusCode::GONE);

    let consent = to_consent(&h, &mut b, &to).await;
    let replay = b.get(&h, &to).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "a login verifier works once");

    let r =
        admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/consent?consent_challenge={consent}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let creq = r.json();
    assert_eq!(creq["subject"], "alice");
    assert_eq!(creq["skip"], false, "prompt=consent");
    assert_eq!(creq["login_session_id"], sid);
    assert_eq!(creq["amr"], json!(["pwd"]));
    assert_eq!(creq["context"], json!({"k": 1}));
    let consent_id = creq["consent_request_id"].as_str().unwrap().to_owned();

    let greedy = admin(
        &h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/consent/accept?consent_challenge={consent}"),
        Some(json!({"grant_scope": ["profile"]})),
    )
    .await;
    assert_eq!(greedy.status, StatusCode::BAD_REQUEST, "only requested scopes can be granted");
    let to = accept_consent(
        &h,
        &consent,
        json!({"grant_scope": ["openid", "api.read"], "session": {"access_token": {"team": "x"}, "id_token": {"email": "a@example.com"}}}),
    )
    .await;
    assert!(to.starts_with(&format!("{PUBLIC}/oauth2/auth?consent_verifier=")));
    let gone =
        admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/consent?consent_challenge={consent}"), None).await;
    assert_eq!(gone.status, StatusCode::GONE);

    // Another browser cannot use the verifier.
    let mut thief = Browser::default();
    let stolen = thief.get(&h, &to).await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&stolen.bytes));
    assert!(stolen.header("content-type").starts_with("text/html"));

    let cb = to_client(&h, &mut b, &to).await;
    assert_eq!(q(&cb, "state").as_deref(), Some(STATE));
    assert_eq!(q(&cb, "iss").as_deref(), Some("http://127.0.0.1:4444/"));
    assert_eq!(q(&cb, "scope").as_deref(), Some("openid api.read"));
    let code = q(&cb, "code").unwrap();
    let replay = b.get(&h, &to).await;
    assert!(replay.status.is_client_error() && replay.header("location").is_empty(), "a consent verifier works once");

    let Redeemed::Fresh(grant) = code::redeem(&h.state.oauth2(), &code, "web").await.unwrap() else {
        panic!("code not redeemable")
    };
    assert_eq!(grant.subject, "alice");
    assert_eq!(grant.scope, ["openid", "api.read"]);
    assert_eq!(grant.redirect_uri.as_deref(), Some(CB));
    assert_eq!(grant.code_challenge.as_deref(), Some(CHALLENGE));
    assert_eq!(grant.code_challenge_method.as_deref(), Some("S256"));
    assert_eq!(grant.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
    assert_eq!(grant.auth_time, crate::testing::T0 + 5, "when the login was accepted");
    assert_eq!(grant.requested_at, crate::testing::T0);
    assert_eq!((grant.acr.as_str(), grant.amr.clone()), ("aal1", vec!["pwd".to_owned()]));
    assert_eq!(grant.sid, sid);
    assert_eq!(grant.consent_id, consent_id);
    assert_eq!(grant.access_token_claims["team"], "x");
    assert_eq!(grant.id_token_claims["email"], "a@example.com");

    // The consent is listed for the subject in Hydra's shape.
    let list = admin(&h, Method::GET, "/admin/oauth2/auth/sessions/consent?subject=alice", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let sessions = list.json();
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(sessions[0]["consent_request_id"], consent_id);
    assert_eq!(sessions[0]["grant_scope"], json!(["openid", "api.read"]));
    assert_eq!(sessions[0]["consent_request"]["client"]["client_id"], "web");
    assert_eq!(sessions[0]["session"]["id_token"]["email"], "a@example.com");
    assert!(list.header("link").contains("rel=\"first\""));
}

#[tokio::test]
async fn without_a_trusted_client_and_redirect_uri_the_error_is_a_page_never_a_redirect() {
    let h = Harness::new().await;
    web_client(&h).await;
    let evil = enc("https://evil.example/cb");
    let cases = [
        ("/oauth2/auth?response_type=code&state=state-123456".to_owned(), "client_id"),
        ("/oauth2/auth?response_type=code&client_id=nope".to_owned(), "client_id"),
        (format!("/oauth2/auth?response_type=code&client_id=web&redirect_uri={evil}"), "redirect_uri"),
        (
            format!("/oauth2/auth?response_type=code&client_id=web&redirect_uri={}", enc("https://app.example/cb/")),
            "redirect_uri",
        ),
        ("/oauth2/auth?response_type=code&client_id=web".to_owned(), "redirect_uri"),
        ("/oauth2/auth?client_id=web&client_id=other".to_owned(), "client_id"),
    ];
    for (url, field) in cases {
        let html = h.get(&url, &[]).await;
        assert_eq!(html.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(html.header("location").is_empty(), "{url}: no redirect");
        assert!(html.header("content-type").starts_with("text/html"), "{url}");
        let body = String::from_utf8_lossy(&html.bytes);
        assert!(body.contains(field), "{url}: {body}");
        assert!(!body.contains("evil.example"), "nothing from the request is echoed");
        let json = h.get(&url, &[("accept", "application/json")]).await;
        assert_eq!(json.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(json.json()["error_description"].as_str().unwrap().contains(field), "{url}");
    }
}

#[tokio::test]
async fn parameter_errors_go_to_the_redirect_uri_with_state_and_iss() {
    let h = Harness::new().await;
    web_client(&h).await;
    h.client(
        json!({"client_id": "spa", "redirect_uris": [CB], "token_endpoint_auth_method": "none", "scope": "openid"}),
    )
    .await;
    h.client(json!({"client_id": "m2m", "client_secret": "m2m-secret", "redirect_uris": [CB], "grant_types": ["client_credentials"]}))
        .await;
    let base = |client: &str, rest: &str| {
        format!("/oauth2/auth?client_id={client}&redirect_uri={}&state={STATE}{rest}", enc(CB))
    };
    let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
    let cases: Vec<(String, &str, &str)> = vec![
        (base("web", ""), "invalid_request", "response_type"),
        (base("web", "&response_type=token"), "unsupported_response_type", "token"),
        (base("web", "&response_type=code+id_token"), "unsupported_response_type", "id_token"),
        (base("m2m", "&response_type=code"), "unauthorized_client", "authorization_code"),
        (base("web", "&response_type=code&scope=openid+admin"), "invalid_scope", "admin"),
        (base("web", "&response_type=code&scope=api.write"), "", ""),
        (base("web", "&response_type=code&audience=https://api.example/user/1"), "", ""),
        (base("web", "&response_type=code&audience=https://api.example/users"), "invalid_request", "audience"),
        (base("web", "&response_type=code&code_challenge_method=S256"), "invalid_request", "code_challenge"),
        (base("web", &format!("&response_type=code&code_challenge={CHALLENGE}")), "invalid_request", "plain"),
        (
            base("web", &format!("&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=plain")),
            "invalid_request",
            "plain",
        ),
        (base("web", "&response_type=code&code_challenge=short&code_challenge_method=S256"), "invalid_request", "43"),
        (base("spa", "&response_type=code"), "invalid_request", "PKCE"),
        (base("spa", &format!("&response_type=code{pkce}")), "", ""),
        (base("web", "&response_type=code&prompt=none+login"), "invalid_request", "prompt"),
        (base("web", "&response_type=code&prompt=sometimes"), "invalid_request", "prompt"),
        (base("web", "&response_type=code&max_age=-1"), "invalid_request", "max_age"),
        (base("web", "&response_type=code&display=hologram"), "invalid_request", "display"),
        (base("web", "&response_type=code&response_mode=fragment"), "invalid_request", "response_mode"),
        (base("web", "&response_type=code&request=eyJ"), "request_not_supported", "request"),
        (base("web", "&response_type=code&prompt=none"), "login_required", "prompt=none"),
    ];
    for (url, error, words) in cases {
        let r = h.get(&url, &[]).await;
        let to = location(&r);
        if error.is_empty() {
            assert!(to.starts_with(&format!("{PUBLIC}/ui/oauth2/login?")), "{url} → {to}");
            continue;
        }
        assert!(to.starts_with(&format!("{CB}?")), "{url} → {to}");
        assert_eq!(q(&to, "error").as_deref(), Some(error), "{url} → {to}");
        assert!(q(&to, "error_description").unwrap().contains(words), "{url} → {to}");
        assert_eq!(q(&to, "state").as_deref(), Some(STATE), "{url}");
        assert_eq!(q(&to, "iss").as_deref(), Some("http://127.0.0.1:4444/"), "{url}");
    }
    // state is required and must have 8 characters (fosite's minimum entropy).
    for st in ["", "&state=short"] {
        let url = format!("/oauth2/auth?client_id=web&redirect_uri={}&response_type=code{st}", enc(CB));
        let to = location(&h.get(&url, &[]).await);
        assert_eq!(q(&to, "error").as_deref(), Some("invalid_state"), "{to}");
    }
    // The only registered URI may be omitted; POST works like GET.
    let r = h
        .form(
            false,
            "/oauth2/auth",
            &[
                ("client_id", "spa"),
                ("response_type", "code"),
                ("state", STATE),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
            &[],
        )
        .await;
    assert!(location(&r).starts_with(&format!("{PUBLIC}/ui/oauth2/login?login_challenge=")));
}

#[tokio::test]
async fn remembered_login_and_consent_skip_and_prompt_none_works_only_then() {
    let h = Harness::new().await;
    web_client(&h).await;
    let mut b = Browser::default();
    let cb = full_dance(&h, &mut b, true).await;
    assert!(q(&cb, "code").is_some());
    assert!(b.header().contains("portcullis_oauth2_authentication_session="), "{}", b.header());
    assert!(!b.header().contains("portcullis_oauth2_flow_"), "finished flows drop their cookie");

    // The same browser: login skipped, consent skipped.
    h.clock.advance(10);
    let login = to_login(&h, &mut b, &auth_url("")).await;
    let req = admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/login?login_challenge={login}"), None)
        .await
        .json();
    assert_eq!((req["skip"].clone(), req["subject"].clone()), (json!(true), json!("alice")));
    let other = admin(
        &h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/login/accept?login_challenge={login}"),
        Some(json!({"subject": "bob"})),
    )
    .await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST, "a skipped login cannot change the subject");
    let to = accept_login(&h, &login, json!({"subject": "alice"})).await;
    let consent = to_consent(&h, &mut b, &to).await;
    let creq =
        admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/consent?consent_challenge={consent}"), None)
            .await
            .json();
    assert_eq!(creq["skip"], true, "the remembered consent covers openid api.read");
    let to = accept_consent(&h, &consent, json!({"grant_scope": ["openid", "api.read"]})).await;
    let code = q(&to_client(&h, &mut b, &to).await, "code").unwrap();
    let Redeemed::Fresh(grant) = code::redeem(&h.state.oauth2(), &code, "web").await.unwrap() else { panic!() };
    assert_eq!(grant.auth_time, crate::testing::T0, "the remembered login's time, not now");
    assert_eq!(grant.amr, ["pwd"], "the remembered login's methods");

    // id_token_hint: this server's ID token, its claims shown to the login app; a hint for
    // someone else means the remembered login does not count; a forged one is refused.
    let hinted = auth_url(&format!("&id_token_hint={}", id_token(&h, "bob", "", "web")));
    let login = to_login(&h, &mut b, &hinted).await;
    let req = admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/login?login_challenge={login}"), None)
        .await
        .json();
    assert_eq!(req["skip"], false);
    assert_eq!(req["oidc_context"]["id_token_hint_claims"]["sub"], "bob");
    let login = to_login(&h, &mut b, &auth_url(&format!("&id_token_hint={}", id_token(&h, "alice", "", "web")))).await;
    let req = admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/login?login_challenge={login}"), None)
        .await
        .json();
    assert_eq!(req["skip"], true);
    let cb = location(&b.get(&h, &auth_url("&id_token_hint=eyJhbGciOiJub25lIn0.e30.")).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("invalid_request"), "{cb}");

    // prompt=login forces the login app; max_age too once the login is older.
    let login = to_login(&h, &mut b, &auth_url("&prompt=login")).await;
    let req = admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/login?login_challenge={login}"), None)
        .await
        .json();
    assert_eq!(req["skip"], false);
    let login = to_login(&h, &mut b, &auth_url("&max_age=5")).await;
    let req = admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/login?login_challenge={login}"), None)
        .await
        .json();
    assert_eq!(req["skip"], false);

    // prompt=none: silent while both are remembered...
    let r = b.get(&h, &auth_url("&prompt=none")).await;
    let login = q(&location(&r), "login_challenge").unwrap();
    let to = accept_login(&h, &login, json!({"subject": "alice"})).await;
    let consent = to_consent(&h, &mut b, &to).await;
    let to = accept_consent(&h, &consent, json!({"grant_scope": ["openid"]})).await;
    assert!(q(&to_client(&h, &mut b, &to).await, "code").is_some());
    // ...consent_required for scopes never granted...
    let r = b.get(&h, &auth_url("&prompt=none").replace("api.read", "profile")).await;
    let login = q(&location(&r), "login_challenge").unwrap();
    let to = accept_login(&h, &login, json!({"subject": "alice"})).await;
    let cb = location(&b.get(&h, &to).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("consent_required"), "{cb}");
    assert_eq!(q(&cb, "state").as_deref(), Some(STATE));
    // ...and login_required in a fresh browser.
    let cb = location(&Browser::default().get(&h, &auth_url("&prompt=none")).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("login_required"), "{cb}");

    // Revoking the login sessions ends the skip.
    let r = admin(&h, Method::DELETE, "/admin/oauth2/auth/sessions/login?subject=alice", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let cb = location(&b.get(&h, &auth_url("&prompt=none")).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("login_required"), "{cb}");
    assert_eq!(
        admin(&h, Method::DELETE, "/admin/oauth2/auth/sessions/login", None).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn rejections_reach_the_client_and_revoked_consents_are_asked_again() {
    let h = Harness::new().await;
    web_client(&h).await;
    let mut b = Browser::default();
    let login = to_login(&h, &mut b, &auth_url("")).await;
    let r = admin(
        &h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/login/reject?login_challenge={login}"),
        Some(json!({"error": "access_denied", "error_description": "Wrong password too often."})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let cb = location(&b.get(&h, r.json()["redirect_to"].as_str().unwrap()).await);
    assert!(cb.starts_with(CB));
    assert_eq!(q(&cb, "error").as_deref(), Some("access_denied"));
    assert_eq!(q(&cb, "error_description").as_deref(), Some("Wrong password too often."));
    assert_eq!(q(&cb, "state").as_deref(), Some(STATE));

    let login = to_login(&h, &mut b, &auth_url("")).await;
    let to = accept_login(&h, &login, json!({"subject": "alice"})).await;
    let consent = to_consent(&h, &mut b, &to).await;
    let r = admin(
        &h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/consent/reject?consent_challenge={consent}"),
        Some(json!({"error": "<script>"})),
    )
    .await;
    let cb = location(&b.get(&h, r.json()["redirect_to"].as_str().unwrap()).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("access_denied"), "an invalid error code becomes access_denied");

    // Unknown and expired challenges.
    let unknown = admin(&h, Method::GET, "/admin/oauth2/auth/requests/login?login_challenge=nope", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let missing = admin(&h, Method::GET, "/admin/oauth2/auth/requests/consent", None).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.json()["error_description"].as_str().unwrap().contains("consent_challenge"));
    let login = to_login(&h, &mut b, &auth_url("")).await;
    h.clock.advance(1800);
    let late =
        admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/login?login_challenge={login}"), None).await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED, "ttl.login_consent_request is 30 minutes");

    // A remembered consent, revoked, is asked for again.
    let mut b = Browser::default();
    full_dance(&h, &mut b, true).await;
    let refused = admin(&h, Method::DELETE, "/admin/oauth2/auth/sessions/consent?subject=alice", None).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "client or all=true");
    let r = admin(&h, Method::DELETE, "/admin/oauth2/auth/sessions/consent?subject=alice&client=web", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let list = admin(&h, Method::GET, "/admin/oauth2/auth/sessions/consent?subject=alice", None).await.json();
    assert_eq!(list, json!([]));
    let login = to_login(&h, &mut b, &auth_url("")).await;
    let to = accept_login(&h, &login, json!({"subject": "alice"})).await;
    let consent = to_consent(&h, &mut b, &to).await;
    let creq =
        admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/consent?consent_challenge={consent}"), None)
            .await
            .json();
    assert_eq!(creq["skip"], false);
}

#[tokio::test]
async fn consent_sessions_are_paginated() {
    let h = Harness::new().await;
    web_client(&h).await;
    for _ in 0..3 {
        full_dance(&h, &mut Browser::default(), false).await;
        h.clock.advance(1);
    }
    let first = admin(&h, Method::GET, "/admin/oauth2/auth/sessions/consent?subject=alice&page_size=2", None).await;
    assert_eq!(first.json().as_array().unwrap().len(), 2);
    let link = first.header("link").to_owned();
    let next = link.split(',').find(|l| l.contains("rel=\"next\"")).expect("a next page");
    let url = &next[next.find('<').unwrap() + 1..next.find('>').unwrap()];
    let path = &url[url.find("/admin").unwrap()..];
    let second = admin(&h, Method::GET, path, None).await;
    assert_eq!(second.json().as_array().unwrap().len(), 1);
    assert!(!second.header("link").contains("next"));
    let bad = admin(&h, Method::GET, "/admin/oauth2/auth/sessions/consent?subject=alice&page_size=0", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        admin(&h, Method::GET, "/admin/oauth2/auth/sessions/consent", None).await.status,
        StatusCode::BAD_REQUEST
    );

    let one = first.json()[0]["consent_request_id"].as_str().unwrap().to_owned();
    let r = admin(
        &h,
        Method::DELETE,
        &format!("/admin/oauth2/auth/sessions/consent?subject=alice&consent_request_id={one}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let left = admin(&h, Method::GET, "/admin/oauth2/auth/sessions/consent?subject=alice", None).await.json();
    assert_eq!(left.as_array().unwrap().len(), 2);
    assert!(left.as_array().unwrap().iter().all(|c| c["consent_request_id"] != one.as_str()));
    let r = admin(&h, Method::DELETE, "/admin/oauth2/auth/sessions/consent?subject=alice&all=true", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        admin(&h, Method::GET, "/admin/oauth2/auth/sessions/consent?subject=alice", None).await.json(),
        json!([])
    );
}

/// Registers an identity (password) as a native app; returns (identity id, session token).
async fn identity(h: &Harness, email: &str) -> (String, String) {
    let flow = h.api_flow("registration", &[]).await;
    let r = h
        .post_json(
            &crate::testing::flow_action(&flow),
            json!({"method": "password", "traits": {"email": email}, "password": "violet-tractor-umbrella"}),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let body = r.json();
    (body["identity"]["id"].as_str().unwrap().to_owned(), body["session_token"].as_str().unwrap().to_owned())
}

fn signed_in(h: &Harness, token: &str) -> Browser {
    Browser { cookies: vec![(h.state.config.session.cookie.name.clone(), token.to_owned())] }
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} in {page}")) + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn the_built_in_pages_sign_in_with_the_portcullis_session_and_ask_for_consent() {
    let h = Harness::new().await;
    web_client(&h).await;

    // Not signed in: off to the self-service login, and back here afterwards.
    let mut stranger = Browser::default();
    let login = to_login(&h, &mut stranger, &auth_url("")).await;
    let r = stranger.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await;
    let to = location(&r);
    assert!(to.starts_with(&format!("{PUBLIC}/self-service/login/browser?return_to=")), "{to}");
    assert_eq!(q(&to, "return_to").unwrap(), format!("{PUBLIC}/ui/oauth2/login?login_challenge={login}"));

    h.clock.advance(100);
    let (id, token) = identity(&h, "alice@example.com").await;
    let session_started = crate::testing::T0 + 100;
    h.clock.advance(20);
    let mut b = signed_in(&h, &token);
    let login = to_login(&h, &mut b, &auth_url("")).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
    let consent = to_consent(&h, &mut b, &to).await;
    let page = b.get(&h, &format!("/ui/oauth2/consent?consent_challenge={consent}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&page.bytes).into_owned();
    assert!(html.contains("Web &amp; Co"), "client name, escaped: {html}");
    assert!(html.contains("<code>api.read</code>") && html.contains("<code>openid</code>"), "{html}");
    assert!(
        page.header("content-security-policy").contains("form-action 'self' https://app.example"),
        "{}",
        page.header("content-security-policy")
    );

    // The form needs this browser's CSRF cookie.
    let csrf = hidden(&html, "csrf_token");
    let pairs = [
        ("consent_challenge", consent.as_str()),
        ("csrf_token", csrf.as_str()),
        ("action", "allow"),
        ("remember", "true"),
    ];
    let forged = h.form(false, "/ui/oauth2/consent", &pairs, &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let r = b.post_form(&h, "/ui/oauth2/consent", &pairs).await;
    let to = location(&r);
    assert!(to.starts_with(&format!("{PUBLIC}/oauth2/auth?consent_verifier=")), "{to}");
    let code = q(&to_client(&h, &mut b, &to).await, "code").unwrap();
    let Redeemed::Fresh(grant) = code::redeem(&h.state.oauth2(), &code, "web").await.unwrap() else { panic!() };
    assert_eq!(grant.subject, id);
    assert_eq!(grant.amr, ["pwd"]);
    assert_eq!(grant.acr, "aal1");
    assert_eq!(grant.auth_time, session_started, "when the user signed in to Portcullis");
    assert_eq!(grant.scope, ["openid", "api.read"]);

    // Next time: nothing to click.
    let login = to_login(&h, &mut b, &auth_url("")).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
    let consent = to_consent(&h, &mut b, &to).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/consent?consent_challenge={consent}")).await);
    assert!(q(&to_client(&h, &mut b, &to).await, "code").is_some());

    // prompt=login sends the user to sign in again (refresh), and a fresh sign-in satisfies it.
    let login = to_login(&h, &mut b, &auth_url("&prompt=login")).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
    assert!(to.contains("/self-service/login/browser?") && to.ends_with("&refresh=true"), "{to}");
    h.clock.advance(1);
    let flow = h.api_flow("login", &[]).await;
    let again = h
        .post_json(
            &crate::testing::flow_action(&flow),
            json!({"method": "password", "identifier": "alice@example.com", "password": "violet-tractor-umbrella"}),
            &[],
        )
        .await;
    let fresh = again.json()["session_token"].as_str().unwrap().to_owned();
    let name = h.state.config.session.cookie.name.clone();
    b.cookies.retain(|(k, _)| *k != name);
    b.cookies.push((name, fresh));
    let to = location(&b.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
    assert!(to.starts_with(&format!("{PUBLIC}/oauth2/auth?login_verifier=")), "{to}");

    // Signing out of Portcullis ends the OAuth2 login session too.
    crate::identity::session::revoke(
        &h.state.store,
        &h.state.rules,
        h.state.clock.now(),
        crate::store::sessions::Deactivate::Identity { identity_id: &id, except: "" },
    )
    .await
    .unwrap();
    let cb = location(&b.get(&h, &auth_url("&prompt=none")).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("login_required"), "{cb}");
}

#[tokio::test]
async fn the_built_in_consent_page_can_deny_and_first_party_clients_skip_it() {
    let h = Harness::new().await;
    web_client(&h).await;
    h.client(json!({"client_id": "portal", "client_secret": "portal-secret", "redirect_uris": [CB], "scope": "openid email", "skip_consent": true}))
        .await;
    let (_, token) = identity(&h, "bob@example.com").await;
    let mut b = signed_in(&h, &token);
    let login = to_login(&h, &mut b, &auth_url("")).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
    let consent = to_consent(&h, &mut b, &to).await;
    let page = b.get(&h, &format!("/ui/oauth2/consent?consent_challenge={consent}")).await;
    let html = String::from_utf8_lossy(&page.bytes).into_owned();
    // Another signed-in user cannot answer for Bob.
    let (_, other) = identity(&h, "eve@example.com").await;
    let mut eve = signed_in(&h, &other);
    assert_eq!(
        eve.get(&h, &format!("/ui/oauth2/consent?consent_challenge={consent}")).await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = hidden(&html, "csrf_token");
    let r = b
        .post_form(
            &h,
            "/ui/oauth2/consent",
            &[("consent_challenge", &consent), ("csrf_token", &csrf), ("action", "deny")],
        )
        .await;
    let cb = location(&b.get(&h, &location(&r)).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("access_denied"), "{cb}");
    assert_eq!(q(&cb, "state").as_deref(), Some(STATE));

    let url = format!("/oauth2/auth?response_type=code&client_id=portal&scope=openid+email&state={STATE}");
    let login = to_login(&h, &mut b, &url).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
    let consent = to_consent(&h, &mut b, &to).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/consent?consent_challenge={consent}")).await);
    let code = q(&to_client(&h, &mut b, &to).await, "code").expect("skip_consent: no page");
    let Redeemed::Fresh(grant) = code::redeem(&h.state.oauth2(), &code, "portal").await.unwrap() else { panic!() };
    assert_eq!(grant.id_token_claims["email"], "bob@example.com", "the email scope brings the address");
    assert_eq!(grant.id_token_claims["email_verified"], false);
}

#[tokio::test]
async fn configured_login_consent_and_error_apps_are_used() {
    let mut config = crate::config::Config::default();
    config.urls.login = "https://login.example/login?tenant=a".into();
    config.urls.consent = "https://login.example/consent".into();
    config.urls.error = "https://login.example/error".into();
    let h = Harness::with_config(config).await;
    web_client(&h).await;
    let mut b = Browser::default();
    let to = location(&b.get(&h, &auth_url("")).await);
    assert!(to.starts_with("https://login.example/login?tenant=a&login_challenge="), "{to}");
    let to = accept_login(&h, &q(&to, "login_challenge").unwrap(), json!({"subject": "alice"})).await;
    let to = location(&b.get(&h, &to).await);
    assert!(to.starts_with("https://login.example/consent?consent_challenge="), "{to}");
    let to = location(&b.get(&h, "/oauth2/auth?client_id=nope").await);
    assert!(to.starts_with("https://login.example/error?error=invalid_client&error_description="), "{to}");
}

/// A back-channel logout endpoint on a local port; each received `logout_token` goes to `rx`.
async fn backchannel_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/bc",
        axum::routing::post(move |body: String| {
            let tx = tx.clone();
            async move {
                let token = crate::error::parse_urlencoded(body.as_bytes())
                    .into_iter()
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let _ = tx.send(token);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bc", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

/// The claims of a logout token, after checking its signature against the published JWKS.
fn verify_logout_token(h: &Harness, token: &str) -> Value {
    let token = crate::jwt::Untrusted::parse(token, &[crate::jwt::Alg::ES256]).unwrap();
    assert_eq!(token.typ(), Some("logout+jwt"));
    let keys = portcullis_shared::jwt::signing_keys(&h.state.keys.jwks(h.state.clock.now()));
    let claims = token.verify(&keys).expect("signed by this server").into_json();
    assert_eq!(claims["iss"], h.state.config.urls.self_.issuer.as_str());
    Value::Object(claims)
}

/// An ID token as the token endpoint would sign it (this server's key).
fn id_token(h: &Harness, sub: &str, sid: &str, aud: &str) -> String {
    let claims = json!({"iss": h.state.config.urls.self_.issuer, "sub": sub, "sid": sid, "aud": [aud]});
    let claims = crate::jwt::issue(claims.as_object().unwrap().clone(), crate::testing::T0, 60, false).unwrap();
    h.state.keys.signer().sign_jwt("JWT", &claims).unwrap()
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_login_session_and_tells_clients_over_the_back_channel() {
    let h = Harness::new().await;
    let (bc, mut received) = backchannel_server().await;
    h.client(json!({
        "client_id": "web", "client_secret": "web-secret", "redirect_uris": [CB],
        "scope": "openid api.*", "post_logout_redirect_uris": ["https://app.example/bye"],
        "backchannel_logout_uri": bc,
    }))
    .await;
    let mut b = Browser::default();
    let code = q(&full_dance(&h, &mut b, true).await, "code").unwrap();
    let Redeemed::Fresh(grant) = code::redeem(&h.state.oauth2(), &code, "web").await.unwrap() else { panic!() };
    let hint = id_token(&h, "alice", &grant.sid, "web");
    h.clock.advance(3600); // an expired hint is still a hint

    let bye = enc("https://app.example/bye");
    let refused = [
        format!("/oauth2/sessions/logout?post_logout_redirect_uri={bye}"),
        format!(
            "/oauth2/sessions/logout?id_token_hint={hint}&post_logout_redirect_uri={}",
            enc("https://evil.example/")
        ),
        format!("/oauth2/sessions/logout?id_token_hint={}x&post_logout_redirect_uri={bye}", &hint[..hint.len() - 1]),
        format!("/oauth2/sessions/logout?id_token_hint={}", id_token(&h, "mallory", "other", "web")),
    ];
    for url in refused {
        let r = b.get(&h, &url).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(r.header("location").is_empty(), "{url}");
    }

    let r = b
        .get(
            &h,
            &format!("/oauth2/sessions/logout?id_token_hint={hint}&post_logout_redirect_uri={bye}&state=bye-state-1"),
        )
        .await;
    let to = location(&r);
    assert!(to.starts_with(&format!("{PUBLIC}/ui/oauth2/logout?logout_challenge=")), "{to}");
    let challenge = q(&to, "logout_challenge").unwrap();
    let req =
        admin(&h, Method::GET, &format!("/admin/oauth2/auth/requests/logout?logout_challenge={challenge}"), None).await;
    assert_eq!(req.status, StatusCode::OK);
    let req = req.json();
    assert_eq!((req["subject"].clone(), req["sid"].clone()), (json!("alice"), json!(grant.sid)));
    assert_eq!(req["rp_initiated"], true);
    assert_eq!(req["client"]["client_id"], "web");
    let accepted = admin(
        &h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/logout/accept?logout_challenge={challenge}"),
        None,
    )
    .await;
    assert_eq!(accepted.status, StatusCode::OK);
    let again = admin(
        &h,
        Method::PUT,
        &format!("/admin/oauth2/auth/requests/logout/accept?logout_challenge={challenge}"),
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::GONE);
    let r = b.get(&h, accepted.json()["redirect_to"].as_str().unwrap()).await;
    assert_eq!(location(&r), "https://app.example/bye?state=bye-state-1");
    assert!(!b.header().contains("portcullis_oauth2_authentication_session"), "{}", b.header());

    let token = tokio::time::timeout(std::time::Duration::from_secs(30), received.recv()).await.unwrap().unwrap();
    let claims = verify_logout_token(&h, &token);
    assert!(
        crate::oauth2::logout::verify_own_id_token(&h.state.oauth2(), &token).is_none(),
        "a logout token is no ID token hint"
    );
    assert_eq!(claims["sid"], json!(grant.sid));
    assert_eq!(claims["aud"], json!(["web"]));
    assert!(claims["events"].get(crate::oauth2::logout::BACKCHANNEL_EVENT).is_some(), "{claims}");
    assert!(claims.get("nonce").is_none());

    // The login session is gone, even for a browser that kept the cookie.
    let cb = location(&b.get(&h, &auth_url("&prompt=none")).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("login_required"));
    // Nobody signed in: straight to the client.
    let r = Browser::default()
        .get(
            &h,
            &format!(
                "/oauth2/sessions/logout?id_token_hint={}&post_logout_redirect_uri={bye}&state=bye-state-2",
                id_token(&h, "alice", "", "web")
            ),
        )
        .await;
    assert_eq!(location(&r), "https://app.example/bye?state=bye-state-2");
}

#[tokio::test]
async fn the_built_in_logout_page_also_ends_the_portcullis_session() {
    let h = Harness::new().await;
    web_client(&h).await;
    let (_, token) = identity(&h, "carol@example.com").await;
    let mut b = signed_in(&h, &token);
    let login = to_login(&h, &mut b, &auth_url("")).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
    let consent = to_consent(&h, &mut b, &to).await;
    let page = b.get(&h, &format!("/ui/oauth2/consent?consent_challenge={consent}")).await;
    let csrf = hidden(&String::from_utf8_lossy(&page.bytes), "csrf_token");
    let r = b
        .post_form(
            &h,
            "/ui/oauth2/consent",
            &[("consent_challenge", &consent), ("csrf_token", &csrf), ("action", "allow")],
        )
        .await;
    to_client(&h, &mut b, &location(&r)).await;

    let to = location(&b.get(&h, "/oauth2/sessions/logout").await);
    let page = b.get(&h, &to).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&page.bytes).into_owned();
    let (challenge, csrf) = (hidden(&html, "logout_challenge"), hidden(&html, "csrf_token"));
    let forged = h
        .form(
            false,
            "/ui/oauth2/logout",
            &[("logout_challenge", &challenge), ("csrf_token", &csrf), ("action", "yes")],
            &[],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let r = b
        .post_form(
            &h,
            "/ui/oauth2/logout",
            &[("logout_challenge", &challenge), ("csrf_token", &csrf), ("action", "yes")],
        )
        .await;
    let done = location(&b.get(&h, &location(&r)).await);
    assert_eq!(done, format!("{PUBLIC}/ui/welcome"));
    let whoami = h.get("/sessions/whoami", &[("x-session-token", &token)]).await;
    assert_eq!(whoami.status, StatusCode::UNAUTHORIZED, "the Portcullis session ended too");
    let cb = location(&b.get(&h, &auth_url("&prompt=none")).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("login_required"));
}

/// Follows a logout through this server's logout endpoint and page, answering the question
/// with "yes" as the browser's user would; returns the first answer that goes anywhere else.
async fn follow(h: &Harness, b: &mut Browser, url: &str) -> Reply {
    let mut r = b.get(h, url).await;
    for _ in 0..8 {
        if r.status == StatusCode::OK && String::from_utf8_lossy(&r.bytes).contains("name=\"logout_challenge\"") {
            let html = String::from_utf8_lossy(&r.bytes).into_owned();
            let (challenge, csrf) = (hidden(&html, "logout_challenge"), hidden(&html, "csrf_token"));
            let pairs = [("logout_challenge", challenge.as_str()), ("csrf_token", csrf.as_str()), ("action", "yes")];
            r = b.post_form(h, "/ui/oauth2/logout", &pairs).await;
            continue;
        }
        let to = r.header("location").to_owned();
        let path = to.strip_prefix(PUBLIC).unwrap_or(&to);
        if !r.status.is_redirection()
            || !(path.starts_with("/ui/oauth2/logout") || path.starts_with("/oauth2/sessions/logout"))
        {
            return r;
        }
        r = b.get(h, &to).await;
    }
    r
}

/// Issue 13 #8 (b): whoever holds a victim's ID token (it travels to relying parties, logs,
/// browser history) calls RP-initiated logout from a browser without the victim's cookies.
/// Nothing of the victim's may end: only the redirect happens.
#[tokio::test]
async fn an_id_token_hint_alone_ends_nobody_s_session() {
    let h = Harness::new().await;
    let (bc, mut received) = backchannel_server().await;
    for skip in [false, true] {
        let id = format!("web-{skip}");
        h.client(json!({
            "client_id": id, "client_secret": "web-secret", "redirect_uris": [CB], "scope": "openid api.*",
            "post_logout_redirect_uris": ["https://app.example/bye"], "backchannel_logout_uri": bc,
            "skip_consent": true, "skip_logout_consent": skip,
        }))
        .await;
    }
    let (victim, token) = identity(&h, "victim@example.com").await;
    let mut v = signed_in(&h, &token);
    let mut sids = Vec::new();
    for skip in [false, true] {
        let url = auth_url("").replace("client_id=web", &format!("client_id=web-{skip}"));
        let login = to_login(&h, &mut v, &url).await;
        let to = location(&v.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
        let to = location(&v.get(&h, &to).await);
        let to = location(&v.get(&h, &to).await);
        let to = location(&v.get(&h, &to).await);
        assert!(to.starts_with(CB), "{to}");
        let Redeemed::Fresh(grant) =
            code::redeem(&h.state.oauth2(), &q(&to, "code").unwrap(), &format!("web-{skip}")).await.unwrap()
        else {
            panic!()
        };
        sids.push((format!("web-{skip}"), grant.sid));
    }

    for (client, sid) in &sids {
        let hint = id_token(&h, &victim, sid, client);
        let bye = enc("https://app.example/bye");
        for url in [
            format!("/oauth2/sessions/logout?id_token_hint={hint}"),
            format!("/oauth2/sessions/logout?id_token_hint={hint}&post_logout_redirect_uri={bye}&state=s-123456"),
        ] {
            let mut attacker = Browser::default();
            let r = follow(&h, &mut attacker, &url).await;
            assert!(r.status.is_redirection(), "{client} {url}: {}", r.status);
            let to = r.header("location");
            assert!(
                to == "https://app.example/bye?state=s-123456" || to.ends_with("/ui/welcome"),
                "{client}: only a redirect: {to}"
            );
        }
        // The POST form of the same request.
        let mut attacker = Browser::default();
        let mut r = attacker.post_form(&h, "/oauth2/sessions/logout", &[("id_token_hint", &hint)]).await;
        if r.header("location").contains("/ui/oauth2/logout") {
            let to = r.header("location").to_owned();
            r = follow(&h, &mut attacker, &to).await;
        }
        assert!(r.status.is_redirection() && r.header("location").ends_with("/ui/welcome"), "{client}: {}", r.status);
    }

    // The victim is still signed in everywhere, and no client was told otherwise.
    let whoami = h.get("/sessions/whoami", &[("x-session-token", &token)]).await;
    assert_eq!(whoami.status, StatusCode::OK, "the victim's Portcullis session ended");
    for (client, sid) in &sids {
        assert!(h.state.store.get_login_session(sid).await.unwrap().is_some(), "{client}: login session {sid} ended");
        let url = auth_url("&prompt=none").replace("client_id=web", &format!("client_id={client}"));
        let mut cb = location(&v.get(&h, &url).await);
        while cb.starts_with(PUBLIC) {
            cb = location(&v.get(&h, &cb).await);
        }
        assert!(cb.starts_with(CB) && q(&cb, "code").is_some(), "{client}: the victim was signed out of OAuth2: {cb}");
    }
    let sent = tokio::time::timeout(std::time::Duration::from_millis(500), received.recv()).await;
    assert!(sent.is_err(), "a back-channel logout was sent: {sent:?}");
}

/// The other way to know the browser: no OAuth2 session cookie (a login app may not remember
/// the login), but the Portcullis session the hinted login session came from. Another
/// user's Portcullis session with the same hint ends nothing.
#[tokio::test]
async fn a_hint_ends_the_login_session_of_the_browser_s_own_portcullis_session_only() {
    let h = Harness::new().await;
    h.client(json!({
        "client_id": "web", "client_secret": "web-secret", "redirect_uris": [CB], "scope": "openid api.*",
        "skip_consent": true, "skip_logout_consent": true,
    }))
    .await;
    let (victim, token) = identity(&h, "victim@example.com").await;
    let mut v = signed_in(&h, &token);
    let login = to_login(&h, &mut v, &auth_url("")).await;
    let mut to = location(&v.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
    while to.starts_with(PUBLIC) {
        to = location(&v.get(&h, &to).await);
    }
    let Redeemed::Fresh(grant) = code::redeem(&h.state.oauth2(), &q(&to, "code").unwrap(), "web").await.unwrap() else {
        panic!()
    };
    let hint = id_token(&h, &victim, &grant.sid, "web");
    let logout = format!("/oauth2/sessions/logout?id_token_hint={hint}");

    // Someone else's Portcullis session is not the victim's.
    let (_, other) = identity(&h, "other@example.com").await;
    let r = follow(&h, &mut signed_in(&h, &other), &logout).await;
    assert!(r.header("location").ends_with("/ui/welcome"), "{}", r.header("location"));
    assert!(h.state.store.get_login_session(&grant.sid).await.unwrap().is_some(), "another user ended it");

    // The victim's own browser without the OAuth2 cookie: its Portcullis session names it.
    v.cookies.retain(|(k, _)| k != "portcullis_oauth2_authentication_session");
    let r = v.get(&h, &logout).await;
    assert!(location(&r).starts_with(&format!("{PUBLIC}/ui/oauth2/logout?logout_challenge=")), "{}", location(&r));
    let r = follow(&h, &mut v, &location(&r)).await;
    assert!(r.header("location").ends_with("/ui/welcome"), "{}", r.header("location"));
    assert!(h.state.store.get_login_session(&grant.sid).await.unwrap().is_none(), "the browser's own session ended");
    let whoami = h.get("/sessions/whoami", &[("x-session-token", &token)]).await;
    assert_eq!(whoami.status, StatusCode::UNAUTHORIZED, "with the Portcullis session behind it");
}

#[tokio::test]
async fn revoking_a_login_session_by_sid_tells_the_clients_and_late_verifiers_go_back_with_an_error() {
    let h = Harness::new().await;
    let (bc, mut received) = backchannel_server().await;
    h.client(json!({"client_id": "web", "client_secret": "web-secret", "redirect_uris": [CB], "scope": "openid api.*", "backchannel_logout_uri": bc}))
        .await;
    let mut b = Browser::default();
    let code = q(&full_dance(&h, &mut b, true).await, "code").unwrap();
    let Redeemed::Fresh(grant) = code::redeem(&h.state.oauth2(), &code, "web").await.unwrap() else { panic!() };
    let r = admin(&h, Method::DELETE, &format!("/admin/oauth2/auth/sessions/login?sid={}", grant.sid), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let token = tokio::time::timeout(std::time::Duration::from_secs(30), received.recv()).await.unwrap().unwrap();
    let claims = verify_logout_token(&h, &token);
    assert_eq!(claims["sid"], json!(grant.sid));
    let cb = location(&b.get(&h, &auth_url("&prompt=none")).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("login_required"));

    // A verifier used after the flow expired sends the browser back to the client.
    let login = to_login(&h, &mut b, &auth_url("")).await;
    let to = accept_login(&h, &login, json!({"subject": "alice"})).await;
    h.clock.advance(3600);
    let cb = location(&b.get(&h, &to).await);
    assert!(cb.starts_with(CB), "{cb}");
    assert_eq!(q(&cb, "error").as_deref(), Some("invalid_request"));
    assert!(q(&cb, "error_description").unwrap().contains("expired"));
}

#[tokio::test]
async fn prompt_none_with_the_built_in_login_needs_only_the_portcullis_session() {
    let h = Harness::new().await;
    h.client(json!({"client_id": "portal", "client_secret": "portal-secret", "redirect_uris": [CB], "scope": "openid", "skip_consent": true}))
        .await;
    let (_, token) = identity(&h, "dave@example.com").await;
    h.clock.advance(60);
    // No OAuth2 login session in this browser, only the Portcullis one.
    let mut b = signed_in(&h, &token);
    let url = format!("/oauth2/auth?response_type=code&client_id=portal&scope=openid&state={STATE}&prompt=none");
    let login = to_login(&h, &mut b, &url).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/login?login_challenge={login}")).await);
    let consent = to_consent(&h, &mut b, &to).await;
    let to = location(&b.get(&h, &format!("/ui/oauth2/consent?consent_challenge={consent}")).await);
    assert!(q(&to_client(&h, &mut b, &to).await, "code").is_some(), "silent sign-in");

    let mut stale = signed_in(&h, &token);
    let cb = location(&stale.get(&h, &format!("{url}&max_age=10")).await);
    assert_eq!(q(&cb, "error").as_deref(), Some("login_required"), "the session is older than max_age");
}
