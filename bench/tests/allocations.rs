//! Allocations per allowed request, pinned per scenario: under V8 each one is a walk of the
//! filter's allocator, and they were most of what the filter cost above the wasm floor
//! (bench/results.md). Counted natively with the same scenarios `wasm-timing` runs in wasm; a
//! change that adds per-request work a cache could hold fails here, and one that removes some
//! lowers the budget.
// The counting allocator is the only unsafe code: it forwards to the system allocator.
#![expect(unsafe_code, reason = "a counting global allocator")]

use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_bench::filter::Scenario;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per repeated allowed request after the caches are warm, the host's included as
/// Envoy makes them in the filter's memory (the header map's buffer) and the harness's record
/// of the header set (two strings).
fn per_request(scenario: &Scenario) -> u64 {
    for _ in 0..50 {
        scenario.serve().unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    }
    let iterations = 200;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..iterations {
        scenario.serve().unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) / iterations
}

#[test]
fn a_repeated_allowed_request_stays_within_its_allocation_budget() {
    // Measured when each budget was set; wasm-timing reports the same counts under V8.
    let budgets = [("anonymous", 30), ("jwt", 33), ("introspection-warm", 49), ("session", 54)];
    let mut over = Vec::new();
    for (name, budget) in budgets {
        let scenario = Scenario::new(name).unwrap_or_else(|| panic!("no scenario {name}"));
        let measured = per_request(&scenario);
        eprintln!("{name}: {measured} allocations per request (budget {budget})");
        if measured > budget {
            over.push(format!("{name}: {measured} > {budget}"));
        }
    }
    assert!(over.is_empty(), "more allocations per request than the budget: {over:?}");
}
