//! What can go wrong in the store, told apart so callers (and logs) can act on it: a value
//! someone else holds is not an outage, and a row that does not decode is not a missing row.
//! Every sqlx error is mapped here, once; nothing outside this crate sees sqlx.

use portcullis_model::StartupError;

/// The underlying cause of a store error, kept for logs (`{:#}` / the error chain) without
/// exposing sqlx's types to callers.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A failure of the store. None of these means "absent" or "inactive": a lookup that finds no
/// row answers `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique, primary-key, foreign-key or check constraint refused the write (the constraint's
    /// name, or the table and column SQLite reports).
    #[error("store: conflict on {constraint}")]
    Conflict {
        constraint: String,
        #[source]
        source: Cause,
    },
    /// A statement that must find its row found none.
    #[error("store: not found: {what}")]
    NotFound { what: String },
    /// A stored value that does not decode (a JSON column, an unknown enum text), or a value
    /// that cannot be encoded for its column.
    #[error("store: corrupt value in {column}: {source}")]
    Corrupt {
        column: String,
        #[source]
        source: Cause,
    },
    /// The database could not be reached or did not answer in time (connection refused, pool
    /// timeout, closed pool, I/O or TLS failure).
    #[error("store: the database is unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The database refused a statement for another reason (a bug or a schema mismatch).
    #[error("store: the database refused a statement: {0}")]
    Query(#[source] Cause),
    /// The migrations could not be applied.
    #[error("store: migration failed: {0}")]
    Migration(#[source] Cause),
}

impl StoreError {
    /// A column value that does not decode (or encode).
    pub fn corrupt(column: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::Corrupt { column: column.into(), source: source.into() }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(db) => {
                if db.is_unique_violation() || db.is_foreign_key_violation() || db.is_check_violation() {
                    let constraint = db.constraint().map_or_else(|| sqlite_constraint(db.message()), str::to_owned);
                    Self::Conflict { constraint, source: db.into() }
                } else {
                    Self::Query(db.into())
                }
            }
            sqlx::Error::RowNotFound => Self::NotFound { what: "row".into() },
            sqlx::Error::ColumnDecode { index, source } => Self::Corrupt { column: index, source },
            sqlx::Error::Decode(source) => Self::Corrupt { column: "?".into(), source },
            e @ (sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Configuration(_)) => Self::Unavailable(e.into()),
            e => Self::Query(e.into()),
        }
    }
}

/// SQLite names no constraint; its message does: `UNIQUE constraint failed: api_keys.key_hash`.
fn sqlite_constraint(message: &str) -> String {
    message.split_once("failed: ").map_or(message, |(_, columns)| columns).to_owned()
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(e.into())
    }
}

impl From<StoreError> for StartupError {
    fn from(e: StoreError) -> Self {
        Self(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn a_unique_violation_is_a_conflict_that_names_the_constraint_and_an_outage_is_unavailable() {
        for (backend, store) in testing::all().await {
            let insert = |id: &str| {
                sqlx::query("INSERT INTO revoked_tokens (signature, expires_at) VALUES ($1, 1)").bind(id.to_owned())
            };
            insert("a").execute(store.pool()).await.unwrap();
            let e = StoreError::from(insert("a").execute(store.pool()).await.unwrap_err());
            let StoreError::Conflict { constraint, .. } = &e else { panic!("{backend}: {e:?}") };
            assert!(constraint.contains("revoked_tokens"), "{backend}: {constraint}");
            store.close().await;
            let e = StoreError::from(insert("b").execute(store.pool()).await.unwrap_err());
            assert!(matches!(e, StoreError::Unavailable(_)), "{backend}: {e:?}");
            assert!(std::error::Error::source(&e).is_some(), "{backend}: the cause is kept");
        }
    }
}
