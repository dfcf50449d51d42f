//! The courier (Kratos's): a durable e-mail queue in the `courier_messages` table and a worker
//! that delivers it over SMTP with lettre. `enqueue` stores a message and wakes the worker; the
//! worker claims messages by compare-and-swap (safe with several replicas), sends them, and
//! retries failures with backoff until `courier.message_retries`, then abandons them. A failing
//! message never holds up the others, and the one-time code in a body is masked in the stored
//! copy once the message is done. Without `courier.smtp.connection_uri` nothing leaves the
//! process: in `--dev` messages are logged, kept in a small in-memory outbox served at
//! `/dev/outbox` and marked `sent`; outside `--dev` they are `abandoned` with the reason, since
//! nobody received them. This module must not render templates or decide what to send; callers do.

pub mod admin;
pub mod config;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub use self::config::{CourierConfig, SmtpSettings, TlsMode};
use portcullis_model::clock::Clock;
use portcullis_store::Store;
use portcullis_store::StoreError;
use portcullis_store::courier::CourierMessageRow;

use crate::config::SelfService;

/// What replaces the one-time code in stored bodies once it is no longer needed.
pub const MASK: &str = "******";
/// How many handled messages the in-memory outbox keeps.
const OUTBOX_CAPACITY: usize = 100;
/// A claim older than this belongs to a dead worker: longer than any send can take
/// (`SEND_TIMEOUT` per SMTP step), so a live worker's message is never sent twice.
const CLAIM_TIMEOUT_SECS: i64 = 300;
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between two attempts of one message.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// A message to queue. The body is plain text, already rendered.
pub struct NewMessage {
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub template_type: String,
    /// the one-time code in the body; replaced by "******" in the stored body once delivered or abandoned
    pub secret: Option<String>,
}

// The body carries the code.
impl std::fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage").field("template_type", &self.template_type).finish_non_exhaustive()
    }
}

/// A message the worker handled without SMTP (or in `--dev`), as `/dev/outbox` shows it. The
/// body is unmasked: reading the code is what the outbox is for.
#[derive(Clone)]
pub struct OutboxEntry {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub template_type: String,
    /// When it was handled (unix seconds).
    pub sent_at: i64,
}

impl std::fmt::Debug for OutboxEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxEntry").field("id", &self.id).field("sent_at", &self.sent_at).finish_non_exhaustive()
    }
}

pub struct Courier {
    /// `None`: no SMTP configured, messages are only logged. `Some(Err)`: configured but
    /// unusable (load-time validation makes this unreachable); every send then fails.
    smtp: Option<Result<SmtpSettings, String>>,
    from: Result<Mailbox, String>,
    retries: u32,
    pull_wait: Duration,
    pull_count: i64,
    dev: bool,
    wake: Notify,
    outbox: Mutex<VecDeque<OutboxEntry>>,
}

impl std::fmt::Debug for Courier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Courier")
            .field("smtp", &self.smtp)
            .field("from", &self.from.as_ref().map(ToString::to_string))
            .field("retries", &self.retries)
            .field("pull_wait", &self.pull_wait)
            .field("dev", &self.dev)
            .field("outbox", &lock(&self.outbox).len())
            .finish_non_exhaustive()
    }
}

/// The `last_error` of a message abandoned because there is no SMTP server to send it to.
const NOT_CONFIGURED: &str = "courier.smtp.connection_uri is not set: the message was not sent to anyone";

/// The startup warning for a server that will e-mail codes with nowhere to send them (outside
/// `--dev`, where the outbox page shows them): which enabled features send mail.
pub fn undeliverable_warning(courier: &CourierConfig, s: &SelfService, dev: bool) -> Option<String> {
    if dev || courier.smtp.connection_uri.is_some() {
        return None;
    }
    let senders: Vec<&str> = [
        (s.methods.code.passwordless_enabled, "selfservice.methods.code"),
        (s.flows.recovery.enabled, "selfservice.flows.recovery"),
        (s.flows.verification.enabled, "selfservice.flows.verification"),
    ]
    .into_iter()
    .filter_map(|(on, key)| on.then_some(key))
    .collect();
    (!senders.is_empty()).then(|| {
        format!(
            "courier.smtp.connection_uri is not set but {} send e-mail: every message will be abandoned and nobody \
             will receive a code; set courier.smtp.connection_uri or turn those off",
            senders.join(", ")
        )
    })
}

/// Why an attempt failed, and whether trying again could help.
struct SendError {
    permanent: bool,
    message: String,
}

impl SendError {
    fn permanent(message: impl Into<String>) -> Self {
        Self { permanent: true, message: message.into() }
    }
}

type Transport = AsyncSmtpTransport<Tokio1Executor>;

impl Courier {
    pub fn new(config: &CourierConfig, dev: bool) -> Self {
        let smtp =
            config.smtp.connection_uri.as_deref().map(|uri| {
                SmtpSettings::parse(uri).map_err(|e| format!("courier.smtp.connection_uri is unusable: {e}"))
            });
        let from = config
            .smtp
            .from_address
            .parse::<lettre::Address>()
            .map(|address| Mailbox::new(config.smtp.from_name.clone(), address))
            .map_err(|e| format!("courier.smtp.from_address is not an e-mail address: {e}"));
        Self {
            smtp,
            from,
            retries: config.message_retries,
            pull_wait: config.worker.pull_wait,
            pull_count: i64::from(config.worker.pull_count.max(1)),
            dev,
            wake: Notify::new(),
            outbox: Mutex::new(VecDeque::new()),
        }
    }

    /// Queues durably (status queued) and wakes the worker at once; returns the message id.
    pub async fn enqueue(&self, store: &Store, now: i64, message: NewMessage) -> Result<String, StoreError> {
        let id = portcullis_model::crypto::uuid_v4();
        let row = CourierMessageRow {
            id: id.clone(),
            kind: "email".into(),
            status: "queued".into(),
            recipient: message.recipient,
            subject: message.subject,
            body: message.body,
            template_type: message.template_type,
            secret: message.secret.filter(|s| !s.is_empty()),
            send_count: 0,
            last_error: None,
            next_attempt_at: now,
            dispatches: "[]".into(),
            created_at: now,
            updated_at: now,
        };
        store.insert_courier_message(&row).await?;
        // A stored permit if the worker is busy: it looks again as soon as it is done.
        self.wake.notify_one();
        Ok(id)
    }

    /// Whether messages leave the process (SMTP configured).
    pub fn delivers(&self) -> bool {
        self.smtp.is_some()
    }

    /// The messages handled without SMTP (and in `--dev`, all of them), newest first; at most
    /// the last 100, lost on restart.
    pub fn outbox(&self) -> Vec<OutboxEntry> {
        lock(&self.outbox).iter().rev().cloned().collect()
    }

    pub fn spawn_worker(self: Arc<Self>, store: Store, clock: Arc<dyn Clock>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            // Built here, not in `new`: lettre's connection pool needs a running runtime.
            let transport = match &self.smtp {
                None => {
                    if self.dev {
                        tracing::info!(
                            "courier.smtp.connection_uri is not set: e-mails are logged (dev only) and shown at /dev/outbox, not sent"
                        );
                    } else {
                        tracing::warn!(
                            "courier.smtp.connection_uri is not set: e-mails are abandoned, not delivered to anyone"
                        );
                    }
                    None
                }
                Some(Ok(settings)) => Some(build_transport(settings)),
                Some(Err(e)) => Some(Err(e.clone())),
            };
            if let Some(Err(e)) = &transport {
                tracing::error!(error = %e, "courier: cannot send e-mail; every message will be abandoned");
            }
            let mut last_sweep = i64::MIN;
            loop {
                let now = clock.now();
                if now.saturating_sub(last_sweep) >= 60 {
                    last_sweep = now;
                    match store.requeue_stale_courier_messages(now - CLAIM_TIMEOUT_SECS, now).await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::warn!(messages = n, "courier: re-queued messages a stopped worker had claimed")
                        }
                        Err(e) => tracing::warn!(error = %e, "courier: could not re-queue stale claims"),
                    }
                }
                let handled = self.run_once(&store, clock.as_ref(), transport.as_ref()).await;
                // A full batch means more may be waiting: go on without sleeping.
                if handled < self.pull_count {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.pull_wait) => {}
                    }
                }
            }
        })
    }

    /// One poll: claims and delivers the due messages; returns how many were due.
    async fn run_once(&self, store: &Store, clock: &dyn Clock, transport: Option<&Result<Transport, String>>) -> i64 {
        let due = match store.due_courier_messages(clock.now(), self.pull_count).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "courier: could not read the queue");
                return 0;
            }
        };
        let count = due.len() as i64;
        for id in due {
            match store.claim_courier_message(&id, clock.now()).await {
                Ok(Some(row)) => self.deliver(store, clock, transport, row).await,
                // Another worker has it.
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, message_id = %id, "courier: could not claim a message"),
            }
        }
        count
    }

    async fn deliver(
        &self,
        store: &Store,
        clock: &dyn Clock,
        transport: Option<&Result<Transport, String>>,
        mut row: CourierMessageRow,
    ) {
        let result = match transport {
            None if self.dev => {
                self.log_instead(&row);
                Ok(())
            }
            // Marking it `sent` would tell the admin API (and whoever debugs a missing code)
            // that someone received it.
            None => {
                self.log_instead(&row);
                Err(SendError::permanent(NOT_CONFIGURED))
            }
            Some(Err(e)) => Err(SendError::permanent(e.clone())),
            Some(Ok(transport)) => self.send(transport, &row).await,
        };
        let now = clock.now();
        if result.is_ok() && (self.dev || transport.is_none()) {
            let mut outbox = lock(&self.outbox);
            if outbox.len() == OUTBOX_CAPACITY {
                outbox.pop_front();
            }
            outbox.push_back(OutboxEntry {
                id: row.id.clone(),
                recipient: row.recipient.clone(),
                subject: row.subject.clone(),
                body: row.body.clone(),
                template_type: row.template_type.clone(),
                sent_at: now,
            });
        }
        row.send_count += 1;
        row.updated_at = now;
        let error = result.as_ref().err().map(|e| e.message.clone());
        append_dispatch(&mut row, error.as_deref(), now);
        match result {
            Ok(()) => {
                row.status = "sent".into();
                row.last_error = None;
                mask(&mut row);
            }
            Err(e) if e.permanent || row.send_count > i64::from(self.retries) => {
                tracing::warn!(
                    message_id = %row.id, attempts = row.send_count, error = %e.message,
                    "courier: message abandoned"
                );
                row.status = "abandoned".into();
                row.last_error = Some(e.message);
                mask(&mut row);
            }
            Err(e) => {
                tracing::info!(
                    message_id = %row.id, attempts = row.send_count, error = %e.message,
                    "courier: delivery failed, will retry"
                );
                row.status = "queued".into();
                row.last_error = Some(e.message);
                row.next_attempt_at = now.saturating_add(backoff(self.pull_wait, row.send_count).as_secs() as i64);
            }
        }
        match store.finish_courier_attempt(&row).await {
            Ok(true) => {}
            // Only a stale-claim sweep takes a claim away, and only after CLAIM_TIMEOUT_SECS.
            Ok(false) => tracing::warn!(message_id = %row.id, "courier: message was re-queued while being sent"),
            // It stays `processing` and the stale-claim sweep puts it back in the queue.
            Err(e) => tracing::warn!(error = %e, message_id = %row.id, "courier: could not record a delivery"),
        }
    }

    fn log_instead(&self, row: &CourierMessageRow) {
        if self.dev {
            tracing::info!(
                message_id = %row.id, recipient = %row.recipient, subject = %row.subject, body = %row.body,
                "courier (dev only: --dev and no courier.smtp.connection_uri): e-mail logged instead of sent"
            );
        } else {
            // The body holds a one-time code: outside --dev it stays out of the log.
            tracing::warn!(
                message_id = %row.id, recipient = %row.recipient, subject = %row.subject,
                "courier: no courier.smtp.connection_uri, e-mail abandoned (body withheld; --dev logs it)"
            );
        }
    }

    async fn send(&self, transport: &Transport, row: &CourierMessageRow) -> Result<(), SendError> {
        let from = self.from.clone().map_err(SendError::permanent)?;
        let to = row
            .recipient
            .parse::<Mailbox>()
            .map_err(|e| SendError::permanent(format!("the recipient is not an e-mail address: {e}")))?;
        // The message id as Message-ID ties a delivered e-mail to its queue row, and lets a
        // receiving server spot the duplicate if a retry follows a lost "250 OK".
        let message_id = format!("<{}@{}>", row.id, from.email.domain());
        let message = Message::builder()
            .message_id(Some(message_id))
            .from(from)
            .to(to)
            .subject(row.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(row.body.clone())
            .map_err(|e| SendError::permanent(format!("cannot build the e-mail: {e}")))?;
        match transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError { permanent: e.is_permanent(), message: e.to_string() }),
        }
    }
}

fn build_transport(s: &SmtpSettings) -> Result<Transport, String> {
    let tls = |name: &str| {
        TlsParameters::builder(name.to_owned())
            .dangerous_accept_invalid_certs(s.skip_ssl_verify)
            .dangerous_accept_invalid_hostnames(s.skip_ssl_verify)
            .build_rustls()
            .map_err(|e| format!("courier.smtp.connection_uri: TLS set-up failed: {e}"))
    };
    let tls = match s.tls {
        // Required, not opportunistic: Kratos's `smtp://` refuses to send in clear.
        TlsMode::StartTls => Tls::Required(tls(&s.server_name)?),
        TlsMode::Implicit => Tls::Wrapper(tls(&s.server_name)?),
        TlsMode::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(tls)
        .timeout(Some(SEND_TIMEOUT));
    if let Some((user, password)) = &s.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// The wait after the `attempts`-th failure: `pull_wait × 4^(attempts−1)`, at most
/// [`MAX_BACKOFF`]; with the default 1s, retries come after 1s, 4s, 16s, 64s, 256s.
fn backoff(pull_wait: Duration, attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(16);
    pull_wait.saturating_mul(4u32.saturating_pow(exponent)).min(MAX_BACKOFF)
}

/// Masks the code in the stored copy and forgets it.
fn mask(row: &mut CourierMessageRow) {
    if let Some(secret) = row.secret.take() {
        row.body = row.body.replace(&secret, MASK);
        row.subject = row.subject.replace(&secret, MASK);
    }
}

/// Adds one attempt in Kratos's dispatch shape.
fn append_dispatch(row: &mut CourierMessageRow, error: Option<&str>, now: i64) {
    let mut dispatches: Vec<Value> = serde_json::from_str(&row.dispatches).unwrap_or_default();
    let at = portcullis_model::rfc3339(now);
    let mut dispatch = json!({
        "id": portcullis_model::crypto::uuid_v4(),
        "message_id": row.id,
        "status": if error.is_some() { "failed" } else { "success" },
        "created_at": at,
        "updated_at": at,
    });
    if let Some(error) = error {
        dispatch["error"] = json!({"message": error});
    }
    dispatches.push(dispatch);
    row.dispatches = Value::Array(dispatches).to_string();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_model::clock::SystemClock;
    use portcullis_testkit::{SmtpSink, six_digit_code};

    fn config(uri: Option<String>, retries: u32) -> CourierConfig {
        let mut c = CourierConfig::default();
        c.smtp.connection_uri = uri;
        c.smtp.from_name = Some("Portcullis".into());
        c.message_retries = retries;
        c.worker.pull_wait = Duration::from_millis(20);
        c
    }

    fn code_message(to: &str, code: &str) -> NewMessage {
        NewMessage {
            recipient: to.into(),
            subject: "Your login code".into(),
            body: format!("Your login code is {code}.\nIt expires in 15 minutes.\n"),
            template_type: "login_code".into(),
            secret: Some(code.into()),
        }
    }

    async fn wait_status(store: &Store, id: &str, status: &str) -> CourierMessageRow {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let row = store.get_courier_message(id).await.unwrap().unwrap();
            if row.status == status {
                return row;
            }
            assert!(tokio::time::Instant::now() < deadline, "{id} stayed {} (wanted {status})", row.status);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn courier_delivers_over_smtp_and_masks_the_stored_code() {
        for (backend, store) in portcullis_store::testing::all().await {
            eprintln!("backend: {backend}");
            let sink = SmtpSink::start().await;
            // A long poll interval: only the wake-up from enqueue can make this quick.
            let mut c = config(Some(sink.connection_uri()), 5);
            c.worker.pull_wait = Duration::from_secs(30);
            let courier = Arc::new(Courier::new(&c, false));
            let worker = courier.clone().spawn_worker(store.clone(), Arc::new(SystemClock));
            tokio::time::sleep(Duration::from_millis(50)).await;

            let id =
                courier.enqueue(&store, SystemClock.now(), code_message("alice@example.com", "482913")).await.unwrap();
            let mail = sink.wait_for("alice@example.com", Duration::from_secs(5)).await.expect("e-mail delivered");
            assert_eq!(six_digit_code(&mail.text).as_deref(), Some("482913"));
            assert_eq!(mail.subject, "Your login code");
            assert_eq!(mail.from, "no-reply@portcullis.local");
            assert!(mail.header("from").unwrap().contains("Portcullis"), "{}", mail.data);
            assert_eq!(mail.header("message-id").unwrap(), format!("<{id}@portcullis.local>"));

            let row = wait_status(&store, &id, "sent").await;
            assert_eq!(row.send_count, 1);
            assert_eq!(row.body, "Your login code is ******.\nIt expires in 15 minutes.\n");
            assert!(row.secret.is_none());
            let dispatches: Value = serde_json::from_str(&row.dispatches).unwrap();
            assert_eq!(dispatches[0]["status"], "success");
            assert_eq!(dispatches[0]["message_id"], id.as_str());
            // Through SMTP, outside --dev, nothing is kept in memory.
            assert!(courier.outbox().is_empty());
            assert!(!format!("{courier:?}").contains("482913"));
            worker.abort();
        }
    }

    #[tokio::test]
    async fn courier_retries_then_abandons_when_smtp_is_down() {
        // A port nobody listens on: every attempt is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let store = portcullis_store::testing::sqlite().await;
        let uri = format!("smtp://127.0.0.1:{port}/?disable_starttls=true");
        let courier = Arc::new(Courier::new(&config(Some(uri), 2), false));
        let worker = courier.clone().spawn_worker(store.clone(), Arc::new(SystemClock));

        let id = courier.enqueue(&store, SystemClock.now(), code_message("bob@example.com", "111222")).await.unwrap();
        let row = wait_status(&store, &id, "abandoned").await;
        assert_eq!(row.send_count, 3, "one attempt plus message_retries");
        assert!(row.last_error.as_deref().is_some_and(|e| !e.is_empty()));
        assert_eq!(row.body, "Your login code is ******.\nIt expires in 15 minutes.\n");
        let dispatches: Vec<Value> = serde_json::from_str(&row.dispatches).unwrap();
        assert_eq!(dispatches.len(), 3);
        assert!(dispatches.iter().all(|d| d["status"] == "failed" && d["error"]["message"].is_string()));
        worker.abort();
    }

    #[tokio::test]
    async fn courier_without_smtp_in_dev_keeps_an_outbox_and_marks_sent() {
        let store = portcullis_store::testing::sqlite().await;
        let courier = Arc::new(Courier::new(&config(None, 5), true));
        assert!(!courier.delivers());
        let worker = courier.clone().spawn_worker(store.clone(), Arc::new(SystemClock));
        let mut ids = Vec::new();
        for n in 0..3 {
            let code = format!("00000{n}");
            ids.push(courier.enqueue(&store, SystemClock.now(), code_message("dev@example.com", &code)).await.unwrap());
        }
        for id in &ids {
            let row = wait_status(&store, id, "sent").await;
            assert!(row.body.contains(MASK));
        }
        let outbox = courier.outbox();
        assert_eq!(outbox.len(), 3);
        // Newest first, unmasked: reading the code is what the dev outbox is for.
        assert_eq!(outbox[0].id, ids[2]);
        assert!(outbox[0].body.contains("000002"));
        worker.abort();
    }

    #[tokio::test]
    async fn courier_without_smtp_outside_dev_abandons_with_the_reason() {
        let store = portcullis_store::testing::sqlite().await;
        let courier = Arc::new(Courier::new(&config(None, 5), false));
        let worker = courier.clone().spawn_worker(store.clone(), Arc::new(SystemClock));
        let id = courier.enqueue(&store, SystemClock.now(), code_message("ops@example.com", "424242")).await.unwrap();
        let row = wait_status(&store, &id, "abandoned").await;
        assert_eq!(row.send_count, 1, "no retries: nothing will change until the config does");
        assert_eq!(row.last_error.as_deref(), Some(NOT_CONFIGURED));
        assert!(row.body.contains(MASK) && !row.body.contains("424242"));
        assert!(courier.outbox().is_empty(), "no outbox outside --dev");
        worker.abort();
    }

    #[test]
    fn a_server_without_smtp_warns_which_features_send_mail() {
        let mut courier = CourierConfig::default();
        let mut s = SelfService::default();
        let w = undeliverable_warning(&courier, &s, false).expect("the defaults send codes");
        for key in ["selfservice.methods.code", "selfservice.flows.recovery", "selfservice.flows.verification"] {
            assert!(w.contains(key), "{w}");
        }
        s.methods.code.passwordless_enabled = false;
        s.flows.recovery.enabled = false;
        let w = undeliverable_warning(&courier, &s, false).unwrap();
        assert!(!w.contains("methods.code") && w.contains("verification"), "{w}");
        s.flows.verification.enabled = false;
        assert_eq!(undeliverable_warning(&courier, &s, false), None, "nothing sends mail");
        s.flows.verification.enabled = true;
        courier.smtp.connection_uri = Some("smtp://mail.example.com".into());
        assert_eq!(undeliverable_warning(&courier, &s, false), None);
        courier.smtp.connection_uri = None;
        assert_eq!(undeliverable_warning(&courier, &s, true), None, "--dev has the outbox page");
    }

    #[tokio::test]
    async fn courier_abandons_an_unaddressable_recipient_at_once() {
        for (backend, store) in portcullis_store::testing::all().await {
            eprintln!("backend: {backend}");
            let sink = SmtpSink::start().await;
            let courier = Arc::new(Courier::new(&config(Some(sink.connection_uri()), 5), false));
            let worker = courier.clone().spawn_worker(store.clone(), Arc::new(SystemClock));
            let id =
                courier.enqueue(&store, SystemClock.now(), code_message("not an address", "123123")).await.unwrap();
            let row = wait_status(&store, &id, "abandoned").await;
            assert_eq!(row.send_count, 1, "a permanent failure is not retried");
            assert!(row.last_error.unwrap().contains("recipient"));
            // Other messages are not held up by it.
            courier.enqueue(&store, SystemClock.now(), code_message("carol@example.com", "222333")).await.unwrap();
            assert!(sink.wait_for("carol@example.com", Duration::from_secs(5)).await.is_some());
            worker.abort();
        }
    }

    #[tokio::test]
    async fn courier_smtp_scheme_refuses_to_send_without_starttls() {
        // The sink offers no STARTTLS; `smtp://` without `disable_starttls` must not fall back
        // to plain text, as in Kratos.
        let sink = SmtpSink::start().await;
        let store = portcullis_store::testing::sqlite().await;
        let uri = format!("smtp://127.0.0.1:{}/", sink.port());
        let courier = Arc::new(Courier::new(&config(Some(uri), 0), false));
        let worker = courier.clone().spawn_worker(store.clone(), Arc::new(SystemClock));
        let id = courier.enqueue(&store, SystemClock.now(), code_message("dave@example.com", "555666")).await.unwrap();
        let row = wait_status(&store, &id, "abandoned").await;
        assert_eq!(row.send_count, 1);
        assert!(sink.messages().is_empty(), "nothing may be sent in clear");
        worker.abort();
    }

    #[test]
    fn courier_backoff_grows_and_is_capped() {
        let s = Duration::from_secs(1);
        assert_eq!([1, 2, 3, 4, 5].map(|n| backoff(s, n).as_secs()), [1, 4, 16, 64, 256]);
        assert_eq!(backoff(s, 9), MAX_BACKOFF);
        assert_eq!(backoff(s, 1_000_000), MAX_BACKOFF);
    }
}
