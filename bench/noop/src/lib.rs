//! The floor row of `just bench` (`wasm-noop`): the least a Rust proxy-wasm filter can do on a
//! request — read one request header, set one — built with the same SDK, profile and target as
//! the Portcullis filter and loaded into the same Envoy. Whatever V8 and the ABI cost per
//! request shows up here; a Portcullis row's distance from this one is the filter's own work.
//! It judges nothing and must never be deployed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // One read and one write, as the smallest header-mutating filter would; host calls go
        // through `hostcalls` so a failure is ignored instead of panicking like the trait helpers.
        let seen = matches!(hostcalls::get_map_value(MapType::HttpRequestHeaders, "authorization"), Ok(Some(_)));
        let _ = hostcalls::set_map_value(
            MapType::HttpRequestHeaders,
            "x-user",
            Some(if seen { "bearer" } else { "anonymous" }),
        );
        Action::Continue
    }
}
