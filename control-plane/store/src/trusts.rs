//! The `jwt_bearer_trusts` table: trust relationships for the RFC 7523 jwt-bearer grant. It
//! stores and finds rows; it does not validate keys or decide what a trust allows (the admin
//! handler and `oauth2::jwt_bearer` do). One issuer, subject and key id is one row.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct TrustRow {
    pub id: String,
    pub issuer: String,
    /// Empty when `allow_any_subject`.
    pub subject: String,
    pub allow_any_subject: bool,
    /// JSON array of scope strings.
    pub scope: String,
    pub key_id: String,
    /// The public JWK, JSON.
    pub jwk: String,
    pub expires_at: i64,
    pub created_at: i64,
}

const COLUMNS: &str = "id, issuer, subject, allow_any_subject, scope, key_id, jwk, expires_at, created_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<TrustRow, sqlx::Error> {
    Ok(TrustRow {
        id: row.try_get(0)?,
        issuer: row.try_get(1)?,
        subject: row.try_get(2)?,
        allow_any_subject: row.try_get::<i64, _>(3)? != 0,
        scope: row.try_get(4)?,
        key_id: row.try_get(5)?,
        jwk: row.try_get(6)?,
        expires_at: row.try_get(7)?,
        created_at: row.try_get(8)?,
    })
}

impl Store {
    /// Inserts a trust; `Ok(false)` when its id or its (issuer, subject, key id) exists.
    pub async fn insert_trust(&self, t: &TrustRow) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO jwt_bearer_trusts ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
        ))
        .bind(&t.id)
        .bind(&t.issuer)
        .bind(&t.subject)
        .bind(i64::from(t.allow_any_subject))
        .bind(&t.scope)
        .bind(&t.key_id)
        .bind(&t.jwk)
        .bind(t.expires_at)
        .bind(t.created_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn get_trust(&self, id: &str) -> Result<Option<TrustRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jwt_bearer_trusts WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Up to `limit` trusts with `id > after`, in id order, optionally of one issuer.
    pub async fn list_trusts(
        &self,
        after: &str,
        limit: i64,
        issuer: Option<&str>,
    ) -> Result<Vec<TrustRow>, StoreError> {
        let rows = match issuer {
            Some(issuer) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM jwt_bearer_trusts WHERE id > $1 AND issuer = $2 ORDER BY id LIMIT $3"
                ))
                .bind(after)
                .bind(issuer)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM jwt_bearer_trusts WHERE id > $1 ORDER BY id LIMIT $2"))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?
            }
        };
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn delete_trust(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM jwt_bearer_trusts WHERE id = $1").bind(id).execute(self.pool()).await?;
        Ok(done.rows_affected() == 1)
    }

    /// The unexpired trusts that cover assertions by `issuer` about `subject`.
    pub async fn trusts_for(&self, issuer: &str, subject: &str, now: i64) -> Result<Vec<TrustRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jwt_bearer_trusts \
             WHERE issuer = $1 AND (subject = $2 OR allow_any_subject = 1) AND expires_at > $3 ORDER BY id"
        ))
        .bind(issuer)
        .bind(subject)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn trust(id: &str, issuer: &str, subject: &str, kid: &str, expires_at: i64) -> TrustRow {
        TrustRow {
            id: id.into(),
            issuer: issuer.into(),
            subject: subject.into(),
            allow_any_subject: subject.is_empty(),
            scope: "[\"read\"]".into(),
            key_id: kid.into(),
            jwk: "{}".into(),
            expires_at,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn trusts_are_unique_listed_found_by_subject_and_expire() {
        for (name, store) in testing::all().await {
            assert!(store.insert_trust(&trust("a", "https://idp", "alice", "k1", 100)).await.unwrap());
            assert!(store.insert_trust(&trust("b", "https://idp", "", "k1", 100)).await.unwrap());
            assert!(store.insert_trust(&trust("c", "https://other", "alice", "k1", 50)).await.unwrap());
            assert!(!store.insert_trust(&trust("d", "https://idp", "alice", "k1", 100)).await.unwrap(), "{name}");
            assert!(!store.insert_trust(&trust("a", "x", "y", "z", 100)).await.unwrap(), "{name}: id taken");

            assert_eq!(store.get_trust("b").await.unwrap().unwrap(), trust("b", "https://idp", "", "k1", 100));
            assert!(store.get_trust("zz").await.unwrap().is_none());

            let ids = |rows: Vec<TrustRow>| rows.into_iter().map(|t| t.id).collect::<Vec<_>>();
            assert_eq!(ids(store.list_trusts("", 2, None).await.unwrap()), ["a", "b"], "{name}");
            assert_eq!(ids(store.list_trusts("b", 2, None).await.unwrap()), ["c"]);
            assert_eq!(ids(store.list_trusts("", 10, Some("https://other")).await.unwrap()), ["c"]);

            assert_eq!(ids(store.trusts_for("https://idp", "alice", 10).await.unwrap()), ["a", "b"], "{name}");
            assert_eq!(ids(store.trusts_for("https://idp", "bob", 10).await.unwrap()), ["b"], "{name}: any subject");
            assert_eq!(ids(store.trusts_for("https://other", "alice", 49).await.unwrap()), ["c"]);
            assert!(store.trusts_for("https://other", "alice", 50).await.unwrap().is_empty(), "{name}: expired");

            assert!(store.delete_trust("a").await.unwrap());
            assert!(!store.delete_trust("a").await.unwrap());
            assert_eq!(ids(store.trusts_for("https://idp", "alice", 10).await.unwrap()), ["b"]);
        }
    }
}
