#!/usr/bin/env bash
# `./just test`: every test, and an honest count of what did not run. It makes sure the system
# has what the tests need (tools/system-packages.sh: installs as root, else stops with the
# command), starts a PostgreSQL of this run's own (tools/postgres.sh, removed at the end), runs
# nextest over the workspace and the shared crate's tests compiled to wasm under Node, and ends
# with one line per group of tests left out: nothing that did not run is counted as passed.
#
# Opt-outs, for a machine that cannot have the packages; each is reported as SKIPPED. They are
# PORTCULLIS_TEST_*: the control plane reads every other PORTCULLIS_* variable as configuration.
#   PORTCULLIS_TEST_SKIP_BROWSER=1   leave out the tests that drive Chromium (named `browser_*`)
#   PORTCULLIS_TEST_SKIP_POSTGRES=1  store tests run on SQLite only; PostgreSQL's own tests are left out
set -euo pipefail
cd "$(dirname "$0")/.."

skip_browser="${PORTCULLIS_TEST_SKIP_BROWSER:-}"
skip_postgres="${PORTCULLIS_TEST_SKIP_POSTGRES:-}"
for value in "$skip_browser" "$skip_postgres"; do
  case "$value" in "" | 1) ;; *) echo "PORTCULLIS_TEST_SKIP_BROWSER / PORTCULLIS_TEST_SKIP_POSTGRES take 1 or nothing, not '$value'" >&2; exit 2 ;; esac
done
tools/system-packages.sh test

work="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-test-XXXXXX")"
pg_dir=""
cleanup() {
  if [ -n "$pg_dir" ]; then tools/postgres.sh stop "$pg_dir" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# Store tests that ran without their PostgreSQL half leave a mark here (control-plane's
# store::testing), so the summary can count them.
export PORTCULLIS_TEST_SKIP_LOG="$work/skipped"
mkdir -p "$PORTCULLIS_TEST_SKIP_LOG"

# Tests that need a browser or PostgreSQL of their own are named for it, so one filter leaves
# them out.
browser_tests='test(/^browser_/)'
postgres_tests='test(/^postgres_/)'
excluded=()
if [ "$skip_postgres" = 1 ]; then
  unset PORTCULLIS_TEST_POSTGRES_DSN
  excluded+=("$postgres_tests")
else
  # Under /tmp itself: as root, the server runs as the postgres user, who cannot enter $work.
  pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-pg-XXXXXX")"
  # Assigned first, then checked, then exported: `export X="$(failing)"` would succeed and
  # leave the store tests without PostgreSQL.
  dsn="$(tools/postgres.sh start "$pg_dir")" || { echo "PostgreSQL did not start (above); PORTCULLIS_TEST_SKIP_POSTGRES=1 skips its tests" >&2; exit 1; }
  if [ -z "$dsn" ]; then
    echo "tools/postgres.sh start printed no DSN" >&2
    exit 1
  fi
  export PORTCULLIS_TEST_POSTGRES_DSN="$dsn"
fi
if [ "$skip_browser" = 1 ]; then excluded+=("$browser_tests"); fi

filter=()
if [ "${#excluded[@]}" -gt 0 ]; then
  joined="$(printf ' | %s' "${excluded[@]}")"
  filter=(-E "not (${joined:3})")
fi

started=$SECONDS
status=0
cargo nextest run --workspace --no-fail-fast "${filter[@]}" || status=$?
cargo test -q -p portcullis-shared --target wasm32-wasip1 || status=$?

count() { cargo nextest list --workspace -E "$1" --message-format oneline 2>/dev/null | grep -c . || true; }
echo
echo "tests: $((SECONDS - started)) s"
if [ "$skip_browser" = 1 ]; then
  echo "SKIPPED: $(count "$browser_tests") browser tests (PORTCULLIS_TEST_SKIP_BROWSER=1)"
fi
if [ "$skip_postgres" = 1 ]; then
  halves="$(find "$PORTCULLIS_TEST_SKIP_LOG" -type f | wc -l)"
  echo "SKIPPED: the PostgreSQL half of $halves store tests (they ran on SQLite only), and $(count "$postgres_tests") test(s) of PostgreSQL itself (PORTCULLIS_TEST_SKIP_POSTGRES=1)"
fi
exit "$status"
