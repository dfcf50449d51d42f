//! The `signing_keys` table: key sets by name, each key with its encrypted private half and
//! its public JWK. This module stores and lists rows and keeps the one invariant that must hold
//! inside a transaction (a set that has keys has an active one: the newest unretired); it never
//! sees a private key in clear (encryption and validation belong to `portcullis-keys`).

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

#[derive(Clone, PartialEq)]
pub struct KeyRow {
    pub kid: String,
    pub set_id: String,
    /// `ES256`.
    pub alg: String,
    /// Encrypted PKCS#8 DER (`v1:<nonce>:<ciphertext>`).
    pub private_key: String,
    /// The public JWK, JSON.
    pub public_jwk: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

// Even encrypted, key material stays out of logs.
impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("set_id", &self.set_id)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub async fn insert_signing_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, set_id, alg, private_key, public_jwk, created_at, retired_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&k.kid)
        .bind(&k.set_id)
        .bind(&k.alg)
        .bind(&k.private_key)
        .bind(&k.public_jwk)
        .bind(k.created_at)
        .bind(k.retired_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every key of `set_id`, newest first (ties broken by kid, so replicas agree).
    pub async fn signing_keys(&self, set_id: &str) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, set_id, alg, private_key, public_jwk, created_at, retired_at \
             FROM signing_keys WHERE set_id = $1 ORDER BY created_at DESC, kid DESC",
        )
        .bind(set_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyRow {
                    kid: row.try_get(0)?,
                    set_id: row.try_get(1)?,
                    alg: row.try_get(2)?,
                    private_key: row.try_get(3)?,
                    public_jwk: row.try_get(4)?,
                    created_at: row.try_get(5)?,
                    retired_at: row.try_get(6)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Stops a key from signing; it stays listed so tokens it signed still verify. Returns
    /// whether an active key was retired.
    pub async fn retire_signing_key(&self, set_id: &str, kid: &str, at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE set_id = $2 AND kid = $3 AND retired_at IS NULL",
        )
        .bind(at)
        .bind(set_id)
        .bind(kid)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// Inserts `k` as the newest key of its set and retires every other active key of the set
    /// at `at`, in one transaction (rotation: the new key signs, the old ones stay listed).
    /// `Ok(false)` when the kid is taken (in any set).
    pub async fn rotate_in_signing_key(&self, k: &KeyRow, at: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let taken: Option<String> = sqlx::query_scalar("SELECT kid FROM signing_keys WHERE kid = $1")
            .bind(&k.kid)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Ok(false);
        }
        if k.retired_at.is_none() {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE set_id = $2 AND retired_at IS NULL")
                .bind(at)
                .bind(&k.set_id)
                .execute(&mut *tx)
                .await?;
        }
        insert(&mut tx, k).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces the key `k.kid` of `k.set_id` (or adds it), retiring the set's other active
    /// keys at `at` when `k` is active. `Ok(false)` when the kid belongs to another set.
    pub async fn put_signing_key(&self, k: &KeyRow, at: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let owner: Option<String> = sqlx::query_scalar("SELECT set_id FROM signing_keys WHERE kid = $1")
            .bind(&k.kid)
            .fetch_optional(&mut *tx)
            .await?;
        if owner.as_deref().is_some_and(|set| set != k.set_id) {
            return Ok(false);
        }
        sqlx::query("DELETE FROM signing_keys WHERE kid = $1").bind(&k.kid).execute(&mut *tx).await?;
        if k.retired_at.is_none() {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE set_id = $2 AND retired_at IS NULL")
                .bind(at)
                .bind(&k.set_id)
                .execute(&mut *tx)
                .await?;
        }
        insert(&mut tx, k).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Makes `keys` the whole of `set_id`, in one transaction. `Ok(false)` (and nothing
    /// changed) when one of the kids belongs to another set.
    pub async fn replace_signing_key_set(&self, set_id: &str, keys: &[KeyRow]) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM signing_keys WHERE set_id = $1").bind(set_id).execute(&mut *tx).await?;
        for k in keys {
            let taken: Option<String> = sqlx::query_scalar("SELECT kid FROM signing_keys WHERE kid = $1")
                .bind(&k.kid)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                tx.rollback().await?;
                return Ok(false);
            }
            insert(&mut tx, k).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes one key; when it was the set's only active key, the newest remaining key of the
    /// set becomes active again in the same transaction, so the set never stops signing while
    /// it has keys. Returns whether a key was deleted.
    pub async fn delete_signing_key(&self, set_id: &str, kid: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("DELETE FROM signing_keys WHERE set_id = $1 AND kid = $2")
            .bind(set_id)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE set_id = $1 AND retired_at IS NULL")
                .bind(set_id)
                .fetch_one(&mut *tx)
                .await?;
        if active == 0 {
            let newest: Option<String> = sqlx::query_scalar(
                "SELECT kid FROM signing_keys WHERE set_id = $1 ORDER BY created_at DESC, kid DESC LIMIT 1",
            )
            .bind(set_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(newest) = newest {
                sqlx::query("UPDATE signing_keys SET retired_at = NULL WHERE kid = $1")
                    .bind(newest)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes every key of a set; returns how many.
    pub async fn delete_signing_key_set(&self, set_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM signing_keys WHERE set_id = $1").bind(set_id).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }
}

async fn insert(tx: &mut sqlx::Transaction<'_, sqlx::Any>, k: &KeyRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, set_id, alg, private_key, public_jwk, created_at, retired_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&k.kid)
    .bind(&k.set_id)
    .bind(&k.alg)
    .bind(&k.private_key)
    .bind(&k.public_jwk)
    .bind(k.created_at)
    .bind(k.retired_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn row(kid: &str, created_at: i64) -> KeyRow {
        KeyRow {
            kid: kid.into(),
            set_id: "portcullis.id-token".into(),
            alg: "ES256".into(),
            private_key: "v1:bm9uY2U:Y2lwaGVy".into(),
            public_jwk: r#"{"kty":"EC"}"#.into(),
            created_at,
            retired_at: None,
        }
    }

    #[tokio::test]
    async fn keys_are_listed_newest_first_and_retired_once() {
        for (backend, store) in testing::all().await {
            store.insert_signing_key(&row("a", 100)).await.unwrap();
            store.insert_signing_key(&row("b", 200)).await.unwrap();
            store.insert_signing_key(&KeyRow { set_id: "other".into(), ..row("c", 300) }).await.unwrap();
            let keys = store.signing_keys("portcullis.id-token").await.unwrap();
            assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["b", "a"], "{backend}");
            assert_eq!(keys[1], row("a", 100), "{backend}");
            assert!(store.insert_signing_key(&row("a", 1)).await.is_err(), "kid is unique ({backend})");

            assert!(store.retire_signing_key("portcullis.id-token", "b", 250).await.unwrap());
            assert!(!store.retire_signing_key("portcullis.id-token", "b", 260).await.unwrap(), "already retired");
            assert!(!store.retire_signing_key("other", "a", 260).await.unwrap(), "wrong set");
            let keys = store.signing_keys("portcullis.id-token").await.unwrap();
            assert_eq!(keys[0].retired_at, Some(250), "{backend}");
            assert_eq!(keys[1].retired_at, None, "{backend}");
            assert!(!format!("{:?}", keys[0]).contains("v1:"), "Debug hides the encrypted key");

            store.close().await;
            assert!(store.signing_keys("portcullis.id-token").await.is_err(), "{backend}");
        }
    }

    fn kids(keys: &[KeyRow]) -> Vec<(&str, Option<i64>)> {
        keys.iter().map(|k| (k.kid.as_str(), k.retired_at)).collect()
    }

    #[tokio::test]
    async fn rotation_put_replace_and_delete_keep_one_active_key() {
        for (backend, store) in testing::all().await {
            let set = "portcullis.id-token";
            assert!(store.rotate_in_signing_key(&row("a", 100), 100).await.unwrap());
            assert!(store.rotate_in_signing_key(&row("b", 200), 200).await.unwrap());
            assert_eq!(kids(&store.signing_keys(set).await.unwrap()), [("b", None), ("a", Some(200))], "{backend}");
            let elsewhere = KeyRow { set_id: "other".into(), ..row("c", 300) };
            assert!(store.rotate_in_signing_key(&elsewhere, 300).await.unwrap());
            assert!(!store.rotate_in_signing_key(&row("c", 300), 300).await.unwrap(), "kid taken ({backend})");
            assert!(!store.put_signing_key(&row("c", 300), 300).await.unwrap(), "kid of another set ({backend})");
            assert_eq!(store.signing_keys(set).await.unwrap().len(), 2, "{backend}");

            // Put replaces in place; the put key becomes the active one.
            assert!(store.put_signing_key(&row("a", 400), 400).await.unwrap());
            assert_eq!(kids(&store.signing_keys(set).await.unwrap()), [("a", None), ("b", Some(400))], "{backend}");

            // Deleting the active key re-activates the newest remaining one.
            assert!(store.delete_signing_key(set, "a").await.unwrap());
            assert_eq!(kids(&store.signing_keys(set).await.unwrap()), [("b", None)], "{backend}");
            assert!(!store.delete_signing_key(set, "a").await.unwrap(), "{backend}");
            assert!(!store.delete_signing_key(set, "c").await.unwrap(), "wrong set ({backend})");

            // Replacing a set is all or nothing.
            assert!(!store.replace_signing_key_set(set, &[row("d", 500), row("c", 500)]).await.unwrap());
            assert_eq!(kids(&store.signing_keys(set).await.unwrap()), [("b", None)], "rolled back ({backend})");
            assert!(store.replace_signing_key_set(set, &[row("d", 500), row("e", 400)]).await.unwrap());
            assert_eq!(kids(&store.signing_keys(set).await.unwrap()), [("d", None), ("e", None)], "{backend}");

            assert_eq!(store.delete_signing_key_set("other").await.unwrap(), 1, "{backend}");
            assert!(store.signing_keys("other").await.unwrap().is_empty());
        }
    }
}
