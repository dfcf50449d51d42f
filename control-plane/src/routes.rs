//! Every route of both listeners, in one file: the public router (:4444: OAuth2, the identity
//! frontend API, the built-in UI, health, `--dev` pages) and the admin router (:4445: the admin
//! API behind the API-key guard, and Oathkeeper's decisions API outside it). A route is added
//! here or nowhere, so "what does this server answer?" has one place to read, and the admin
//! scope tests (`admin::scope_escalation`) enumerate [`admin_routes`] itself. This file only
//! wires handlers to paths and sets the listener-wide layers (body limits, fallbacks, the admin
//! path rewrite); it must not hold handler logic.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler as _;
use axum::http::Uri;
use axum::routing::{any, delete, get, patch, post, put};

use crate::app::AppState;
use crate::error::ApiError;
use crate::identity::flow::Kind;
use crate::keys::{GATEWAY_JWKS_PATH, OAUTH2_JWKS_PATH};
use crate::{admin, health, identity, oauth2, rules, ui};

const PUBLIC_BODY_LIMIT: usize = 64 * 1024;
const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "The HTTP method is not allowed on this resource",
    )
}

/// The public listener (:4444).
pub fn public_router(state: AppState) -> Router {
    use identity::{flow, passkey, session};
    Router::new()
        // OAuth2 and OpenID Connect (Hydra's public API).
        .route("/oauth2/auth", get(oauth2::authorize::get).post(oauth2::authorize::post))
        .route("/oauth2/sessions/logout", get(oauth2::logout::get).post(oauth2::logout::post))
        .route("/oauth2/token", post(oauth2::token::handle))
        .route("/oauth2/introspect", post(oauth2::introspect::public))
        .route("/oauth2/revoke", post(oauth2::revoke::handle))
        .route(OAUTH2_JWKS_PATH, get(oauth2::jwks::handle))
        .route(GATEWAY_JWKS_PATH, get(oauth2::jwks::gateway))
        .route("/.well-known/openid-configuration", get(oauth2::discovery::handle))
        .route("/.well-known/oauth-authorization-server", get(oauth2::discovery::handle))
        .route("/userinfo", get(oauth2::userinfo::handle).post(oauth2::userinfo::handle))
        // Identities, sessions and self-service flows (Kratos's frontend API).
        .route("/schemas", get(identity::schema::list))
        .route("/schemas/{id}", get(identity::schema::get))
        .route("/sessions/whoami", get(session::whoami))
        .route("/sessions", get(session::list_mine).delete(session::revoke_others))
        .route("/sessions/{id}", delete(session::revoke_mine))
        .route("/self-service/logout/browser", get(session::logout_browser))
        .route("/self-service/logout/api", delete(session::logout_api))
        .route("/self-service/logout", get(session::logout))
        .route("/self-service/{kind}/browser", get(flow::init_browser))
        .route("/self-service/{kind}/api", get(flow::init_api))
        .route("/self-service/{kind}/flows", get(flow::get))
        .route("/self-service/{kind}", post(flow::submit))
        .route("/.well-known/ory/webauthn.js", get(passkey::script))
        // The built-in UI.
        .route("/ui/login", ui::flow_route(Kind::Login))
        .route("/ui/registration", ui::flow_route(Kind::Registration))
        .route("/ui/settings", ui::flow_route(Kind::Settings))
        .route("/ui/recovery", ui::flow_route(Kind::Recovery))
        .route("/ui/verification", ui::flow_route(Kind::Verification))
        .route("/ui/welcome", get(ui::welcome))
        .route("/ui/logout", get(ui::logout))
        .route("/ui/error", get(ui::error))
        .route("/ui/oauth2/login", get(ui::oauth2::login))
        .route("/ui/oauth2/consent", get(ui::oauth2::consent).post(ui::oauth2::decide))
        .route("/ui/oauth2/logout", get(ui::oauth2::logout).post(ui::oauth2::logout_decide))
        .route("/ui/style.css", get(ui::style))
        .route("/health/alive", get(health::alive))
        .route("/health/ready", get(health::ready))
        .merge(dev_routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(PUBLIC_BODY_LIMIT))
        .with_state(state)
}

/// Routes that exist only under `--dev`; without it they are plain 404s.
fn dev_routes(state: &AppState) -> Router<AppState> {
    if state.config.dev { Router::new().route("/dev/outbox", get(crate::courier::outbox::page)) } else { Router::new() }
}

/// Every route of the admin listener but `/decisions*`, as routed after the v1 rewrite and the
/// API-key guard. One table for the router and for the scope tests
/// (`admin::scope_escalation`), which enumerate it, so a route cannot be added without a
/// decision about who may call it.
pub(crate) fn admin_routes() -> Router<AppState> {
    use identity::session;
    Router::new()
        // OAuth2 clients, trust, keys, tokens and the login/consent/logout flows (Hydra's admin API).
        .route("/admin/clients", get(admin::clients::list).post(admin::clients::create))
        .route(
            "/admin/clients/{id}",
            get(admin::clients::get)
                .put(admin::clients::replace)
                .patch(admin::clients::patch)
                .delete(admin::clients::delete),
        )
        .route("/admin/clients/{id}/lifespans", put(admin::clients::set_lifespans))
        .route(
            "/admin/clients/{id}/secrets/rotate",
            post(admin::clients::rotate_secret).delete(admin::clients::drop_rotated_secrets),
        )
        .route("/admin/trust/grants/jwt-bearer/issuers", get(admin::trust::list).post(admin::trust::create))
        .route("/admin/trust/grants/jwt-bearer/issuers/{id}", get(admin::trust::get).delete(admin::trust::delete))
        .route(
            "/admin/keys/{set}",
            get(admin::keys::set).post(admin::keys::create).put(admin::keys::put_set).delete(admin::keys::delete_set),
        )
        .route(
            "/admin/keys/{set}/{kid}",
            get(admin::keys::key).put(admin::keys::put_key).delete(admin::keys::delete_key),
        )
        .route("/admin/oauth2/introspect", post(oauth2::introspect::admin))
        .route("/admin/oauth2/tokens", delete(admin::tokens::delete_client_tokens))
        .route("/admin/oauth2/auth/requests/login", get(oauth2::flow::admin_get_login))
        .route("/admin/oauth2/auth/requests/login/accept", put(oauth2::flow::admin_accept_login))
        .route("/admin/oauth2/auth/requests/login/reject", put(oauth2::flow::admin_reject_login))
        .route("/admin/oauth2/auth/requests/consent", get(oauth2::flow::admin_get_consent))
        .route("/admin/oauth2/auth/requests/consent/accept", put(oauth2::flow::admin_accept_consent))
        .route("/admin/oauth2/auth/requests/consent/reject", put(oauth2::flow::admin_reject_consent))
        .route("/admin/oauth2/auth/requests/logout", get(oauth2::logout::admin_get))
        .route("/admin/oauth2/auth/requests/logout/accept", put(oauth2::logout::admin_accept))
        .route("/admin/oauth2/auth/requests/logout/reject", put(oauth2::logout::admin_reject))
        .route(
            "/admin/oauth2/auth/sessions/consent",
            get(oauth2::flow::admin_list_consents).delete(oauth2::flow::admin_revoke_consents),
        )
        .route("/admin/oauth2/auth/sessions/login", delete(oauth2::flow::admin_revoke_login_sessions))
        // Access rules, API keys, the courier.
        .route("/admin/rules", get(admin::rules::list).put(admin::rules::replace))
        .route("/admin/rules/explain", post(rules::explain::handle))
        .route("/admin/rules/{id}", get(admin::rules::get))
        .route("/admin/api-keys", get(admin::api_keys::list).post(admin::api_keys::create))
        .route("/admin/api-keys/{id}", delete(admin::api_keys::revoke))
        .route("/admin/courier/messages", get(admin::courier::list))
        .route("/admin/courier/messages/{id}", get(admin::courier::get))
        // Identities and sessions (Kratos's admin API).
        .route(
            "/admin/identities",
            get(identity::admin::list)
                .post(identity::admin::create)
                .patch(identity::admin::batch.layer(DefaultBodyLimit::max(identity::admin::BATCH_BODY_LIMIT))),
        )
        .route(
            "/admin/identities/{id}",
            get(identity::admin::get_one)
                .put(identity::admin::replace)
                .patch(identity::admin::patch)
                .delete(identity::admin::remove),
        )
        .route("/admin/identities/{id}/credentials/{kind}", delete(identity::admin::remove_credential))
        .route("/admin/recovery/code", post(identity::admin::recovery_code))
        .route("/admin/sessions", get(session::admin_list))
        .route("/admin/sessions/{id}", get(session::admin_get).delete(session::admin_disable))
        .route("/admin/sessions/{id}/extend", patch(session::admin_extend))
        .route(
            "/admin/identities/{id}/sessions",
            get(session::admin_list_for_identity).delete(session::admin_delete_for_identity),
        )
        // Filters' snapshot, the server itself.
        .route("/admin/snapshot", get(rules::snapshot::handle))
        .route("/admin/version", get(admin::version))
        .route("/admin/health/alive", get(health::alive))
        .route("/admin/health/ready", get(health::ready))
}

/// The admin listener (:4445). It rewrites paths lacking `/admin` before routing (Hydra v1
/// compatibility), except Oathkeeper's `/decisions[/*]`, which keeps its own path.
pub fn admin_router(state: AppState) -> Router {
    let inner = admin_routes()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT))
        .with_state(state.clone());
    let decisions = any(rules::decisions::handle);
    // Routing happens inside `inner`, after the rewrite; a layer on `inner` would run too late.
    // The API-key guard runs between the two, so it judges the path `inner` routes (`/clients`
    // as `/admin/clients`). The decisions routes sit outside both: their path is the request
    // being judged, their Authorization header that request's.
    let guard = axum::middleware::from_fn_with_state(state.clone(), admin::auth::require_api_key);
    Router::new()
        .route("/decisions", decisions.clone())
        .route("/decisions/", decisions.clone())
        .route("/decisions/{*rest}", decisions.clone())
        .route("/admin/decisions", decisions.clone())
        .route("/admin/decisions/", decisions.clone())
        .route("/admin/decisions/{*rest}", decisions)
        .with_state(state)
        .fallback_service(tower::ServiceBuilder::new().map_request(add_admin_prefix).layer(guard).service(inner))
}

/// `/clients` → `/admin/clients`, as Hydra does for v1 clients.
fn add_admin_prefix(mut req: Request) -> Request {
    let path = req.uri().path();
    if path == "/admin" || path.starts_with("/admin/") {
        return req;
    }
    let path_and_query = match req.uri().query() {
        Some(q) => format!("/admin{path}?{q}"),
        None => format!("/admin{path}"),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}
