#!/usr/bin/env bash
# A throwaway PostgreSQL for one test run, from the Debian packages' binaries: 127.0.0.1 only,
# trust auth, fsync off, everything (data, socket, log) in one directory of its own.
#
#   tools/postgres.sh start DIR   initdb + start in DIR (created; must be new or empty) on a free
#                                 port (or PORTCULLIS_TEST_POSTGRES_PORT); prints the DSN
#   tools/postgres.sh stop DIR    stops that server and removes DIR, and with it every database
#                                 the tests created in it
#
# Each run has its own directory and port, so concurrent runs (several worktrees, CI next to a
# developer) never find, reuse or stop each other's server.
set -euo pipefail
cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed: run \`apt-get install -y postgresql\` (as root), or skip its tests with PORTCULLIS_TEST_SKIP_POSTGRES=1" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ -n "$(ls -A "$dir")" ]; then
      echo "$dir is not empty: pick a new directory per run (mktemp -d)" >&2
      exit 1
    fi
    # `stop` removes only a directory that `start` made its own.
    touch "$dir/.portcullis-postgres"
    if [ "$(id -u)" = 0 ]; then
      chown postgres "$dir"
      if ! runuser -u postgres -- test -w "$dir"; then
        echo "the postgres user cannot reach $dir: its parent directories must be open to others (chmod o+x)" >&2
        exit 1
      fi
    fi
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 || {
      echo "initdb failed:" >&2
      cat "$dir/initdb.log" >&2
      exit 1
    }
    # A port found free can be taken before the server binds it: try a few.
    for attempt in 1 2 3 4 5; do
      port="${PORTCULLIS_TEST_POSTGRES_PORT:-$(free_port)}"
      if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null; then
        echo "$port" >"$dir/port"
        echo "postgres://postgres@127.0.0.1:$port/postgres"
        exit 0
      fi
      [ -n "${PORTCULLIS_TEST_POSTGRES_PORT:-}" ] && break
      echo "PostgreSQL did not start on port $port (attempt $attempt), retrying" >&2
    done
    echo "PostgreSQL did not start; last lines of $dir/server.log:" >&2
    tail -n 20 "$dir/server.log" >&2 || true
    exit 1
    ;;
  stop)
    [ -e "$dir" ] || exit 0
    if [ ! -e "$dir/.portcullis-postgres" ]; then
      echo "$dir was not made by \`$0 start\`: not removing it" >&2
      exit 1
    fi
    if [ -d "$dir/data" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
