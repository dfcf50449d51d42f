//! The `selfservice_flows` table: each flow is one JSON document with a version. Updates are
//! compare-and-swap on the version, so two submissions racing on one flow (a one-time code
//! tried twice at once) cannot both succeed.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

impl Store {
    pub async fn insert_flow(&self, id: &str, kind: &str, body: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO selfservice_flows (id, kind, body, version, expires_at) VALUES ($1, $2, $3, 0, $4)")
            .bind(id)
            .bind(kind)
            .bind(body)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// `(kind, body, version)`.
    pub async fn get_flow(&self, id: &str) -> Result<Option<(String, String, i64)>, StoreError> {
        let row = sqlx::query("SELECT kind, body, version FROM selfservice_flows WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
            None => None,
        })
    }

    /// Writes `body` if the flow is still at `version`; `false` when someone else wrote first.
    pub async fn update_flow(&self, id: &str, version: i64, body: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE selfservice_flows SET body = $3, version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id)
                .bind(version)
                .bind(body)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn purge_expired_flows(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM selfservice_flows WHERE expires_at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing;

    #[tokio::test]
    async fn updates_are_compare_and_swap() {
        for (backend, store) in testing::all().await {
            store.insert_flow("f", "login", "{}", 100).await.unwrap();
            assert_eq!(store.get_flow("f").await.unwrap(), Some(("login".into(), "{}".into(), 0)), "{backend}");
            assert!(store.update_flow("f", 0, r#"{"a":1}"#).await.unwrap());
            assert!(!store.update_flow("f", 0, r#"{"a":2}"#).await.unwrap(), "{backend}: a stale writer loses");
            assert_eq!(store.get_flow("f").await.unwrap().unwrap().2, 1);
            assert_eq!(store.purge_expired_flows(100).await.unwrap(), 0);
            assert_eq!(store.purge_expired_flows(101).await.unwrap(), 1, "{backend}");
            assert!(store.get_flow("f").await.unwrap().is_none());
        }
    }
}
