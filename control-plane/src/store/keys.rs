//! The `signing_keys` table: key sets by name, each key with its encrypted private half and
//! its public JWK. This module stores and lists rows; it never sees a private key in clear
//! (encryption and the choice of the active key belong to `crate::keys`).

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

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
}
