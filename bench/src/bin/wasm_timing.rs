//! Rule selection and the filter's request path timed inside wasm: `cargo run --release -p
//! portcullis-bench --bin wasm-timing --target wasm32-wasip1` runs it under Node's WASI (V8, as
//! in Envoy). Prints one line per rule count (nanoseconds per selection), then one per filter
//! scenario: nanoseconds per allowed request (the filter's own work, host calls answered from
//! memory) and the ABI calls it stands for. `wasm-timing filter` prints the scenarios only.
#![allow(clippy::print_stdout)]

use portcullis_bench::filter::Scenario;
use portcullis_bench::{last_url, rule_set};
use std::hint::black_box;
use std::time::Instant;

fn main() {
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
        let start = Instant::now();
        for _ in 0..iterations {
            let _ = black_box(scenario.serve());
        }
        let per = start.elapsed().as_nanos() / u128::from(iterations);
        let calls = scenario.host.take_calls();
        println!(
            "filter/{}: {per} ns per request, {} ABI calls ({:?})",
            scenario.name,
            calls.total() / iterations,
            calls
        );
    }
}
