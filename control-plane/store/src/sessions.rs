//! The `sessions` table. Session tokens are stored as SHA-256 digests only (Kratos
//! stores them in clear). Deactivating a session also records its token digest in
//! `revoked_tokens` until the session would have expired, so every Envoy filter refuses the
//! cookie at once even where a whoami answer is cached.

use serde_json::Value;
use sqlx::Row;

use super::Store;
use crate::error::StoreError;

#[derive(Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub token_hash: String,
    pub identity_id: String,
    pub active: bool,
    pub aal: String,
    pub methods: Value,
    pub devices: Value,
    pub issued_at: i64,
    pub authenticated_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("id", &self.id)
            .field("identity_id", &self.identity_id)
            .field("active", &self.active)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str =
    "id, token_hash, identity_id, active, aal, methods, devices, issued_at, authenticated_at, expires_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<SessionRow, StoreError> {
    let json = |i: usize| -> Result<Value, StoreError> {
        let text: String = row.try_get(i)?;
        serde_json::from_str(&text).map_err(|e| StoreError::corrupt(format!("sessions column {i}"), e))
    };
    Ok(SessionRow {
        id: row.try_get(0)?,
        token_hash: row.try_get(1)?,
        identity_id: row.try_get(2)?,
        active: row.try_get::<i64, _>(3)? != 0,
        aal: row.try_get(4)?,
        methods: json(5)?,
        devices: json(6)?,
        issued_at: row.try_get(7)?,
        authenticated_at: row.try_get(8)?,
        expires_at: row.try_get(9)?,
    })
}

#[derive(Debug, Default, Clone)]
pub struct SessionFilter {
    pub identity_id: Option<String>,
    /// `Some(true)`: active and unexpired at `now`; `Some(false)`: the others.
    pub active: Option<bool>,
    pub now: i64,
}

impl Store {
    pub async fn insert_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        sqlx::query(&format!("INSERT INTO sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
            .bind(&s.id)
            .bind(&s.token_hash)
            .bind(&s.identity_id)
            .bind(i64::from(s.active))
            .bind(&s.aal)
            .bind(s.methods.to_string())
            .bind(s.devices.to_string())
            .bind(s.issued_at)
            .bind(s.authenticated_at)
            .bind(s.expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn get_session_by_token(&self, token_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sessions WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Sessions newest first, after `(issued_at, id)` of the previous page's last one.
    pub async fn list_sessions(
        &self,
        filter: &SessionFilter,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let (ts, id) = before.unwrap_or((i64::MAX, String::new()));
        let mut sql = format!(
            "SELECT {COLUMNS} FROM sessions WHERE (issued_at < $1 OR (issued_at = $1 AND id < $2 AND $2 <> ''))"
        );
        if filter.identity_id.is_some() {
            sql.push_str(" AND identity_id = $5");
        } else {
            sql.push_str(" AND $5 = $5");
        }
        match filter.active {
            Some(true) => sql.push_str(" AND active = 1 AND expires_at > $4"),
            Some(false) => sql.push_str(" AND (active = 0 OR expires_at <= $4)"),
            None => sql.push_str(" AND $4 = $4"),
        }
        sql.push_str(" ORDER BY issued_at DESC, id DESC LIMIT $3");
        let rows = sqlx::query(&sql)
            .bind(ts)
            .bind(id)
            .bind(limit)
            .bind(filter.now)
            .bind(filter.identity_id.clone().unwrap_or_default())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Sets a new expiry (sliding refresh, admin extend); `false` when absent.
    pub async fn set_session_expiry(&self, id: &str, expires_at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE sessions SET expires_at = $2 WHERE id = $1")
            .bind(id)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deactivates the sessions chosen by `which` (one id, or an identity's sessions except
    /// one) and remembers their token digests as revoked; returns how many were active.
    pub async fn deactivate_sessions(&self, which: Deactivate<'_>, now: i64) -> Result<u64, StoreError> {
        let (filter, a, b) = match which {
            Deactivate::One(id) => ("id = $1 AND $2 = $2", id, ""),
            Deactivate::Identity { identity_id, except } => ("identity_id = $1 AND id <> $2", identity_id, except),
        };
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!(
            "INSERT INTO revoked_tokens (signature, expires_at) SELECT token_hash, expires_at FROM sessions \
             WHERE {filter} AND active = 1 AND expires_at > $3 ON CONFLICT DO NOTHING"
        ))
        .bind(a)
        .bind(b)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(&format!("UPDATE sessions SET active = 0 WHERE {filter} AND active = 1 AND $3 = $3"))
            .bind(a)
            .bind(b)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Deletes an identity's sessions outright (Kratos's `DELETE /admin/identities/{id}/sessions`),
    /// remembering the live ones as revoked; returns how many rows went.
    pub async fn delete_identity_sessions(&self, identity_id: &str, now: i64) -> Result<u64, StoreError> {
        self.deactivate_sessions(Deactivate::Identity { identity_id, except: "" }, now).await?;
        let done =
            sqlx::query("DELETE FROM sessions WHERE identity_id = $1").bind(identity_id).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }

    /// How many revocations filters must still be told about at `now`, and when the first of
    /// them expires.
    pub async fn revocation_stats(&self, now: i64) -> Result<(i64, Option<i64>), StoreError> {
        let row = sqlx::query("SELECT COUNT(*), MIN(expires_at) FROM revoked_tokens WHERE expires_at > $1")
            .bind(now)
            .fetch_one(self.pool())
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Drops sessions that expired more than `grace` seconds ago.
    pub async fn purge_expired_sessions(&self, now: i64, grace: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(now - grace).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Deactivate<'a> {
    One(&'a str),
    /// Every session of the identity except `except` (`""`: none excepted).
    Identity {
        identity_id: &'a str,
        except: &'a str,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing;
    use portcullis_model::identity::{Body, Identity, State};

    fn row(id: &str, identity: &str, issued: i64) -> SessionRow {
        SessionRow {
            id: id.into(),
            token_hash: format!("{id:0>64}"),
            identity_id: identity.into(),
            active: true,
            aal: "aal1".into(),
            methods: json!([{"method": "password"}]),
            devices: json!([]),
            issued_at: issued,
            authenticated_at: issued,
            expires_at: issued + 1000,
        }
    }

    #[tokio::test]
    async fn sessions_lookup_revoke_and_list() {
        for (backend, store) in testing::all().await {
            for who in ["alice", "bob"] {
                let i = Identity {
                    id: who.into(),
                    schema_id: "default".into(),
                    state: State::Active,
                    state_changed_at: 0,
                    created_at: 0,
                    updated_at: 0,
                    body: Body::default(),
                };
                store.insert_identity(&i, &[]).await.unwrap().unwrap();
            }
            for (id, who, t) in [("s1", "alice", 10), ("s2", "alice", 20), ("s3", "alice", 30), ("s4", "bob", 40)] {
                store.insert_session(&row(id, who, t)).await.unwrap();
            }
            let s1 = store.get_session_by_token(&row("s1", "alice", 10).token_hash).await.unwrap().unwrap();
            assert_eq!(s1, row("s1", "alice", 10), "{backend}");

            let mine = SessionFilter { identity_id: Some("alice".into()), active: Some(true), now: 15 };
            let page = store.list_sessions(&mine, None, 2).await.unwrap();
            assert_eq!(page.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s3", "s2"], "{backend}");
            let rest = store.list_sessions(&mine, Some((20, "s2".into())), 2).await.unwrap();
            assert_eq!(rest.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s1"], "{backend}");

            let n = store.deactivate_sessions(Deactivate::Identity { identity_id: "alice", except: "s3" }, 15).await;
            assert_eq!(n.unwrap(), 2, "{backend}");
            let revoked = store.revoked_tokens(15).await.unwrap();
            assert_eq!(revoked.len(), 2, "{backend}: the cookies are pushed to filters as revoked");
            assert!(revoked.contains(&s1.token_hash));
            assert_eq!(store.revocation_stats(15).await.unwrap(), (2, Some(1010)), "{backend}");
            assert_eq!(store.revocation_stats(1010).await.unwrap(), (1, Some(1020)), "{backend}: s1 expired");
            assert_eq!(store.revocation_stats(2000).await.unwrap(), (0, None), "{backend}");
            assert_eq!(store.list_sessions(&mine, None, 10).await.unwrap().len(), 1, "{backend}");
            assert_eq!(store.deactivate_sessions(Deactivate::One("s3"), 15).await.unwrap(), 1, "{backend}");
            assert_eq!(store.deactivate_sessions(Deactivate::One("s3"), 15).await.unwrap(), 0, "{backend}");
            assert!(store.set_session_expiry("s4", 5000).await.unwrap());
            assert_eq!(store.get_session("s4").await.unwrap().unwrap().expires_at, 5000);
            assert_eq!(store.delete_identity_sessions("bob", 50).await.unwrap(), 1, "{backend}");
            assert!(store.get_session("s4").await.unwrap().is_none(), "{backend}");
        }
    }
}
