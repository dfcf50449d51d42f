//! The `access_tokens` table, keyed by the SHA-256 of the token. Expiry is the caller's
//! decision (it owns the clock); this module only stores and finds rows.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    /// sha256 hex of the token.
    pub signature: String,
    pub client_id: String,
    pub subject: String,
    /// Granted scopes, space separated.
    pub scope: String,
    /// JSON array of audiences.
    pub audience: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl Store {
    pub async fn insert_token(&self, t: &TokenRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO access_tokens (signature, client_id, subject, scope, audience, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.signature)
        .bind(&t.client_id)
        .bind(&t.subject)
        .bind(&t.scope)
        .bind(&t.audience)
        .bind(t.issued_at)
        .bind(t.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn get_token(&self, signature: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(
            "SELECT signature, client_id, subject, scope, audience, issued_at, expires_at \
             FROM access_tokens WHERE signature = $1",
        )
        .bind(signature)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TokenRow {
            signature: row.try_get(0)?,
            client_id: row.try_get(1)?,
            subject: row.try_get(2)?,
            scope: row.try_get(3)?,
            audience: row.try_get(4)?,
            issued_at: row.try_get(5)?,
            expires_at: row.try_get(6)?,
        }))
    }

    /// Drops tokens that expired before `now`; returns how many.
    pub async fn purge_expired_tokens(&self, now: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM access_tokens WHERE expires_at < $1").bind(now).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn insert_lookup_and_purge() {
        for (backend, store) in testing::all().await {
            let token = crate::crypto::generate_access_token();
            let row = TokenRow {
                signature: crate::crypto::token_signature(&token),
                client_id: "c".into(),
                subject: "c".into(),
                scope: "read write".into(),
                audience: r#"["https://api"]"#.into(),
                issued_at: 100,
                expires_at: 200,
            };
            store.insert_token(&row).await.unwrap();
            assert_eq!(store.get_token(&row.signature).await.unwrap(), Some(row.clone()), "{backend}");
            assert!(store.get_token(&token).await.unwrap().is_none(), "looked up by hash only");
            assert_eq!(store.purge_expired_tokens(200).await.unwrap(), 0);
            assert_eq!(store.purge_expired_tokens(201).await.unwrap(), 1);
            assert!(store.get_token(&row.signature).await.unwrap().is_none());
            // Store errors are errors, not "no such token".
            store.close().await;
            assert!(store.get_token(&row.signature).await.is_err(), "{backend}");
        }
    }
}
