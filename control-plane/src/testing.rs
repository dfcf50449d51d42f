//! In-process test harness: a fresh in-memory store (or one per backend, [`Harness::all`]), a [`FixedClock`] and both routers,
//! driven with `tower::ServiceExt::oneshot`. Test-only.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::app::AppState;
use crate::clock::FixedClock;
use crate::config::Config;
use crate::routes::{admin_router, public_router};

pub const T0: i64 = 1_700_000_000;
pub const FILTER_TOKEN: &str = "filter-token-1";

pub struct Harness {
    pub state: AppState,
    pub clock: Arc<FixedClock>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!("{} body is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.bytes))
        })
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_config(Config::default()).await
    }

    /// A `--dev` harness: its admin API needs no key, since most tests are about something
    /// else (those about keys use [`Harness::secured`]).
    pub async fn with_config(mut config: Config) -> Self {
        config.dev = true;
        Self::build(config).await
    }

    /// A harness whose admin API requires API keys, as `portcullis serve` without `--dev`.
    pub async fn secured() -> Self {
        Self::build(Config::default()).await
    }

    async fn build(config: Config) -> Self {
        Self::build_on(config, crate::store::testing::sqlite().await).await
    }

    /// One `--dev` harness per store backend (SQLite, and PostgreSQL when
    /// `PORTCULLIS_TEST_POSTGRES_DSN` is set), for tests whose behaviour rests on store
    /// semantics: compare-and-set flow updates, single-use codes, sessions, rate limits.
    /// Each harness has its own fresh database and clock.
    pub async fn all() -> Vec<(&'static str, Self)> {
        Self::all_with_config(Config::default()).await
    }

    /// [`Harness::all`] with `config` (as [`Harness::with_config`]).
    pub async fn all_with_config(mut config: Config) -> Vec<(&'static str, Self)> {
        config.dev = true;
        let mut harnesses = Vec::new();
        for (backend, store) in crate::store::testing::all().await {
            harnesses.push((backend, Self::build_on(config.clone(), store).await));
        }
        harnesses
    }

    async fn build_on(mut config: Config, store: crate::store::Store) -> Self {
        config.filters.tokens = vec![FILTER_TOKEN.into()];
        let clock = Arc::new(FixedClock::new(T0));
        let state = AppState::new(config, store, clock.clone()).await.unwrap();
        Self { state, clock }
    }

    pub fn public(&self) -> Router {
        public_router(self.state.clone())
    }

    pub fn admin(&self) -> Router {
        admin_router(self.state.clone())
    }

    pub async fn send(router: Router, req: Request<Body>) -> Reply {
        let res = router.oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply { status, headers, bytes }
    }

    pub async fn admin_json(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        Self::send(self.admin(), req.body(body).unwrap()).await
    }

    /// POSTs a form to `path` on the public (or admin) router with extra headers.
    pub async fn form(&self, admin: bool, path: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let body = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&");
        let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let router = if admin { self.admin() } else { self.public() };
        Self::send(router, req.body(Body::from(body)).unwrap()).await
    }

    /// Creates a client through the admin API and returns its JSON (with the secret).
    pub async fn client(&self, body: Value) -> Value {
        let reply = self.admin_json(Method::POST, "/admin/clients", Some(body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json());
        reply.json()
    }

    /// A token for a client_secret_post client with `scope`.
    pub async fn token(&self, id: &str, secret: &str, scope: &str) -> Value {
        let reply = self
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret), ("scope", scope)],
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        reply.json()
    }

    /// Creates the confidential client `web` (secret [`WEB_SECRET`], client_secret_post) for
    /// user grants, with `extra` fields merged in.
    pub async fn web_client(&self, extra: Value) -> Value {
        let mut body = serde_json::json!({
            "client_id": "web",
            "client_secret": WEB_SECRET,
            "token_endpoint_auth_method": "client_secret_post",
            "grant_types": ["authorization_code", "refresh_token"],
            "redirect_uris": [WEB_REDIRECT],
            "scope": "openid offline_access email profile read write",
        });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        self.client(body).await
    }

    /// An authorization code for `grant`, as `/oauth2/auth` would hand it out.
    pub async fn code(&self, grant: &crate::oauth2::code::Grant) -> String {
        crate::oauth2::code::issue(&self.state.oauth2(), grant).await.unwrap()
    }

    /// `POST /oauth2/token` as client `web` with `pairs`.
    pub async fn web_token(&self, pairs: &[(&str, &str)]) -> Reply {
        let mut all = vec![("client_id", "web"), ("client_secret", WEB_SECRET)];
        all.extend_from_slice(pairs);
        self.form(false, "/oauth2/token", &all, &[]).await
    }

    /// The claims of a JWT after checking its ES256 signature against `/.well-known/jwks.json`.
    pub async fn verified_claims(&self, jwt: &str) -> serde_json::Map<String, Value> {
        let jwks = self.get("/.well-known/jwks.json", &[]).await.json();
        let token = crate::jwt::Untrusted::parse(jwt, &[crate::jwt::Alg::ES256]).expect("an ES256 JWT");
        let verified = token.verify(&portcullis_shared::jwt::signing_keys(&jwks));
        verified.expect("signed by a key of the JWKS its kid names").into_json()
    }
}

pub const WEB_SECRET: &str = "web-client-secret";
pub const WEB_REDIRECT: &str = "https://app.example/cb";
/// A PKCE verifier and its S256 challenge (base64url of its SHA-256).
pub const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUofrDQzBqo2gLYz3-xMyb";
pub const PKCE_CHALLENGE: &str = "PfFI2P5zvwOGQX_oZ6xJtf5aSJrkAeuRY0zottgObS0";

/// A user grant for client `web` with `scope`, PKCE S256 and a nonce, as consent records it.
pub fn user_grant(scope: &str) -> crate::oauth2::code::Grant {
    crate::oauth2::code::Grant {
        client_id: "web".into(),
        subject: "user-1".into(),
        scope: scope.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        audience: vec![],
        redirect_uri: Some(WEB_REDIRECT.into()),
        code_challenge: Some(PKCE_CHALLENGE.into()),
        code_challenge_method: Some("S256".into()),
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: T0 - 60,
        acr: "0".into(),
        amr: vec!["pwd".into()],
        sid: "sid-1".into(),
        consent_id: "consent-1".into(),
        access_token_claims: serde_json::Map::new(),
        id_token_claims: serde_json::Map::new(),
        requested_at: T0 - 30,
    }
}

impl Harness {
    /// `GET path` on the public router with extra headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::send(self.public(), req.body(Body::empty()).unwrap()).await
    }

    /// POSTs `body` as JSON (and asks for JSON) to `path` on the public router.
    pub async fn post_json(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::send(self.public(), req.body(Body::from(body.to_string())).unwrap()).await
    }

    /// A new native-app (`/api`) self-service flow of `kind`.
    pub async fn api_flow(&self, kind: &str, headers: &[(&str, &str)]) -> Value {
        let r = self.get(&format!("/self-service/{kind}/api"), headers).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.bytes));
        r.json()
    }
}

/// The path and query of a self-service flow's `ui.action`.
pub fn flow_action(flow: &Value) -> String {
    let url = flow["ui"]["action"].as_str().unwrap();
    url[url.find("/self-service").unwrap()..].to_owned()
}

/// Every message id on a flow: the flow's own, then each node's.
pub fn message_ids(flow: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> =
        flow["ui"]["messages"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
    for n in flow["ui"]["nodes"].as_array().unwrap() {
        ids.extend(n["messages"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()));
    }
    ids
}

pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Tokens an attacker writes, for tests of every path that verifies a JWT.
pub use portcullis_keys::testing::forge;
