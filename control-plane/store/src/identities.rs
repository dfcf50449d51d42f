//! The `identities`, `identity_credentials` and `identity_identifiers` tables. An identity and
//! its credentials are written in one transaction; an identifier already used by another
//! identity for the same credential type, or an `external_id` another identity has, is reported
//! as [`Conflict`], never overwritten.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;
use portcullis_model::identity::{Body, Credential, Identity, State};

/// Another identity already answers to this identifier for this credential type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: String,
    pub identifier: String,
}

#[derive(Debug, Default, Clone)]
pub struct IdentityFilter {
    /// Only these ids.
    pub ids: Vec<String>,
    /// Exact match on any credential identifier (Kratos's `credentials_identifier`).
    pub credentials_identifier: Option<String>,
}

const COLUMNS: &str = "id, schema_id, body, state, state_changed_at, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Identity, StoreError> {
    let body: String = row.try_get(2)?;
    let state: String = row.try_get(3)?;
    Ok(Identity {
        id: row.try_get(0)?,
        schema_id: row.try_get(1)?,
        body: serde_json::from_str::<Body>(&body).map_err(|e| StoreError::corrupt("identities.body", e))?,
        state: State::parse(&state).unwrap_or(State::Inactive),
        state_changed_at: row.try_get(4)?,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
    })
}

fn body_json(i: &Identity) -> Result<String, StoreError> {
    serde_json::to_string(&i.body).map_err(|e| StoreError::corrupt("identities.body", e))
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Writes `credentials` for `identity_id`, replacing those of the same types; `Err(conflict)`
/// when an identifier belongs to someone else (the caller rolls back).
async fn write_credentials(
    tx: &mut Tx<'_>,
    identity_id: &str,
    credentials: &[Credential],
) -> Result<Result<(), Conflict>, StoreError> {
    for c in credentials {
        let config =
            serde_json::to_string(&c.config).map_err(|e| StoreError::corrupt("identity_credentials.config", e))?;
        sqlx::query("DELETE FROM identity_credentials WHERE identity_id = $1 AND type = $2")
            .bind(identity_id)
            .bind(&c.kind)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM identity_identifiers WHERE identity_id = $1 AND type = $2")
            .bind(identity_id)
            .bind(&c.kind)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO identity_credentials (identity_id, type, config, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(identity_id)
        .bind(&c.kind)
        .bind(&config)
        .bind(c.version)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&mut **tx)
        .await?;
        for identifier in &c.identifiers {
            let done = sqlx::query(
                "INSERT INTO identity_identifiers (type, identifier, identity_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (type, identifier) DO NOTHING",
            )
            .bind(&c.kind)
            .bind(identifier)
            .bind(identity_id)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(Err(Conflict { kind: c.kind.clone(), identifier: identifier.clone() }));
            }
        }
    }
    Ok(Ok(()))
}

/// The kind of [`Conflict`] for a taken `external_id`.
pub const EXTERNAL_ID: &str = "external_id";

/// Points `identity`'s `external_id` (if any) at it; `Err(conflict)` when another identity has it.
async fn write_external_id(tx: &mut Tx<'_>, identity: &Identity) -> Result<Result<(), Conflict>, StoreError> {
    sqlx::query("DELETE FROM identity_external_ids WHERE identity_id = $1")
        .bind(&identity.id)
        .execute(&mut **tx)
        .await?;
    let Some(external_id) = &identity.body.external_id else { return Ok(Ok(())) };
    let done = sqlx::query(
        "INSERT INTO identity_external_ids (external_id, identity_id) VALUES ($1, $2) ON CONFLICT (external_id) DO NOTHING",
    )
    .bind(external_id)
    .bind(&identity.id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(Err(Conflict { kind: EXTERNAL_ID.into(), identifier: external_id.clone() }));
    }
    Ok(Ok(()))
}

/// The external id and the credentials of `identity`, or the first conflict.
async fn write_unique(
    tx: &mut Tx<'_>,
    identity: &Identity,
    credentials: &[Credential],
) -> Result<Result<(), Conflict>, StoreError> {
    if let Err(conflict) = write_external_id(tx, identity).await? {
        return Ok(Err(conflict));
    }
    write_credentials(tx, &identity.id, credentials).await
}

impl Store {
    pub async fn insert_identity(
        &self,
        identity: &Identity,
        credentials: &[Credential],
    ) -> Result<Result<(), Conflict>, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!("INSERT INTO identities ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(&identity.id)
            .bind(&identity.schema_id)
            .bind(body_json(identity)?)
            .bind(identity.state.as_str())
            .bind(identity.state_changed_at)
            .bind(identity.created_at)
            .bind(identity.updated_at)
            .execute(&mut *tx)
            .await?;
        if let Err(conflict) = write_unique(&mut tx, identity, credentials).await? {
            tx.rollback().await?;
            return Ok(Err(conflict));
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Replaces the identity's fields and the given credential types (others are kept).
    /// `Ok(Ok(false))` when the identity does not exist.
    pub async fn update_identity(
        &self,
        identity: &Identity,
        credentials: &[Credential],
    ) -> Result<Result<bool, Conflict>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE identities SET schema_id = $2, body = $3, state = $4, state_changed_at = $5, updated_at = $6 \
             WHERE id = $1",
        )
        .bind(&identity.id)
        .bind(&identity.schema_id)
        .bind(body_json(identity)?)
        .bind(identity.state.as_str())
        .bind(identity.state_changed_at)
        .bind(identity.updated_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Ok(false));
        }
        if let Err(conflict) = write_unique(&mut tx, identity, credentials).await? {
            tx.rollback().await?;
            return Ok(Err(conflict));
        }
        tx.commit().await?;
        Ok(Ok(true))
    }

    pub async fn delete_credential(&self, identity_id: &str, kind: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM identity_identifiers WHERE identity_id = $1 AND type = $2")
            .bind(identity_id)
            .bind(kind)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM identity_credentials WHERE identity_id = $1 AND type = $2")
            .bind(identity_id)
            .bind(kind)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn get_identity(&self, id: &str) -> Result<Option<Identity>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM identities WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn get_credentials(&self, identity_id: &str) -> Result<Vec<Credential>, StoreError> {
        let rows = sqlx::query(
            "SELECT type, config, version, created_at, updated_at FROM identity_credentials \
             WHERE identity_id = $1 ORDER BY type",
        )
        .bind(identity_id)
        .fetch_all(self.pool())
        .await?;
        let ids =
            sqlx::query("SELECT type, identifier FROM identity_identifiers WHERE identity_id = $1 ORDER BY identifier")
                .bind(identity_id)
                .fetch_all(self.pool())
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get(0)?;
            let config: String = row.try_get(1)?;
            let mut identifiers = Vec::new();
            for r in &ids {
                let t: String = r.try_get(0)?;
                if t == kind {
                    identifiers.push(r.try_get(1)?);
                }
            }
            out.push(Credential {
                kind,
                identifiers,
                config: serde_json::from_str(&config)
                    .map_err(|e| StoreError::corrupt("identity_credentials.config", e))?,
                version: row.try_get(2)?,
                created_at: row.try_get(3)?,
                updated_at: row.try_get(4)?,
            });
        }
        Ok(out)
    }

    pub async fn get_credential(&self, identity_id: &str, kind: &str) -> Result<Option<Credential>, StoreError> {
        Ok(self.get_credentials(identity_id).await?.into_iter().find(|c| c.kind == kind))
    }

    /// The identity answering to `identifier` for credential type `kind`.
    pub async fn find_identity_by_identifier(
        &self,
        kind: &str,
        identifier: &str,
    ) -> Result<Option<Identity>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM identities i JOIN identity_identifiers x ON x.identity_id = i.id \
             WHERE x.type = $1 AND x.identifier = $2",
            COLUMNS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(kind)
        .bind(identifier)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Deletes the identity, its credentials and its sessions; `false` when absent.
    pub async fn delete_identity(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        for table in ["identity_identifiers", "identity_credentials", "sessions"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE identity_id = $1")).bind(id).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM identities WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// A page of identities in creation order, starting after `after` (`(created_at, id)`
    /// of the last identity of the previous page); at most `limit`.
    pub async fn list_identities(
        &self,
        filter: &IdentityFilter,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Identity>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM identities WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let (after_ts, after_id) = after.unwrap_or((i64::MIN, String::new()));
        sql.push_str(&format!(" AND (created_at > ${} OR (created_at = ${} AND id > ${}))", next(), next(), next()));
        if filter.credentials_identifier.is_some() {
            sql.push_str(&format!(
                " AND id IN (SELECT identity_id FROM identity_identifiers WHERE identifier = ${})",
                next()
            ));
        }
        if !filter.ids.is_empty() {
            let marks: Vec<String> = filter.ids.iter().map(|_| format!("${}", next())).collect();
            sql.push_str(&format!(" AND id IN ({})", marks.join(", ")));
        }
        sql.push_str(&format!(" ORDER BY created_at, id LIMIT ${}", next()));
        let mut q = sqlx::query(&sql).bind(after_ts).bind(after_ts).bind(after_id);
        if let Some(i) = &filter.credentials_identifier {
            q = q.bind(i.clone());
        }
        for id in &filter.ids {
            q = q.bind(id.clone());
        }
        let rows = q.bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(from_row).collect()
    }

    /// Takes one attempt from `bucket`'s allowance for the window running at `now` (a new
    /// window starts when the last one is `window` seconds old) and returns the attempts taken
    /// in it, this one included, and when the window started. One atomic statement: requests
    /// racing for the same bucket each see a different count, on SQLite and on PostgreSQL
    /// shared by several replicas alike, so the check happens before the work it guards.
    pub async fn reserve_attempt(&self, bucket: &str, now: i64, window: i64) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "INSERT INTO login_attempts (bucket, failures, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (bucket) DO UPDATE SET \
             failures = CASE WHEN login_attempts.window_start > $2 - $3 THEN login_attempts.failures + 1 ELSE 1 END, \
             window_start = CASE WHEN login_attempts.window_start > $2 - $3 THEN login_attempts.window_start ELSE $2 END \
             RETURNING failures, window_start",
        )
        .bind(bucket)
        .bind(now)
        .bind(window)
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Gives back one attempt taken by [`Store::reserve_attempt`] (it turned out not to count).
    pub async fn release_attempt(&self, bucket: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE login_attempts SET failures = failures - 1 WHERE bucket = $1 AND failures > 0")
            .bind(bucket)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forgets buckets whose window started before `before` (they count nothing any more).
    pub async fn purge_attempts(&self, before: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM login_attempts WHERE window_start < $1").bind(before).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }

    pub async fn clear_failures(&self, bucket: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_attempts WHERE bucket = $1").bind(bucket).execute(self.pool()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing;

    fn identity(id: &str, email: &str, t: i64) -> Identity {
        Identity {
            id: id.into(),
            schema_id: "default".into(),
            state: State::Active,
            state_changed_at: t,
            created_at: t,
            updated_at: t,
            body: Body { traits: json!({"email": email}), ..Body::default() },
        }
    }

    fn password(identifier: &str, t: i64) -> Credential {
        Credential {
            kind: "password".into(),
            identifiers: vec![identifier.into()],
            config: json!({"hashed_password": "$argon2id$x"}),
            version: 0,
            created_at: t,
            updated_at: t,
        }
    }

    #[tokio::test]
    async fn identities_credentials_conflicts_and_pages() {
        for (backend, store) in testing::all().await {
            let a = identity("a", "a@example.com", 10);
            store.insert_identity(&a, &[password("a@example.com", 10)]).await.unwrap().unwrap();
            let b = identity("b", "a@example.com", 11);
            let conflict = store.insert_identity(&b, &[password("a@example.com", 11)]).await.unwrap().unwrap_err();
            assert_eq!(conflict.identifier, "a@example.com", "{backend}");
            assert!(store.get_identity("b").await.unwrap().is_none(), "{backend}: a conflict leaves nothing behind");
            store.insert_identity(&b, &[password("b@example.com", 11)]).await.unwrap().unwrap();
            let found = store.find_identity_by_identifier("password", "b@example.com").await.unwrap().unwrap();
            assert_eq!(found, b, "{backend}");
            let creds = store.get_credentials("a").await.unwrap();
            assert_eq!(creds[0].identifiers, ["a@example.com"], "{backend}");
            assert_eq!(creds[0].config["hashed_password"], "$argon2id$x", "{backend}");

            let c = identity("c", "c@example.com", 12);
            store.insert_identity(&c, &[]).await.unwrap().unwrap();
            let page1 = store.list_identities(&IdentityFilter::default(), None, 2).await.unwrap();
            assert_eq!(page1.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b"], "{backend}");
            let page2 = store.list_identities(&IdentityFilter::default(), Some((11, "b".into())), 2).await.unwrap();
            assert_eq!(page2.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["c"], "{backend}");
            let by_identifier =
                IdentityFilter { credentials_identifier: Some("b@example.com".into()), ..Default::default() };
            assert_eq!(
                store.list_identities(&by_identifier, None, 10).await.unwrap(),
                std::slice::from_ref(&b),
                "{backend}"
            );
            let by_ids = IdentityFilter { ids: vec!["a".into(), "c".into()], ..Default::default() };
            assert_eq!(store.list_identities(&by_ids, None, 10).await.unwrap().len(), 2, "{backend}");

            let mut b2 = b.clone();
            b2.body.traits = json!({"email": "a@example.com"});
            let conflict = store.update_identity(&b2, &[password("a@example.com", 13)]).await.unwrap().unwrap_err();
            assert_eq!(conflict.kind, "password", "{backend}");
            assert_eq!(
                store.get_identity("b").await.unwrap().unwrap(),
                b,
                "{backend}: the failed update changed nothing"
            );

            assert!(store.delete_identity("a").await.unwrap(), "{backend}");
            assert!(store.find_identity_by_identifier("password", "a@example.com").await.unwrap().is_none());
            assert!(!store.delete_identity("a").await.unwrap(), "{backend}");
        }
    }

    #[tokio::test]
    async fn attempt_windows() {
        for (backend, store) in testing::all().await {
            assert_eq!(store.reserve_attempt("id:x", 100, 60).await.unwrap(), (1, 100), "{backend}");
            assert_eq!(store.reserve_attempt("id:x", 110, 60).await.unwrap(), (2, 100), "{backend}");
            store.release_attempt("id:x").await.unwrap();
            assert_eq!(
                store.reserve_attempt("id:x", 150, 60).await.unwrap(),
                (2, 100),
                "{backend}: one was given back"
            );
            assert_eq!(store.reserve_attempt("id:x", 161, 60).await.unwrap(), (1, 161), "{backend}: a new window");
            store.clear_failures("id:x").await.unwrap();
            assert_eq!(store.reserve_attempt("id:x", 162, 60).await.unwrap(), (1, 162), "{backend}");
            assert_eq!(store.purge_attempts(162).await.unwrap(), 0, "{backend}");
            assert_eq!(store.purge_attempts(163).await.unwrap(), 1, "{backend}");
        }
    }

    #[tokio::test]
    async fn racing_reservations_each_get_their_own_count() {
        for (backend, store) in testing::all().await {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..20 {
                let store = store.clone();
                set.spawn(async move { store.reserve_attempt("id:race", 100, 60).await.unwrap().0 });
            }
            let mut counts = Vec::new();
            while let Some(n) = set.join_next().await {
                counts.push(n.unwrap());
            }
            counts.sort_unstable();
            assert_eq!(counts, (1..=20).collect::<Vec<_>>(), "{backend}");
        }
    }
}
