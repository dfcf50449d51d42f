//! Replays every seed (`corpus/<target>/`) and every saved crash (`regressions/<target>/`)
//! through its target on stable Rust, without libFuzzer: a target that no longer builds, or an
//! input that once crashed and crashes again, fails here. Every failing input is listed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use portcullis_fuzz::TARGETS;

#[test]
fn seeds_and_saved_crashes_pass_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    for (name, run) in TARGETS {
        let mut inputs = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
            for entry in entries {
                let path = entry.expect("a readable directory entry").path();
                let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                    failures.push(path.display().to_string());
                }
                inputs += 1;
            }
        }
        assert!(inputs > 0, "target {name} has no seeds in corpus/{name}/");
    }
    assert!(failures.is_empty(), "inputs that fail their target:\n{}", failures.join("\n"));
}
