//! A mock host for native tests: records what the filter did and lets a test answer
//! call-outs and move the clock. Shared data behaves like Envoy's, CAS included.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::headers::HeaderBlock;
use crate::host::{CallResponse, Host, Level, SharedSetError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A local reply: status, headers, body.
pub type Sent = (u16, Vec<(String, String)>, String);

#[derive(Default)]
struct State {
    now_ms: u64,
    shared: BTreeMap<String, (Vec<u8>, u32)>,
    calls: Vec<Call>,
    next_token: u32,
    fail_calls: bool,
    response: CallResponse,
    request_headers: Vec<(String, String)>,
    /// Bytes a test hands over instead of `request_headers` (values that are not UTF-8).
    raw_request: Option<Vec<u8>>,
    source_address: Option<String>,
    source_reads: usize,
    sent: Option<Sent>,
    resumed: bool,
    logs: Vec<(Level, String)>,
    verifications: usize,
    signatures: usize,
    response_headers: Vec<(String, String)>,
}

#[derive(Default)]
pub struct MockHost {
    state: RefCell<State>,
}

impl MockHost {
    pub fn set_now(&self, ms: u64) {
        self.state.borrow_mut().now_ms = ms;
    }
    pub fn set_request(&self, headers: &[(&str, &str)]) {
        let mut s = self.state.borrow_mut();
        s.request_headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        s.raw_request = None;
        s.sent = None;
        s.resumed = false;
    }
    /// A request whose header values are any bytes, as Envoy may hand them over.
    pub fn set_raw_request(&self, headers: &[(&str, &[u8])]) {
        self.set_request(&[]);
        self.state.borrow_mut().raw_request = Some(HeaderBlock::serialize(headers.iter().copied()));
    }
    pub fn set_source_address(&self, address: &str) {
        self.state.borrow_mut().source_address = Some(address.to_owned());
    }
    /// How often the filter asked for `source.address`.
    pub fn source_reads(&self) -> usize {
        self.state.borrow().source_reads
    }
    /// Every value of a request header, in order.
    pub fn request_header_values(&self, name: &str) -> Vec<String> {
        let s = self.state.borrow();
        s.request_headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }
    pub fn request_header(&self, name: &str) -> Option<String> {
        let s = self.state.borrow();
        s.request_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }
    pub fn calls(&self) -> Vec<Call> {
        self.state.borrow().calls.clone()
    }
    pub fn fail_calls(&self, fail: bool) {
        self.state.borrow_mut().fail_calls = fail;
    }
    pub fn answer(&self, status: Option<u16>, headers: &[(&str, &str)], body: &str) {
        self.state.borrow_mut().response = CallResponse {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        };
    }
    pub fn sent(&self) -> Option<Sent> {
        self.state.borrow().sent.clone()
    }
    pub fn resumed(&self) -> bool {
        self.state.borrow().resumed
    }
    pub fn shared_values(&self) -> Vec<Vec<u8>> {
        self.state.borrow().shared.values().map(|(v, _)| v.clone()).collect()
    }
    pub fn response_headers(&self) -> Vec<(String, String)> {
        self.state.borrow().response_headers.clone()
    }
    pub fn signatures(&self) -> usize {
        self.state.borrow().signatures
    }
    pub fn verifications(&self) -> usize {
        self.state.borrow().verifications
    }
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.state.borrow().logs.clone()
    }
}

impl Host for MockHost {
    fn now_ms(&self) -> u64 {
        self.state.borrow().now_ms
    }
    fn log(&self, level: Level, message: &str) {
        self.state.borrow_mut().logs.push((level, message.to_owned()));
    }
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        self.state.borrow().shared.get(key).map(|(v, cas)| (v.clone(), Some(*cas)))
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        let mut s = self.state.borrow_mut();
        let current = s.shared.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(actual)) = (cas, current) {
            if expected != actual {
                return Err(SharedSetError::CasMismatch);
            }
        }
        let next = current.unwrap_or(0) + 1;
        s.shared.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u32, String> {
        let mut s = self.state.borrow_mut();
        if s.fail_calls {
            return Err("BadArgument".into());
        }
        s.next_token += 1;
        let token = s.next_token;
        s.calls.push(Call {
            token,
            cluster: cluster.to_owned(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        Ok(token)
    }
    fn call_response(&self, _num_headers: usize, _body_size: usize) -> CallResponse {
        self.state.borrow().response.clone()
    }
    fn request_headers(&self) -> Vec<u8> {
        let s = self.state.borrow();
        s.raw_request.clone().unwrap_or_else(|| {
            HeaderBlock::serialize(s.request_headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
        })
    }
    fn source_address(&self) -> Option<String> {
        let mut s = self.state.borrow_mut();
        s.source_reads += 1;
        s.source_address.clone()
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut s = self.state.borrow_mut();
        s.request_headers.retain(|(n, _)| n != name);
        if let Some(v) = value {
            s.request_headers.push((name.to_owned(), v.to_owned()));
        }
    }
    fn set_response_header(&self, name: &str, value: &str) {
        self.state.borrow_mut().response_headers.push((name.to_owned(), value.to_owned()));
    }
    fn send_response(&self, status: u16, headers: &[(String, String)], body: &str) {
        self.state.borrow_mut().sent = Some((status, headers.to_vec(), body.to_owned()));
    }
    fn resume_request(&self) {
        self.state.borrow_mut().resumed = true;
    }
    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> Result<bool, String> {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        let mut s = self.state.borrow_mut();
        s.verifications += 1;
        if hash != "sha256" {
            return Err(format!("mock verifies ES256 only, not {hash}"));
        }
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(public_key).map_err(|e| e.to_string())?;
        let signature = p256::ecdsa::Signature::from_der(signature).map_err(|e| e.to_string())?;
        Ok(key.verify(message, &signature).is_ok())
    }
    fn sign(&self, hash: &str, private_key: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::DecodePrivateKey;
        self.state.borrow_mut().signatures += 1;
        if hash != "sha256" {
            return Err(format!("mock signs ES256 only, not {hash}"));
        }
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(private_key).map_err(|e| e.to_string())?;
        let signature: p256::ecdsa::Signature = key.sign(message);
        // Envoy (BoringSSL) answers DER.
        Ok(signature.to_der().as_bytes().to_vec())
    }
}
