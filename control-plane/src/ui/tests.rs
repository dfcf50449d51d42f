//! The built-in pages through the public router, as a browser: cookies, redirects, forms
//! posted as `application/x-www-form-urlencoded` exactly as the rendered HTML would.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::config::Config;
use crate::identity::flow::ui::UiText;
use crate::identity::flow::{self, Kind};
use crate::testing::{Harness, Reply};

const PUBLIC: &str = "http://127.0.0.1:4444";
const PASSWORD: &str = "violet-tractor-umbrella";

async fn get(h: &Harness, path: &str, cookies: &str) -> Reply {
    let mut req = Request::get(path);
    if !cookies.is_empty() {
        req = req.header("cookie", cookies);
    }
    Harness::send(h.public(), req.body(Body::empty()).unwrap()).await
}

fn html(r: &Reply) -> String {
    String::from_utf8_lossy(&r.bytes).into_owned()
}

/// `name=value` of every `Set-Cookie`, joined for a `Cookie` header.
fn cookies_of(r: &Reply) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|c| !c.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

fn path_of(location: &str) -> &str {
    location.strip_prefix(PUBLIC).unwrap_or(location)
}

/// Starts a browser flow and follows the redirect: (page, flow id, cookies).
async fn open(h: &Harness, kind: &str, cookies: &str) -> (Reply, String, String) {
    let init = get(h, &format!("/self-service/{kind}/browser"), cookies).await;
    assert_eq!(init.status, StatusCode::SEE_OTHER, "{}", html(&init));
    let location = init.header("location").to_owned();
    assert!(location.starts_with(&format!("{PUBLIC}/ui/{kind}?flow=")), "{location}");
    let id = location.rsplit('=').next().unwrap().to_owned();
    let mut jar = cookies_of(&init);
    if jar.is_empty() {
        jar = cookies.to_owned();
    } else if !cookies.is_empty() {
        jar = format!("{cookies}; {jar}");
    }
    let page = get(h, path_of(&location), &jar).await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    (page, id, jar)
}

/// The value of the hidden `name` input in a page.
fn hidden_value(page: &str, name: &str) -> String {
    let marker = format!("<input type=\"hidden\" name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no hidden {name} in {page}")) + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

/// Registers through the registration page's form; returns the browser's cookies (with the
/// session cookie).
async fn signed_in_browser(h: &Harness, email: &str) -> String {
    let (page, id, jar) = open(h, "registration", "").await;
    let csrf = hidden_value(&html(&page), "csrf_token");
    let r = h
        .form(
            false,
            &format!("/self-service/registration?flow={id}"),
            &[("csrf_token", &csrf), ("traits.email", email), ("password", PASSWORD), ("method", "password")],
            &[("cookie", &jar)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", html(&r));
    assert_eq!(r.header("location"), format!("{PUBLIC}/ui/welcome"));
    let session = cookies_of(&r);
    assert!(session.starts_with("ory_kratos_session="), "{session}");
    format!("{jar}; {session}")
}

#[tokio::test]
async fn login_page_renders_the_flow_as_a_form_that_works_without_javascript() {
    let h = Harness::new().await;
    signed_in_browser(&h, "ann@example.com").await;
    let (page, id, jar) = open(&h, "login", "").await;
    let body = html(&page);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(body.starts_with("<!doctype html>") && body.contains("<html lang=\"en\">"), "{body}");
    assert!(body.contains("<title>Sign in · Portcullis</title>") && body.contains("<h1>Sign in</h1>"), "{body}");
    assert!(
        body.contains(&format!("<form method=\"POST\" action=\"{PUBLIC}/self-service/login?flow={id}\">")),
        "{body}"
    );
    let stored = flow::load(&h.state.store, &id, Kind::Login).await.unwrap();
    assert_eq!(hidden_value(&body, "csrf_token"), stored.csrf_token);
    assert!(
        body.contains("<label for=\"identifier\">E-mail</label><input id=\"identifier\" name=\"identifier\" type=\"text\" value=\"\" required autocomplete=\"email\">"),
        "{body}"
    );
    assert!(
        body.contains(
            "<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\""
        ),
        "{body}"
    );
    assert!(body.contains("<button type=\"submit\" name=\"method\" value=\"password\">Sign in</button>"), "{body}");
    assert!(body.contains(&format!("href=\"{PUBLIC}/self-service/registration/browser\"")), "{body}");
    assert!(body.contains(&format!("href=\"{PUBLIC}/self-service/recovery/browser\">Forgot your password?")), "{body}");
    assert!(body.contains(&format!("<link rel=\"stylesheet\" href=\"{PUBLIC}/ui/style.css\">")));
    // Scripts (webauthn.js for passkeys) only by URL, never inline, never event attributes.
    assert_eq!(body.matches("<script").count(), body.matches("<script src=\"").count(), "{body}");
    assert!(!body.contains("onclick="), "{body}");

    // What the form posts signs in.
    let r = h
        .form(
            false,
            &format!("/self-service/login?flow={id}"),
            &[
                ("csrf_token", &stored.csrf_token),
                ("identifier", "ann@example.com"),
                ("password", PASSWORD),
                ("method", "password"),
            ],
            &[("cookie", &jar)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", html(&r));
    assert_eq!(r.header("location"), format!("{PUBLIC}/ui/welcome"));
    let welcome = get(&h, "/ui/welcome", &format!("{jar}; {}", cookies_of(&r))).await;
    assert_eq!(welcome.status, StatusCode::OK);
    assert!(html(&welcome).contains("Signed in as <strong>ann@example.com</strong>"), "{}", html(&welcome));
}

#[tokio::test]
async fn registration_page_shows_the_schema_traits_and_its_form_signs_in() {
    let h = Harness::new().await;
    let (page, _, _) = open(&h, "registration", "").await;
    let body = html(&page);
    assert!(body.contains("<label for=\"traits-email\">E-mail</label><input id=\"traits-email\" name=\"traits.email\" type=\"email\" value=\"\" required"), "{body}");
    assert!(
        body.contains(
            "<label for=\"traits-name\">Name</label><input id=\"traits-name\" name=\"traits.name\" type=\"text\""
        ),
        "{body}"
    );
    assert!(body.contains("type=\"password\" required autocomplete=\"new-password\" minlength=\"8\""), "{body}");
    assert!(body.contains("<button type=\"submit\" name=\"method\" value=\"password\">Sign up</button>"), "{body}");
    // Registering by code must not demand the password the other method requires.
    assert!(body.contains("value=\"code\" class=\"secondary\" formnovalidate>Sign up with code</button>"), "{body}");
    assert!(
        body.contains(&format!("href=\"{PUBLIC}/self-service/login/browser\">Already have an account? Sign in")),
        "{body}"
    );

    let jar = signed_in_browser(&h, "bea@example.com").await;
    let welcome = html(&get(&h, "/ui/welcome", &jar).await);
    assert!(welcome.contains("bea@example.com"), "{welcome}");
    assert!(welcome.contains(&format!("href=\"{PUBLIC}/self-service/settings/browser\"")), "{welcome}");
    assert!(welcome.contains(&format!("href=\"{PUBLIC}/ui/logout\">Sign out")), "{welcome}");
    assert!(welcome.contains("not verified yet"), "{welcome}");
}

#[tokio::test]
async fn script_in_a_trait_value_or_a_message_is_escaped() {
    let h = Harness::new().await;
    let (page, id, jar) = open(&h, "registration", "").await;
    let csrf = hidden_value(&html(&page), "csrf_token");
    let evil = "<script>alert('x')</script>";
    let r = h
        .form(
            false,
            &format!("/self-service/registration?flow={id}"),
            &[
                ("csrf_token", &csrf),
                ("traits.email", "not-an-address"),
                ("traits.name", evil),
                ("password", PASSWORD),
                ("method", "password"),
            ],
            &[("cookie", &jar)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(path_of(r.header("location")), format!("/ui/registration?flow={id}"));
    // A message carrying markup, as a web hook might send.
    let mut stored = flow::load(&h.state.store, &id, Kind::Registration).await.unwrap();
    stored.messages.push(UiText::error(4_000_001, evil));
    stored.field_error("traits.name", UiText::error(4_000_001, evil));
    flow::save(&h.state.store, &mut stored).await.unwrap();

    let body = html(&get(&h, &format!("/ui/registration?flow={id}"), &jar).await);
    assert!(!body.contains("<script>"), "{body}");
    let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;";
    assert!(body.contains(&format!("name=\"traits.name\" type=\"text\" value=\"{escaped}\"")), "{body}");
    assert!(
        body.contains(&format!("class=\"msg msg-error\" role=\"alert\" data-message-id=\"4000001\">{escaped}</p>")),
        "{body}"
    );
    assert!(body.contains("is not a valid e-mail address"), "the field's own error is shown: {body}");
    assert!(body.contains("aria-invalid=\"true\""), "{body}");
}

#[tokio::test]
async fn a_missing_unknown_or_expired_flow_starts_a_new_one_and_keeps_return_to() {
    let h = Harness::new().await;
    let r = get(&h, "/ui/login", "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), format!("{PUBLIC}/self-service/login/browser"));
    let r =
        get(&h, "/ui/registration?flow=no-such-flow&return_to=http%3A%2F%2F127.0.0.1%3A4444%2Fapp%3Fa%3D1", "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.header("location"),
        format!("{PUBLIC}/self-service/registration/browser?return_to=http%3A%2F%2F127.0.0.1%3A4444%2Fapp%3Fa%3D1")
    );
    assert!(!r.header("content-security-policy").is_empty(), "redirects carry the headers too");

    // A login flow is not a recovery flow.
    let (_, id, jar) = open(&h, "login", "").await;
    let r = get(&h, &format!("/ui/recovery?flow={id}"), &jar).await;
    assert_eq!(r.header("location"), format!("{PUBLIC}/self-service/recovery/browser"));

    h.clock.advance(24 * 3600);
    let r = get(&h, &format!("/ui/login?flow={id}"), &jar).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), format!("{PUBLIC}/self-service/login/browser"));
}

#[tokio::test]
async fn a_flow_opened_without_its_csrf_cookie_explains_instead_of_looping() {
    let h = Harness::new().await;
    let (_, id, _) = open(&h, "login", "").await;
    let r = get(&h, &format!("/ui/login?flow={id}"), "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), format!("{PUBLIC}/ui/error?id=security_csrf_violation"));
    let page = html(&get(&h, path_of(r.header("location")), "").await);
    assert!(page.contains("security check failed") && page.contains("<code>security_csrf_violation</code>"), "{page}");
}

#[tokio::test]
async fn the_error_page_shows_catalogue_texts_and_never_reflects_the_query() {
    let h = Harness::new().await;
    let r = get(&h, "/ui/error?id=self_service_flow_expired", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(html(&r).contains("<h1>This page has expired</h1>"), "{}", html(&r));
    for query in
        ["id=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "id=You+have+won+a+prize", "", "id=internal_server_error&x=%3Cb%3E"]
    {
        let r = get(&h, &format!("/ui/error?{query}"), "").await;
        let body = html(&r);
        assert_eq!(r.status, StatusCode::OK);
        assert!(body.contains("<h1>Something went wrong</h1>"), "{body}");
        for leaked in ["alert", "prize", "&lt;b&gt;", "internal_server_error"] {
            assert!(!body.contains(leaked), "{leaked} in {body}");
        }
    }
}

#[tokio::test]
async fn account_pages_send_a_browser_without_a_session_to_sign_in() {
    let h = Harness::new().await;
    for path in ["/ui/welcome", "/ui/logout"] {
        for cookies in ["", "ory_kratos_session=pc_st_not-a-session"] {
            let r = get(&h, path, cookies).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(r.header("location"), format!("{PUBLIC}/self-service/login/browser"), "{path}");
        }
    }
}

#[tokio::test]
async fn the_logout_page_links_to_a_logout_url_for_this_browser() {
    let h = Harness::new().await;
    let jar = signed_in_browser(&h, "cal@example.com").await;
    let body = html(&get(&h, "/ui/logout", &jar).await);
    assert!(body.contains("<h1>Sign out</h1>") && body.contains("cal@example.com"), "{body}");
    let marker = format!("<a class=\"btn\" href=\"{PUBLIC}/self-service/logout?token=");
    let start =
        body.find(&marker).unwrap_or_else(|| panic!("{body}")) + marker.len() - "/self-service/logout?token=".len();
    let href = &body[start..start + body[start..].find('"').unwrap()];
    let r = get(&h, href, &jar).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", html(&r));
    assert_eq!(r.header("location"), format!("{PUBLIC}/ui/login"));
    let after = get(&h, "/ui/welcome", &jar).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "the session has ended");
}

#[tokio::test]
async fn the_settings_page_has_a_form_per_method_and_a_sign_out_link() {
    let h = Harness::new().await;
    let jar = signed_in_browser(&h, "dee@example.com").await;
    let (page, id, jar) = open(&h, "settings", &jar).await;
    let body = html(&page);
    assert_eq!(body.matches(&format!("action=\"{PUBLIC}/self-service/settings?flow={id}\"")).count(), 2, "{body}");
    assert!(body.contains("<h2>Profile</h2>") && body.contains("<h2>Password</h2>"), "{body}");
    assert!(body.contains("name=\"traits.email\" type=\"email\" value=\"dee@example.com\""), "{body}");
    assert!(body.contains(&format!("href=\"{PUBLIC}/ui/logout\">Sign out")), "{body}");
    // Another browser (no session) holding the link and the CSRF cookie does not see the traits.
    let csrf_only: String = jar.split("; ").filter(|c| c.starts_with("csrf_token_")).collect();
    let r = get(&h, &format!("/ui/settings?flow={id}"), &csrf_only).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), format!("{PUBLIC}/self-service/settings/browser"));
}

#[tokio::test]
async fn pages_carry_security_headers_and_the_stylesheet_is_small() {
    let mut config = Config::default();
    config.selfservice.allowed_return_urls = vec!["https://app.example.com/after".into()];
    let h = Harness::with_config(config).await;
    let (page, _, _) = open(&h, "login", "").await;
    for r in [&page, &get(&h, "/ui/error?id=x", "").await, &get(&h, "/ui/welcome", "").await] {
        let csp = r.header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "form-action 'self' http://127.0.0.1:4444 https://app.example.com;",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert_eq!(r.header("x-frame-options"), "DENY");
        assert_eq!(r.header("referrer-policy"), "no-referrer");
        assert_eq!(r.header("cache-control"), "no-store");
    }
    let css = get(&h, "/ui/style.css", "").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
    assert!(css.bytes.len() < 4096, "{} bytes", css.bytes.len());
    assert!(html(&css).contains(":focus-visible"));
}

#[tokio::test]
async fn an_operator_layout_and_title_replace_the_built_in_shell() {
    let dir =
        std::env::temp_dir().join(format!("portcullis-ui-{}", crate::crypto::hex(&crate::crypto::random_bytes::<6>())));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("layout.html"), "<!doctype html><html lang=\"de\"><title>{{title}}</title><link href=\"{{css_href}}\"><div id=acme>{{content}}</div></html>").unwrap();
    let mut config = Config::default();
    config.ui.title = "Acme <ID>".into();
    config.ui.templates_dir = Some(dir.display().to_string());
    config.ui.load_templates(std::path::Path::new("")).unwrap();
    let h = Harness::with_config(config).await;
    let body = html(&get(&h, "/ui/error?id=session_inactive", "").await);
    assert!(
        body.starts_with("<!doctype html><html lang=\"de\"><title>You are not signed in · Acme &lt;ID&gt;</title>"),
        "{body}"
    );
    assert!(body.contains("<div id=acme><p class=\"brand\">Acme &lt;ID&gt;</p>"), "{body}");
}

#[test]
fn passkeys_need_https_except_on_loopback() {
    assert!(super::passkeys_need_https("http://id.example.com"));
    assert!(super::passkeys_need_https("http://10.0.0.5:4444/"));
    for ok in ["https://id.example.com", "http://localhost:4444", "http://127.0.0.1:4444/", "http://[::1]:4444"] {
        assert!(!super::passkeys_need_https(ok), "{ok}");
    }
}
