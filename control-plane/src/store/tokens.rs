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

    /// Drops tokens (and revocation records) that expired before `now`; returns how many tokens.
    pub async fn purge_expired_tokens(&self, now: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM access_tokens WHERE expires_at < $1").bind(now).execute(self.pool()).await?;
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1").bind(now).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }

    /// Revokes one token: it is deleted, and its digest is remembered until it would have
    /// expired so filters can refuse it.
    pub async fn revoke_token(&self, row: &TokenRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("INSERT INTO revoked_tokens (signature, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&row.signature)
            .bind(row.expires_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM access_tokens WHERE signature = $1").bind(&row.signature).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes every token of a client; returns how many.
    pub async fn revoke_client_tokens(&self, client_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (signature, expires_at)              SELECT signature, expires_at FROM access_tokens WHERE client_id = $1 ON CONFLICT DO NOTHING",
        )
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        let done =
            sqlx::query("DELETE FROM access_tokens WHERE client_id = $1").bind(client_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Digests of revoked tokens that have not expired yet, sorted (so snapshots are stable).
    pub async fn revoked_tokens(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT signature FROM revoked_tokens WHERE expires_at > $1 ORDER BY signature")
            .bind(now)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| r.try_get(0).map_err(StoreError::from)).collect()
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
            let live = TokenRow { signature: "f".repeat(64), expires_at: 500, ..row.clone() };
            store.insert_token(&live).await.unwrap();
            store.revoke_token(&live).await.unwrap();
            assert!(store.get_token(&live.signature).await.unwrap().is_none(), "a revoked token is gone");
            assert_eq!(store.revoked_tokens(400).await.unwrap(), std::slice::from_ref(&live.signature), "{backend}");
            assert!(store.revoked_tokens(500).await.unwrap().is_empty(), "remembered only until it expires");
            let other = TokenRow { signature: "e".repeat(64), client_id: "d".into(), ..live.clone() };
            store.insert_token(&other).await.unwrap();
            assert_eq!(store.revoke_client_tokens("d").await.unwrap(), 1);
            assert_eq!(store.revoked_tokens(0).await.unwrap().len(), 2);
            // Store errors are errors, not "no such token".
            store.close().await;
            assert!(store.get_token(&row.signature).await.is_err(), "{backend}");
        }
    }
}
