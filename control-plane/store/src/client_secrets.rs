//! The `client_rotated_secrets` table: hashes of a client's previous secrets that stay valid
//! after a rotation, newest first. Rotating swaps the current hash in `clients` and records the
//! old one in one transaction, guarded by the hash the caller saw, so two concurrent rotations
//! cannot both win and lose a secret. It never sees a secret in clear, only at-rest hashes.

use sqlx::Row;

use super::Store;
use super::clients::ClientRow;
use crate::error::StoreError;

impl Store {
    /// The client's rotated (previous, still accepted) secret hashes, newest first.
    pub async fn rotated_client_secrets(&self, client_id: &str) -> Result<Vec<String>, StoreError> {
        let row = sqlx::query("SELECT hashes FROM client_rotated_secrets WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            None => Ok(Vec::new()),
            Some(row) => decode(&row.try_get::<String, _>(0)?),
        }
    }

    /// Makes `new_hash` the client's secret and keeps `current` (the hash the caller read)
    /// first among at most `keep` rotated ones. `Ok(false)` when the client is gone or its
    /// secret changed since it was read.
    pub async fn rotate_client_secret(
        &self,
        client_id: &str,
        current: &str,
        new_hash: &str,
        keep: usize,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE clients SET secret_hash = $1, updated_at = $2 WHERE client_id = $3 AND secret_hash = $4",
        )
        .bind(new_hash)
        .bind(now)
        .bind(client_id)
        .bind(current)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let old = sqlx::query("SELECT hashes FROM client_rotated_secrets WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
        let mut hashes = match old {
            None => Vec::new(),
            Some(row) => decode(&row.try_get::<String, _>(0)?)?,
        };
        hashes.retain(|h| h != current && h != new_hash);
        hashes.insert(0, current.to_owned());
        hashes.truncate(keep);
        let encoded =
            serde_json::to_string(&hashes).map_err(|e| StoreError::corrupt("client_rotated_secrets.hashes", e))?;
        sqlx::query(
            "INSERT INTO client_rotated_secrets (client_id, hashes, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id) DO UPDATE SET hashes = excluded.hashes, updated_at = excluded.updated_at",
        )
        .bind(client_id)
        .bind(encoded)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets every rotated secret of the client; `true` when there were any.
    pub async fn clear_rotated_client_secrets(&self, client_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM client_rotated_secrets WHERE client_id = $1")
            .bind(client_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// [`Store::update_client`], also dropping the rotated secrets when `clear_rotated` (the
    /// secret was replaced: old secrets must stop working with the same write).
    pub async fn update_client_with_rotation(&self, c: &ClientRow, clear_rotated: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE clients SET secret_hash = $1, client_name = $2, owner = $3, body = $4, updated_at = $5 \
             WHERE client_id = $6",
        )
        .bind(&c.secret_hash)
        .bind(&c.client_name)
        .bind(&c.owner)
        .bind(&c.body)
        .bind(c.updated_at)
        .bind(&c.client_id)
        .execute(&mut *tx)
        .await?;
        if clear_rotated {
            sqlx::query("DELETE FROM client_rotated_secrets WHERE client_id = $1")
                .bind(&c.client_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}

fn decode(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt("client_rotated_secrets.hashes", e))
}

#[cfg(test)]
mod tests {
    use crate::ClientRow;
    use crate::testing;

    fn row(id: &str, hash: &str) -> ClientRow {
        ClientRow {
            client_id: id.into(),
            secret_hash: Some(hash.into()),
            client_name: String::new(),
            owner: String::new(),
            body: "{}".into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[tokio::test]
    async fn rotation_keeps_a_bounded_history_and_is_guarded() {
        for (name, store) in testing::all().await {
            assert!(store.insert_client(&row("c", "h0")).await.unwrap());
            assert!(store.rotated_client_secrets("c").await.unwrap().is_empty());
            for i in 1..=7 {
                let current = format!("h{}", i - 1);
                assert!(store.rotate_client_secret("c", &current, &format!("h{i}"), 5, 10 + i).await.unwrap());
            }
            assert_eq!(store.rotated_client_secrets("c").await.unwrap(), ["h6", "h5", "h4", "h3", "h2"], "{name}");
            let got = store.get_client("c").await.unwrap().unwrap();
            assert_eq!((got.secret_hash.as_deref(), got.updated_at), (Some("h7"), 17), "{name}");

            // A stale view of the secret loses: nothing changes.
            assert!(!store.rotate_client_secret("c", "h6", "hx", 5, 20).await.unwrap(), "{name}");
            assert!(!store.rotate_client_secret("ghost", "h0", "hx", 5, 20).await.unwrap(), "{name}");
            assert_eq!(store.get_client("c").await.unwrap().unwrap().secret_hash.as_deref(), Some("h7"));

            let mut replaced = row("c", "fresh");
            replaced.updated_at = 30;
            assert!(store.update_client_with_rotation(&replaced, false).await.unwrap());
            assert_eq!(store.rotated_client_secrets("c").await.unwrap().len(), 5, "{name}: kept");
            assert!(store.update_client_with_rotation(&replaced, true).await.unwrap());
            assert!(store.rotated_client_secrets("c").await.unwrap().is_empty(), "{name}: cleared");
            assert!(!store.clear_rotated_client_secrets("c").await.unwrap());

            assert!(store.rotate_client_secret("c", "fresh", "newer", 5, 40).await.unwrap());
            assert!(store.delete_client("c").await.unwrap());
            assert!(store.rotated_client_secrets("c").await.unwrap().is_empty(), "{name}: deleted with the client");
        }
    }
}
