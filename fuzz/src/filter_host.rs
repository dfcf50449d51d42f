//! Target `filter_host`: what the filter reads back from its host — a snapshot body from the
//! control plane or from shared data, the poller lease, and call-out cache entries written by
//! other workers — taken from the input, through a host whose shared data behaves like
//! Envoy's (CAS included).
//! Asserts: a worker polls only when the lease is free, expired or its own; a 200 answer is
//! adopted exactly when it decodes and compiles, and otherwise the rules in force stay; a
//! cache entry is returned only for its own key digest and only before its expiry, with the
//! stored status and body; what a worker stores it reads back.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

use arbitrary::{Result, Unstructured};
use portcullis_filter::cache::{Answer, Lookup};
use portcullis_filter::config::Config;
use portcullis_filter::headers::HeaderBlock;
use portcullis_filter::host::{CallResponse, Host, Level, SharedSetError};
use portcullis_filter::sync::SnapshotSync;
use portcullis_shared::snapshot::Snapshot;

const VERSION_KEY: &str = "portcullis.snapshot.version";
const BODY_KEY: &str = "portcullis.snapshot.body";
const LEASE_KEY: &str = "portcullis.snapshot.lease";
const CACHE_PREFIX: &str = "portcullis.cache.";
/// Far beyond any real clock (year ~37,000) yet far from overflow: the host's clock is sane.
pub const MAX_NOW_MS: u64 = 1 << 50;

/// A call-out the filter started: token, cluster, headers, body.
pub type Call = (u32, String, Vec<(String, String)>, Vec<u8>);
/// A local reply: status, headers, body.
pub type Reply = (u16, Vec<(String, String)>, String);

/// A host for one worker: Envoy's shared data semantics, call-outs recorded, answers scripted.
#[derive(Default)]
pub struct FuzzHost {
    pub now_ms: Cell<u64>,
    pub shared: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    pub calls: RefCell<Vec<Call>>,
    pub request_headers: RefCell<Vec<(String, String)>>,
    /// The client address Envoy vouches for (`source.address`).
    pub source_address: RefCell<Option<String>>,
    /// Headers the filter set on or removed from the request, in order.
    pub header_writes: RefCell<Vec<(String, Option<String>)>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    pub sent: RefCell<Option<Reply>>,
    pub resumed: Cell<bool>,
    /// Answers to `verify_signature`, in order; once exhausted, "not verified".
    pub verify_answers: RefCell<VecDeque<Result<bool, String>>>,
    pub verifications: Cell<usize>,
    /// How many `verify_signature` calls answered "verified".
    pub verified: Cell<usize>,
    pub sign_answer: RefCell<Option<Result<Vec<u8>, String>>>,
}

impl Host for FuzzHost {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }
    fn log(&self, _level: Level, _message: &str) {}
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        self.shared.borrow().get(key).map(|(v, cas)| (v.clone(), Some(*cas)))
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(actual)) = (cas, current)
            && expected != 0
            && expected != actual
        {
            return Err(SharedSetError::CasMismatch);
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        shared.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], _timeout_ms: u64) -> Result<u32, String> {
        let mut calls = self.calls.borrow_mut();
        let token = calls.len() as u32 + 1;
        let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        calls.push((token, cluster.to_owned(), headers, body.to_vec()));
        Ok(token)
    }
    fn call_response(&self, _num_headers: usize, _body_size: usize) -> CallResponse {
        CallResponse::default()
    }
    fn request_headers(&self) -> Vec<u8> {
        let headers = self.request_headers.borrow();
        HeaderBlock::serialize(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
    }
    fn source_address(&self) -> Option<String> {
        self.source_address.borrow().clone()
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.header_writes.borrow_mut().push((name.to_owned(), value.map(str::to_owned)));
        let mut headers = self.request_headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        if let Some(v) = value {
            headers.push((name.to_owned(), v.to_owned()));
        }
    }
    fn set_response_header(&self, name: &str, value: &str) {
        self.response_headers.borrow_mut().push((name.to_owned(), value.to_owned()));
    }
    fn send_response(&self, status: u16, headers: &[(String, String)], body: &str) {
        let mut sent = self.sent.borrow_mut();
        assert!(sent.is_none(), "two local replies to one request");
        *sent = Some((status, headers.to_vec(), body.to_owned()));
    }
    fn resume_request(&self) {
        self.resumed.set(true);
    }
    fn verify_signature(&self, _hash: &str, _key: &[u8], _signature: &[u8], _message: &[u8]) -> Result<bool, String> {
        self.verifications.set(self.verifications.get() + 1);
        let answer = self.verify_answers.borrow_mut().pop_front().unwrap_or(Ok(false));
        if answer == Ok(true) {
            self.verified.set(self.verified.get() + 1);
        }
        answer
    }
    fn sign(&self, _hash: &str, _private_key: &[u8], _message: &[u8]) -> Result<Vec<u8>, String> {
        self.sign_answer.borrow().clone().unwrap_or_else(|| Err("no signer".into()))
    }
}

pub fn config() -> Config {
    Config::parse(
        br#"{"control_plane": {"cluster": "cp", "authority": "cp:4445", "token": "filter-secret"},
             "upstreams": {"idp.example:443": "idp"}, "introspection_cache_slots": 8}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn compiles(body: &[u8]) -> Option<String> {
    let snapshot: Snapshot = serde_json::from_slice(body).ok()?;
    snapshot.compile().ok().map(|c| c.version)
}

fn scenario(u: &mut Unstructured<'_>) -> Result<()> {
    let host = FuzzHost::default();
    let config = config();
    let now = u.int_in_range(0..=MAX_NOW_MS)?;
    host.now_ms.set(now);
    let instance: u64 = u.int_in_range(0..=3)?;
    let lease: Option<&str> = u.arbitrary()?;
    let version: Option<&[u8]> = u.arbitrary()?;
    let slots: Vec<Vec<u8>> = u.arbitrary()?;
    let (body_in_shared, status) = (u.arbitrary::<bool>()?, *u.choose(&[Some(200u16), Some(304), Some(500), None])?);
    let (key, expires, cached_status): (&str, u64, u16) = (u.arbitrary()?, u.arbitrary()?, u.arbitrary()?);
    let body = std::mem::replace(u, Unstructured::new(&[])).take_rest();

    if let Some(lease) = lease {
        host.shared_set(LEASE_KEY, lease.as_bytes(), None).ok();
    }
    if let Some(version) = version {
        host.shared_set(VERSION_KEY, version, None).ok();
    }
    if body_in_shared {
        host.shared_set(BODY_KEY, body, None).ok();
    }
    for (i, slot) in slots.iter().enumerate().take(8) {
        host.shared_set(&format!("{CACHE_PREFIX}{i}"), slot, None).ok();
    }

    // The poller lease: someone else's unexpired lease means no poll.
    let held_by_other = lease.is_some_and(|l| {
        let mut parts = l.splitn(2, ':');
        let holder = parts.next().and_then(|h| h.parse::<u64>().ok());
        let deadline = parts.next().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
        holder != Some(instance) && deadline > now
    });
    let mut sync = SnapshotSync::new(instance);
    sync.on_tick(&host, &config);
    let adopted = sync.current().map(|c| c.version.clone());
    if version.is_some() && body_in_shared {
        assert_eq!(adopted, compiles(body), "a published snapshot must be adopted exactly when it compiles");
    } else {
        assert_eq!(adopted, None, "nothing published, nothing adopted");
    }
    let calls = host.calls.borrow().clone();
    assert!(calls.is_empty() || !held_by_other, "polled while another worker holds the lease");
    if let Some((token, cluster, _, _)) = calls.last() {
        assert_eq!(cluster, "cp");
        let response = CallResponse { status, headers: Vec::new(), body: body.to_vec() };
        assert!(sync.on_call_response(&host, *token, response));
        let now_current = sync.current().map(|c| c.version.clone());
        match (status, compiles(body)) {
            (Some(200), Some(version)) => {
                assert_eq!(now_current, Some(version), "a good snapshot must be adopted");
                assert_eq!(host.shared_get(BODY_KEY).map(|(b, _)| b).as_deref(), Some(body), "and published");
            }
            _ => assert_eq!(now_current, adopted, "a bad answer must leave the rules in force"),
        }
        assert!(!sync.on_call_response(&host, token.wrapping_add(1), CallResponse::default()));
    }

    // The call-out cache entry another worker left in the slot.
    let lookup = Lookup::new(config.introspection_cache_slots, portcullis_shared::pipeline::sha256(key));
    if let Some(answer) = lookup.get(&host, now) {
        let stored = host.shared.borrow().iter().map(|(_, (v, _))| v.clone()).find(|v| v.starts_with(lookup.digest()));
        let stored = stored.unwrap_or_else(|| panic!("an answer for a digest that is not stored"));
        assert!(answer.until_ms > now, "an expired entry was served");
        assert_eq!(stored.get(42..), Some(answer.body.as_slice()));
        assert_eq!(u64::from_le_bytes(stored[32..40].try_into().unwrap_or_default()), answer.until_ms);
    }
    lookup.put(&host, now, expires, cached_status, body);
    let expected = (expires > now).then(|| Answer { until_ms: expires, status: cached_status, body: body.to_vec() });
    assert_eq!(lookup.get(&host, now), expected, "what a worker stores it must read back until it expires");
    Ok(())
}

pub fn run(data: &[u8]) {
    let _ = scenario(&mut Unstructured::new(data));
}
