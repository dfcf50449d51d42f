//! Persistence through one sqlx `AnyPool`, so the same queries and the same migrations serve
//! SQLite (default, single node) and PostgreSQL (replicas). Every query uses `$N` placeholders
//! and only TEXT/BIGINT columns. One module per aggregate. This layer maps rows to the model's
//! types and sqlx errors to [`StoreError`]s; it knows nothing about HTTP (no axum, no status
//! codes), decides nothing (expiry, what a replay means: the callers' business), and a failure
//! is never turned into "absent".

// Outside tests a failure is a typed error, never a panic (control-plane/clippy.toml lets tests
// unwrap); exceptions are `#[expect]`ed with a reason, never `#[allow]`ed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

pub mod api_keys;
pub mod assertions;
pub mod client_secrets;
pub mod clients;
pub mod codes;
pub mod courier;
pub mod error;
pub mod flows;
pub mod identities;
pub mod keys;
pub mod managed_clients;
pub mod oauth2_flows;
pub mod rules;
pub mod sessions;
pub mod tokens;
pub mod trusts;

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection as _};

pub use error::StoreError;

pub use clients::{ClientRow, ListFilter};
pub use keys::KeyRow;
pub use tokens::TokenRow;

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Opens `dsn`: `memory` (a private in-memory SQLite), `sqlite://...` (in WAL mode) or
    /// `postgres://...`.
    pub async fn connect(dsn: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = if dsn == "memory" || dsn.starts_with("sqlite::memory:") {
            // Each SQLite memory connection is its own database: keep exactly one, forever.
            AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect("sqlite::memory:")
                .await?
        } else {
            // The pool hides the cause of a failed first connection behind "timed out"; one
            // direct attempt surfaces "connection refused", "password authentication failed"...
            sqlx::AnyConnection::connect(dsn).await?.close().await?;
            let sqlite = dsn.starts_with("sqlite:");
            AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if sqlite {
                            // The default rollback journal lets one writer block every reader
                            // and fsyncs each commit: token issuance queued behind it (p99 > 1 s).
                            // WAL lets readers run beside the writer; NORMAL syncs at checkpoints
                            // (a power cut may lose the last commits, a crash loses nothing);
                            // busy_timeout waits for the write lock instead of failing.
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = NORMAL",
                                "PRAGMA busy_timeout = 5000",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                        }
                        Ok(())
                    })
                })
                .connect(dsn)
                .await?
        };
        Ok(Self { pool })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Readiness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool; later calls fail (used by tests to provoke store errors).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

#[cfg(any(test, feature = "testing"))]
#[expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test fixtures (the `testing` feature, dev-dependencies only): a store that cannot be made fails the test with the cause"
)]
pub mod testing {
    //! Fresh stores for tests: always an in-memory SQLite, plus a brand-new PostgreSQL
    //! database when `PORTCULLIS_TEST_POSTGRES_DSN` is set.

    use super::*;

    pub async fn sqlite() -> Store {
        let store = Store::connect("memory").await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Both backends: SQLite, and PostgreSQL from `PORTCULLIS_TEST_POSTGRES_DSN` (`./just test`
    /// starts one). Without the DSN a store test fails with the command to run, unless
    /// `PORTCULLIS_TEST_SKIP_POSTGRES=1` asks for SQLite only; then it leaves a mark in
    /// `PORTCULLIS_TEST_SKIP_LOG` (a directory) for the runner's SKIPPED count. Never a silent half.
    pub async fn all() -> Vec<(&'static str, Store)> {
        let mut stores = vec![("sqlite", sqlite().await)];
        match std::env::var("PORTCULLIS_TEST_POSTGRES_DSN") {
            Ok(dsn) if !dsn.is_empty() => stores.push(("postgres", postgres(&dsn).await)),
            _ if std::env::var("PORTCULLIS_TEST_SKIP_POSTGRES").as_deref() == Ok("1") => mark_postgres_skipped(),
            _ => panic!(
                "PORTCULLIS_TEST_POSTGRES_DSN is not set, so this store test cannot run against PostgreSQL. \
                 Run `./just test` (it starts one), or start one yourself with \
                 `export PORTCULLIS_TEST_POSTGRES_DSN=$(tools/postgres.sh start $(mktemp -d))`, \
                 or set PORTCULLIS_TEST_SKIP_POSTGRES=1 to test SQLite only"
            ),
        }
        stores
    }

    /// One file per test process and thread: nextest runs each test in a process of its own.
    fn mark_postgres_skipped() {
        let Some(dir) = std::env::var_os("PORTCULLIS_TEST_SKIP_LOG") else { return };
        let thread = std::thread::current();
        let name = format!("postgres-{}-{}", std::process::id(), thread.name().unwrap_or("main").replace("::", "."));
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), b"");
    }

    async fn postgres(admin_dsn: &str) -> Store {
        sqlx::any::install_default_drivers();
        let name = format!(
            "portcullis_test_{}",
            portcullis_model::crypto::hex(&portcullis_model::crypto::random_bytes::<8>())
        );
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(admin_dsn)
            .await
            .expect("connect to PORTCULLIS_TEST_POSTGRES_DSN");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create test database");
        admin.close().await;
        let store = Store::connect(&with_database(admin_dsn, &name)).await.expect("connect to the test database");
        store.migrate().await.unwrap();
        store
    }

    /// Replaces the database name in a `postgres://user@host:port/db?params` DSN.
    fn with_database(dsn: &str, name: &str) -> String {
        let (base, query) = dsn.split_once('?').map_or((dsn, None), |(b, q)| (b, Some(q)));
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let base = match base[scheme_end..].find('/') {
            Some(i) => &base[..scheme_end + i],
            None => base,
        };
        match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        }
    }

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
