//! The proxy-wasm glue: Envoy's root and HTTP contexts, and the [`Host`] implementation over
//! `proxy_wasm::hostcalls`. Host call failures are mapped to values here; nothing above this
//! module sees the ABI.

use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as WasmAction, BufferType, ContextType, LogLevel, MapType, Status};

use std::cell::RefCell;

use crate::cache::WorkerCaches;
use crate::config::Config;
use crate::foreign;
use crate::headers::HeaderBlock;
use crate::host::{CallResponse, Host, Level, SharedSetError};
use crate::stream::{Action, Stream};
use crate::sync::SnapshotSync;

const TICK: Duration = Duration::from_millis(250);

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::new()) });
}}

struct WasmHost;

/// The one host call the SDK offers only in a form the filter cannot use: its header-map reader
/// makes two strings per header and panics on a value that is not UTF-8, which Envoy passes on
/// (obs-text), in a request or in a call-out's answer. This reads the serialised map as bytes;
/// `headers::HeaderBlock` reads those.
#[expect(unsafe_code, reason = "an ABI import and the buffer it hands over")]
mod raw {
    use proxy_wasm::types::{MapType, Status};

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_header_map_pairs(map_type: MapType, data: *mut *mut u8, size: *mut usize) -> Status;
    }

    /// A header map as the host serialises it; empty when it cannot be read.
    pub(super) fn header_map(map: MapType) -> Vec<u8> {
        let (mut data, mut size) = (std::ptr::null_mut::<u8>(), 0usize);
        // SAFETY: the host writes a pointer and a size into the two locations. The buffer was
        // allocated in this module's memory through the SDK's `proxy_on_memory_allocate`
        // (`Vec::with_capacity(size)`, forgotten), so it is owned here and freed by the `Vec`,
        // as the SDK's own readers do.
        unsafe {
            match proxy_get_header_map_pairs(map, &mut data, &mut size) {
                Status::Ok if !data.is_null() => Vec::from_raw_parts(data, size, size),
                _ => Vec::new(),
            }
        }
    }
}

impl Host for WasmHost {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = hostcalls::log(level, message);
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Some((value, cas)),
            _ => None,
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => SharedSetError::CasMismatch,
            _ => SharedSetError::Other,
        })
    }

    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u32, String> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), Some(body), vec![], Duration::from_millis(timeout_ms))
            .map_err(|status| format!("{status:?}"))
    }

    fn call_response(&self, num_headers: usize, body_size: usize) -> CallResponse {
        if num_headers == 0 {
            return CallResponse::default();
        }
        // A header the filter cannot read as text makes the answer unusable, as no answer
        // would be (the SDK's reader would panic on it).
        let Ok(block) = HeaderBlock::parse(&raw::header_map(MapType::HttpCallResponseHeaders)) else {
            self.log(Level::Warn, "a call-out answer carried a header that is not UTF-8");
            return CallResponse::default();
        };
        let headers: Vec<(String, String)> = block.pairs().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
        let status = headers.iter().find(|(n, _)| n == ":status").and_then(|(_, v)| v.parse().ok());
        let body =
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
        CallResponse { status, headers, body }
    }

    fn request_headers(&self) -> Vec<u8> {
        raw::header_map(MapType::HttpRequestHeaders)
    }

    fn source_address(&self) -> Option<String> {
        let bytes = hostcalls::get_property(vec!["source", "address"]).ok().flatten()?;
        String::from_utf8(bytes).ok()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn set_response_header(&self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
    }

    fn send_response(&self, status: u16, headers: &[(String, String)], body: &str) {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let _ = hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()));
    }

    fn resume_request(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> Result<bool, String> {
        let args = foreign::verify_signature_arguments(hash, public_key, signature, message);
        let result = hostcalls::call_foreign_function("verify_signature", Some(&args))
            .map_err(|status| format!("verify_signature: {status:?}"))?
            .unwrap_or_default();
        foreign::verify_signature_result(&result)
    }

    fn sign(&self, hash: &str, private_key: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
        let args = foreign::sign_arguments(hash, private_key, message);
        let result = hostcalls::call_foreign_function("sign", Some(&args))
            .map_err(|status| format!("sign: {status:?}"))?
            .unwrap_or_default();
        foreign::sign_result(&result)
    }
}

struct Root {
    config: Option<Rc<Config>>,
    sync: SnapshotSync,
    caches: Rc<RefCell<WorkerCaches>>,
}

impl Root {
    fn new() -> Self {
        // A random id per worker VM (WASI random_get), so workers can tell their leases apart.
        let instance = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Self { config: None, sync: SnapshotSync::new(instance), caches: Rc::default() }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        let response = WasmHost.call_response(num_headers, body_size);
        self.sync.on_call_response(&WasmHost, token, response);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes =
            hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten().unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                let _ = hostcalls::set_tick_period(TICK);
                true
            }
            Err(e) => {
                WasmHost.log(Level::Error, &e);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(config) = &self.config {
            self.sync.on_tick(&WasmHost, config);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(Http { stream: Stream::new(config, self.sync.current(), Rc::clone(&self.caches)) }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    stream: Stream,
}

fn to_wasm(action: Action) -> WasmAction {
    match action {
        Action::Continue => WasmAction::Continue,
        Action::Pause => WasmAction::Pause,
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        let response = WasmHost.call_response(num_headers, body_size);
        self.stream.on_call_response(&WasmHost, token, response);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> WasmAction {
        to_wasm(self.stream.on_request_headers(&WasmHost))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> WasmAction {
        self.stream.on_response_headers(&WasmHost);
        WasmAction::Continue
    }
}
