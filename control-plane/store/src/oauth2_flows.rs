//! The `oauth2_flows`, `oauth2_login_sessions` and `oauth2_consents` tables. Handles
//! (challenges, verifiers, cookies) arrive here already hashed. A flow changes stage only
//! through [`Store::advance_oauth2_flow`], one conditional UPDATE, so of two concurrent uses of a
//! verifier exactly one wins on SQLite and PostgreSQL. What a stage means is the caller's.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

#[derive(Clone, PartialEq)]
pub struct FlowRow {
    pub id: String,
    pub client_id: String,
    pub stage: String,
    pub login_challenge: String,
    pub login_verifier: Option<String>,
    pub consent_challenge: Option<String>,
    pub consent_verifier: Option<String>,
    pub csrf: String,
    /// JSON of `oauth2::flow::FlowBody`.
    pub body: String,
    pub requested_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for FlowRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowRow")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// Which handle a flow is looked up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handle {
    LoginChallenge,
    LoginVerifier,
    ConsentChallenge,
    ConsentVerifier,
}

impl Handle {
    fn column(self) -> &'static str {
        match self {
            Handle::LoginChallenge => "login_challenge",
            Handle::LoginVerifier => "login_verifier",
            Handle::ConsentChallenge => "consent_challenge",
            Handle::ConsentVerifier => "consent_verifier",
        }
    }
}

const FLOW_COLUMNS: &str = "id, client_id, stage, login_challenge, login_verifier, consent_challenge, \
                            consent_verifier, csrf, body, requested_at, expires_at";

fn flow_from_row(row: &sqlx::any::AnyRow) -> Result<FlowRow, StoreError> {
    Ok(FlowRow {
        id: row.try_get(0)?,
        client_id: row.try_get(1)?,
        stage: row.try_get(2)?,
        login_challenge: row.try_get(3)?,
        login_verifier: row.try_get(4)?,
        consent_challenge: row.try_get(5)?,
        consent_verifier: row.try_get(6)?,
        csrf: row.try_get(7)?,
        body: row.try_get(8)?,
        requested_at: row.try_get(9)?,
        expires_at: row.try_get(10)?,
    })
}

#[derive(Clone, PartialEq)]
pub struct LoginSessionRow {
    pub id: String,
    pub token_hash: String,
    pub subject: String,
    pub remember: bool,
    pub authenticated_at: i64,
    pub expires_at: i64,
    pub identity_provider_session_id: String,
    /// JSON: `{acr, amr}` of the login that created it.
    pub body: String,
}

impl std::fmt::Debug for LoginSessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSessionRow")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("remember", &self.remember)
            .finish_non_exhaustive()
    }
}

const LOGIN_COLUMNS: &str =
    "id, token_hash, subject, remember, authenticated_at, expires_at, identity_provider_session_id, body";

fn login_from_row(row: &sqlx::any::AnyRow) -> Result<LoginSessionRow, StoreError> {
    Ok(LoginSessionRow {
        id: row.try_get(0)?,
        token_hash: row.try_get(1)?,
        subject: row.try_get(2)?,
        remember: row.try_get::<i64, _>(3)? != 0,
        authenticated_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        identity_provider_session_id: row.try_get(6)?,
        body: row.try_get(7)?,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRow {
    pub id: String,
    pub subject: String,
    pub client_id: String,
    pub login_session_id: String,
    pub remember: bool,
    pub handled_at: i64,
    /// 0: never.
    pub expires_at: i64,
    /// JSON of the `oAuth2ConsentSession`.
    pub body: String,
}

const CONSENT_COLUMNS: &str = "id, subject, client_id, login_session_id, remember, handled_at, expires_at, body";

fn consent_from_row(row: &sqlx::any::AnyRow) -> Result<ConsentRow, StoreError> {
    Ok(ConsentRow {
        id: row.try_get(0)?,
        subject: row.try_get(1)?,
        client_id: row.try_get(2)?,
        login_session_id: row.try_get(3)?,
        remember: row.try_get::<i64, _>(4)? != 0,
        handled_at: row.try_get(5)?,
        expires_at: row.try_get(6)?,
        body: row.try_get(7)?,
    })
}

/// A stage change: the handles and body to write when the flow is still in `from`.
#[derive(Debug, Default)]
pub struct Advance<'a> {
    pub login_verifier: Option<&'a str>,
    pub consent_challenge: Option<&'a str>,
    pub consent_verifier: Option<&'a str>,
    pub body: Option<&'a str>,
}

impl Store {
    pub async fn insert_oauth2_flow(&self, f: &FlowRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO oauth2_flows ({FLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&f.id)
        .bind(&f.client_id)
        .bind(&f.stage)
        .bind(&f.login_challenge)
        .bind(&f.login_verifier)
        .bind(&f.consent_challenge)
        .bind(&f.consent_verifier)
        .bind(&f.csrf)
        .bind(&f.body)
        .bind(f.requested_at)
        .bind(f.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn get_oauth2_flow_by(&self, handle: Handle, hash: &str) -> Result<Option<FlowRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {FLOW_COLUMNS} FROM oauth2_flows WHERE {} = $1", handle.column()))
            .bind(hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(flow_from_row).transpose()
    }

    /// Moves flow `id` from stage `from` to `to`, writing what `change` sets; `false` when the
    /// flow is no longer in `from` (someone else moved it first).
    pub async fn advance_oauth2_flow(
        &self,
        id: &str,
        from: &str,
        to: &str,
        change: &Advance<'_>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE oauth2_flows SET stage = $3, \
             login_verifier = COALESCE($4, login_verifier), \
             consent_challenge = COALESCE($5, consent_challenge), \
             consent_verifier = COALESCE($6, consent_verifier), \
             body = COALESCE($7, body) \
             WHERE id = $1 AND stage = $2",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(change.login_verifier)
        .bind(change.consent_challenge)
        .bind(change.consent_verifier)
        .bind(change.body)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn purge_expired_oauth2_flows(&self, now: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM oauth2_flows WHERE expires_at <= $1").bind(now).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }

    /// Inserts the login session, or replaces the one with the same id (a re-login).
    pub async fn upsert_login_session(&self, s: &LoginSessionRow) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM oauth2_login_sessions WHERE id = $1").bind(&s.id).execute(self.pool()).await?;
        sqlx::query(
            "INSERT INTO oauth2_login_sessions (id, token_hash, subject, remember, authenticated_at, expires_at, \
             identity_provider_session_id, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.id)
        .bind(&s.token_hash)
        .bind(&s.subject)
        .bind(i64::from(s.remember))
        .bind(s.authenticated_at)
        .bind(s.expires_at)
        .bind(&s.identity_provider_session_id)
        .bind(&s.body)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn get_login_session_by_token(&self, token_hash: &str) -> Result<Option<LoginSessionRow>, StoreError> {
        if token_hash.is_empty() {
            return Ok(None);
        }
        let row = sqlx::query(&format!("SELECT {LOGIN_COLUMNS} FROM oauth2_login_sessions WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(login_from_row).transpose()
    }

    /// Deletes login sessions by subject or by id; returns how many went.
    pub async fn delete_login_sessions(&self, subject: Option<&str>, sid: Option<&str>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM oauth2_login_sessions WHERE ($1 IS NOT NULL AND subject = $1) OR ($2 IS NOT NULL AND id = $2)",
        )
        .bind(subject)
        .bind(sid)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn insert_consent(&self, c: &ConsentRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO oauth2_consents ({CONSENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&c.id)
        .bind(&c.subject)
        .bind(&c.client_id)
        .bind(&c.login_session_id)
        .bind(i64::from(c.remember))
        .bind(c.handled_at)
        .bind(c.expires_at)
        .bind(&c.body)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A subject's remembered, unexpired consents to `client_id`, newest first.
    pub async fn remembered_consents(
        &self,
        subject: &str,
        client_id: &str,
        now: i64,
    ) -> Result<Vec<ConsentRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONSENT_COLUMNS} FROM oauth2_consents WHERE subject = $1 AND client_id = $2 AND remember = 1 \
             AND (expires_at = 0 OR expires_at > $3) ORDER BY handled_at DESC, id DESC"
        ))
        .bind(subject)
        .bind(client_id)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(consent_from_row).collect()
    }

    /// A page of `subject`'s consents, newest first, after the keyset `after` (`(handled_at, id)`).
    pub async fn list_consents(
        &self,
        subject: &str,
        login_session_id: Option<&str>,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<ConsentRow>, StoreError> {
        let (at, id) = after.unwrap_or((i64::MAX, ""));
        let rows = sqlx::query(&format!(
            "SELECT {CONSENT_COLUMNS} FROM oauth2_consents WHERE subject = $1 \
             AND ($2 IS NULL OR login_session_id = $2) \
             AND (handled_at < $3 OR (handled_at = $3 AND id < $4) OR $5 = 0) \
             ORDER BY handled_at DESC, id DESC LIMIT $6"
        ))
        .bind(subject)
        .bind(login_session_id)
        .bind(at)
        .bind(id)
        .bind(i64::from(after.is_some()))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(consent_from_row).collect()
    }

    /// Deletes `subject`'s consents (to `client_id` only, and only `consent_id`, when given)
    /// and returns their ids.
    pub async fn delete_consents(
        &self,
        subject: &str,
        client_id: Option<&str>,
        consent_id: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM oauth2_consents WHERE subject = $1 AND ($2 IS NULL OR client_id = $2) \
             AND ($3 IS NULL OR id = $3)",
        )
        .bind(subject)
        .bind(client_id)
        .bind(consent_id)
        .fetch_all(self.pool())
        .await?;
        let ids = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?;
        for id in &ids {
            sqlx::query("DELETE FROM oauth2_consents WHERE id = $1").bind(id).execute(self.pool()).await?;
        }
        Ok(ids)
    }
}

/// A logout request (`oauth2_logout_requests`); `body` is JSON of `oauth2::logout::LogoutBody`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutRow {
    pub challenge: String,
    pub verifier: Option<String>,
    pub stage: String,
    pub body: String,
    pub requested_at: i64,
    pub expires_at: i64,
}

impl Store {
    pub async fn insert_logout_request(&self, l: &LogoutRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth2_logout_requests (challenge, verifier, stage, body, requested_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&l.challenge)
        .bind(&l.verifier)
        .bind(&l.stage)
        .bind(&l.body)
        .bind(l.requested_at)
        .bind(l.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// By the challenge's digest, or (`by_verifier`) by the verifier's.
    pub async fn get_logout_request(&self, hash: &str, by_verifier: bool) -> Result<Option<LogoutRow>, StoreError> {
        let column = if by_verifier { "verifier" } else { "challenge" };
        let row = sqlx::query(&format!(
            "SELECT challenge, verifier, stage, body, requested_at, expires_at FROM oauth2_logout_requests \
             WHERE {column} = $1"
        ))
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(LogoutRow {
            challenge: row.try_get(0)?,
            verifier: row.try_get(1)?,
            stage: row.try_get(2)?,
            body: row.try_get(3)?,
            requested_at: row.try_get(4)?,
            expires_at: row.try_get(5)?,
        }))
    }

    /// Moves a logout request from `from` to `to` (setting the verifier digest when given).
    pub async fn advance_logout_request(
        &self,
        challenge: &str,
        from: &str,
        to: &str,
        verifier: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE oauth2_logout_requests SET stage = $3, verifier = COALESCE($4, verifier) \
             WHERE challenge = $1 AND stage = $2",
        )
        .bind(challenge)
        .bind(from)
        .bind(to)
        .bind(verifier)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn get_login_session(&self, id: &str) -> Result<Option<LoginSessionRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {LOGIN_COLUMNS} FROM oauth2_login_sessions WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(login_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn flow() -> FlowRow {
        FlowRow {
            id: "f1".into(),
            client_id: "web".into(),
            stage: "login".into(),
            login_challenge: "lc".into(),
            login_verifier: None,
            consent_challenge: None,
            consent_verifier: None,
            csrf: "csrf".into(),
            body: "{}".into(),
            requested_at: 10,
            expires_at: 100,
        }
    }

    fn consent(id: &str, client: &str, at: i64, remember: bool, expires_at: i64) -> ConsentRow {
        ConsentRow {
            id: id.into(),
            subject: "alice".into(),
            client_id: client.into(),
            login_session_id: "sid".into(),
            remember,
            handled_at: at,
            expires_at,
            body: "{}".into(),
        }
    }

    #[tokio::test]
    async fn flows_advance_once_and_consents_list_and_revoke_on_every_backend() {
        for (backend, store) in testing::all().await {
            store.insert_oauth2_flow(&flow()).await.unwrap();
            assert_eq!(
                store.get_oauth2_flow_by(Handle::LoginChallenge, "lc").await.unwrap(),
                Some(flow()),
                "{backend}"
            );
            let change = Advance { login_verifier: Some("lv"), body: Some("{\"a\":1}"), ..Advance::default() };
            assert!(store.advance_oauth2_flow("f1", "login", "login_accepted", &change).await.unwrap(), "{backend}");
            assert!(
                !store.advance_oauth2_flow("f1", "login", "login_accepted", &change).await.unwrap(),
                "{backend}: once"
            );
            let f = store.get_oauth2_flow_by(Handle::LoginVerifier, "lv").await.unwrap().unwrap();
            assert_eq!((f.stage.as_str(), f.body.as_str()), ("login_accepted", "{\"a\":1}"), "{backend}");
            assert_eq!(f.login_challenge, "lc", "{backend}: COALESCE kept the challenge");
            assert_eq!(store.get_oauth2_flow_by(Handle::ConsentVerifier, "lv").await.unwrap(), None, "{backend}");
            assert_eq!(store.purge_expired_oauth2_flows(100).await.unwrap(), 1, "{backend}");

            let s = LoginSessionRow {
                id: "sid".into(),
                token_hash: "th".into(),
                subject: "alice".into(),
                remember: true,
                authenticated_at: 5,
                expires_at: 50,
                identity_provider_session_id: "kratos-1".into(),
                body: "{}".into(),
            };
            store.upsert_login_session(&s).await.unwrap();
            store.upsert_login_session(&s).await.unwrap();
            assert_eq!(store.get_login_session_by_token("th").await.unwrap(), Some(s.clone()), "{backend}");
            assert_eq!(store.get_login_session_by_token("").await.unwrap(), None, "{backend}");
            assert_eq!(store.get_login_session("sid").await.unwrap(), Some(s.clone()), "{backend}");

            let l = LogoutRow {
                challenge: "ch".into(),
                verifier: None,
                stage: "requested".into(),
                body: "{}".into(),
                requested_at: 1,
                expires_at: 2,
            };
            store.insert_logout_request(&l).await.unwrap();
            assert_eq!(store.get_logout_request("ch", false).await.unwrap(), Some(l), "{backend}");
            assert!(store.advance_logout_request("ch", "requested", "accepted", Some("v")).await.unwrap(), "{backend}");
            assert!(
                !store.advance_logout_request("ch", "requested", "accepted", Some("w")).await.unwrap(),
                "{backend}"
            );
            assert_eq!(store.get_logout_request("v", true).await.unwrap().unwrap().stage, "accepted", "{backend}");
            assert_eq!(store.delete_login_sessions(None, Some("sid")).await.unwrap(), 1, "{backend}");
            assert_eq!(store.delete_login_sessions(Some("alice"), None).await.unwrap(), 0, "{backend}");

            store.insert_consent(&consent("c1", "web", 1, true, 0)).await.unwrap();
            store.insert_consent(&consent("c2", "web", 2, true, 20)).await.unwrap();
            store.insert_consent(&consent("c3", "cli", 3, false, 0)).await.unwrap();
            let ids = |rows: Vec<ConsentRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
            assert_eq!(ids(store.remembered_consents("alice", "web", 10).await.unwrap()), ["c2", "c1"], "{backend}");
            assert_eq!(ids(store.remembered_consents("alice", "web", 20).await.unwrap()), ["c1"], "{backend}: expired");
            assert_eq!(ids(store.list_consents("alice", None, None, 2).await.unwrap()), ["c3", "c2"], "{backend}");
            assert_eq!(ids(store.list_consents("alice", None, Some((2, "c2")), 2).await.unwrap()), ["c1"], "{backend}");
            assert_eq!(store.delete_consents("alice", None, Some("c1")).await.unwrap(), ["c1"], "{backend}");
            assert_eq!(store.delete_consents("bob", None, None).await.unwrap().len(), 0, "{backend}");
            assert_eq!(store.delete_consents("alice", Some("web"), None).await.unwrap(), ["c2"], "{backend}");
            assert_eq!(ids(store.list_consents("alice", Some("sid"), None, 10).await.unwrap()), ["c3"], "{backend}");
        }
    }
}
