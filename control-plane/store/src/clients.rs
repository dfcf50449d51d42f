//! The `clients` table. The row keeps the secret only as a hash; the client's other fields
//! live in `body` as JSON, with `client_name` and `owner` copied out for list filters.
//! Deleting a client deletes its access tokens in the same transaction.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

#[derive(Clone)]
pub struct ClientRow {
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub client_name: String,
    pub owner: String,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

// `secret_hash` is not the secret, but it is still offline-attack material.
impl std::fmt::Debug for ClientRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRow")
            .field("client_id", &self.client_id)
            .field("client_name", &self.client_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub client_name: Option<String>,
    pub owner: Option<String>,
}

const COLUMNS: &str = "client_id, secret_hash, client_name, owner, body, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<ClientRow, sqlx::Error> {
    Ok(ClientRow {
        client_id: row.try_get(0)?,
        secret_hash: row.try_get(1)?,
        client_name: row.try_get(2)?,
        owner: row.try_get(3)?,
        body: row.try_get(4)?,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
    })
}

impl Store {
    /// Inserts a client; `Ok(false)` when the client_id is taken.
    pub async fn insert_client(&self, c: &ClientRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO clients (client_id, secret_hash, client_name, owner, body, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(&c.client_id)
        .bind(&c.secret_hash)
        .bind(&c.client_name)
        .bind(&c.owner)
        .bind(&c.body)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn get_client(&self, client_id: &str) -> Result<Option<ClientRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM clients WHERE client_id = $1"))
            .bind(client_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Replaces everything but `client_id` and `created_at`; `Ok(false)` when absent.
    pub async fn update_client(&self, c: &ClientRow) -> Result<bool, StoreError> {
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
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a client, its tokens and its rotated secrets; `Ok(false)` when absent.
    pub async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM access_tokens WHERE client_id = $1").bind(client_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM client_rotated_secrets WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM clients WHERE client_id = $1").bind(client_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Up to `limit` clients with `client_id > after`, in client_id order (keyset pagination).
    pub async fn list_clients(
        &self,
        after: &str,
        limit: i64,
        filter: &ListFilter,
    ) -> Result<Vec<ClientRow>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM clients WHERE client_id > $1");
        let mut n = 1;
        if filter.client_name.is_some() {
            n += 1;
            sql.push_str(&format!(" AND client_name = ${n}"));
        }
        if filter.owner.is_some() {
            n += 1;
            sql.push_str(&format!(" AND owner = ${n}"));
        }
        sql.push_str(&format!(" ORDER BY client_id LIMIT ${}", n + 1));
        let mut query = sqlx::query(&sql).bind(after);
        if let Some(name) = &filter.client_name {
            query = query.bind(name);
        }
        if let Some(owner) = &filter.owner {
            query = query.bind(owner);
        }
        let rows = query.bind(limit).fetch_all(self.pool()).await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn row(id: &str, owner: &str) -> ClientRow {
        ClientRow {
            client_id: id.into(),
            secret_hash: Some("sha256$00".into()),
            client_name: format!("name-{id}"),
            owner: owner.into(),
            body: "{}".into(),
            created_at: 10,
            updated_at: 10,
        }
    }

    #[tokio::test]
    async fn crud_pagination_and_cascade() {
        for (backend, store) in testing::all().await {
            assert!(store.insert_client(&row("b", "o1")).await.unwrap(), "{backend}");
            assert!(store.insert_client(&row("a", "o2")).await.unwrap());
            assert!(store.insert_client(&row("c", "o1")).await.unwrap());
            assert!(!store.insert_client(&row("a", "x")).await.unwrap(), "{backend}: duplicate");

            let got = store.get_client("a").await.unwrap().unwrap();
            assert_eq!(got.owner, "o2");
            assert_eq!(got.secret_hash.as_deref(), Some("sha256$00"));
            assert!(store.get_client("zz").await.unwrap().is_none());

            let all = ListFilter::default();
            let page: Vec<_> = store.list_clients("", 2, &all).await.unwrap();
            assert_eq!(page.iter().map(|c| c.client_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
            let page = store.list_clients("b", 2, &all).await.unwrap();
            assert_eq!(page.len(), 1);
            let owned = ListFilter { owner: Some("o1".into()), client_name: Some("name-c".into()) };
            let page = store.list_clients("", 10, &owned).await.unwrap();
            assert_eq!(page.len(), 1, "{backend}");
            assert_eq!(page[0].client_id, "c");

            let mut updated = row("a", "o3");
            updated.secret_hash = None;
            updated.updated_at = 20;
            assert!(store.update_client(&updated).await.unwrap());
            let got = store.get_client("a").await.unwrap().unwrap();
            assert_eq!((got.owner.as_str(), got.secret_hash, got.created_at, got.updated_at), ("o3", None, 10, 20));
            assert!(!store.update_client(&row("nope", "")).await.unwrap());

            store
                .insert_token(&crate::TokenRow {
                    signature: "sig".into(),
                    client_id: "a".into(),
                    subject: "a".into(),
                    scope: String::new(),
                    issued_at: 1,
                    expires_at: 2,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(store.delete_client("a").await.unwrap());
            assert!(!store.delete_client("a").await.unwrap());
            assert!(store.get_token("sig").await.unwrap().is_none(), "{backend}: tokens cascade");
        }
    }
}
