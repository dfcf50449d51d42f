//! The `courier_messages` table: the courier's durable queue. A message moves
//! `queued → processing → sent | abandoned` (or back to `queued` after a failed attempt). The
//! claim is a compare-and-swap on the status, so several replicas may run workers without
//! sending a message twice. This layer stores what it is given; redacting the one-time code
//! and deciding about retries is the courier's job.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

pub const STATUSES: [&str; 4] = ["queued", "processing", "sent", "abandoned"];

#[derive(Clone)]
pub struct CourierMessageRow {
    pub id: String,
    /// `email`.
    pub kind: String,
    pub status: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub template_type: String,
    /// The one-time code inside `body` while it still has to be delivered.
    pub secret: Option<String>,
    pub send_count: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: i64,
    /// JSON array of attempts.
    pub dispatches: String,
    pub created_at: i64,
    pub updated_at: i64,
}

// The body carries a one-time code until delivery: keep both out of logs.
impl std::fmt::Debug for CourierMessageRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CourierMessageRow")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("template_type", &self.template_type)
            .field("send_count", &self.send_count)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Clone)]
pub struct CourierFilter {
    pub status: Option<String>,
    pub recipient: Option<String>,
}

const COLUMNS: &str = "id, type, status, recipient, subject, body, template_type, secret, send_count, last_error, \
                       next_attempt_at, dispatches, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<CourierMessageRow, sqlx::Error> {
    Ok(CourierMessageRow {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        status: row.try_get(2)?,
        recipient: row.try_get(3)?,
        subject: row.try_get(4)?,
        body: row.try_get(5)?,
        template_type: row.try_get(6)?,
        secret: row.try_get(7)?,
        send_count: row.try_get(8)?,
        last_error: row.try_get(9)?,
        next_attempt_at: row.try_get(10)?,
        dispatches: row.try_get(11)?,
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
    })
}

impl Store {
    pub async fn insert_courier_message(&self, m: &CourierMessageRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO courier_messages ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(&m.id)
        .bind(&m.kind)
        .bind(&m.status)
        .bind(&m.recipient)
        .bind(&m.subject)
        .bind(&m.body)
        .bind(&m.template_type)
        .bind(&m.secret)
        .bind(m.send_count)
        .bind(&m.last_error)
        .bind(m.next_attempt_at)
        .bind(&m.dispatches)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn get_courier_message(&self, id: &str) -> Result<Option<CourierMessageRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM courier_messages WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Up to `limit` messages, newest first, strictly after the `(created_at, id)` keyset
    /// position `after` (the last row of the previous page).
    pub async fn list_courier_messages(
        &self,
        filter: &CourierFilter,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<CourierMessageRow>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM courier_messages WHERE 1 = 1");
        let mut n = 0;
        if filter.status.is_some() {
            n += 1;
            sql.push_str(&format!(" AND status = ${n}"));
        }
        if filter.recipient.is_some() {
            n += 1;
            sql.push_str(&format!(" AND recipient = ${n}"));
        }
        if after.is_some() {
            sql.push_str(&format!(" AND (created_at < ${} OR (created_at = ${} AND id < ${}))", n + 1, n + 1, n + 2));
            n += 2;
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT ${}", n + 1));
        let mut query = sqlx::query(&sql);
        if let Some(status) = &filter.status {
            query = query.bind(status);
        }
        if let Some(recipient) = &filter.recipient {
            query = query.bind(recipient);
        }
        if let Some((created_at, id)) = after {
            query = query.bind(created_at).bind(id);
        }
        let rows = query.bind(limit).fetch_all(self.pool()).await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Ids of up to `limit` queued messages whose backoff has passed, oldest first.
    pub async fn due_courier_messages(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM courier_messages WHERE status = 'queued' AND next_attempt_at <= $1 \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
    }

    /// Takes a queued message for delivery; `None` when another worker got it first (or it
    /// is gone). Only the worker that flipped the status may send it.
    pub async fn claim_courier_message(&self, id: &str, now: i64) -> Result<Option<CourierMessageRow>, StoreError> {
        let done = sqlx::query(
            "UPDATE courier_messages SET status = 'processing', updated_at = $2 WHERE id = $1 AND status = 'queued'",
        )
        .bind(id)
        .bind(now)
        .execute(self.pool())
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        self.get_courier_message(id).await
    }

    /// Records the outcome of an attempt on a claimed message (its new status, body, secret,
    /// counters, error, next attempt and dispatches); `Ok(false)` when it was not claimed.
    pub async fn finish_courier_attempt(&self, m: &CourierMessageRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE courier_messages SET status = $2, body = $3, secret = $4, send_count = $5, last_error = $6, \
             next_attempt_at = $7, dispatches = $8, updated_at = $9 WHERE id = $1 AND status = 'processing'",
        )
        .bind(&m.id)
        .bind(&m.status)
        .bind(&m.body)
        .bind(&m.secret)
        .bind(m.send_count)
        .bind(&m.last_error)
        .bind(m.next_attempt_at)
        .bind(&m.dispatches)
        .bind(m.updated_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts back in the queue messages claimed before `claimed_before` whose worker never
    /// reported back (it crashed or was killed mid-send); returns how many.
    pub async fn requeue_stale_courier_messages(&self, claimed_before: i64, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE courier_messages SET status = 'queued', updated_at = $2 \
             WHERE status = 'processing' AND updated_at < $1",
        )
        .bind(claimed_before)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn message(id: &str, recipient: &str, created_at: i64) -> CourierMessageRow {
        CourierMessageRow {
            id: id.into(),
            kind: "email".into(),
            status: "queued".into(),
            recipient: recipient.into(),
            subject: "Your code".into(),
            body: "code 123456".into(),
            template_type: "login_code".into(),
            secret: Some("123456".into()),
            send_count: 0,
            last_error: None,
            next_attempt_at: created_at,
            dispatches: "[]".into(),
            created_at,
            updated_at: created_at,
        }
    }

    #[tokio::test]
    async fn courier_store_claims_once_and_records_outcomes() {
        for (backend, store) in testing::all().await {
            store.insert_courier_message(&message("a", "a@example.com", 10)).await.unwrap();
            store.insert_courier_message(&message("b", "b@example.com", 11)).await.unwrap();
            let mut later = message("c", "a@example.com", 12);
            later.next_attempt_at = 100;
            store.insert_courier_message(&later).await.unwrap();

            // Backoff: `c` is not due yet; oldest first.
            assert_eq!(store.due_courier_messages(50, 10).await.unwrap(), ["a", "b"], "{backend}");
            assert_eq!(store.due_courier_messages(100, 1).await.unwrap(), ["a"], "{backend}");

            // Two workers race for `a`: exactly one wins.
            let won = store.claim_courier_message("a", 20).await.unwrap().expect(backend);
            assert_eq!((won.status.as_str(), won.secret.as_deref()), ("processing", Some("123456")), "{backend}");
            assert!(store.claim_courier_message("a", 20).await.unwrap().is_none(), "{backend}");
            assert!(store.claim_courier_message("missing", 20).await.unwrap().is_none(), "{backend}");
            assert_eq!(store.due_courier_messages(50, 10).await.unwrap(), ["b"], "{backend}");

            let mut sent = won.clone();
            sent.status = "sent".into();
            sent.body = "code ******".into();
            sent.secret = None;
            sent.send_count = 1;
            sent.dispatches = r#"[{"status":"success"}]"#.into();
            sent.updated_at = 21;
            assert!(store.finish_courier_attempt(&sent).await.unwrap(), "{backend}");
            // Only a claimed message can be finished.
            assert!(!store.finish_courier_attempt(&sent).await.unwrap(), "{backend}");
            let got = store.get_courier_message("a").await.unwrap().unwrap();
            assert_eq!(
                (got.status.as_str(), got.body.as_str(), got.secret, got.send_count, got.updated_at),
                ("sent", "code ******", None, 1, 21),
                "{backend}"
            );
            assert_eq!(got.dispatches, r#"[{"status":"success"}]"#, "{backend}");

            // A claim whose worker died goes back to the queue; a fresh one stays.
            store.claim_courier_message("b", 30).await.unwrap().unwrap();
            assert_eq!(store.requeue_stale_courier_messages(30, 40).await.unwrap(), 0, "{backend}");
            assert_eq!(store.requeue_stale_courier_messages(31, 40).await.unwrap(), 1, "{backend}");
            assert_eq!(store.get_courier_message("b").await.unwrap().unwrap().status, "queued", "{backend}");
            assert!(store.get_courier_message("missing").await.unwrap().is_none(), "{backend}");
        }
    }

    #[tokio::test]
    async fn courier_store_lists_newest_first_with_keyset_and_filters() {
        for (backend, store) in testing::all().await {
            // Two share a timestamp, so the id breaks the tie.
            for (id, recipient, at) in
                [("m1", "x@e.com", 1), ("m2", "y@e.com", 2), ("m3", "x@e.com", 2), ("m4", "x@e.com", 3)]
            {
                store.insert_courier_message(&message(id, recipient, at)).await.unwrap();
            }
            store.claim_courier_message("m2", 5).await.unwrap().unwrap();
            let ids = |rows: Vec<CourierMessageRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
            let all = CourierFilter::default();
            assert_eq!(ids(store.list_courier_messages(&all, None, 10).await.unwrap()), ["m4", "m3", "m2", "m1"]);
            let page = store.list_courier_messages(&all, None, 2).await.unwrap();
            let last = page.last().unwrap();
            assert_eq!(
                ids(store.list_courier_messages(&all, Some((last.created_at, &last.id)), 2).await.unwrap()),
                ["m2", "m1"],
                "{backend}"
            );
            let x = CourierFilter { recipient: Some("x@e.com".into()), ..Default::default() };
            assert_eq!(ids(store.list_courier_messages(&x, None, 10).await.unwrap()), ["m4", "m3", "m1"], "{backend}");
            let queued_x = CourierFilter { status: Some("queued".into()), recipient: Some("x@e.com".into()) };
            assert_eq!(
                ids(store.list_courier_messages(&queued_x, Some((3, "m4")), 10).await.unwrap()),
                ["m3", "m1"],
                "{backend}"
            );
            let processing = CourierFilter { status: Some("processing".into()), recipient: None };
            assert_eq!(ids(store.list_courier_messages(&processing, None, 10).await.unwrap()), ["m2"], "{backend}");
            // Store errors are errors, not empty lists.
            store.close().await;
            assert!(store.list_courier_messages(&all, None, 10).await.is_err(), "{backend}");
        }
    }
}
