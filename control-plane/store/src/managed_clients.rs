//! The `managed_clients` table: which clients file resource (`<name>/<namespace>`) owns which
//! client, with its deletion policy. Rows only; the reconciling belongs to the OAuth2 crate's `clients_file`.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct ManagedClient {
    pub owner: String,
    pub client_id: String,
    pub deletion_policy: String,
    pub secret_file: String,
    pub updated_at: i64,
}

impl Store {
    pub async fn managed_clients(&self) -> Result<Vec<ManagedClient>, StoreError> {
        let rows = sqlx::query(
            "SELECT owner, client_id, deletion_policy, secret_file, updated_at FROM managed_clients ORDER BY owner",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ManagedClient {
                    owner: r.try_get(0)?,
                    client_id: r.try_get(1)?,
                    deletion_policy: r.try_get(2)?,
                    secret_file: r.try_get(3)?,
                    updated_at: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    pub async fn upsert_managed_client(&self, m: &ManagedClient) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO managed_clients (owner, client_id, deletion_policy, secret_file, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner) DO UPDATE SET client_id = excluded.client_id, \
             deletion_policy = excluded.deletion_policy, secret_file = excluded.secret_file, \
             updated_at = excluded.updated_at",
        )
        .bind(&m.owner)
        .bind(&m.client_id)
        .bind(&m.deletion_policy)
        .bind(&m.secret_file)
        .bind(m.updated_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_managed_client(&self, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM managed_clients WHERE owner = $1").bind(owner).execute(self.pool()).await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn managed_clients_are_upserted_listed_and_deleted() {
        for (backend, store) in testing::all().await {
            let m = ManagedClient {
                owner: "web/default".into(),
                client_id: "c1".into(),
                deletion_policy: "delete".into(),
                secret_file: String::new(),
                updated_at: 10,
            };
            store.upsert_managed_client(&m).await.unwrap();
            let moved = ManagedClient { client_id: "c2".into(), deletion_policy: "orphan".into(), ..m.clone() };
            store.upsert_managed_client(&moved).await.unwrap();
            assert_eq!(store.managed_clients().await.unwrap(), [moved], "{backend}");
            assert!(store.delete_managed_client("web/default").await.unwrap());
            assert!(!store.delete_managed_client("web/default").await.unwrap(), "{backend}");
            assert!(store.managed_clients().await.unwrap().is_empty());
        }
    }
}
