//! Rule selection and the filter's request path timed inside wasm: `cargo run --release -p
//! portcullis-bench --bin wasm-timing --target wasm32-wasip1` runs it under Node's WASI (V8, as
//! in Envoy). Prints one line per rule count (nanoseconds per selection), then one per filter
//! scenario: nanoseconds per allowed request (the filter's own work, host calls answered from
//! memory) and the ABI calls it stands for. `wasm-timing filter` prints the scenarios only.
#![expect(clippy::print_stdout, reason = "a measuring tool: its output is the measurement")]
#![expect(unsafe_code, reason = "the counting allocator forwards to the system allocator")]

use portcullis_bench::filter::Scenario;
use portcullis_bench::{last_url, rule_set};
use std::hint::black_box;
use std::time::Instant;

/// Counts allocations, so a scenario can report how many a request makes (in wasm each costs a
/// walk of dlmalloc's free lists).
struct Counting;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Nanoseconds per call of `f`, after a warm-up.
fn time(iterations: u32, mut f: impl FnMut()) -> u128 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() / u128::from(iterations)
}

/// The sans-IO steps of one request, each timed alone (`wasm-timing steps`).
fn steps() {
    use portcullis_shared::pipeline::{Memo, Request, begin, begin_remembering};
    use std::hash::BuildHasher as _;
    // What keying a memory on a token costs: a digest, or a keyed hash (then compared).
    let token = "x".repeat(300);
    let sha = time(20_000, || {
        black_box(<sha2::Sha256 as sha2::Digest>::digest(black_box(token.as_bytes())));
    });
    let state = std::collections::hash_map::RandomState::new();
    let sip = time(20_000, || {
        black_box(state.hash_one(black_box(token.as_str())));
    });
    println!("steps: SHA-256 of 300 bytes {sha} ns, SipHash-1-3 of 300 bytes {sip} ns");
    for scenario in Scenario::all() {
        let rules = &scenario.snapshot().rules;
        let all = scenario.request_headers();
        let pseudo = |n: &str| all.iter().find(|(k, _)| k == n).map_or("", |(_, v)| v.as_str());
        let headers: Vec<(&str, &str)> =
            all.iter().filter(|(n, _)| !n.starts_with(':')).map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let req = Request {
            method: pseudo(":method"),
            scheme: pseudo(":scheme"),
            host: pseudo(":authority"),
            target: pseudo(":path"),
            headers: &headers,
            remote_addr: None,
        };
        let n = 20_000;
        let copy = time(n, || {
            black_box(all.to_vec());
        });
        let serialized =
            portcullis_filter::headers::HeaderBlock::serialize(all.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        let block = time(n, || {
            black_box(portcullis_filter::headers::HeaderBlock::parse(black_box(&serialized)).ok());
        });
        println!("steps/{}: header block parse {block} ns", scenario.name);
        let url = time(n, || {
            black_box(portcullis_shared::matching::request_url(req.scheme, req.host, req.target).ok());
        });
        let fresh = time(n, || {
            black_box(begin(rules, &req, 1_800_000_000_000));
        });
        let mut memo = Memo::default();
        let remembered = time(n, || {
            black_box(begin_remembering(rules, &req, 1_800_000_000_000, &mut memo));
        });
        println!(
            "steps/{}: copy headers {copy} ns, request_url {url} ns, begin {fresh} ns, begin with memo {remembered} ns",
            scenario.name
        );
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("steps") {
        steps();
        return;
    }
    let filter_only = std::env::args().nth(1).as_deref() == Some("filter");
    if !filter_only {
        for n in [10usize, 1_000, 10_000] {
            let set = rule_set(n);
            let url = last_url(n);
            let iterations = 20_000u32;
            for _ in 0..1_000 {
                black_box(set.select("GET", &url));
            }
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(set.select("GET", black_box(&url)));
            }
            let per = start.elapsed().as_nanos() / u128::from(iterations);
            println!("select/{n} rules: {per} ns");
        }
    }
    for scenario in Scenario::all() {
        let iterations = 50_000u32;
        for _ in 0..2_000 {
            if let Err(e) = scenario.serve() {
                println!("{}: {e}", scenario.name);
                return;
            }
        }
        scenario.host.take_calls();
        let before = allocations();
        let start = Instant::now();
        for _ in 0..iterations {
            let _ = black_box(scenario.serve());
        }
        let per = start.elapsed().as_nanos() / u128::from(iterations);
        let allocated = (allocations() - before) / u64::from(iterations);
        let calls = scenario.host.take_calls();
        println!(
            "filter/{}: {per} ns per request, {allocated} allocations, {} ABI calls ({:?})",
            scenario.name,
            calls.total() / iterations,
            calls
        );
    }
}
