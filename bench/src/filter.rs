//! The filter's request path without Envoy: the four allowed-request scenarios of `just bench`
//! (anonymous, JWT repeated, introspection warm, session) driven through
//! [`portcullis_filter::stream::Stream`] against an in-memory [`Host`] that counts the ABI calls
//! each method stands for. Used by the criterion bench (native) and `wasm-timing` (wasm32 under
//! V8) to time the filter's own work per request, and by tests to see what a request costs.
//! It signs and verifies with RustCrypto where Envoy would use BoringSSL: only the first request
//! of a scenario does either.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use portcullis_filter::cache::WorkerCaches;
use portcullis_filter::config::Config;
use portcullis_filter::headers::HeaderBlock;
use portcullis_filter::host::{CallResponse, Host, Level, SharedSetError};
use portcullis_filter::stream::{Action, Stream};
use portcullis_shared::snapshot::{CompiledSnapshot, Snapshot};
use serde_json::{Value, json};

/// Unix time the harness runs at (ms).
pub const NOW_MS: u64 = 1_800_000_000_000;
const ISSUER: &str = "https://issuer.bench.portcullis.local/";

/// What a request would cost in ABI calls, by kind (Envoy's `proxy_*` imports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AbiCalls {
    pub get_header_map: u32,
    pub get_header: u32,
    pub set_header: u32,
    pub remove_header: u32,
    pub clock: u32,
    pub shared_data: u32,
    pub http_call: u32,
    pub foreign_function: u32,
    pub property: u32,
    pub log: u32,
    pub local_reply: u32,
    pub resume: u32,
    pub buffer: u32,
}

impl AbiCalls {
    pub fn total(&self) -> u32 {
        self.get_header_map
            + self.get_header
            + self.set_header
            + self.remove_header
            + self.clock
            + self.shared_data
            + self.http_call
            + self.foreign_function
            + self.property
            + self.log
            + self.local_reply
            + self.resume
            + self.buffer
    }
}

/// An in-memory host: request headers in, header writes applied, call-outs recorded for the
/// harness to answer, shared data as a map; every method counts the ABI calls it stands for.
#[derive(Default)]
pub struct BenchHost {
    pub headers: RefCell<Vec<(String, String)>>,
    /// The request's header map serialised as Envoy hands it over.
    serialized: RefCell<Vec<u8>>,
    pub calls: Cell<AbiCalls>,
    shared: RefCell<BTreeMap<String, Vec<u8>>>,
    outgoing: Cell<u32>,
    /// The answer to the outstanding call-out, read by `call_response`.
    answer: RefCell<Vec<u8>>,
    pub sent: Cell<Option<u16>>,
}

impl BenchHost {
    fn count(&self, f: impl FnOnce(&mut AbiCalls)) {
        let mut c = self.calls.get();
        f(&mut c);
        self.calls.set(c);
    }
    pub fn take_calls(&self) -> AbiCalls {
        self.calls.replace(AbiCalls::default())
    }
}

impl Host for BenchHost {
    fn now_ms(&self) -> u64 {
        self.count(|c| c.clock += 1);
        NOW_MS
    }
    fn log(&self, _level: Level, _message: &str) {
        self.count(|c| c.log += 1);
    }
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        self.count(|c| c.shared_data += 1);
        self.shared.borrow().get(key).map(|v| (v.clone(), Some(1)))
    }
    fn shared_set(&self, key: &str, value: &[u8], _cas: Option<u32>) -> Result<(), SharedSetError> {
        self.count(|c| c.shared_data += 1);
        self.shared.borrow_mut().insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    fn http_call(&self, _cluster: &str, _headers: &[(&str, &str)], _body: &[u8], _timeout: u64) -> Result<u32, String> {
        self.count(|c| c.http_call += 1);
        self.outgoing.set(self.outgoing.get() + 1);
        Ok(self.outgoing.get())
    }
    fn call_response(&self, _num_headers: usize, _body_size: usize) -> CallResponse {
        // The glue reads the call's headers and its body: two ABI calls.
        self.count(|c| {
            c.get_header_map += 1;
            c.buffer += 1;
        });
        CallResponse { status: Some(200), headers: Vec::new(), body: self.answer.take() }
    }
    fn request_headers(&self) -> Vec<u8> {
        self.count(|c| c.get_header_map += 1);
        // One buffer, as Envoy allocates it in the filter's memory and copies the map into it.
        self.serialized.borrow().clone()
    }
    fn source_address(&self) -> Option<String> {
        self.count(|c| c.property += 1);
        Some("127.0.0.1:40000".into())
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        match value {
            Some(v) => {
                self.count(|c| c.set_header += 1);
                headers.push((name.to_owned(), v.to_owned()));
            }
            None => self.count(|c| c.remove_header += 1),
        }
    }
    fn set_response_header(&self, _name: &str, _value: &str) {
        self.count(|c| c.set_header += 1);
    }
    fn send_response(&self, status: u16, _headers: &[(String, String)], _body: &str) {
        self.count(|c| c.local_reply += 1);
        self.sent.set(Some(status));
    }
    fn resume_request(&self) {
        self.count(|c| c.resume += 1);
    }
    fn verify_signature(&self, hash: &str, key: &[u8], signature: &[u8], message: &[u8]) -> Result<bool, String> {
        self.count(|c| c.foreign_function += 1);
        if hash != "sha256" {
            return Err("the bench host verifies ES256 only".into());
        }
        let key = VerifyingKey::from_public_key_der(key).map_err(|e| e.to_string())?;
        let signature = Signature::from_der(signature).map_err(|e| e.to_string())?;
        Ok(key.verify(message, &signature).is_ok())
    }
    fn sign(&self, _hash: &str, private_key: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
        self.count(|c| c.foreign_function += 1);
        let key = SigningKey::from_pkcs8_der(private_key).map_err(|e| e.to_string())?;
        let signature: Signature = key.sign(message);
        Ok(signature.to_der().as_bytes().to_vec())
    }
}

/// One allowed-request scenario, ready to serve the same request again and again.
pub struct Scenario {
    pub name: &'static str,
    config: Rc<Config>,
    snapshot: Rc<CompiledSnapshot>,
    caches: Rc<RefCell<WorkerCaches>>,
    request: Vec<(String, String)>,
    /// The call-out answer (introspection, whoami) a first request gets.
    answer: Option<String>,
    pub host: BenchHost,
}

/// Request headers as Envoy hands them to the filter for a wrk request on the bench listener.
fn envoy_request(path: &str, credential: Option<(&str, String)>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = [
        (":authority", "127.0.0.1:10000"),
        (":path", path),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "9f0e5f5c-6a51-4b8e-9a3c-1d2c3b4a5f60"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    if let Some((name, value)) = credential {
        headers.push((name.to_owned(), value));
    }
    headers
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

const HEADER_MUTATOR: &str = r#"{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}"#;

impl Scenario {
    /// The scenarios by name: `anonymous`, `jwt`, `introspection-warm`, `session`.
    pub fn all() -> Vec<Scenario> {
        ["anonymous", "jwt", "introspection-warm", "session"].into_iter().filter_map(Scenario::new).collect()
    }

    pub fn new(name: &'static str) -> Option<Scenario> {
        let user_key = SigningKey::from_bytes(&[7u8; 32].into()).ok()?;
        let point = user_key.verifying_key().to_encoded_point(false);
        let jwks_url = "file:///bench/jwks.json";
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "bench",
            "x": b64(point.x()?), "y": b64(point.y()?)}]});
        let header: Value = serde_json::from_str(HEADER_MUTATOR).ok()?;
        let rules = json!([
            {"id": "jwt", "match": {"url": "<http|https>://<[^/]+>/jwt<(/.*)?>", "methods": ["GET"]},
             "authenticators": [{"handler": "jwt", "config": {"jwks_urls": [jwks_url], "allowed_algorithms": ["ES256"],
                 "trusted_issuers": [ISSUER], "target_audience": ["bench-api"], "required_scope": ["read"],
                 "scope_strategy": "exact"}}],
             "authorizer": {"handler": "allow"}, "mutators": [header]},
            {"id": "introspection-warm", "match": {"url": "<http|https>://<[^/]+>/intro-warm<(/.*)?>", "methods": ["GET"]},
             "authenticators": [{"handler": "oauth2_introspection", "config": {
                 "introspection_url": "http://127.0.0.1:4445/admin/oauth2/introspect",
                 "introspection_request_headers": {"X-Portcullis-Api-Key": "bench-api-key"},
                 "scope_strategy": "exact", "required_scope": ["read"], "cache": {"enabled": true, "ttl": "5m"}}}],
             "authorizer": {"handler": "allow"}, "mutators": [header]},
            {"id": "public", "match": {"url": "<http|https>://<[^/]+>/public/<.*>", "methods": ["GET"]},
             "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"}, "mutators": [header]},
            {"id": "session", "match": {"url": "<http|https>://<[^/]+>/session<(/.*)?>", "methods": ["GET"]},
             "authenticators": [{"handler": "cookie_session", "config": {
                 "check_session_url": "http://127.0.0.1:4444/sessions/whoami", "preserve_path": true,
                 "only": ["ory_kratos_session"], "subject_from": "identity.id", "extra_from": "@this",
                 "cache": {"enabled": true, "ttl": "5m"}}}],
             "authorizer": {"handler": "allow"},
             "mutators": [{"handler": "id_token", "config": {"issuer_url": "http://127.0.0.1:4444/",
                 "claims": "{\"aud\": [\"bench-api\"], \"email\": \"{{ print .Extra.identity.traits.email }}\"}"}}]}
        ]);
        let id_key = SigningKey::from_bytes(&[8u8; 32].into()).ok()?;
        let snapshot = json!({"version": "bench", "rules": rules, "jwks": {jwks_url: jwks},
            "signing_key": {"kid": "id-1", "alg": "ES256", "pkcs8": STANDARD.encode(id_key.to_pkcs8_der().ok()?.as_bytes())}});
        let snapshot: Snapshot = serde_json::from_value(snapshot).ok()?;
        let snapshot = Rc::new(snapshot.compile().ok()?);
        let config = Config::parse(
            br#"{"control_plane": {"cluster": "portcullis_admin", "authority": "127.0.0.1:4445", "token": "t"},
                 "upstreams": {"127.0.0.1:4444": "portcullis_public"}}"#,
        )
        .ok()?;
        let exp = NOW_MS / 1000 + 4 * 3600;
        let (request, answer) = match name {
            "anonymous" => (envoy_request("/public/x", None), None),
            "jwt" => {
                let input = format!(
                    "{}.{}",
                    b64(r#"{"alg":"ES256","typ":"JWT","kid":"bench"}"#),
                    b64(json!({"iss": ISSUER, "aud": "bench-api", "sub": "user-repeated", "scope": "read",
                        "iat": NOW_MS / 1000, "exp": exp})
                    .to_string())
                );
                let signature: Signature = user_key.sign(input.as_bytes());
                let token = format!("{input}.{}", b64(signature.to_bytes()));
                (envoy_request("/jwt/x", Some(("authorization", format!("Bearer {token}")))), None)
            }
            "introspection-warm" => (
                envoy_request("/intro-warm/x", Some(("authorization", "Bearer ory_at_bench-opaque-token-0123".into()))),
                Some(
                    json!({"active": true, "sub": "client-1", "client_id": "client-1", "scope": "read",
                        "exp": exp, "iss": "http://127.0.0.1:4444/", "token_type": "Bearer"})
                    .to_string(),
                ),
            ),
            "session" => (
                envoy_request(
                    "/session/x",
                    Some(("cookie", "ory_kratos_session=ory_st_bench-session-token-0123456789".into())),
                ),
                Some(
                    json!({"id": "session-1", "active": true, "expires_at": "2030-01-01T00:00:00Z",
                        "identity": {"id": "identity-1", "schema_id": "default",
                            "traits": {"email": "bench-user@example.com"}}})
                    .to_string(),
                ),
            ),
            _ => return None,
        };
        let host = BenchHost::default();
        *host.serialized.borrow_mut() = HeaderBlock::serialize(request.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        Some(Scenario { name, config: Rc::new(config), snapshot, caches: Rc::default(), request, answer, host })
    }

    /// Serves the scenario's request once, as Envoy would on a new stream (the call-out, if
    /// any, answered at once); `Err` with what happened when it is not allowed.
    pub fn serve(&self) -> Result<(), String> {
        // The upstream's view starts as the request (reusing the last request's strings).
        self.host.headers.borrow_mut().clone_from(&self.request);
        self.host.sent.set(None);
        let mut stream = Stream::new(Rc::clone(&self.config), Some(Rc::clone(&self.snapshot)), Rc::clone(&self.caches));
        let mut action = stream.on_request_headers(&self.host);
        if action == Action::Pause && self.host.sent.get().is_none() {
            let body = self.answer.clone().ok_or("a call-out with no answer prepared")?;
            let size = body.len();
            *self.host.answer.borrow_mut() = body.into_bytes();
            let response = self.host.call_response(1, size);
            action = stream.on_call_response(&self.host, self.outgoing(), response);
        }
        stream.on_response_headers(&self.host);
        match (action, self.host.sent.get()) {
            (Action::Continue, None) => Ok(()),
            (_, sent) => Err(format!("{}: not allowed ({sent:?})", self.name)),
        }
    }

    /// The compiled snapshot the scenario judges with.
    pub fn snapshot(&self) -> &CompiledSnapshot {
        &self.snapshot
    }

    /// The request headers Envoy hands over, pseudo-headers included.
    pub fn request_headers(&self) -> &[(String, String)] {
        &self.request
    }

    fn outgoing(&self) -> u32 {
        self.host.outgoing.get()
    }

    /// The headers the upstream would receive after the last request.
    pub fn forwarded(&self) -> Vec<(String, String)> {
        self.host.headers.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host-call budget of an allowed request (issue 15), once the worker has seen the
    /// credential: one read of the request headers, one clock read, one header written. The
    /// clock is read for the anonymous rule too (one read per callback, before the rule is
    /// known). A change that adds a call fails here first.
    #[test]
    fn an_allowed_repeated_request_makes_three_abi_calls() {
        let budget = AbiCalls { get_header_map: 1, clock: 1, set_header: 1, ..AbiCalls::default() };
        for s in Scenario::all() {
            s.serve().unwrap_or_else(|e| panic!("{e}"));
            s.host.take_calls();
            s.serve().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.host.take_calls(), budget, "{}", s.name);
        }
    }

    /// The first request pays for what the next ones reuse: the signature check (JWT), the
    /// call-out and its shared-data cache entry (introspection, session), the id_token signature.
    #[test]
    fn a_first_request_pays_only_for_its_credential() {
        let first = |name| {
            let s = Scenario::new(name).unwrap_or_else(|| panic!("{name}"));
            s.serve().unwrap_or_else(|e| panic!("{e}"));
            s.host.take_calls()
        };
        let base = AbiCalls { get_header_map: 1, clock: 1, set_header: 1, ..AbiCalls::default() };
        assert_eq!(first("anonymous"), base);
        assert_eq!(first("jwt"), AbiCalls { foreign_function: 1, ..base });
        // Call-out: a shared-data read (miss), the call, its response (headers and body), a second
        // clock read in the callback, the shared-data write, and the resume.
        let callout =
            AbiCalls { shared_data: 2, http_call: 1, get_header_map: 2, buffer: 1, clock: 2, resume: 1, ..base };
        assert_eq!(first("introspection-warm"), callout);
        assert_eq!(first("session"), AbiCalls { foreign_function: 1, ..callout });
    }

    #[test]
    fn every_scenario_is_allowed_and_names_the_subject() {
        for s in Scenario::all() {
            for _ in 0..2 {
                s.serve().unwrap_or_else(|e| panic!("{e}"));
            }
            let forwarded = s.forwarded();
            let header = |n: &str| forwarded.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            match s.name {
                "anonymous" => assert_eq!(header("x-user").as_deref(), Some("anonymous")),
                "jwt" => assert_eq!(header("x-user").as_deref(), Some("user-repeated")),
                "introspection-warm" => assert_eq!(header("x-user").as_deref(), Some("client-1")),
                _ => assert!(header("authorization").is_some_and(|a| a.starts_with("Bearer ey")), "{forwarded:?}"),
            }
        }
    }
}
