//! Fuzz harnesses for everything in Portcullis that reads input an attacker (or a misbehaving
//! peer) controls: request paths and hosts, tokens, templates, rules and snapshots, host
//! answers in the filter, and the control plane's form decoders. Each module is one target:
//! `run(data)` must never panic on any input, and asserts the target's invariants (a panic
//! here is a finding). `fuzz_targets/<name>.rs` hands libFuzzer's input to `run`;
//! `tests/corpus.rs` replays the seed corpora and every saved crash on stable Rust.
//! Harnesses reach the code only through the crates' public APIs; they must not copy the code
//! they test (an invariant written as a second implementation of the same bug proves nothing).

pub mod cors;
pub mod duration;
pub mod filter_host;
pub mod foreign;
#[cfg(feature = "control-plane")]
pub mod forms;
pub mod index;
pub mod introspection;
pub mod jwt;
pub mod path;
pub mod pipeline;
pub mod rules;
pub mod scope;
pub mod snapshot;
pub mod template;

/// A target's entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay test (`forms` with the `control-plane` feature).
pub const TARGETS: &[(&str, Target)] = &[
    ("cors", cors::run),
    ("duration", duration::run),
    ("filter_host", filter_host::run),
    ("foreign", foreign::run),
    #[cfg(feature = "control-plane")]
    ("forms", forms::run),
    ("index", index::run),
    ("introspection", introspection::run),
    ("jwt", jwt::run),
    ("path", path::run),
    ("pipeline", pipeline::run),
    ("rules", rules::run),
    ("scope", scope::run),
    ("snapshot", snapshot::run),
    ("template", template::run),
];

/// Splits `data` at the first NUL: seeds stay readable text with one `\0` between the parts.
pub(crate) fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
