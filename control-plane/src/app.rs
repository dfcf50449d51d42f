//! Application state and `serve`: the process-level concerns (listeners, signals, background
//! tasks). The routes are listed in [`crate::routes`]; handlers live in their modules.

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRef;
use tokio::sync::watch;

use crate::admin;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::SecretVerifier;
use crate::error::StartupError;
use crate::keys::{GATEWAY_SET, Keys, MANAGED_SETS, OAUTH2_SET};
use crate::routes::{admin_router, public_router};
use crate::rules::Rules;
use crate::rules::decider::Decider;
use crate::store::Store;

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
    /// The identity domain's inputs (store, clock, its config sections, schemas, courier, HTTP).
    pub identities: portcullis_identity::Identities,
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
        let passkeys = crate::identity::passkey::from_config(&config)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| StartupError(format!("HTTP client: {e}")))?;
        let hashing = Arc::new(crate::crypto::Hashing::new(&config.hashers.argon2));
        let identities = crate::identity::identities(&config, &store, &clock, schemas, http, hashing.clone(), passkeys);
        Ok(Self {
            schemas: identities.schemas.clone(),
            http: identities.http.clone(),
            courier: identities.courier.clone(),
            passkeys: identities.passkeys.clone(),
            identities,
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
            client_jwks: Arc::default(),
        })
    }
}

// Sub-states: a handler names only what it uses (`State<Store>`, `State<OAuth2Keys>`...), so its
// signature says which parts of the server it can reach. Handlers still taking the whole
// `AppState` are being moved to these one by one.

impl FromRef<AppState> for Store {
    fn from_ref(state: &AppState) -> Self {
        state.store.clone()
    }
}

impl FromRef<AppState> for Arc<dyn Clock> {
    fn from_ref(state: &AppState) -> Self {
        state.clock.clone()
    }
}

/// The OAuth2 server's key set (`portcullis.id-token`) as a sub-state.
#[derive(Clone, Debug)]
pub struct OAuth2Keys(pub Arc<Keys>);

impl FromRef<AppState> for OAuth2Keys {
    fn from_ref(state: &AppState) -> Self {
        Self(state.keys.clone())
    }
}

/// The gateway's key set (`portcullis.gateway`) as a sub-state; never an OAuth2 key.
#[derive(Clone, Debug)]
pub struct GatewayKeys(pub Arc<Keys>);

impl FromRef<AppState> for GatewayKeys {
    fn from_ref(state: &AppState) -> Self {
        Self(state.gateway_keys.clone())
    }
}

/// `portcullis migrate`.
pub async fn migrate(config: &Config) -> Result<(), StartupError> {
    let store = connect(config).await?;
    store.migrate().await?;
    tracing::info!("migrations applied");
    Ok(())
}

pub async fn connect(config: &Config) -> Result<Store, StartupError> {
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
    if let Some(warning) =
        crate::courier::undeliverable_warning(&state.config.courier, &state.config.selfservice, state.config.dev)
    {
        tracing::warn!("{warning}");
    }
    let public = bind(&public_addr, "serve.public").await?;
    let admin = bind(&admin_addr, "serve.admin").await?;
    tracing::info!(address = %public_addr, "public listener listening on http://{public_addr}");
    tracing::info!(address = %admin_addr, "admin listener listening on http://{admin_addr}");

    let refresher = state.rules.clone().spawn_refresher(store.clone(), state.clock.clone());
    let file_watcher = state.rules.clone().spawn_file_watcher();
    let jwks_refresher = state.rules.clone().spawn_jwks_refresher(state.config.access_rules.jwks_refresh);
    let janitor = spawn_token_janitor(state.clone());
    let key_refresher = spawn_key_refresher(state.clone());
    let clients_file = crate::clients_file::spawn(state.clone());
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
                    tracing::warn!(set, error = %e, "could not reload the signing keys");
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
