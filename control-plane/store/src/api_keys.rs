//! The `api_keys` table: admin API keys by the SHA-256 of the key, with their scopes and when
//! they were created, last used and revoked. This module stores and finds rows; it never sees
//! a key in clear, and scope parsing, caching and the "once a minute" policy for `last_used_at`
//! belong to the HTTP layer's admin API guard.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use crate::error::StoreError;

#[derive(Clone, PartialEq)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    /// sha256 hex of the key.
    pub key_hash: String,
    /// Space-separated, as stored.
    pub scopes: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

// The hash is not the key, but it is what a lookup matches on: keep it out of logs anyway.
impl std::fmt::Debug for ApiKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, name, key_hash, scopes, created_at, last_used_at, revoked_at";

fn from_row(row: &AnyRow) -> Result<ApiKeyRow, sqlx::Error> {
    Ok(ApiKeyRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        key_hash: row.try_get(2)?,
        scopes: row.try_get(3)?,
        created_at: row.try_get(4)?,
        last_used_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    })
}

impl Store {
    pub async fn insert_api_key(&self, k: &ApiKeyRow) -> Result<(), StoreError> {
        sqlx::query(&format!("INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(&k.id)
            .bind(&k.name)
            .bind(&k.key_hash)
            .bind(&k.scopes)
            .bind(k.created_at)
            .bind(k.last_used_at)
            .bind(k.revoked_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The key whose hash is `key_hash`, unless it was revoked.
    pub async fn find_active_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"))
            .bind(key_hash)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Every key, revoked ones included, oldest first (ties broken by id, so replicas agree).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect::<Result<_, sqlx::Error>>().map_err(StoreError::from)
    }

    /// How many keys can still be used.
    pub async fn count_active_api_keys(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetch_one(self.pool()).await?;
        Ok(row.try_get(0)?)
    }

    /// Revokes an active key; returns whether there was one with that id.
    pub async fn revoke_api_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a use at `at`, unless one was recorded less than `interval` seconds earlier (by
    /// this node or another), so a busy key costs at most one write per interval. Returns
    /// whether the row was written.
    pub async fn touch_api_key(&self, id: &str, at: i64, interval: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(at)
        .bind(id)
        .bind(at - interval)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn row(id: &str, hash: &str, created_at: i64) -> ApiKeyRow {
        ApiKeyRow {
            id: id.into(),
            name: format!("key {id}"),
            key_hash: hash.into(),
            scopes: "clients:read rules:write".into(),
            created_at,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn keys_are_found_by_hash_until_revoked_and_listed_with_the_revoked() {
        for (backend, store) in testing::all().await {
            assert_eq!(store.count_active_api_keys().await.unwrap(), 0, "{backend}");
            store.insert_api_key(&row("b", "hash-b", 200)).await.unwrap();
            store.insert_api_key(&row("a", "hash-a", 100)).await.unwrap();
            assert!(store.insert_api_key(&row("c", "hash-a", 300)).await.is_err(), "key_hash is unique ({backend})");
            assert!(store.insert_api_key(&row("a", "hash-z", 300)).await.is_err(), "id is unique ({backend})");
            assert_eq!(store.count_active_api_keys().await.unwrap(), 2, "{backend}");

            assert_eq!(store.find_active_api_key("hash-a").await.unwrap(), Some(row("a", "hash-a", 100)), "{backend}");
            assert_eq!(store.find_active_api_key("hash-x").await.unwrap(), None, "{backend}");

            assert!(store.revoke_api_key("a", 150).await.unwrap(), "{backend}");
            assert!(!store.revoke_api_key("a", 160).await.unwrap(), "already revoked ({backend})");
            assert!(!store.revoke_api_key("nope", 160).await.unwrap(), "{backend}");
            assert_eq!(store.find_active_api_key("hash-a").await.unwrap(), None, "revoked ({backend})");
            assert_eq!(store.count_active_api_keys().await.unwrap(), 1, "{backend}");

            let listed = store.list_api_keys().await.unwrap();
            assert_eq!(listed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["a", "b"], "{backend}");
            assert_eq!(listed[0].revoked_at, Some(150), "{backend}");
            assert_eq!(listed[1].revoked_at, None, "{backend}");
            assert!(!format!("{:?}", listed[1]).contains("hash-b"), "Debug hides the hash");

            store.close().await;
            assert!(store.find_active_api_key("hash-b").await.is_err(), "a store failure is not 'absent' ({backend})");
        }
    }

    #[tokio::test]
    async fn last_use_is_written_at_most_once_per_interval() {
        for (backend, store) in testing::all().await {
            store.insert_api_key(&row("a", "hash-a", 100)).await.unwrap();
            assert!(store.touch_api_key("a", 1000, 60).await.unwrap(), "first use ({backend})");
            assert!(!store.touch_api_key("a", 1030, 60).await.unwrap(), "within the minute ({backend})");
            assert_eq!(store.find_active_api_key("hash-a").await.unwrap().unwrap().last_used_at, Some(1000));
            assert!(store.touch_api_key("a", 1060, 60).await.unwrap(), "a minute later ({backend})");
            assert_eq!(store.find_active_api_key("hash-a").await.unwrap().unwrap().last_used_at, Some(1060));
            assert!(!store.touch_api_key("nope", 2000, 60).await.unwrap(), "{backend}");
        }
    }
}
