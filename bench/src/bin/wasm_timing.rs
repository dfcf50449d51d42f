//! Rule selection timed inside wasm: `cargo run --release -p portcullis-bench --bin wasm-timing
//! --target wasm32-wasip1` runs it under Node's WASI (V8, as in Envoy). Prints one line per
//! rule count: nanoseconds per selection.
#![allow(clippy::print_stdout)]

use portcullis_bench::{last_url, rule_set};
use std::hint::black_box;
use std::time::Instant;

fn main() {
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
