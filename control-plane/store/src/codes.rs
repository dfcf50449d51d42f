//! The `authorization_codes` table. Redemption is one conditional UPDATE (`redeemed_at IS
//! NULL`), so exactly one of several concurrent redemptions wins, on SQLite and PostgreSQL.
//! Expiry and what a replay means are the caller's decisions.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct CodeRow {
    /// sha256 hex of the code.
    pub signature: String,
    pub client_id: String,
    /// JSON of `oauth2::code::Grant`.
    pub grant_body: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub redeemed_at: Option<i64>,
}

impl Store {
    pub async fn insert_code(&self, c: &CodeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO authorization_codes (signature, client_id, grant_body, issued_at, expires_at, redeemed_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.signature)
        .bind(&c.client_id)
        .bind(&c.grant_body)
        .bind(c.issued_at)
        .bind(c.expires_at)
        .bind(c.redeemed_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn get_code(&self, signature: &str) -> Result<Option<CodeRow>, StoreError> {
        let row = sqlx::query(
            "SELECT signature, client_id, grant_body, issued_at, expires_at, redeemed_at \
             FROM authorization_codes WHERE signature = $1",
        )
        .bind(signature)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(CodeRow {
            signature: row.try_get(0)?,
            client_id: row.try_get(1)?,
            grant_body: row.try_get(2)?,
            issued_at: row.try_get(3)?,
            expires_at: row.try_get(4)?,
            redeemed_at: row.try_get(5)?,
        }))
    }

    /// Marks the code redeemed at `now`; `false` when it was already redeemed (or is unknown).
    pub async fn redeem_code(&self, signature: &str, now: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE authorization_codes SET redeemed_at = $2 WHERE signature = $1 AND redeemed_at IS NULL")
                .bind(signature)
                .bind(now)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes codes that expired before `now`.
    pub async fn purge_expired_codes(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM authorization_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn a_code_is_redeemed_once_on_every_backend() {
        for (backend, store) in testing::all().await {
            let row = CodeRow {
                signature: "abc".into(),
                client_id: "web".into(),
                grant_body: "{}".into(),
                issued_at: 10,
                expires_at: 610,
                redeemed_at: None,
            };
            store.insert_code(&row).await.unwrap();
            assert_eq!(store.get_code("abc").await.unwrap().as_ref(), Some(&row), "{backend}");
            assert!(store.redeem_code("abc", 20).await.unwrap(), "{backend}: first redemption wins");
            assert!(!store.redeem_code("abc", 21).await.unwrap(), "{backend}: second redemption loses");
            assert_eq!(store.get_code("abc").await.unwrap().unwrap().redeemed_at, Some(20), "{backend}");
            assert!(!store.redeem_code("nope", 20).await.unwrap(), "{backend}");
            assert_eq!(store.purge_expired_codes(610).await.unwrap(), 1, "{backend}");
            assert_eq!(store.get_code("abc").await.unwrap(), None, "{backend}");
        }
    }
}
