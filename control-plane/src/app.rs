//! Application state, the two routers (public :4444, admin :4445) and `serve`. The admin
//! router rewrites paths lacking `/admin` before routing (Hydra v1 compatibility), except
//! Oathkeeper's `/decisions[/*]`, which keeps its own path. Handlers
//! live in their modules; this file only wires them and owns process-level concerns
//! (listeners, signals, background tasks).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Uri;
use axum::routing::{any, get, post, put};
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::SecretVerifier;
use crate::error::{ApiError, StartupError};
use crate::keys::{GATEWAY_JWKS_PATH, GATEWAY_SET, Keys, MANAGED_SETS, OAUTH2_JWKS_PATH, OAUTH2_SET};
use crate::rules::Rules;
use crate::rules::decisions::Decider;
use crate::store::Store;
use crate::{admin, health, oauth2, rules};

const PUBLIC_BODY_LIMIT: usize = 64 * 1024;
const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub secrets: Arc<SecretVerifier>,
    /// The bound on concurrent password hashing (sign-in, registration, settings, client secrets).
    pub hashing: Arc<crate::crypto::Hashing>,
    pub rules: Arc<Rules>,
    /// Performs and caches the decision pipeline's call-outs.
    pub decider: Arc<Decider>,
    /// The OAuth2 server's signing keys (`portcullis.id-token`): ID tokens, JWT access tokens,
    /// logout tokens, whoami tokens. Never handed to the rules, the decider or a snapshot.
    pub keys: Arc<Keys>,
    /// The gateway's signing keys (`portcullis.gateway`): `id_token` mutators, in the filters
    /// and in the decisions API.
    pub gateway_keys: Arc<Keys>,
    /// The e-mail queue and its worker's settings.
    pub courier: Arc<crate::courier::Courier>,
    /// Identity schemas (`identity.schemas` or the built-in default).
    pub schemas: Arc<crate::identity::schema::Schemas>,
    /// Outbound HTTP for web hooks and the optional breached-password check.
    pub http: reqwest::Client,
    /// Flipped to `true` on shutdown so long-polls return at once.
    pub shutdown: Arc<watch::Sender<bool>>,
    /// Admin API keys verified in the last few seconds.
    pub api_keys: Arc<admin::auth::ApiKeyCache>,
    /// The passkey relying party (`selfservice.methods.passkey`), checked at startup.
    pub passkeys: Arc<crate::identity::passkey::Passkeys>,
    /// Clients' `jwks_uri` documents fetched for `private_key_jwt`, with their expiry.
    pub client_jwks: Arc<crate::oauth2::assertion::JwksCache>,
}

impl AppState {
    /// Loads the rule files, the stored admin rules and both signing key sets (generating and
    /// storing a key where a set has none); the store must be migrated.
    pub async fn new(config: Config, store: Store, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let keys = Keys::load(OAUTH2_SET, &config.secrets, &store, clock.now()).await?;
        let gateway_keys = Keys::load(GATEWAY_SET, &config.secrets, &store, clock.now()).await?;
        let rules = Rules::load_with(
            &config.access_rules.repositories,
            config.access_rules.matching_strategy,
            config.access_rules.cors.clone(),
            &store,
        )
        .await?;
        // Only the gateway set reaches the filters and the decisions API.
        rules.set_signing_key(gateway_keys.snapshot_key()).await;
        let decider = Decider::new(&config.decisions).map_err(StartupError)?;
        decider.set_signer(Some(gateway_keys.signer()));
        let schemas = crate::identity::schema::Schemas::load(&config.identity)?;
        let passkeys = crate::identity::passkey::Passkeys::from_config(&config)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| StartupError(format!("HTTP client: {e}")))?;
        let hashing = Arc::new(crate::crypto::Hashing::new(&config.hashers.argon2));
        Ok(Self {
            schemas: Arc::new(schemas),
            http,
            courier: Arc::new(crate::courier::Courier::new(&config.courier, config.dev)),
            decider: Arc::new(decider),
            keys: Arc::new(keys),
            gateway_keys: Arc::new(gateway_keys),
            config: Arc::new(config),
            store,
            clock,
            secrets: Arc::default(),
            hashing,
            rules: Arc::new(rules),
            shutdown: Arc::new(watch::Sender::new(false)),
            api_keys: Arc::default(),
            passkeys: Arc::new(passkeys),
            client_jwks: Arc::default(),
        })
    }
}

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

pub fn public_router(state: AppState) -> Router {
    Router::new()
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
        .route("/schemas", get(crate::identity::schema::list))
        .route("/schemas/{id}", get(crate::identity::schema::get))
        .route("/health/alive", get(health::alive))
        .route("/health/ready", get(health::ready))
        .merge(crate::identity::public_routes())
        .merge(crate::ui::routes())
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
    Router::new()
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
        .route("/admin/oauth2/tokens", axum::routing::delete(admin::tokens::delete_client_tokens))
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
        .route("/admin/oauth2/auth/sessions/login", axum::routing::delete(oauth2::flow::admin_revoke_login_sessions))
        .route("/admin/rules", get(admin::rules::list).put(admin::rules::replace))
        .route("/admin/rules/explain", post(rules::explain::handle))
        .route("/admin/rules/{id}", get(admin::rules::get))
        .route("/admin/api-keys", get(admin::api_keys::list).post(admin::api_keys::create))
        .route("/admin/api-keys/{id}", axum::routing::delete(admin::api_keys::revoke))
        .route("/admin/courier/messages", get(admin::courier::list))
        .route("/admin/courier/messages/{id}", get(admin::courier::get))
        .merge(crate::identity::admin_routes())
        .route("/admin/snapshot", get(rules::snapshot::handle))
        .route("/admin/version", get(admin::version))
        .route("/admin/health/alive", get(health::alive))
        .route("/admin/health/ready", get(health::ready))
}

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

/// `portcullis migrate`.
pub async fn migrate(config: &Config) -> Result<(), StartupError> {
    let store = connect(config).await?;
    store.migrate().await?;
    tracing::info!("migrations applied");
    Ok(())
}

pub(crate) async fn connect(config: &Config) -> Result<Store, StartupError> {
    Store::connect(&config.dsn)
        .await
        .map_err(|e| StartupError(format!("config key dsn: cannot open the database: {e}")))
}

/// `portcullis serve`: migrate, load rules, listen on both ports until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartupError> {
    let store = connect(&config).await?;
    store.migrate().await?;
    admin::auth::announce(&config, &store).await?;
    let public_addr = config.serve.public.address();
    let admin_addr = config.serve.admin.address();
    let state = AppState::new(config, store.clone(), Arc::new(SystemClock)).await?;
    if let Some(warning) = crate::courier::undeliverable_warning(&state.config) {
        tracing::warn!("{warning}");
    }
    let public = bind(&public_addr, "serve.public").await?;
    let admin = bind(&admin_addr, "serve.admin").await?;
    tracing::info!(address = %public_addr, "public listener listening on http://{public_addr}");
    tracing::info!(address = %admin_addr, "admin listener listening on http://{admin_addr}");

    let refresher = state.rules.clone().spawn_refresher(store.clone());
    let file_watcher = state.rules.clone().spawn_file_watcher();
    let jwks_refresher = state.rules.clone().spawn_jwks_refresher(state.config.access_rules.jwks_refresh);
    let janitor = spawn_token_janitor(state.clone());
    let key_refresher = spawn_key_refresher(state.clone());
    let clients_file = crate::clients_file::Reconciler::spawn(state.clone());
    let courier = state.courier.clone().spawn_worker(store.clone(), state.clock.clone());
    let stop = state.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        stop.send_replace(true);
    });
    let wait = |s: Arc<watch::Sender<bool>>| async move {
        let mut rx = s.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let public_server =
        axum::serve(public, public_router(state.clone())).with_graceful_shutdown(wait(state.shutdown.clone()));
    let admin_server =
        axum::serve(admin, admin_router(state.clone())).with_graceful_shutdown(wait(state.shutdown.clone()));
    let result = tokio::try_join!(async { public_server.await }, async { admin_server.await });
    refresher.abort();
    jwks_refresher.abort();
    file_watcher.abort();
    janitor.abort();
    key_refresher.abort();
    if let Some(task) = clients_file {
        task.abort();
    }
    courier.abort();
    store.close().await;
    result.map_err(|e| StartupError(format!("server error: {e}")))?;
    Ok(())
}

async fn bind(address: &str, key: &str) -> Result<tokio::net::TcpListener, StartupError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| StartupError(format!("cannot listen on {address} ({key}): {e}")))
}

/// Deletes expired access tokens hourly so the table does not grow without bound.
fn spawn_token_janitor(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match state.store.purge_expired_tokens(state.clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "purged expired access tokens"),
                Err(e) => tracing::warn!(error = %e, "could not purge expired access tokens"),
            }
            if let Err(e) = state.store.purge_expired_assertion_jtis(state.clock.now()).await {
                tracing::warn!(error = %e, "could not purge expired assertion ids");
            }
            if let Err(e) = state.store.purge_expired_oauth2_flows(state.clock.now()).await {
                tracing::warn!(error = %e, "could not purge expired authorization flows");
            }
        }
    })
}

/// Re-reads both signing key sets every few seconds, so a rotation made through another
/// replica's admin API reaches this replica's signers (and, for the gateway set, its filters)
/// without a restart.
fn spawn_key_refresher(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            for set in MANAGED_SETS {
                if let Err(e) = admin::keys::apply_set(&state, set).await {
                    tracing::warn!(set, error = %e.description, "could not reload the signing keys");
                }
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
