//! The few things the filter needs from its host (Envoy through proxy-wasm, or a mock in
//! tests). Methods report failures as values; none of them may panic.

/// A call-out response, read inside the call-out callback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallResponse {
    /// `None` when the call failed before a response (reset, connection refused, timeout).
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CallResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedSetError {
    /// Someone else wrote the key since we read it.
    CasMismatch,
    Other,
}

pub trait Host {
    fn now_ms(&self) -> u64;
    fn log(&self, level: Level, message: &str);

    /// Envoy shared data: one key-value store for every worker of this VM, with CAS.
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)>;
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError>;

    /// Starts an HTTP call to an Envoy cluster; the answer arrives in a callback with the token.
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u32, String>;
    /// The response of the call whose callback is running (`num_headers == 0` means it failed).
    fn call_response(&self, num_headers: usize, body_size: usize) -> CallResponse;

    /// Request headers, pseudo-headers (`:path`, `:method`, ...) included, names lower-case,
    /// serialised as the host hands them over (read with [`crate::headers::HeaderBlock`]).
    fn request_headers(&self) -> Vec<u8>;
    /// The client address Envoy vouches for (its `source.address` property: the peer, or the
    /// address its `xff_num_trusted_hops` / original-IP detection settled on), as `ip:port`.
    fn source_address(&self) -> Option<String>;
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Sets a header on the upstream's response (during response headers).
    fn set_response_header(&self, name: &str, value: &str);
    fn send_response(&self, status: u16, headers: &[(String, String)], body: &str);
    fn resume_request(&self);

    /// Checks a signature natively (Envoy's `verify_signature`: BoringSSL). `public_key` is
    /// SubjectPublicKeyInfo DER; ECDSA signatures are DER. `Err` when the host cannot verify.
    fn verify_signature(&self, hash: &str, public_key: &[u8], signature: &[u8], message: &[u8])
    -> Result<bool, String>;

    /// Signs natively (Envoy's `sign`): PKCS#8 DER private key; ECDSA signatures come back DER.
    fn sign(&self, hash: &str, private_key: &[u8], message: &[u8]) -> Result<Vec<u8>, String>;
}
