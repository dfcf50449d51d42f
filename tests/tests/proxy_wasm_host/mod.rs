//! A proxy-wasm host of the tests' own, on the wasmi interpreter. It loads a compiled filter,
//! answers the ABI 0.2.1 imports (`env.proxy_*`) and the WASI preview 1 functions the filter
//! links (`random_get`, `environ_*`, `fd_write`, `proc_exit`) the way Envoy does, and records
//! every host call in order, so that a test can assert the exact sequence a request causes.
//! It plays Envoy only as far as the ABI goes: no network (an HTTP call is answered by the test
//! through [`ProxyWasm::respond`]), one worker, one plugin. It must not judge what the filter
//! decides: that is for the tests, from the record.

use std::collections::BTreeMap;

use wasmi::{Caller, Engine, Extern, Instance, Linker, Module, Store};

/// `proxy_*` status codes (ABI 0.2.1).
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
const CAS_MISMATCH: i32 = 8;
const UNIMPLEMENTED: i32 = 12;

/// Header map types.
pub const REQUEST_HEADERS: i32 = 0;
pub const RESPONSE_HEADERS: i32 = 2;
pub const CALL_RESPONSE_HEADERS: i32 = 6;
/// Buffer types.
pub const CALL_RESPONSE_BODY: i32 = 4;
pub const PLUGIN_CONFIGURATION: i32 = 7;

/// `proxy_on_request_headers` answers.
pub const CONTINUE: i32 = 0;
pub const PAUSE: i32 = 1;

/// One call the filter made into the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    Log {
        level: i32,
        message: String,
    },
    SetTickPeriod {
        ms: i32,
    },
    GetCurrentTime,
    GetBuffer {
        buffer: i32,
    },
    GetHeaders {
        map: i32,
    },
    GetHeader {
        map: i32,
        name: String,
    },
    ReplaceHeader {
        map: i32,
        name: String,
        value: String,
    },
    RemoveHeader {
        map: i32,
        name: String,
    },
    AddHeader {
        map: i32,
        name: String,
        value: String,
    },
    GetSharedData {
        key: String,
    },
    SetSharedData {
        key: String,
        value: String,
        cas: u32,
    },
    HttpCall {
        cluster: String,
        headers: Vec<(String, String)>,
        body: String,
        timeout_ms: u32,
    },
    SendLocalResponse {
        status: i32,
        headers: Vec<(String, String)>,
        body: String,
    },
    ContinueStream,
    SetEffectiveContext {
        context: i32,
    },
    CallForeignFunction {
        name: String,
    },
    GetProperty,
    /// An import this host does not implement; it answers `Unimplemented`.
    Unsupported {
        name: &'static str,
    },
}

/// What the host holds for the filter: the record, the maps and buffers of the callback that
/// runs, shared data (with Envoy's compare-and-swap), the clock.
#[derive(Default)]
pub struct State {
    calls: Vec<HostCall>,
    /// Nanoseconds since the epoch that `proxy_get_current_time_nanoseconds` answers.
    pub now_ns: u64,
    plugin_configuration: Vec<u8>,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    call_response_headers: Vec<(String, String)>,
    call_response_body: Vec<u8>,
    shared: BTreeMap<String, (Vec<u8>, u32)>,
    next_token: u32,
    random: u64,
    /// What the module wrote to stdout/stderr through WASI (a panic message, say).
    pub output: String,
}

impl State {
    fn map(&mut self, map: i32) -> Option<&mut Vec<(String, String)>> {
        match map {
            REQUEST_HEADERS => Some(&mut self.request_headers),
            RESPONSE_HEADERS => Some(&mut self.response_headers),
            CALL_RESPONSE_HEADERS => Some(&mut self.call_response_headers),
            _ => None,
        }
    }
}

/// The filter loaded and started: one VM, one root context (id 1).
pub struct ProxyWasm {
    store: Store<State>,
    instance: Instance,
    next_context: i32,
}

const ROOT: i32 = 1;

type HostResult<T> = Result<T, wasmi::Error>;

fn err(message: impl Into<String>) -> wasmi::Error {
    wasmi::Error::new(message.into())
}

fn read(caller: &Caller<'_, State>, ptr: i32, len: i32) -> HostResult<Vec<u8>> {
    let memory = caller.get_export("memory").and_then(Extern::into_memory).ok_or_else(|| err("no memory"))?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    memory
        .data(caller)
        .get(start..start + len)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| err(format!("read of {len} bytes at {start} is out of bounds")))
}

fn text(caller: &Caller<'_, State>, ptr: i32, len: i32) -> HostResult<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

fn write(caller: &mut Caller<'_, State>, ptr: i32, bytes: &[u8]) -> HostResult<()> {
    let memory = caller.get_export("memory").and_then(Extern::into_memory).ok_or_else(|| err("no memory"))?;
    let start = ptr as u32 as usize;
    let target = memory
        .data_mut(&mut *caller)
        .get_mut(start..start + bytes.len())
        .ok_or_else(|| err(format!("write of {} bytes at {start} is out of bounds", bytes.len())))?;
    target.copy_from_slice(bytes);
    Ok(())
}

fn write_u32(caller: &mut Caller<'_, State>, ptr: i32, value: u32) -> HostResult<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the module as Envoy does: memory from its `proxy_on_memory_allocate`,
/// the address and size written where it asked.
fn give(caller: &mut Caller<'_, State>, bytes: &[u8], ret_ptr: i32, ret_size: i32) -> HostResult<()> {
    let allocate = caller
        .get_export("proxy_on_memory_allocate")
        .and_then(Extern::into_func)
        .ok_or_else(|| err("no proxy_on_memory_allocate"))?
        .typed::<i32, i32>(&*caller)?;
    let ptr = allocate.call(&mut *caller, bytes.len() as i32)?;
    write(caller, ptr, bytes)?;
    write_u32(caller, ret_ptr, ptr as u32)?;
    write_u32(caller, ret_size, bytes.len() as u32)
}

/// The ABI's header map encoding: count, (name length, value length) pairs, then each name and
/// value followed by a NUL.
pub fn serialize_map(map: &[(String, String)]) -> Vec<u8> {
    let mut out = (map.len() as u32).to_le_bytes().to_vec();
    for (name, value) in map {
        out.extend((name.len() as u32).to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
    }
    for (name, value) in map {
        out.extend(name.as_bytes());
        out.push(0);
        out.extend(value.as_bytes());
        out.push(0);
    }
    out
}

pub fn deserialize_map(bytes: &[u8]) -> HostResult<Vec<(String, String)>> {
    let u32_at = |at: usize| -> HostResult<usize> {
        let b = bytes.get(at..at + 4).ok_or_else(|| err("truncated header map"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = u32_at(0)?;
    let mut at = 4 + count * 8;
    let mut map = Vec::with_capacity(count);
    for i in 0..count {
        let (name_len, value_len) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        let mut take = |len: usize| -> HostResult<String> {
            let s = bytes.get(at..at + len).ok_or_else(|| err("truncated header map"))?;
            at += len + 1;
            Ok(String::from_utf8_lossy(s).into_owned())
        };
        let name = take(name_len)?;
        let value = take(value_len)?;
        map.push((name, value));
    }
    Ok(map)
}

fn record(caller: &mut Caller<'_, State>, call: HostCall) {
    caller.data_mut().calls.push(call);
}

/// Links every import of ABI 0.2.1 that the Rust SDK declares, and the WASI functions.
fn linker(engine: &Engine) -> HostResult<Linker<State>> {
    let mut l = Linker::<State>::new(engine);
    l.func_wrap("env", "proxy_log", |mut c: Caller<'_, State>, level: i32, ptr: i32, len: i32| -> HostResult<i32> {
        let message = text(&c, ptr, len)?;
        record(&mut c, HostCall::Log { level, message });
        Ok(OK)
    })?;
    l.func_wrap("env", "proxy_set_tick_period_milliseconds", |mut c: Caller<'_, State>, ms: i32| -> i32 {
        record(&mut c, HostCall::SetTickPeriod { ms });
        OK
    })?;
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, State>, ret: i32| -> HostResult<i32> {
            record(&mut c, HostCall::GetCurrentTime);
            let now = c.data().now_ns;
            write(&mut c, ret, &now.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, State>, buffer: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| -> HostResult<i32> {
            record(&mut c, HostCall::GetBuffer { buffer });
            let data = match buffer {
                PLUGIN_CONFIGURATION => c.data().plugin_configuration.clone(),
                CALL_RESPONSE_BODY => c.data().call_response_body.clone(),
                _ => return Ok(NOT_FOUND),
            };
            let start = (start as u32 as usize).min(data.len());
            let end = start.saturating_add(max as u32 as usize).min(data.len());
            if start == end {
                return Ok(NOT_FOUND);
            }
            give(&mut c, &data[start..end], ret_ptr, ret_size)?;
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, State>, map: i32, ret_ptr: i32, ret_size: i32| -> HostResult<i32> {
            record(&mut c, HostCall::GetHeaders { map });
            let Some(pairs) = c.data_mut().map(map).cloned() else { return Ok(BAD_ARGUMENT) };
            give(&mut c, &serialize_map(&pairs), ret_ptr, ret_size)?;
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Caller<'_, State>, map: i32, key: i32, key_len: i32, ret_ptr: i32, ret_size: i32| -> HostResult<i32> {
            let name = text(&c, key, key_len)?;
            record(&mut c, HostCall::GetHeader { map, name: name.clone() });
            let Some(pairs) = c.data_mut().map(map) else { return Ok(BAD_ARGUMENT) };
            let Some(value) = pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)).map(|(_, v)| v.clone()) else {
                return Ok(NOT_FOUND);
            };
            give(&mut c, value.as_bytes(), ret_ptr, ret_size)?;
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Caller<'_, State>, map: i32, key: i32, key_len: i32, value: i32, value_len: i32| -> HostResult<i32> {
            let (name, value) = (text(&c, key, key_len)?, text(&c, value, value_len)?);
            record(&mut c, HostCall::ReplaceHeader { map, name: name.clone(), value: value.clone() });
            let Some(pairs) = c.data_mut().map(map) else { return Ok(BAD_ARGUMENT) };
            pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            pairs.push((name, value));
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Caller<'_, State>, map: i32, key: i32, key_len: i32, value: i32, value_len: i32| -> HostResult<i32> {
            let (name, value) = (text(&c, key, key_len)?, text(&c, value, value_len)?);
            record(&mut c, HostCall::AddHeader { map, name: name.clone(), value: value.clone() });
            let Some(pairs) = c.data_mut().map(map) else { return Ok(BAD_ARGUMENT) };
            pairs.push((name, value));
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, State>, map: i32, key: i32, key_len: i32| -> HostResult<i32> {
            let name = text(&c, key, key_len)?;
            record(&mut c, HostCall::RemoveHeader { map, name: name.clone() });
            let Some(pairs) = c.data_mut().map(map) else { return Ok(BAD_ARGUMENT) };
            pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller<'_, State>,
         key: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_size: i32,
         ret_cas: i32|
         -> HostResult<i32> {
            let key = text(&c, key, key_len)?;
            record(&mut c, HostCall::GetSharedData { key: key.clone() });
            let Some((value, cas)) = c.data().shared.get(&key).cloned() else { return Ok(NOT_FOUND) };
            give(&mut c, &value, ret_ptr, ret_size)?;
            write_u32(&mut c, ret_cas, cas)?;
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller<'_, State>, key: i32, key_len: i32, value: i32, value_len: i32, cas: i32| -> HostResult<i32> {
            let key = text(&c, key, key_len)?;
            let value = read(&c, value, value_len)?;
            let cas = cas as u32;
            record(
                &mut c,
                HostCall::SetSharedData { key: key.clone(), value: String::from_utf8_lossy(&value).into_owned(), cas },
            );
            // Envoy's shared data: a non-zero cas must match the entry's; every write bumps it.
            let shared = &mut c.data_mut().shared;
            let current = shared.get(&key).map(|(_, cas)| *cas);
            if cas != 0 && current.is_some_and(|current| current != cas) {
                return Ok(CAS_MISMATCH);
            }
            shared.insert(key, (value, current.unwrap_or(0) + 1));
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Caller<'_, State>,
         upstream: i32,
         upstream_len: i32,
         headers: i32,
         headers_len: i32,
         body: i32,
         body_len: i32,
         _trailers: i32,
         _trailers_len: i32,
         timeout_ms: i32,
         ret_token: i32|
         -> HostResult<i32> {
            let cluster = text(&c, upstream, upstream_len)?;
            let headers = deserialize_map(&read(&c, headers, headers_len)?)?;
            let body = text(&c, body, body_len)?;
            record(&mut c, HostCall::HttpCall { cluster, headers, body, timeout_ms: timeout_ms as u32 });
            c.data_mut().next_token += 1;
            let token = c.data().next_token;
            write_u32(&mut c, ret_token, token)?;
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller<'_, State>,
         status: i32,
         _details: i32,
         _details_len: i32,
         body: i32,
         body_len: i32,
         headers: i32,
         headers_len: i32,
         _grpc_status: i32|
         -> HostResult<i32> {
            let body = text(&c, body, body_len)?;
            let headers = deserialize_map(&read(&c, headers, headers_len)?)?;
            record(&mut c, HostCall::SendLocalResponse { status, headers, body });
            Ok(OK)
        },
    )?;
    l.func_wrap("env", "proxy_continue_stream", |mut c: Caller<'_, State>, _stream: i32| -> i32 {
        record(&mut c, HostCall::ContinueStream);
        OK
    })?;
    l.func_wrap("env", "proxy_set_effective_context", |mut c: Caller<'_, State>, context: i32| -> i32 {
        record(&mut c, HostCall::SetEffectiveContext { context });
        OK
    })?;
    l.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: Caller<'_, State>,
         name: i32,
         name_len: i32,
         _args: i32,
         _args_len: i32,
         _ret: i32,
         _ret_len: i32|
         -> HostResult<i32> {
            let name = text(&c, name, name_len)?;
            record(&mut c, HostCall::CallForeignFunction { name });
            Ok(NOT_FOUND)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Caller<'_, State>, _path: i32, _path_len: i32, _ret: i32, _ret_len: i32| -> i32 {
            record(&mut c, HostCall::GetProperty);
            NOT_FOUND
        },
    )?;
    unsupported(&mut l)?;
    wasi(&mut l)?;
    Ok(l)
}

/// Imports the SDK declares but the filter has no business calling: each is recorded and
/// answered `Unimplemented`, so a test sees it in the sequence.
fn unsupported(l: &mut Linker<State>) -> HostResult<()> {
    macro_rules! stub {
        ($name:literal, $($arg:ident),*) => {
            l.func_wrap("env", $name, |mut c: Caller<'_, State>, $($arg: i32),*| -> i32 {
                $(let _ = $arg;)*
                record(&mut c, HostCall::Unsupported { name: $name });
                UNIMPLEMENTED
            })?;
        };
    }
    stub!("proxy_set_property", a, b, c2, d);
    stub!("proxy_grpc_cancel", a);
    stub!("proxy_grpc_close", a);
    stub!("proxy_grpc_send", a, b, c2, d);
    stub!("proxy_grpc_stream", a, b, c2, d, e, f, g, h, i);
    stub!("proxy_grpc_call", a, b, c2, d, e, f, g, h, i, j, k, m);
    stub!("proxy_dequeue_shared_queue", a, b, c2);
    stub!("proxy_enqueue_shared_queue", a, b, c2);
    stub!("proxy_resolve_shared_queue", a, b, c2, d, e);
    stub!("proxy_register_shared_queue", a, b, c2);
    stub!("proxy_set_buffer_bytes", a, b, c2, d, e);
    stub!("proxy_set_header_map_pairs", a, b, c2);
    stub!("proxy_close_stream", a);
    stub!("proxy_get_status", a, b, c2);
    stub!("proxy_get_log_level", a);
    stub!("proxy_define_metric", a, b, c2, d);
    stub!("proxy_increment_metric", a, b);
    stub!("proxy_record_metric", a, b);
    stub!("proxy_get_metric", a, b);
    l.func_wrap("env", "proxy_done", |mut c: Caller<'_, State>| -> i32 {
        record(&mut c, HostCall::Unsupported { name: "proxy_done" });
        UNIMPLEMENTED
    })?;
    Ok(())
}

/// WASI preview 1 as Envoy offers it, as far as the filter links it: no environment,
/// deterministic "random" bytes, output kept, exit as a trap.
fn wasi(l: &mut Linker<State>) -> HostResult<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    l.func_wrap(WASI, "random_get", |mut c: Caller<'_, State>, buf: i32, len: i32| -> HostResult<i32> {
        let mut bytes = Vec::with_capacity(len as u32 as usize);
        while bytes.len() < len as u32 as usize {
            let state = &mut c.data_mut().random;
            *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            bytes.push((*state >> 33) as u8);
        }
        write(&mut c, buf, &bytes)?;
        Ok(0)
    })?;
    l.func_wrap(WASI, "environ_sizes_get", |mut c: Caller<'_, State>, count: i32, size: i32| -> HostResult<i32> {
        write_u32(&mut c, count, 0)?;
        write_u32(&mut c, size, 0)?;
        Ok(0)
    })?;
    l.func_wrap(WASI, "environ_get", |_: Caller<'_, State>, _environ: i32, _buf: i32| -> i32 { 0 })?;
    l.func_wrap(
        WASI,
        "fd_write",
        |mut c: Caller<'_, State>, _fd: i32, iovs: i32, iovs_len: i32, written: i32| -> HostResult<i32> {
            let mut total = 0u32;
            for i in 0..iovs_len {
                let iov = read(&c, iovs + i * 8, 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let chunk = text(&c, ptr, len)?;
                c.data_mut().output.push_str(&chunk);
                total += len as u32;
            }
            write_u32(&mut c, written, total)?;
            Ok(0)
        },
    )?;
    l.func_wrap(WASI, "proc_exit", |_: Caller<'_, State>, code: i32| -> HostResult<()> {
        Err(wasmi::Error::i32_exit(code))
    })?;
    Ok(())
}

impl ProxyWasm {
    /// Instantiates `wasm`, runs its `_initialize` and creates the root context, as Envoy does
    /// when it loads the plugin.
    pub fn load(wasm: &[u8]) -> Result<ProxyWasm, String> {
        let engine = Engine::default();
        let module = Module::new(&engine, wasm).map_err(|e| format!("not a loadable module: {e}"))?;
        let linker = linker(&engine).map_err(|e| e.to_string())?;
        let mut store = Store::new(&engine, State { now_ns: 1_700_000_000_000_000_000, ..State::default() });
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| format!("cannot instantiate the module (an import Envoy lacks?): {e}"))?;
        let mut vm = ProxyWasm { store, instance, next_context: ROOT };
        vm.call::<(), ()>("_initialize", ())?;
        vm.call::<(i32, i32), ()>("proxy_on_context_create", (ROOT, 0))?;
        if vm.call::<(i32, i32), i32>("proxy_on_vm_start", (ROOT, 0))? == 0 {
            return Err("proxy_on_vm_start refused".into());
        }
        Ok(vm)
    }

    fn call<P: wasmi::WasmParams, R: wasmi::WasmResults>(&mut self, name: &str, params: P) -> Result<R, String> {
        let func = self
            .instance
            .get_typed_func::<P, R>(&self.store, name)
            .map_err(|e| format!("the module's export {name}: {e}"))?;
        func.call(&mut self.store, params).map_err(|e| {
            let output = &self.store.data().output;
            format!("{name} trapped: {e}\nmodule output: {output}\nhost calls so far: {:#?}", self.store.data().calls)
        })
    }

    /// The host calls made since the last `take_calls`, oldest first.
    pub fn take_calls(&mut self) -> Vec<HostCall> {
        std::mem::take(&mut self.store.data_mut().calls)
    }

    pub fn set_now_ms(&mut self, ms: u64) {
        self.store.data_mut().now_ns = ms * 1_000_000;
    }

    /// `proxy_on_configure` with `configuration` as the plugin configuration; the filter's answer.
    pub fn configure(&mut self, configuration: &[u8]) -> Result<bool, String> {
        self.store.data_mut().plugin_configuration = configuration.to_vec();
        Ok(self.call::<(i32, i32), i32>("proxy_on_configure", (ROOT, configuration.len() as i32))? != 0)
    }

    pub fn tick(&mut self) -> Result<(), String> {
        self.call::<i32, ()>("proxy_on_tick", ROOT)
    }

    /// Answers the root context's HTTP call `token` (`status: None`: the call failed).
    pub fn respond(&mut self, token: u32, status: Option<u16>, body: &[u8]) -> Result<(), String> {
        let headers = status.map(|s| vec![(":status".to_owned(), s.to_string())]).unwrap_or_default();
        let count = headers.len() as i32;
        let state = self.store.data_mut();
        state.call_response_headers = headers;
        state.call_response_body = body.to_vec();
        self.call::<(i32, i32, i32, i32, i32), ()>(
            "proxy_on_http_call_response",
            (ROOT, token as i32, count, body.len() as i32, 0),
        )?;
        let state = self.store.data_mut();
        state.call_response_headers.clear();
        state.call_response_body.clear();
        Ok(())
    }

    /// A new HTTP stream whose request headers are `headers`: `proxy_on_context_create`, then
    /// `proxy_on_request_headers`; the filter's action (`CONTINUE` or `PAUSE`).
    pub fn request(&mut self, headers: &[(&str, &str)]) -> Result<i32, String> {
        self.next_context += 1;
        let context = self.next_context;
        self.store.data_mut().request_headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        self.call::<(i32, i32), ()>("proxy_on_context_create", (context, ROOT))?;
        self.call::<(i32, i32, i32), i32>("proxy_on_request_headers", (context, headers.len() as i32, 1))
    }

    /// The request headers as the filter left them (what Envoy would send upstream).
    pub fn request_headers(&self) -> &[(String, String)] {
        &self.store.data().request_headers
    }
}
