//! The single-row `rule_set` table holding the admin-managed rules as a JSON array. Its
//! version increases on every write so replicas can notice changes by polling one integer.
//! Validation is the caller's job; this module stores what it is given.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

impl Store {
    /// `(version, JSON array)` of the admin-managed rules.
    pub async fn get_rule_set(&self) -> Result<(i64, String), StoreError> {
        let row = sqlx::query("SELECT version, body FROM rule_set WHERE id = 1").fetch_one(self.pool()).await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Replaces the admin-managed rules; returns the new version.
    pub async fn put_rule_set(&self, body: &str) -> Result<i64, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE rule_set SET version = version + 1, body = $1 WHERE id = 1")
            .bind(body)
            .execute(&mut *tx)
            .await?;
        let version: i64 =
            sqlx::query("SELECT version FROM rule_set WHERE id = 1").fetch_one(&mut *tx).await?.try_get(0)?;
        tx.commit().await?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing;

    #[tokio::test]
    async fn versions_increase_on_every_put() {
        for (backend, store) in testing::all().await {
            assert_eq!(store.get_rule_set().await.unwrap(), (0, "[]".to_owned()), "{backend}");
            assert_eq!(store.put_rule_set(r#"[{"id":"a"}]"#).await.unwrap(), 1);
            assert_eq!(store.put_rule_set(r#"[{"id":"a"}]"#).await.unwrap(), 2);
            assert_eq!(store.get_rule_set().await.unwrap(), (2, r#"[{"id":"a"}]"#.to_owned()));
        }
    }
}
