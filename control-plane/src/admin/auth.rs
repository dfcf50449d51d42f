//! Who may call the admin API: API keys with scopes, checked by [`require_api_key`] on every
//! admin request after the Hydra v1 rewrite (`/clients` is judged as `/admin/clients`), unless
//! the server was started with `portcullis serve --dev`.
//!
//! A key (`pc_ak_` + 43 base64url characters, 256 random bits) is presented as
//! `Authorization: Bearer pc_ak_...` or `X-Portcullis-Api-Key: pc_ak_...`, and found by the
//! SHA-256 of the whole key (a fast hash is right for high-entropy keys, and a lookup by hash
//! compares nothing secret byte by byte). Scopes are `admin` (everything) or
//! `<resource>:read|write`; `write` includes `read`. A route needs `<resource>:read` for GET and
//! HEAD and `<resource>:write` otherwise, by path prefix ([`requirement`]); introspection and
//! `rules/explain` change nothing and need only `read`; `/admin/version` needs any valid key;
//! a path not listed needs `admin`, so a new route is closed until it is mapped. `tokens` is
//! token housekeeping (introspection, deleting a client's tokens); the login/consent contract
//! (`/admin/oauth2/auth/requests/...`, `/admin/oauth2/auth/sessions/...`) is `login-consent`,
//! because accepting a login request decides who the user is: impersonation, not housekeeping.
//! Not guarded by a key: `/admin/health/*` (probes), `/admin/snapshot` (filters present a
//! token from `filters.tokens` instead, see [`crate::rules::snapshot`]), and `/decisions*` and
//! `/admin/decisions*`: those judge the request's own `Authorization` header as the gateway
//! would, so they cannot also carry an admin credential — keep the admin listener private.
//!
//! Verified keys are remembered for [`CACHE_TTL_MS`], so a busy admin path does not query the
//! database on every request; revoking through the API evicts at once on this node, other
//! replicas stop accepting the key within that time. `last_used_at` is written at most once a
//! minute per key. This module never logs or echoes a presented key.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::config::Config;
use crate::crypto;
use crate::error::{ApiError, StoreError};
use crate::store::Store;
use crate::store::api_keys::ApiKeyRow;

/// What every key starts with; lets a foreign string be refused without a database query and
/// makes a leaked key easy to grep for.
pub const KEY_PREFIX: &str = "pc_ak_";
/// The header that carries a key when `Authorization` is taken.
pub const API_KEY_HEADER: &str = "x-portcullis-api-key";
/// How long a verified key is trusted without asking the database again.
pub const CACHE_TTL_MS: i64 = 5_000;
/// `last_used_at` is written at most this often per key.
pub const TOUCH_INTERVAL_SECONDS: i64 = 60;
const CACHE_CAPACITY: usize = 1_024;
const KEY_CHARS: usize = 43;
const MAX_NAME_CHARS: usize = 200;
const CHALLENGE: &str = "Bearer realm=\"portcullis-admin\"";

/// What a scope can be about, with its name in scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Clients,
    Identities,
    Sessions,
    Rules,
    Keys,
    Courier,
    Tokens,
    LoginConsent,
    ApiKeys,
}

const RESOURCES: [(&str, Resource); 9] = [
    ("clients", Resource::Clients),
    ("identities", Resource::Identities),
    ("sessions", Resource::Sessions),
    ("rules", Resource::Rules),
    ("keys", Resource::Keys),
    ("courier", Resource::Courier),
    ("tokens", Resource::Tokens),
    ("login-consent", Resource::LoginConsent),
    ("api-keys", Resource::ApiKeys),
];

/// The admin routes by path prefix (after the v1 rewrite) and the resource they belong to.
/// `/admin/oauth2/...` is mapped path by path: a route added there later needs `admin` until
/// someone decides which scope it belongs to.
const ROUTES: [(&str, Resource); 11] = [
    ("/admin/clients", Resource::Clients),
    ("/admin/identities", Resource::Identities),
    ("/admin/sessions", Resource::Sessions),
    ("/admin/rules", Resource::Rules),
    ("/admin/keys", Resource::Keys),
    ("/admin/courier", Resource::Courier),
    ("/admin/oauth2/introspect", Resource::Tokens),
    ("/admin/oauth2/tokens", Resource::Tokens),
    ("/admin/oauth2/auth/requests", Resource::LoginConsent),
    ("/admin/oauth2/auth/sessions", Resource::LoginConsent),
    ("/admin/api-keys", Resource::ApiKeys),
];

/// The resource names scopes are made of, in the order they are documented.
pub fn resource_names() -> impl Iterator<Item = &'static str> {
    RESOURCES.iter().map(|(name, _)| *name)
}

impl Resource {
    fn name(self) -> &'static str {
        RESOURCES.iter().find(|(_, r)| *r == self).map_or("", |(n, _)| n)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything, including routes added later.
    Admin,
    On(Resource, Access),
}

impl Scope {
    /// `admin` or `<resource>:read|write`; the error names the scope and what is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "admin" {
            return Ok(Self::Admin);
        }
        let parsed = text.split_once(':').and_then(|(resource, access)| {
            let resource = RESOURCES.iter().find(|(n, _)| *n == resource).map(|(_, r)| *r)?;
            let access = match access {
                "read" => Access::Read,
                "write" => Access::Write,
                _ => return None,
            };
            Some(Self::On(resource, access))
        });
        parsed.ok_or_else(|| {
            let names: Vec<&str> = RESOURCES.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown scope {text:?}: expected \"admin\" or \"<resource>:read\" / \"<resource>:write\" with resource one of {}",
                names.join(", ")
            )
        })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Admin => f.write_str("admin"),
            Self::On(r, Access::Read) => write!(f, "{}:read", r.name()),
            Self::On(r, Access::Write) => write!(f, "{}:write", r.name()),
        }
    }
}

/// The scopes of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// At least one scope, each known; repeats are dropped.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut scopes = Vec::new();
        for item in items {
            let scope = Scope::parse(item)?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("scopes: at least one scope is required (e.g. \"admin\" or \"clients:read\")".into());
        }
        Ok(Self(scopes))
    }

    /// The stored form. A scope this version does not know (written by a newer one) grants
    /// nothing rather than failing the key.
    pub fn from_stored(text: &str) -> Self {
        Self(text.split_whitespace().filter_map(|s| Scope::parse(s).ok()).collect())
    }

    pub fn to_stored(&self) -> String {
        self.names().join(" ")
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Whether these scopes allow what `needed` allows (`write` includes `read`).
    pub fn grants(&self, needed: Scope) -> bool {
        self.0.iter().any(|have| match (have, needed) {
            (Scope::Admin, _) => true,
            (Scope::On(r, Access::Write), Scope::On(n, _)) => *r == n,
            (Scope::On(r, Access::Read), Scope::On(n, Access::Read)) => *r == n,
            _ => false,
        })
    }
}

/// What a request to the admin router needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// No API key (health probes, the snapshot's own token, decisions).
    Exempt,
    /// Any valid key, whatever its scopes.
    AnyKey,
    Scope(Scope),
}

/// The requirement of `method path`, `path` as routed (after the v1 rewrite).
pub fn requirement(method: &Method, path: &str) -> Requirement {
    let under = |prefix: &str| path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'));
    if path.starts_with("/admin/health/") || path == "/admin/snapshot" {
        return Requirement::Exempt;
    }
    if under("/decisions") || under("/admin/decisions") {
        return Requirement::Exempt;
    }
    if path == "/admin/version" {
        return Requirement::AnyKey;
    }
    // These change nothing even though they are POSTs.
    if path == "/admin/oauth2/introspect" {
        return Requirement::Scope(Scope::On(Resource::Tokens, Access::Read));
    }
    if path == "/admin/rules/explain" {
        return Requirement::Scope(Scope::On(Resource::Rules, Access::Read));
    }
    // Recovery links and codes hand out access to an identity whatever the method.
    if under("/admin/recovery") {
        return Requirement::Scope(Scope::On(Resource::Identities, Access::Write));
    }
    let access = if *method == Method::GET || *method == Method::HEAD { Access::Read } else { Access::Write };
    match ROUTES.iter().find(|(prefix, _)| under(prefix)) {
        Some((_, resource)) => Requirement::Scope(Scope::On(*resource, access)),
        None => Requirement::Scope(Scope::Admin),
    }
}

/// A new key in clear (to show once) and the row to store for it.
pub fn new_key(name: &str, scopes: &Scopes, now: i64) -> Result<(String, ApiKeyRow), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("name: must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(format!("name: at most {MAX_NAME_CHARS} characters, no control characters"));
    }
    let key = format!("{KEY_PREFIX}{}", crypto::b64url(&crypto::random_bytes::<32>()));
    let row = ApiKeyRow {
        id: crypto::uuid_v4(),
        name: name.to_owned(),
        key_hash: crypto::sha256_hex(key.as_bytes()),
        scopes: scopes.to_stored(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    Ok((key, row))
}

/// The key a request presents: `X-Portcullis-Api-Key`, else a bearer `Authorization`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(API_KEY_HEADER) {
        return v.to_str().ok().map(str::trim);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
}

fn well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == KEY_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The verified caller, in the request's extensions for handlers that care (creating a key
/// may not grant more than the caller holds).
#[derive(Clone, Debug)]
pub struct Caller {
    pub key_id: String,
    pub scopes: Scopes,
}

/// Verified keys by hash, briefly.
#[derive(Default)]
pub struct ApiKeyCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<String, (Caller, i64)>,
    /// Bumped by every eviction, so a lookup that raced a revocation is not cached.
    generation: u64,
}

impl std::fmt::Debug for ApiKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeyCache { .. }")
    }
}

impl ApiKeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A poisoned cache only ever holds keys that verified; keep using it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, hash: &str, now_ms: i64) -> Result<Caller, u64> {
        let inner = self.lock();
        match inner.entries.get(hash) {
            Some((caller, at)) if now_ms - at < CACHE_TTL_MS && now_ms >= *at => Ok(caller.clone()),
            _ => Err(inner.generation),
        }
    }

    fn put(&self, hash: String, caller: Caller, now_ms: i64, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= CACHE_CAPACITY && !inner.entries.contains_key(&hash) {
            inner.entries.retain(|_, (_, at)| now_ms - *at < CACHE_TTL_MS);
            if inner.entries.len() >= CACHE_CAPACITY {
                inner.entries.clear();
            }
        }
        inner.entries.insert(hash, (caller, now_ms));
    }

    /// Forgets key `id` at once (revocation).
    pub fn evict(&self, id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.retain(|_, (caller, _)| caller.key_id != id);
    }
}

fn unauthorized(description: &str) -> Response {
    let mut res = ApiError::unauthorized(description).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    res
}

/// Finds the caller's key: from the cache, else the store (recording the use once a minute).
async fn verify(state: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let Some(key) = presented(headers).filter(|k| !k.is_empty()) else {
        return Err(unauthorized(
            "The admin API requires an API key: send `Authorization: Bearer pc_ak_...` or `X-Portcullis-Api-Key: pc_ak_...` (create one with `portcullis keys create`).",
        ));
    };
    if !well_formed(key) {
        return Err(unauthorized("The credential is not a Portcullis API key (pc_ak_...)."));
    }
    let hash = crypto::sha256_hex(key.as_bytes());
    let now_ms = state.clock.now_ms();
    let generation = match state.api_keys.get(&hash, now_ms) {
        Ok(caller) => return Ok(caller),
        Err(generation) => generation,
    };
    let row = match state.store.find_active_api_key(&hash).await {
        Ok(Some(row)) => row,
        Ok(None) => return Err(unauthorized("The API key is not valid or has been revoked.")),
        Err(e) => return Err(ApiError::from(e).into_response()),
    };
    let caller = Caller { key_id: row.id.clone(), scopes: Scopes::from_stored(&row.scopes) };
    state.api_keys.put(hash, caller.clone(), now_ms, generation);
    let now = state.clock.now();
    if row.last_used_at.is_none_or(|t| t <= now - TOUCH_INTERVAL_SECONDS) {
        // Bookkeeping: a failure here must not refuse a valid key.
        if let Err(e) = state.store.touch_api_key(&row.id, now, TOUCH_INTERVAL_SECONDS).await {
            tracing::warn!(key_id = %row.id, error = %e, "could not record the use of an API key");
        }
    }
    Ok(caller)
}

/// The admin router's guard (see the module documentation).
pub async fn require_api_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if state.config.dev {
        return next.run(req).await;
    }
    let needed = requirement(req.method(), req.uri().path());
    if needed == Requirement::Exempt {
        return next.run(req).await;
    }
    let caller = match verify(&state, req.headers()).await {
        Ok(caller) => caller,
        Err(res) => {
            tracing::debug!(method = %req.method(), path = req.uri().path(), "admin request without a valid API key");
            return res;
        }
    };
    if let Requirement::Scope(scope) = needed {
        if !caller.scopes.grants(scope) {
            tracing::info!(key_id = %caller.key_id, method = %req.method(), path = req.uri().path(), %scope,
                "admin request refused: the API key lacks a scope");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("The API key lacks the scope \"{scope}\" that {} {} requires.", req.method(), req.uri().path()),
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Start-up lines about admin authentication: a loud warning under `--dev`, else a hint when
/// no key exists yet.
pub async fn announce(config: &Config, store: &Store) -> Result<(), StoreError> {
    let admin = config.serve.admin.address();
    if config.dev {
        tracing::warn!(
            "DEVELOPMENT MODE (--dev): the admin API on {admin} is UNAUTHENTICATED; anyone who can reach it can \
             manage clients, rules and keys. Never use --dev where others can reach that address."
        );
        return Ok(());
    }
    match store.count_active_api_keys().await? {
        0 => tracing::info!(
            "the admin API on {admin} requires an API key and none exists yet; create one with \
             `portcullis keys create --name NAME --scopes admin` (same --config), or start with --dev on a laptop"
        ),
        n => tracing::info!(api_keys = n, "the admin API on {admin} requires an API key"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use serde_json::{Value, json};

    use super::*;
    use crate::clock::Clock as _;
    use crate::testing::{FILTER_TOKEN, Harness, Reply};

    fn scope(text: &str) -> Scope {
        Scope::parse(text).unwrap()
    }

    #[test]
    fn scopes_parse_print_and_unknown_ones_are_named() {
        for text in ["admin", "clients:read", "api-keys:write", "courier:read", "tokens:write", "login-consent:read"] {
            assert_eq!(scope(text).to_string(), text);
        }
        for bad in ["clients", "clients:delete", "client:read", "ADMIN", ""] {
            let err = Scope::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")) && err.contains("api-keys"), "{err}");
        }
        let err = Scopes::parse(["clients:read", "rules:wirte"]).unwrap_err();
        assert!(err.contains("\"rules:wirte\""), "{err}");
        assert!(Scopes::parse([]).unwrap_err().contains("at least one"));
        let scopes = Scopes::parse(["rules:write", "clients:read", "rules:write"]).unwrap();
        assert_eq!(scopes.to_stored(), "rules:write clients:read");
        assert_eq!(Scopes::from_stored("rules:write future:scope clients:read"), scopes);
    }

    #[test]
    fn write_includes_read_and_admin_includes_everything() {
        let s = Scopes::parse(["clients:write", "rules:read"]).unwrap();
        assert!(s.grants(scope("clients:read")) && s.grants(scope("clients:write")) && s.grants(scope("rules:read")));
        assert!(!s.grants(scope("rules:write")) && !s.grants(scope("identities:read")) && !s.grants(Scope::Admin));
        let admin = Scopes::parse(["admin"]).unwrap();
        assert!(admin.grants(Scope::Admin) && admin.grants(scope("api-keys:write")));
    }

    #[test]
    fn every_admin_route_needs_its_scope_and_unmapped_paths_need_admin() {
        let r = |method: Method, path: &str| requirement(&method, path);
        let s = |text: &str| Requirement::Scope(scope(text));
        assert_eq!(r(Method::GET, "/admin/clients"), s("clients:read"));
        assert_eq!(r(Method::HEAD, "/admin/clients/x"), s("clients:read"));
        assert_eq!(r(Method::POST, "/admin/clients"), s("clients:write"));
        assert_eq!(r(Method::DELETE, "/admin/clients/x"), s("clients:write"));
        assert_eq!(r(Method::PATCH, "/admin/identities/x"), s("identities:write"));
        assert_eq!(r(Method::GET, "/admin/sessions/x/extend"), s("sessions:read"));
        assert_eq!(r(Method::PUT, "/admin/rules"), s("rules:write"));
        assert_eq!(r(Method::POST, "/admin/rules/explain"), s("rules:read"));
        assert_eq!(r(Method::GET, "/admin/keys/portcullis.id-token"), s("keys:read"));
        assert_eq!(r(Method::GET, "/admin/courier/messages"), s("courier:read"));
        assert_eq!(r(Method::POST, "/admin/oauth2/introspect"), s("tokens:read"));
        assert_eq!(r(Method::DELETE, "/admin/oauth2/tokens"), s("tokens:write"));
        assert_eq!(r(Method::PUT, "/admin/oauth2/auth/requests/login/accept"), s("login-consent:write"));
        assert_eq!(r(Method::GET, "/admin/oauth2/auth/requests/consent"), s("login-consent:read"));
        assert_eq!(r(Method::DELETE, "/admin/oauth2/auth/sessions/login"), s("login-consent:write"));
        assert_eq!(r(Method::GET, "/admin/oauth2/auth/sessions/consent"), s("login-consent:read"));
        assert_eq!(r(Method::GET, "/admin/api-keys"), s("api-keys:read"));
        assert_eq!(r(Method::DELETE, "/admin/api-keys/x"), s("api-keys:write"));
        assert_eq!(r(Method::GET, "/admin/recovery/link"), s("identities:write"));
        assert_eq!(r(Method::POST, "/admin/recovery/code"), s("identities:write"));
        assert_eq!(r(Method::GET, "/admin/version"), Requirement::AnyKey);
        for exempt in
            ["/admin/health/alive", "/admin/health/ready", "/admin/snapshot", "/decisions/x", "/admin/decisions"]
        {
            assert_eq!(r(Method::GET, exempt), Requirement::Exempt, "{exempt}");
        }
        // A prefix counts only on a segment boundary, and anything unknown is closed.
        for unmapped in [
            "/admin/clientsx",
            "/admin/snapshot/",
            "/admin/versions",
            "/admin",
            "/admin/whatever",
            "/",
            "/admin/oauth2",
            "/admin/oauth2/new-route",
            "/admin/oauth2/auth",
        ] {
            assert_eq!(r(Method::GET, unmapped), Requirement::Scope(Scope::Admin), "{unmapped}");
        }
    }

    #[test]
    fn new_keys_are_prefixed_256_bit_and_stored_hashed() {
        let scopes = |list: &[&str]| Scopes::parse(list.iter().copied()).unwrap();
        let (key, row) = new_key(" ci ", &scopes(&["identities:read"]), 42).unwrap();
        assert!(well_formed(&key), "{key}");
        assert_eq!(crypto::b64url_decode(&key[KEY_PREFIX.len()..]).unwrap().len(), 32);
        assert_eq!(row.key_hash, crypto::sha256_hex(key.as_bytes()));
        assert_eq!((row.name.as_str(), row.scopes.as_str(), row.created_at), ("ci", "identities:read", 42));
        assert!(!format!("{row:?}").contains(&key));
        assert_ne!(new_key("ci", &scopes(&["admin"]), 42).unwrap().0, key);
        assert!(new_key("  ", &scopes(&["admin"]), 0).unwrap_err().contains("name"));
    }

    /// Stores a key with `scopes` directly (as the CLI does) and returns it in clear.
    async fn store_key(h: &Harness, scopes: &[&str]) -> (String, String) {
        let (key, row) = new_key("test", &Scopes::parse(scopes.iter().copied()).unwrap(), h.clock.now()).unwrap();
        h.state.store.insert_api_key(&row).await.unwrap();
        (key, row.id)
    }

    async fn call(h: &Harness, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        Harness::send(h.admin(), req.body(body).unwrap()).await
    }

    fn bearer(key: &str) -> String {
        format!("Bearer {key}")
    }

    fn assert_401(reply: &Reply, what: &str) {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", String::from_utf8_lossy(&reply.bytes));
        assert_eq!(reply.json()["error"], "unauthorized", "{what}");
        assert!(reply.json()["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{what}");
        assert_eq!(reply.header("www-authenticate"), CHALLENGE, "{what}");
    }

    #[tokio::test]
    async fn without_a_valid_key_the_admin_api_answers_401_v1_paths_included() {
        let h = Harness::secured().await;
        let (key, _) = store_key(&h, &["admin"]).await;
        let forged = format!("{KEY_PREFIX}{}", crypto::b64url(&[7u8; 32]));
        for path in ["/admin/clients", "/clients", "/admin/rules", "/rules", "/admin/version", "/admin/nowhere", "/x"] {
            assert_401(&call(&h, Method::GET, path, &[], None).await, path);
            assert_401(&call(&h, Method::GET, path, &[("authorization", &bearer(&forged))], None).await, path);
            assert_401(&call(&h, Method::GET, path, &[("authorization", "Bearer not-a-key")], None).await, path);
            assert_401(&call(&h, Method::GET, path, &[("authorization", &format!("Basic {key}"))], None).await, path);
        }
        let created = call(&h, Method::POST, "/clients", &[], Some(json!({"client_id": "sneaky"}))).await;
        assert_401(&created, "POST /clients");
        assert!(h.state.store.get_client("sneaky").await.unwrap().is_none(), "nothing was created");

        for path in ["/admin/clients", "/clients"] {
            let ok = call(&h, Method::GET, path, &[("authorization", &bearer(&key))], None).await;
            assert_eq!(ok.status, StatusCode::OK, "{path}");
            let ok = call(&h, Method::GET, path, &[("x-portcullis-api-key", &key)], None).await;
            assert_eq!(ok.status, StatusCode::OK, "{path} with X-Portcullis-Api-Key");
        }
        let unknown = call(&h, Method::GET, "/admin/nowhere", &[("authorization", &bearer(&key))], None).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "a valid admin key reaches routing");
    }

    #[tokio::test]
    async fn a_key_lacking_the_scope_gets_403_naming_it_and_the_right_scope_gets_through() {
        let h = Harness::secured().await;
        let (reader, _) = store_key(&h, &["clients:read", "tokens:read"]).await;
        let auth = bearer(&reader);
        let auth = [("authorization", auth.as_str())];

        assert_eq!(call(&h, Method::GET, "/admin/clients", &auth, None).await.status, StatusCode::OK);
        assert_eq!(call(&h, Method::GET, "/clients", &auth, None).await.status, StatusCode::OK);
        assert_eq!(call(&h, Method::GET, "/admin/version", &auth, None).await.status, StatusCode::OK, "any key");
        let introspected = h.form(true, "/admin/oauth2/introspect", &[("token", "pc_at_nope")], &auth).await;
        assert_eq!(introspected.status, StatusCode::OK, "introspection is tokens:read");
        assert_eq!(introspected.json()["active"], false);

        for (method, path, missing) in [
            (Method::POST, "/admin/clients", "clients:write"),
            (Method::POST, "/clients", "clients:write"),
            (Method::GET, "/admin/rules", "rules:read"),
            (Method::DELETE, "/admin/oauth2/tokens?client_id=x", "tokens:write"),
            (Method::GET, "/admin/api-keys", "api-keys:read"),
            (Method::GET, "/admin/nowhere", "admin"),
        ] {
            let reply = call(&h, method.clone(), path, &auth, Some(json!({}))).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(reply.json()["error"], "forbidden");
            let why = reply.json()["error_description"].as_str().unwrap().to_owned();
            assert!(why.contains(&format!("\"{missing}\"")), "{method} {path}: {why}");
        }

        let (writer, _) = store_key(&h, &["clients:write"]).await;
        let created = call(
            &h,
            Method::POST,
            "/clients",
            &[("authorization", &bearer(&writer))],
            Some(json!({"client_id": "c1"})),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json());
        let listed = call(&h, Method::GET, "/admin/clients", &[("authorization", &bearer(&writer))], None).await;
        assert_eq!(listed.status, StatusCode::OK, "write includes read");
    }

    /// Issue 13 #8 (a): accepting a login request names the user the client gets tokens for
    /// (impersonation), so a key for token housekeeping must not reach it.
    #[tokio::test]
    async fn a_tokens_key_cannot_accept_login_or_consent_requests() {
        let h = Harness::secured().await;
        let (tokens, _) = store_key(&h, &["tokens:write"]).await;
        let auth = bearer(&tokens);
        let auth = [("authorization", auth.as_str())];
        for (method, path) in [
            (Method::PUT, "/admin/oauth2/auth/requests/login/accept?login_challenge=c"),
            (Method::PUT, "/oauth2/auth/requests/login/accept?login_challenge=c"),
            (Method::PUT, "/admin/oauth2/auth/requests/consent/accept?consent_challenge=c"),
            (Method::PUT, "/admin/oauth2/auth/requests/login/reject?login_challenge=c"),
            (Method::PUT, "/admin/oauth2/auth/requests/consent/reject?consent_challenge=c"),
            (Method::PUT, "/admin/oauth2/auth/requests/logout/accept?logout_challenge=c"),
            (Method::GET, "/admin/oauth2/auth/requests/login?login_challenge=c"),
            (Method::GET, "/admin/oauth2/auth/sessions/consent?subject=victim"),
            (Method::DELETE, "/admin/oauth2/auth/sessions/consent?subject=victim"),
            (Method::DELETE, "/admin/oauth2/auth/sessions/login?subject=victim"),
        ] {
            let body = if path.contains("consent/accept") {
                json!({"grant_scope": ["openid"]})
            } else {
                json!({"subject": "victim"})
            };
            let reply = call(&h, method.clone(), path, &auth, Some(body)).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                String::from_utf8_lossy(&reply.bytes)
            );
        }
        // What tokens:* is for still works.
        let introspected = h.form(true, "/admin/oauth2/introspect", &[("token", "pc_at_nope")], &auth).await;
        assert_eq!(introspected.status, StatusCode::OK);
        let deleted = call(&h, Method::DELETE, "/admin/oauth2/tokens?client_id=x", &auth, None).await;
        assert!(![401, 403].contains(&deleted.status.as_u16()), "{}", deleted.status);

        // The login/consent app's own scope reaches the contract, and read cannot write.
        let body = json!({"subject": "victim"});
        let (app, _) = store_key(&h, &["login-consent:write"]).await;
        let app = bearer(&app);
        let path = "/admin/oauth2/auth/requests/login/accept?login_challenge=c";
        let reply = call(&h, Method::PUT, path, &[("authorization", &app)], Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "an unknown challenge, past the guard");
        let (reader, _) = store_key(&h, &["login-consent:read"]).await;
        let reader = bearer(&reader);
        let reply = call(&h, Method::PUT, path, &[("authorization", &reader)], Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        let path = "/admin/oauth2/auth/requests/login?login_challenge=c";
        let reply = call(&h, Method::GET, path, &[("authorization", &reader)], None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "read may read");
    }

    #[tokio::test]
    async fn a_revoked_key_is_refused_at_once_even_when_it_was_just_cached() {
        let h = Harness::secured().await;
        let (admin, _) = store_key(&h, &["admin"]).await;
        let (victim, victim_id) = store_key(&h, &["clients:read"]).await;
        let auth = bearer(&victim);
        assert_eq!(call(&h, Method::GET, "/admin/clients", &[("authorization", &auth)], None).await.status, 200);
        let revoked = call(
            &h,
            Method::DELETE,
            &format!("/admin/api-keys/{victim_id}"),
            &[("authorization", &bearer(&admin))],
            None,
        )
        .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT);
        assert_401(&call(&h, Method::GET, "/admin/clients", &[("authorization", &auth)], None).await, "revoked");
    }

    #[tokio::test]
    async fn verified_keys_are_cached_briefly_and_their_use_recorded_once_a_minute() {
        let h = Harness::secured().await;
        let (key, id) = store_key(&h, &["clients:read"]).await;
        let auth = bearer(&key);
        let get = async || call(&h, Method::GET, "/admin/clients", &[("authorization", &auth)], None).await.status;
        let last_used = async || {
            let keys = h.state.store.list_api_keys().await.unwrap();
            keys.into_iter().find(|k| k.id == id).unwrap().last_used_at
        };
        assert_eq!(get().await, StatusCode::OK);
        assert_eq!(last_used().await, Some(crate::testing::T0));

        // Revoked behind this node's back (another replica, the CLI): the cached verification
        // holds for at most CACHE_TTL_MS.
        assert!(h.state.store.revoke_api_key(&id, h.clock.now()).await.unwrap());
        assert_eq!(get().await, StatusCode::OK, "served from the cache");
        h.clock.advance(CACHE_TTL_MS / 1000);
        assert_eq!(get().await, StatusCode::UNAUTHORIZED, "the cache entry expired");

        let (other, other_id) = store_key(&h, &["clients:read"]).await;
        let auth = bearer(&other);
        let get = async || call(&h, Method::GET, "/admin/clients", &[("authorization", &auth)], None).await.status;
        let used = async || {
            h.state.store.list_api_keys().await.unwrap().into_iter().find(|k| k.id == other_id).unwrap().last_used_at
        };
        let first = h.clock.now();
        assert_eq!(get().await, StatusCode::OK);
        h.clock.advance(30);
        assert_eq!(get().await, StatusCode::OK);
        assert_eq!(used().await, Some(first), "not written again within the minute");
        h.clock.advance(30);
        assert_eq!(get().await, StatusCode::OK);
        assert_eq!(used().await, Some(first + 60));
    }

    #[tokio::test]
    async fn health_snapshot_and_decisions_need_no_key_and_the_snapshot_keeps_its_filter_token() {
        let h = Harness::secured().await;
        for path in ["/admin/health/alive", "/admin/health/ready", "/health/alive", "/health/ready"] {
            assert_eq!(call(&h, Method::GET, path, &[], None).await.status, StatusCode::OK, "{path}");
        }
        let snapshot =
            call(&h, Method::GET, "/admin/snapshot", &[("authorization", &bearer(FILTER_TOKEN))], None).await;
        assert_eq!(snapshot.status, StatusCode::OK, "the filter token, no API key");
        let (key, _) = store_key(&h, &["admin"]).await;
        let with_key = call(&h, Method::GET, "/admin/snapshot", &[("authorization", &bearer(&key))], None).await;
        assert_eq!(with_key.status, StatusCode::UNAUTHORIZED, "an API key is not a filter token");
        assert!(with_key.json()["error_description"].as_str().unwrap().contains("filter"));
        assert_eq!(call(&h, Method::GET, "/admin/snapshot", &[], None).await.status, StatusCode::UNAUTHORIZED);
        // No rule matches: the decision is a denial of the judged request, not an API-key 401.
        let decision = call(&h, Method::GET, "/decisions/anything", &[], None).await;
        assert_ne!(decision.header("www-authenticate"), CHALLENGE);
    }

    #[tokio::test]
    async fn in_dev_mode_the_admin_api_is_open() {
        let h = Harness::new().await;
        assert!(h.state.config.dev, "the default harness is --dev");
        for path in ["/admin/clients", "/clients", "/admin/api-keys", "/admin/version"] {
            assert_eq!(call(&h, Method::GET, path, &[], None).await.status, StatusCode::OK, "{path}");
        }
    }

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_key_never_appears_in_listings_or_logs() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let h = Harness::secured().await;
        let (admin, _) = store_key(&h, &["admin"]).await;
        let auth = bearer(&admin);
        let created = call(
            &h,
            Method::POST,
            "/admin/api-keys",
            &[("authorization", &auth)],
            Some(json!({"name": "ci", "scopes": ["clients:read"]})),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let new = created.json()["key"].as_str().unwrap().to_owned();
        let hash = crypto::sha256_hex(new.as_bytes());
        let new_auth = bearer(&new);
        assert_eq!(call(&h, Method::GET, "/admin/clients", &[("authorization", &new_auth)], None).await.status, 200);
        assert_eq!(call(&h, Method::GET, "/admin/rules", &[("authorization", &new_auth)], None).await.status, 403);
        let listed = call(&h, Method::GET, "/admin/api-keys", &[("authorization", &auth)], None).await;
        let text = String::from_utf8_lossy(&listed.bytes).into_owned();
        assert!(text.contains("\"ci\""), "{text}");
        for secret in [&new, &admin, &hash] {
            assert!(!text.contains(secret.as_str()), "the list shows no key or hash: {text}");
        }
        let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        assert!(logged.contains("created an API key"), "the test captured the logs: {logged}");
        for secret in [&new, &admin] {
            assert!(!logged.contains(secret.as_str()), "a key was logged: {logged}");
        }
    }
}
