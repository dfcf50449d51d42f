//! The `used_assertion_jtis` table: single use of JWT assertion ids until they expire. Marking
//! is one conditional INSERT, so of two concurrent uses of one `jti` exactly one wins, on
//! SQLite and PostgreSQL. Which key a `jti` is stored under is the caller's decision.

use super::Store;
use crate::error::StoreError;

impl Store {
    /// Records `signature` as used until `expires_at`; `false` when it is already recorded and
    /// not yet expired at `now` (a replay).
    pub async fn use_assertion_jti(&self, signature: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        // An expired record no longer protects anything; dropping it lets the id be recorded anew.
        sqlx::query("DELETE FROM used_assertion_jtis WHERE signature = $1 AND expires_at <= $2")
            .bind(signature)
            .bind(now)
            .execute(self.pool())
            .await?;
        let done = sqlx::query(
            "INSERT INTO used_assertion_jtis (signature, expires_at) VALUES ($1, $2) ON CONFLICT (signature) DO NOTHING",
        )
        .bind(signature)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes records that expired before `now`.
    pub async fn purge_expired_assertion_jtis(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM used_assertion_jtis WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing;

    #[tokio::test]
    async fn a_jti_is_single_use_until_it_expires() {
        for (name, store) in testing::all().await {
            assert!(store.use_assertion_jti("a", 100, 10).await.unwrap(), "{name}");
            assert!(!store.use_assertion_jti("a", 100, 50).await.unwrap(), "{name}: replay refused");
            assert!(store.use_assertion_jti("b", 100, 50).await.unwrap(), "{name}: other ids unaffected");
            assert!(store.use_assertion_jti("a", 200, 100).await.unwrap(), "{name}: free again after expiry");
            assert_eq!(store.purge_expired_assertion_jtis(150).await.unwrap(), 1, "{name}: b purged");
        }
    }
}
