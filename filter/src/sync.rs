//! Keeps every worker on the control plane's latest rule snapshot with one long-poll per
//! Envoy, not one per worker. Each worker's root context ticks; the worker holding a lease in
//! shared data long-polls `GET /admin/snapshot` (`If-None-Match` + `wait`), validates what it
//! receives by compiling it, and publishes it to shared data. Every worker notices the small
//! version key change on its next tick and compiles its own copy. A snapshot that does not
//! compile is never published; the control plane being down changes nothing: the last good
//! rules stay in force.

use std::rc::Rc;

use portcullis_shared::snapshot::{CompiledSnapshot, Snapshot};

use crate::config::Config;
use crate::host::{CallResponse, Host, Level};

const VERSION_KEY: &str = "portcullis.snapshot.version";
const BODY_KEY: &str = "portcullis.snapshot.body";
const LEASE_KEY: &str = "portcullis.snapshot.lease";
/// Wait this long after a failed poll before the next one.
const RETRY_AFTER_FAILURE_MS: u64 = 1_000;

pub struct SnapshotSync {
    /// Random per worker: who holds the lease.
    instance: u64,
    current: Option<Rc<CompiledSnapshot>>,
    in_flight: Option<u32>,
    not_before_ms: u64,
}

impl SnapshotSync {
    pub fn new(instance: u64) -> Self {
        Self { instance, current: None, in_flight: None, not_before_ms: 0 }
    }

    /// The rules this worker judges with; `None` until the first snapshot arrives.
    pub fn current(&self) -> Option<Rc<CompiledSnapshot>> {
        self.current.clone()
    }

    pub fn on_tick(&mut self, host: &impl Host, config: &Config) {
        self.adopt_published(host);
        if self.in_flight.is_none() && host.now_ms() >= self.not_before_ms && self.hold_lease(host, config) {
            self.poll(host, config);
        }
    }

    /// Handles the answer to our poll; returns false when the token was not ours.
    pub fn on_call_response(&mut self, host: &impl Host, token: u32, response: CallResponse) -> bool {
        if self.in_flight != Some(token) {
            return false;
        }
        self.in_flight = None;
        match response.status {
            Some(200) => match parse(&response.body) {
                Ok((snapshot, compiled)) => {
                    if self.current.as_ref().map(|c| c.version.as_str()) != Some(snapshot.version.as_str()) {
                        host.log(
                            Level::Info,
                            &format!("rules version {} ({} rules)", snapshot.version, compiled.rules.len()),
                        );
                    }
                    // Body first, then version: a reader that sees the new version finds the body.
                    let _ = host.shared_set(BODY_KEY, &response.body, None);
                    let _ = host.shared_set(VERSION_KEY, snapshot.version.as_bytes(), None);
                    self.current = Some(Rc::new(compiled));
                }
                Err(e) => {
                    host.log(Level::Error, &format!("snapshot rejected, keeping the current rules: {e}"));
                    self.not_before_ms = host.now_ms() + RETRY_AFTER_FAILURE_MS;
                }
            },
            Some(304) => {}
            Some(status) => {
                host.log(Level::Warn, &format!("snapshot poll answered {status}; keeping the current rules"));
                self.not_before_ms = host.now_ms() + RETRY_AFTER_FAILURE_MS;
            }
            None => {
                host.log(Level::Warn, "control plane unreachable; keeping the current rules");
                self.not_before_ms = host.now_ms() + RETRY_AFTER_FAILURE_MS;
            }
        }
        true
    }

    fn adopt_published(&mut self, host: &impl Host) {
        let Some((version, _)) = host.shared_get(VERSION_KEY) else {
            return;
        };
        if self.current.as_ref().is_some_and(|c| c.version.as_bytes() == version.as_slice()) {
            return;
        }
        let Some((body, _)) = host.shared_get(BODY_KEY) else {
            return;
        };
        match parse(&body) {
            Ok((_, compiled)) => self.current = Some(Rc::new(compiled)),
            Err(e) => host.log(Level::Error, &format!("shared snapshot rejected: {e}")),
        }
    }

    /// Takes or renews the poller lease. It outlives one long-poll, so a worker that stops
    /// ticking hands the job over once its lease runs out.
    fn hold_lease(&self, host: &impl Host, config: &Config) -> bool {
        let now = host.now_ms();
        let (holder, deadline, cas) = match host.shared_get(LEASE_KEY) {
            Some((value, cas)) => {
                let text = String::from_utf8_lossy(&value);
                let mut parts = text.splitn(2, ':');
                let holder = parts.next().and_then(|h| h.parse::<u64>().ok());
                let deadline = parts.next().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
                (holder, deadline, cas)
            }
            None => (None, 0, None),
        };
        if holder != Some(self.instance) && deadline > now {
            return false;
        }
        let lease_ms = config.control_plane.poll_wait_seconds * 1_000 + 10_000;
        let value = format!("{}:{}", self.instance, now + lease_ms);
        host.shared_set(LEASE_KEY, value.as_bytes(), cas).is_ok()
    }

    fn poll(&mut self, host: &impl Host, config: &Config) {
        let cp = &config.control_plane;
        let path = format!("{}?wait={}", cp.snapshot_path, cp.poll_wait_seconds);
        let authorization = format!("Bearer {}", cp.token);
        let etag = self.current.as_ref().map(|c| format!("\"{}\"", c.version));
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", cp.authority.as_str()),
            ("authorization", authorization.as_str()),
            ("accept", "application/json"),
        ];
        if let Some(etag) = &etag {
            headers.push(("if-none-match", etag.as_str()));
        }
        let timeout = cp.poll_wait_seconds * 1_000 + 5_000;
        match host.http_call(&cp.cluster, &headers, &[], timeout) {
            Ok(token) => self.in_flight = Some(token),
            Err(e) => {
                host.log(Level::Error, &format!("cannot call cluster {}: {e}", cp.cluster));
                self.not_before_ms = host.now_ms() + RETRY_AFTER_FAILURE_MS;
            }
        }
    }
}

fn parse(body: &[u8]) -> Result<(Snapshot, CompiledSnapshot), String> {
    let snapshot: Snapshot = serde_json::from_slice(body).map_err(|e| format!("unreadable snapshot: {e}"))?;
    let compiled = snapshot.compile().map_err(|e| e.to_string())?;
    Ok((snapshot, compiled))
}

#[cfg(test)]
pub(crate) fn snapshot_json(version: &str, rules: serde_json::Value) -> String {
    serde_json::json!({"version": version, "rules": rules}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;
    use crate::mock::MockHost;
    use serde_json::json;

    fn rules(id: &str) -> serde_json::Value {
        json!([{"id": id, "match": {"url": "http://h/<.*>", "methods": ["GET"]},
                "authenticators": [{"handler": "noop"}], "authorizer": {"handler": "allow"}}])
    }

    fn respond(sync: &mut SnapshotSync, host: &MockHost, status: Option<u16>, body: &str) {
        let token = host.calls().last().unwrap().token;
        host.answer(status, &[], body);
        assert!(sync.on_call_response(host, token, host.call_response(1, body.len())));
    }

    #[test]
    fn one_worker_polls_and_every_worker_adopts_the_snapshot() {
        let host = MockHost::default();
        let config = test_config();
        let (mut a, mut b) = (SnapshotSync::new(1), SnapshotSync::new(2));
        a.on_tick(&host, &config);
        b.on_tick(&host, &config);
        let calls = host.calls();
        assert_eq!(calls.len(), 1, "only the lease holder polls");
        assert_eq!(calls[0].cluster, "cp");
        assert_eq!(calls[0].header(":path"), Some("/admin/snapshot?wait=20"));
        assert_eq!(calls[0].header("authorization"), Some("Bearer filter-secret"));
        assert_eq!(calls[0].header("if-none-match"), None);

        respond(&mut a, &host, Some(200), &snapshot_json("v1", rules("r1")));
        assert_eq!(a.current().unwrap().version, "v1");
        assert!(b.current().is_none());
        b.on_tick(&host, &config);
        assert_eq!(b.current().unwrap().version, "v1");

        a.on_tick(&host, &config);
        assert_eq!(host.calls().last().unwrap().header("if-none-match"), Some("\"v1\""));
    }

    #[test]
    fn bad_snapshots_and_outages_keep_the_last_good_rules() {
        let host = MockHost::default();
        let config = test_config();
        let mut a = SnapshotSync::new(1);
        a.on_tick(&host, &config);
        respond(&mut a, &host, Some(200), &snapshot_json("v1", rules("r1")));

        host.set_now(10);
        a.on_tick(&host, &config);
        let bad = json!([{"id": "x", "match": {"url": "http://h/<[>", "methods": ["GET"]},
                          "authenticators": [{"handler": "noop"}], "authorizer": {"handler": "allow"}}]);
        respond(&mut a, &host, Some(200), &snapshot_json("v2", bad));
        assert_eq!(a.current().unwrap().version, "v1");
        assert!(host.logs().iter().any(|(l, m)| *l == Level::Error && m.contains("match.url")));

        // Backs off, then polls again; an outage changes nothing.
        let polls = host.calls().len();
        a.on_tick(&host, &config);
        assert_eq!(host.calls().len(), polls, "no poll inside the back-off window");
        host.set_now(2_000);
        a.on_tick(&host, &config);
        respond(&mut a, &host, None, "");
        assert_eq!(a.current().unwrap().version, "v1");
        let mut fresh = SnapshotSync::new(3);
        fresh.on_tick(&host, &config);
        assert_eq!(fresh.current().unwrap().version, "v1", "shared data still holds the good snapshot");
    }

    #[test]
    fn an_expired_lease_passes_to_another_worker() {
        let host = MockHost::default();
        let config = test_config();
        let (mut a, mut b) = (SnapshotSync::new(1), SnapshotSync::new(2));
        a.on_tick(&host, &config);
        host.set_now(31_000);
        b.on_tick(&host, &config);
        assert_eq!(host.calls().len(), 2);
        assert!(!a.on_call_response(&host, 99, CallResponse::default()));
    }
}
