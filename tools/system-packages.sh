#!/usr/bin/env bash
# The Debian packages a recipe needs from the system: `build` (compiling: OpenSSL for passkeys,
# a Python venv for Envoy and just) and `test` (Node.js for the wasm tests, PostgreSQL for the
# store tests, Chromium and chromedriver for the browser tests). Missing ones are installed when
# running as root (CI, a container); otherwise this stops with the exact command to run.
#
# PORTCULLIS_TEST_SKIP_POSTGRES=1 / PORTCULLIS_TEST_SKIP_BROWSER=1 drop those from `test`: the test
# runner (tools/test.sh) then leaves their tests out and reports them as SKIPPED.
set -euo pipefail

on_path() { command -v "$1" >/dev/null 2>&1; }
missing=()
for need in "$@"; do
  case "$need" in
    build)
      on_path pkg-config || missing+=(pkg-config)
      [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
      python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
      ;;
    test)
      on_path node || missing+=(nodejs)
      if [ "${PORTCULLIS_TEST_SKIP_POSTGRES:-}" != 1 ]; then
        ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
      fi
      if [ "${PORTCULLIS_TEST_SKIP_BROWSER:-}" != 1 ]; then
        # Where tests/src/browser.rs looks (CHROME_BIN / CHROMEDRIVER override it).
        if [ -n "${CHROME_BIN:-}" ]; then [ -f "$CHROME_BIN" ] || missing+=(chromium)
        else
          [ -x /usr/bin/chromium ] || on_path chromium || on_path chromium-browser || on_path google-chrome \
            || missing+=(chromium)
        fi
        if [ -n "${CHROMEDRIVER:-}" ]; then [ -f "$CHROMEDRIVER" ] || missing+=(chromium-driver)
        else
          on_path chromedriver || [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
        fi
      fi
      ;;
    *)
      echo "usage: $0 build|test..." >&2
      exit 2
      ;;
  esac
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then
  echo "installing ${missing[*]} (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
{
  echo "missing system packages: ${missing[*]}"
  echo "install them with:"
  echo "    sudo apt-get install -y ${missing[*]}"
  case " ${missing[*]} " in *" chromium"*) echo "or leave the browser tests out (reported as SKIPPED): PORTCULLIS_TEST_SKIP_BROWSER=1 ./just test" ;; esac
  case " ${missing[*]} " in *" postgresql "*) echo "or test the store on SQLite only (reported as SKIPPED): PORTCULLIS_TEST_SKIP_POSTGRES=1 ./just test" ;; esac
} >&2
exit 1
