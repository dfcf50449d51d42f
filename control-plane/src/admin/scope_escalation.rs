//! The admin API's scope table, tested over the real router (issue 13, hardening): every
//! route the admin router serves is enumerated from the router itself (`routes::admin_routes`,
//! which `admin_router` is built from, identity routes merged in), each method found by asking
//! the router, and both are compared with [`TABLE`], the documented scope of every route. Then,
//! for every route and method: no key → 401, a key holding every scope but the documented one
//! → 403, the documented scope → past the guard, a read scope → 403 on a write route; the Hydra
//! v1 form (`/clients`) is judged the same. A route added without a line in [`TABLE`] fails
//! here. Test-only; it changes nothing outside its own in-memory harness.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use crate::admin::auth::{Scopes, new_key};
use crate::testing::{Harness, Reply, T0};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// No API key: probes, the filters' snapshot (its own token).
    Exempt,
    /// Any valid key.
    AnyKey,
    /// This scope (`admin` for routes without a resource of their own).
    Scope(&'static str),
}

use Need::{AnyKey, Exempt, Scope};

/// Every admin route and method, as routed (after the v1 rewrite), with its documented scope.
/// GET routes answer HEAD too, with the same need.
const TABLE: &[(&str, &str, Need)] = &[
    ("GET", "/admin/clients", Scope("clients:read")),
    ("POST", "/admin/clients", Scope("clients:write")),
    ("GET", "/admin/clients/{id}", Scope("clients:read")),
    ("PUT", "/admin/clients/{id}", Scope("clients:write")),
    ("PATCH", "/admin/clients/{id}", Scope("clients:write")),
    ("DELETE", "/admin/clients/{id}", Scope("clients:write")),
    ("PUT", "/admin/clients/{id}/lifespans", Scope("clients:write")),
    ("POST", "/admin/clients/{id}/secrets/rotate", Scope("clients:write")),
    ("DELETE", "/admin/clients/{id}/secrets/rotate", Scope("clients:write")),
    ("GET", "/admin/trust/grants/jwt-bearer/issuers", Scope("admin")),
    ("POST", "/admin/trust/grants/jwt-bearer/issuers", Scope("admin")),
    ("GET", "/admin/trust/grants/jwt-bearer/issuers/{id}", Scope("admin")),
    ("DELETE", "/admin/trust/grants/jwt-bearer/issuers/{id}", Scope("admin")),
    ("GET", "/admin/keys/{set}", Scope("keys:read")),
    ("POST", "/admin/keys/{set}", Scope("keys:write")),
    ("PUT", "/admin/keys/{set}", Scope("keys:write")),
    ("DELETE", "/admin/keys/{set}", Scope("keys:write")),
    ("GET", "/admin/keys/{set}/{kid}", Scope("keys:read")),
    ("PUT", "/admin/keys/{set}/{kid}", Scope("keys:write")),
    ("DELETE", "/admin/keys/{set}/{kid}", Scope("keys:write")),
    ("POST", "/admin/oauth2/introspect", Scope("tokens:read")),
    ("DELETE", "/admin/oauth2/tokens", Scope("tokens:write")),
    ("GET", "/admin/oauth2/auth/requests/login", Scope("login-consent:read")),
    ("PUT", "/admin/oauth2/auth/requests/login/accept", Scope("login-consent:write")),
    ("PUT", "/admin/oauth2/auth/requests/login/reject", Scope("login-consent:write")),
    ("GET", "/admin/oauth2/auth/requests/consent", Scope("login-consent:read")),
    ("PUT", "/admin/oauth2/auth/requests/consent/accept", Scope("login-consent:write")),
    ("PUT", "/admin/oauth2/auth/requests/consent/reject", Scope("login-consent:write")),
    ("GET", "/admin/oauth2/auth/requests/logout", Scope("login-consent:read")),
    ("PUT", "/admin/oauth2/auth/requests/logout/accept", Scope("login-consent:write")),
    ("PUT", "/admin/oauth2/auth/requests/logout/reject", Scope("login-consent:write")),
    ("GET", "/admin/oauth2/auth/sessions/consent", Scope("login-consent:read")),
    ("DELETE", "/admin/oauth2/auth/sessions/consent", Scope("login-consent:write")),
    ("DELETE", "/admin/oauth2/auth/sessions/login", Scope("login-consent:write")),
    ("GET", "/admin/rules", Scope("rules:read")),
    ("PUT", "/admin/rules", Scope("rules:write")),
    ("POST", "/admin/rules/explain", Scope("rules:read")),
    ("GET", "/admin/rules/{id}", Scope("rules:read")),
    ("GET", "/admin/api-keys", Scope("api-keys:read")),
    ("POST", "/admin/api-keys", Scope("api-keys:write")),
    ("DELETE", "/admin/api-keys/{id}", Scope("api-keys:write")),
    ("GET", "/admin/courier/messages", Scope("courier:read")),
    ("GET", "/admin/courier/messages/{id}", Scope("courier:read")),
    ("GET", "/admin/sessions", Scope("sessions:read")),
    ("GET", "/admin/sessions/{id}", Scope("sessions:read")),
    ("DELETE", "/admin/sessions/{id}", Scope("sessions:write")),
    ("PATCH", "/admin/sessions/{id}/extend", Scope("sessions:write")),
    ("GET", "/admin/identities/{id}/sessions", Scope("identities:read")),
    ("DELETE", "/admin/identities/{id}/sessions", Scope("identities:write")),
    ("GET", "/admin/identities", Scope("identities:read")),
    ("POST", "/admin/identities", Scope("identities:write")),
    ("PATCH", "/admin/identities", Scope("identities:write")),
    ("GET", "/admin/identities/{id}", Scope("identities:read")),
    ("PUT", "/admin/identities/{id}", Scope("identities:write")),
    ("PATCH", "/admin/identities/{id}", Scope("identities:write")),
    ("DELETE", "/admin/identities/{id}", Scope("identities:write")),
    ("DELETE", "/admin/identities/{id}/credentials/{kind}", Scope("identities:write")),
    ("POST", "/admin/recovery/code", Scope("identities:write")),
    ("GET", "/admin/snapshot", Exempt),
    ("GET", "/admin/version", AnyKey),
    ("GET", "/admin/health/alive", Exempt),
    ("GET", "/admin/health/ready", Exempt),
];

/// The methods a route can be served with (HEAD follows GET in axum).
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Every `<resource>:read|write` scope the parser knows, and `admin`.
fn every_scope() -> Vec<String> {
    let mut all: Vec<String> =
        crate::admin::auth::resource_names().flat_map(|r| [format!("{r}:read"), format!("{r}:write")]).collect();
    assert!(all.iter().any(|s| s == "login-consent:write"), "{all:?}");
    all.push("admin".into());
    all
}

/// The route paths the admin router serves, read from the router's own description of its
/// path table (axum's `Debug` lists every registered path, merged routers included).
fn served_paths() -> BTreeSet<String> {
    let described = format!("{:?}", crate::routes::admin_routes());
    // The routes, not the fallback router (axum describes both, in this order).
    let routes = described
        .split_once("path_router:")
        .and_then(|(_, rest)| rest.split_once("fallback_router:"))
        .map_or(described.as_str(), |(routes, _)| routes);
    let paths: BTreeSet<String> =
        routes.split('"').skip(1).step_by(2).filter(|s| s.starts_with('/')).map(str::to_owned).collect();
    // A change in how axum describes its router must fail loudly, not find nothing.
    assert!(paths.len() >= 40, "found only {} paths in the router's description: {described}", paths.len());
    paths
}

/// A concrete path for a route pattern: each `{param}` becomes a value that names nothing.
fn concrete(pattern: &str) -> String {
    pattern.split('/').map(|seg| if seg.starts_with('{') { "none-such" } else { seg }).collect::<Vec<_>>().join("/")
}

async fn call(h: &Harness, method: &str, path: &str, key: Option<&str>) -> Reply {
    let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(path);
    if let Some(key) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let body = if method == "GET" || method == "HEAD" {
        Body::empty()
    } else {
        req = req.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    };
    Harness::send(h.admin(), req.body(body).unwrap()).await
}

/// Stores an API key with `scopes` and returns it in clear.
async fn key(h: &Harness, scopes: &[&str]) -> String {
    let (key, row) = new_key("table", &Scopes::parse(scopes.iter().copied()).unwrap(), T0).unwrap();
    h.state.store.insert_api_key(&row).await.unwrap();
    key
}

fn is_guard_refusal(r: &Reply) -> bool {
    matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
}

fn show(r: &Reply) -> String {
    format!("{} {}", r.status, String::from_utf8_lossy(&r.bytes))
}

#[tokio::test]
async fn the_table_lists_every_route_the_admin_router_serves_and_nothing_else() {
    let h = Harness::secured().await;
    let admin = key(&h, &["admin"]).await;
    let mut served = BTreeSet::new();
    for path in served_paths() {
        for method in METHODS {
            let r = call(&h, method, &concrete(&path), Some(&admin)).await;
            if r.status != StatusCode::METHOD_NOT_ALLOWED {
                served.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let table: BTreeSet<(String, String)> = TABLE.iter().map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned())).collect();
    let missing: Vec<_> = served.difference(&table).collect();
    let stale: Vec<_> = table.difference(&served).collect();
    assert!(missing.is_empty(), "served by the admin router but not in TABLE (decide their scope): {missing:?}");
    assert!(stale.is_empty(), "in TABLE but not served: {stale:?}");
}

#[tokio::test]
async fn every_admin_route_refuses_missing_unrelated_and_read_only_keys() {
    let h = Harness::secured().await;
    let scopes = every_scope();
    for (method, pattern, need) in TABLE {
        let path = concrete(pattern);
        let v1 = path.strip_prefix("/admin").unwrap_or(&path).to_owned();
        let what = format!("{method} {pattern}");
        match need {
            Exempt => {
                let r = call(&h, method, &path, None).await;
                assert_ne!(
                    r.header("www-authenticate"),
                    "Bearer realm=\"portcullis-admin\"",
                    "{what}: exempt routes answer without the API-key guard: {}",
                    show(&r)
                );
            }
            AnyKey => {
                assert_eq!(call(&h, method, &path, None).await.status, StatusCode::UNAUTHORIZED, "{what}");
                assert_eq!(call(&h, method, &v1, None).await.status, StatusCode::UNAUTHORIZED, "{what} (v1)");
                let any = key(&h, &["courier:read"]).await;
                let r = call(&h, method, &path, Some(&any)).await;
                assert_eq!(r.status, StatusCode::OK, "{what}: {}", show(&r));
            }
            Scope(scope) => {
                for p in [&path, &v1] {
                    let r = call(&h, method, p, None).await;
                    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what} as {p} without a key: {}", show(&r));
                }
                // Every other scope there is (admin aside) still is not this one.
                let resource = scope.split(':').next().unwrap_or_default();
                let unrelated: Vec<&str> = scopes
                    .iter()
                    .map(String::as_str)
                    .filter(|s| *s != "admin" && s.split(':').next() != Some(resource))
                    .collect();
                let unrelated = key(&h, &unrelated).await;
                for p in [&path, &v1] {
                    let r = call(&h, method, p, Some(&unrelated)).await;
                    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what} as {p} with unrelated scopes: {}", show(&r));
                    assert!(
                        r.json()["error_description"].as_str().unwrap_or_default().contains(&format!("\"{scope}\"")),
                        "{what}: the 403 names {scope}: {}",
                        show(&r)
                    );
                }
                // The documented scope gets past the guard (whatever the handler then says).
                let right = key(&h, &[scope]).await;
                for p in [&path, &v1] {
                    let r = call(&h, method, p, Some(&right)).await;
                    assert!(!is_guard_refusal(&r), "{what} as {p} with {scope}: {}", show(&r));
                }
                if let Some(resource) = scope.strip_suffix(":write") {
                    let read = format!("{resource}:read");
                    let reader = key(&h, &[&read]).await;
                    let r = call(&h, method, &path, Some(&reader)).await;
                    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {read} cannot write: {}", show(&r));
                }
                if *method == "GET" {
                    let r = call(&h, "HEAD", &path, None).await;
                    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "HEAD {pattern}");
                }
            }
        }
    }
}

/// `POST /admin/api-keys` never grants a scope the creating key lacks: every scope there is,
/// asked for by keys holding `api-keys:write` and one other scope each.
#[tokio::test]
async fn a_key_can_create_keys_only_within_its_own_scopes() {
    let h = Harness::secured().await;
    let scopes = every_scope();
    for held in scopes.iter().filter(|s| !s.starts_with("api-keys:")) {
        let creator_scopes = ["api-keys:write", held.as_str()];
        let creator = key(&h, &creator_scopes).await;
        for asked in &scopes {
            let req = Request::post("/admin/api-keys")
                .header(header::AUTHORIZATION, format!("Bearer {creator}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!({"name": "child", "scopes": [asked]}).to_string()))
                .unwrap();
            let r = Harness::send(h.admin(), req).await;
            // The rule, spelled out rather than asked of the code under test: what the creator
            // holds, `admin` holding everything and `write` holding `read`.
            let allowed = held == "admin"
                || asked == held
                || asked.starts_with("api-keys:")
                || held.strip_suffix(":write").is_some_and(|r| *asked == format!("{r}:read"));
            let want = if allowed { StatusCode::CREATED } else { StatusCode::FORBIDDEN };
            assert_eq!(r.status, want, "{creator_scopes:?} → {asked}: {}", show(&r));
        }
        // Asking for several at once: one scope beyond the creator's refuses the whole key.
        let req = Request::post("/admin/api-keys")
            .header(header::AUTHORIZATION, format!("Bearer {creator}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"name": "child", "scopes": [held, "admin"]}).to_string()))
            .unwrap();
        let r = Harness::send(h.admin(), req).await;
        let want = if held == "admin" { StatusCode::CREATED } else { StatusCode::FORBIDDEN };
        assert_eq!(r.status, want, "{creator_scopes:?} → [{held}, admin]: {}", show(&r));
    }
    // A read key over api-keys cannot create any key at all.
    let reader = key(&h, &["api-keys:read", "login-consent:write"]).await;
    let req = Request::post("/admin/api-keys")
        .header(header::AUTHORIZATION, format!("Bearer {reader}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"name": "child", "scopes": ["login-consent:read"]}).to_string()))
        .unwrap();
    assert_eq!(Harness::send(h.admin(), req).await.status, StatusCode::FORBIDDEN);
}
