//! The Portcullis testbed: the real `portcullis` binary, a real Envoy loading the built
//! filter, and an upstream that echoes what it received as JSON, wired together on loopback.
//! `just run` starts it on the well-known ports; the end-to-end tests start one per test on
//! free ports. Portcullis itself is never mocked; only the external systems rules call out to
//! (a Kratos-like session endpoint, a bearer check, a Keto-like permission check, a hydrator)
//! are stood in for by [`start_mock_services`], reachable from Envoy as the `mocks` cluster.
//!
//! The tests' control plane runs as in production, its admin API guarded by API keys: before
//! `serve`, the harness creates an `admin` key and a `tokens:read` key for the demo rules'
//! introspection call-outs with the real `portcullis keys create`, and every admin request made
//! through [`Testbed::admin_request`] carries the first. `just run` passes `--dev` instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

pub mod browser;

/// Where each piece listens.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub gateway: u16,
    pub public: u16,
    pub admin: u16,
    pub upstream: u16,
    pub envoy_admin: u16,
    /// The mock external services (session, bearer check, permission check, hydrator).
    pub mock: u16,
}

impl Ports {
    /// The ports `just run` and the README use.
    pub const WELL_KNOWN: Ports =
        Ports { gateway: 8080, public: 4444, admin: 4445, upstream: 8090, envoy_admin: 9901, mock: 8091 };

    /// Free loopback ports, for tests that run side by side.
    pub fn free() -> Result<Ports, String> {
        let mut listeners = Vec::new();
        let mut next = || -> Result<u16, String> {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            listeners.push(l);
            Ok(port)
        };
        Ok(Ports {
            gateway: next()?,
            public: next()?,
            admin: next()?,
            upstream: next()?,
            envoy_admin: next()?,
            mock: next()?,
        })
    }
}

/// Longer than the filter's tick (250 ms), on which each Envoy worker adopts a new snapshot.
pub const SETTLE: Duration = Duration::from_millis(400);

/// A client that opens a new connection for every request and follows no redirects, so that
/// successive requests are spread over Envoy's workers and a 302 is seen as such.
pub fn fresh_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

/// A [`fresh_client`] for start-up probes: a port taken by something that never answers must
/// not hold a probe for 30 s, so that a process that died meanwhile is noticed at once.
fn probe_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())
}

/// The token Envoy's filter presents to the control plane in the testbed.
pub const FILTER_TOKEN: &str = "testbed-filter-token";

pub struct Options {
    pub ports: Ports,
    /// Where configs, logs and the SQLite file go; `None`: a fresh temporary directory.
    pub dir: Option<PathBuf>,
    /// `portcullis serve --dev`: an admin API without keys (the README's curl examples).
    pub dev: bool,
}

/// What a test may change about the testbed beyond [`Options`] ([`Testbed::start_with`]).
#[derive(Debug, Clone)]
pub struct Extras {
    /// The host name in the public listener's and the gateway's URLs (the issuer, and so the
    /// cookies' host and the passkey relying party). Browser tests use `localhost`: cookies are
    /// per host, and `127.0.0.1` cannot be a WebAuthn RP ID. Everything still listens on
    /// 127.0.0.1.
    pub host: String,
    /// Merged into the control plane's config: objects key by key, anything else replaces.
    pub config: Value,
}

impl Default for Extras {
    fn default() -> Self {
        Self { host: "127.0.0.1".into(), config: Value::Null }
    }
}

pub struct Testbed {
    pub ports: Ports,
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    /// Behind a lock so that any wait can notice a child that died (`try_wait` needs `&mut`).
    control_plane: Mutex<Option<Child>>,
    envoy: Mutex<Child>,
    upstream: JoinHandle<()>,
    mock_server: JoinHandle<()>,
    /// What the mock services received, to assert on call-outs (and on caching).
    pub mocks: MockLog,
    pub http: reqwest::Client,
    pub dev: bool,
    /// An `admin` API key, sent by [`Testbed::admin_request`]; `None` under `--dev`.
    pub admin_key: Option<String>,
    /// A `tokens:read` API key that rules calling the admin introspection endpoint send.
    pub introspection_key: Option<String>,
    /// The host in [`Testbed::public`] and [`Testbed::gateway`] URLs ([`Extras::host`]).
    pub host: String,
}

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A build output the end-to-end tests run, and the crate directories it is built from.
struct Artifact {
    /// Overrides the path; an override is taken as it is (its sources are unknown here).
    env: &'static str,
    /// Relative to the workspace root.
    default: &'static str,
    /// Crate directories whose `src/` and `migrations/` go into the artifact.
    crates: &'static [&'static str],
}

const PORTCULLIS: Artifact = Artifact {
    env: "PORTCULLIS_BIN",
    default: "target/debug/portcullis",
    crates: &[
        "shared",
        "control-plane",
        "control-plane/bin",
        "control-plane/model",
        "control-plane/store",
        "control-plane/keys",
        "control-plane/ui",
        "control-plane/rules",
        "control-plane/identity",
        "control-plane/oauth2",
    ],
};
const FILTER_WASM: Artifact = Artifact {
    env: "PORTCULLIS_WASM",
    default: "target/wasm32-wasip1/wasm-release/portcullis_filter.wasm",
    crates: &["shared", "filter"],
};
const ENVOY: Artifact = Artifact { env: "ENVOY_BIN", default: ".venv/bin/envoy", crates: &[] };

/// The `portcullis` binary, refused when missing or older than its sources.
pub fn built_portcullis() -> Result<PathBuf, String> {
    artifact(&PORTCULLIS)
}

/// The filter's `.wasm`, refused when missing or older than its sources.
pub fn built_wasm() -> Result<PathBuf, String> {
    artifact(&FILTER_WASM)
}

fn artifact(artifact: &Artifact) -> Result<PathBuf, String> {
    let Artifact { env, default, crates } = artifact;
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if path.exists() { Ok(path) } else { Err(format!("{} not found (from {env})", path.display())) };
    }
    let root = workspace_root();
    let path = root.join(default);
    if !path.exists() {
        return Err(format!("{} not found: run `./just build` (or set {env})", path.display()));
    }
    fresh(&path, &root, crates)?;
    Ok(path)
}

/// Refuses `built` when one of its sources changed after it was written: the tests would
/// otherwise pass or fail on code that is no longer there. The sources are the ones cargo
/// rebuilds for, from the dep-info file cargo writes next to the artifact (`portcullis.d`): a
/// file only test builds read (`mod tests;`), a manifest or a lockfile edit that cargo does not
/// rebuild for must not refuse what `./just build` calls fresh. Without a dep-info file, every
/// file under the crates' `src/` and `migrations/` counts.
fn fresh(built: &Path, root: &Path, crates: &[&str]) -> Result<(), String> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified());
    let built_at = modified(built).map_err(|e| format!("{}: {e}", built.display()))?;
    let sources = dep_info(built).unwrap_or_else(|| crate_sources(root, crates));
    let newest = sources.into_iter().filter_map(|p| Some((modified(&p).ok()?, p))).max();
    match newest {
        Some((at, source)) if at > built_at => Err(format!(
            "{} is stale: {} changed after it was built ({} later); run `./just build`",
            built.strip_prefix(root).unwrap_or(built).display(),
            source.strip_prefix(root).unwrap_or(&source).display(),
            humanise(at.duration_since(built_at).unwrap_or_default()),
        )),
        _ => Ok(()),
    }
}

/// The sources listed in `<artifact>.d` (Makefile syntax: `target: dep dep`, spaces in paths
/// escaped). Paths are absolute; a file written by a build in another checkout whose `target/`
/// was copied here names that checkout's files, which are mapped onto this one.
fn dep_info(built: &Path) -> Option<Vec<PathBuf>> {
    let text = std::fs::read_to_string(built.with_extension("d")).ok()?;
    let line = text.lines().next()?;
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => current.push(chars.next()?),
            ' ' => paths.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    paths.push(current);
    let mut paths = paths.into_iter().filter(|p| !p.is_empty());
    let target = PathBuf::from(paths.next()?.strip_suffix(':')?);
    let sources: Vec<PathBuf> = paths.map(PathBuf::from).collect();
    // The part the recorded target and this artifact have in common ends both roots.
    let (theirs, ours) = (target.components().rev(), built.components().rev());
    let common = theirs.zip(ours).take_while(|(a, b)| a == b).count();
    let strip = |p: &Path| -> PathBuf { p.components().take(p.components().count().saturating_sub(common)).collect() };
    let (their_root, our_root) = (strip(&target), strip(built));
    Some(
        sources
            .into_iter()
            .map(|p| match p.strip_prefix(&their_root) {
                Ok(rest) if their_root != our_root => our_root.join(rest),
                _ => p,
            })
            .collect(),
    )
}

/// Every file under the crates' `src/` and `migrations/`, and their `build.rs`.
fn crate_sources(root: &Path, crates: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = crates
        .iter()
        .flat_map(|name| ["src", "migrations", "build.rs"].map(|part| root.join(name).join(part)))
        .collect();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

fn humanise(d: Duration) -> String {
    match d.as_secs() {
        0 => format!("{} ms", d.as_millis()),
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

fn render(template: &str, ports: &Ports, wasm: &Path, introspection_headers: &Value) -> String {
    template
        .replace("{{introspection_request_headers}}", &introspection_headers.to_string())
        .replace("{{gateway_port}}", &ports.gateway.to_string())
        .replace("{{public_port}}", &ports.public.to_string())
        .replace("{{admin_port}}", &ports.admin.to_string())
        .replace("{{upstream_port}}", &ports.upstream.to_string())
        .replace("{{envoy_admin_port}}", &ports.envoy_admin.to_string())
        .replace("{{mock_port}}", &ports.mock.to_string())
        .replace("{{filter_token}}", FILTER_TOKEN)
        .replace("{{wasm_path}}", &wasm.display().to_string())
}

impl Testbed {
    pub async fn start(options: Options) -> Result<Testbed, String> {
        Self::start_with(options, Extras::default()).await
    }

    pub async fn start_with(options: Options, extras: Extras) -> Result<Testbed, String> {
        let portcullis = built_portcullis()?;
        let envoy = artifact(&ENVOY)?;
        let wasm = built_wasm()?;
        let ports = options.ports;
        let (temp, dir) = match options.dir {
            Some(dir) => (None, dir),
            None => {
                let t = tempfile::Builder::new().prefix("portcullis-e2e-").tempdir().map_err(|e| e.to_string())?;
                let dir = t.path().to_path_buf();
                (Some(t), dir)
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let read = |name: &str| {
            std::fs::read_to_string(workspace_root().join("envoy").join(name)).map_err(|e| format!("{name}: {e}"))
        };
        write(&dir.join("portcullis.yaml"), &control_plane_config(&dir, &ports, &extras)?)?;
        let (admin_key, introspection_key) = if options.dev {
            (None, None)
        } else {
            let admin = create_api_key(&portcullis, &dir, "e2e", "admin").await?;
            let introspection = create_api_key(&portcullis, &dir, "filter-introspection", "tokens:read").await?;
            (Some(admin), Some(introspection))
        };
        let headers = introspection_headers(introspection_key.as_deref());
        write(&dir.join("rules.json"), &render(&read("demo-rules.template.json")?, &ports, &wasm, &headers))?;
        write(&dir.join("envoy.yaml"), &render(&read("envoy.template.yaml")?, &ports, &wasm, &headers))?;

        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
        let upstream = start_echo_upstream(ports.upstream).await?;
        let mocks = MockLog::default();
        let mock_server = match start_mock_services(ports.mock, mocks.clone()).await {
            Ok(server) => server,
            Err(e) => {
                upstream.abort();
                return Err(e);
            }
        };
        let envoy = spawn(
            Command::new(&envoy).args([
                "-c",
                "envoy.yaml",
                "--concurrency",
                "2",
                "--disable-hot-restart",
                "-l",
                "info",
            ]),
            &dir,
            "envoy.log",
        );
        let envoy = match envoy {
            Ok(child) => child,
            Err(e) => {
                upstream.abort();
                mock_server.abort();
                return Err(e);
            }
        };
        let mut testbed = Testbed {
            ports,
            dir: dir.clone(),
            _temp: temp,
            control_plane: Mutex::new(None),
            envoy: Mutex::new(envoy),
            upstream,
            mock_server,
            mocks,
            http,
            dev: options.dev,
            admin_key,
            introspection_key,
            host: extras.host,
        };
        testbed.start_control_plane_with(&portcullis).await?;
        testbed.wait_for_rules().await?;
        Ok(testbed)
    }

    async fn start_control_plane_with(&mut self, portcullis: &Path) -> Result<(), String> {
        let mut command = Command::new(portcullis);
        command.args(["serve", "--config", "portcullis.yaml"]).env("RUST_LOG", "info");
        if self.dev {
            command.arg("--dev");
        }
        let child = spawn(&mut command, &self.dir, "portcullis.log")?;
        *lock(&self.control_plane) = Some(child);
        let ready = self.public("/health/ready");
        let client = probe_client()?;
        self.wait_until("the control plane to be ready", "portcullis.log", || async {
            client.get(&ready).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await
    }

    /// Restarts the control plane (same config, same database).
    pub async fn start_control_plane(&mut self) -> Result<(), String> {
        let portcullis = built_portcullis()?;
        self.start_control_plane_with(&portcullis).await
    }

    pub async fn stop_control_plane(&mut self) {
        let child = lock(&self.control_plane).take();
        if let Some(mut child) = child {
            let _ = child.kill().await;
        }
    }

    /// Envoy answers 503 until its filter has received a snapshot; wait for a rule to answer on
    /// every worker.
    async fn wait_for_rules(&self) -> Result<(), String> {
        let url = self.gateway("/public/ready-check");
        let client = probe_client()?;
        self.wait_settled("Envoy's filter to load the rules", "envoy.log", || async {
            client.get(&url).send().await.is_ok_and(|r| r.status().as_u16() == 200)
        })
        .await
    }

    /// Waits until `check` holds on every Envoy worker. Each worker adopts a new rule snapshot
    /// on its own next tick, so one success proves only that one worker has it: `check` must
    /// keep holding, on fresh connections (see [`fresh_client`]), for longer than a tick.
    pub async fn wait_settled<F, Fut>(&self, what: &str, log: &str, mut check: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut holding: Option<(Instant, u32)> = None;
        while Instant::now() < deadline {
            if let Some(dead) = self.dead() {
                return Err(format!("{dead} while waiting for {what}"));
            }
            if check().await {
                let (since, probes) = holding.get_or_insert((Instant::now(), 0));
                *probes += 1;
                if since.elapsed() >= SETTLE && *probes >= 8 {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            } else {
                holding = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(self.timed_out(what, log))
    }

    async fn wait_until<F, Fut>(&self, what: &str, log: &str, mut check: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(dead) = self.dead() {
                return Err(format!("{dead} while waiting for {what}"));
            }
            if check().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(self.timed_out(what, log))
    }

    /// Which child process has exited, with the end of its log: Envoy or the control plane
    /// dying (a port taken, a bad config) is reported at once, not after a 30 s wait.
    fn dead(&self) -> Option<String> {
        let exited = |child: &mut Child| child.try_wait().ok().flatten();
        if let Some(status) = exited(&mut lock(&self.envoy)) {
            return Some(format!("Envoy exited ({status}); {}", self.log_tail("envoy.log")));
        }
        if let Some(status) = lock(&self.control_plane).as_mut().and_then(exited) {
            return Some(format!("the control plane exited ({status}); {}", self.log_tail("portcullis.log")));
        }
        None
    }

    fn timed_out(&self, what: &str, log: &str) -> String {
        format!("timed out waiting for {what}; {}", self.log_tail(log))
    }

    fn log_tail(&self, log: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        format!("last lines of {log}:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }

    pub fn gateway(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.ports.gateway)
    }
    pub fn public(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.ports.public)
    }
    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.admin)
    }
    /// A URL of the mock services, as rules name it (`http://127.0.0.1:<mock>/sessions/whoami`).
    pub fn mock(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.mock)
    }

    /// A request to the admin listener with the harness's admin API key: every admin call of
    /// the tests goes through here (or the shortcuts below), so this is the one place that
    /// authenticates them.
    pub fn admin_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.admin(path));
        match &self.admin_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }
    pub fn admin_get(&self, path: &str) -> reqwest::RequestBuilder {
        self.admin_request(reqwest::Method::GET, path)
    }
    pub fn admin_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.admin_request(reqwest::Method::POST, path)
    }
    pub fn admin_put(&self, path: &str) -> reqwest::RequestBuilder {
        self.admin_request(reqwest::Method::PUT, path)
    }

    /// What a rule's `oauth2_introspection` sends to the admin introspection endpoint
    /// (`introspection_request_headers`): the `tokens:read` key, if the admin API needs one.
    pub fn introspection_headers(&self) -> Value {
        introspection_headers(self.introspection_key.as_deref())
    }
}

impl Drop for Testbed {
    /// The children go with their handles (`kill_on_drop`); the in-process servers are tasks,
    /// which would keep their ports until the test's runtime ends.
    fn drop(&mut self) {
        self.upstream.abort();
        self.mock_server.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn introspection_headers(key: Option<&str>) -> Value {
    match key {
        Some(key) => json!({"X-Portcullis-Api-Key": key}),
        None => json!({}),
    }
}

/// `portcullis keys create` against the testbed's config (and so its database), before
/// `serve`: the key is the one line on stdout.
async fn create_api_key(portcullis: &Path, dir: &Path, name: &str, scopes: &str) -> Result<String, String> {
    let output = Command::new(portcullis)
        .args(["keys", "create", "--config", "portcullis.yaml", "--name", name, "--scopes", scopes])
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run portcullis keys create: {e}"))?;
    let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || !key.starts_with("pc_ak_") || key.contains('\n') {
        return Err(format!(
            "portcullis keys create --name {name} --scopes {scopes} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(key)
}

fn control_plane_config(dir: &Path, ports: &Ports, extras: &Extras) -> Result<String, String> {
    let mut config = json!({
        "dsn": format!("sqlite://{}?mode=rwc", dir.join("portcullis.sqlite").display()),
        "serve": {
            "public": {"host": "127.0.0.1", "port": ports.public},
            "admin": {"host": "127.0.0.1", "port": ports.admin},
        },
        "urls": {"self": {"issuer": format!("http://{}:{}/", extras.host, ports.public)}},
        "access_rules": {"repositories": ["rules.json"]},
        "filters": {"tokens": [FILTER_TOKEN]},
    });
    merge(&mut config, &extras.config);
    let yaml = serde_yaml::to_string(&config).map_err(|e| format!("portcullis.yaml: {e}"))?;
    Ok(format!("# Generated by the Portcullis testbed.\n{yaml}"))
}

/// Merges `extra` into `base`: objects key by key, anything else (lists too) replaces.
fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (_, Value::Null) => {}
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, extra) => *base = extra.clone(),
    }
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

fn spawn(command: &mut Command, dir: &Path, log: &str) -> Result<Child, String> {
    let file = std::fs::File::create(dir.join(log)).map_err(|e| format!("{log}: {e}"))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command.as_std().get_program()))
}

/// An upstream that answers every request with what it received:
/// `{"method", "path", "headers": {"name": ["value", ...]}}`.
pub async fn start_echo_upstream(port: u16) -> Result<JoinHandle<()>, String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| format!("upstream port {port}: {e}"))?;
    let app = Router::new().fallback(|request: Request| async move {
        let mut headers: Map<String, Value> = Map::new();
        for (name, value) in request.headers() {
            let entry = headers.entry(name.as_str()).or_insert_with(|| json!([]));
            if let Value::Array(values) = entry {
                values.push(Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()));
            }
        }
        axum::Json(json!({
            "method": request.method().as_str(),
            "path": request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            "headers": headers,
        }))
    });
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

/// One request a mock service received.
#[derive(Debug, Clone)]
pub struct MockRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl MockRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Every request the mock services received, shared with the server task.
#[derive(Debug, Clone, Default)]
pub struct MockLog(Arc<Mutex<Vec<MockRequest>>>);

impl MockLog {
    /// How many requests were made to `path` (without the query).
    pub fn count(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    /// The requests made to `path`, oldest first.
    pub fn requests(&self, path: &str) -> Vec<MockRequest> {
        let log = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        log.iter().filter(|r| r.path == path).cloned().collect()
    }

    fn record(&self, request: MockRequest) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(request);
    }
}

/// The external systems access rules call out to, in one server:
///
/// * `/sessions/whoami` (any method, like Kratos): 200 with a Kratos session when the `Cookie`
///   holds `ory_kratos_session=valid`, 500 for `ory_kratos_session=down` (Kratos failing), 401
///   otherwise;
/// * `GET /check`: 200 `{"sub":"svc-1","extra":{"role":"reader"}}` for `Bearer good-token`, 401
///   otherwise;
/// * `POST /relation-tuples/check` (Keto-like): 200 with `X-Permission: granted` when the JSON
///   body has `subject_id` `user-1` and `object` `report`, 403 otherwise;
/// * `POST /hydrate`: the session it is sent, with `extra.plan` set to `gold`;
/// * `GET /__count?path=/sessions/whoami`: `{"path", "count"}`, how often a path was called.
///
/// Every request but `/__count` is recorded in `log`.
pub async fn start_mock_services(port: u16, log: MockLog) -> Result<JoinHandle<()>, String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| format!("mock port {port}: {e}"))?;
    let app = Router::new().fallback(move |request: Request| {
        let log = log.clone();
        async move { mock_service(request, &log).await }
    });
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

async fn mock_service(request: Request, log: &MockLog) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if path == "/__count" {
        let wanted = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("path="))
            .map(|p| p.replace("%2F", "/").replace("%2f", "/"))
            .unwrap_or_default();
        return axum::Json(json!({"path": wanted, "count": log.count(&wanted)})).into_response();
    }
    let body = axum::body::to_bytes(body, 1 << 20).await.map(|b| b.to_vec()).unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let request = MockRequest { method: parts.method.as_str().to_owned(), path: path.clone(), headers, body };
    log.record(request.clone());
    let status = |code: StatusCode| Response::builder().status(code).body(Body::empty()).unwrap_or_default();
    match (request.method.as_str(), path.as_str()) {
        (_, "/sessions/whoami") => {
            let has = |cookie: &str| {
                request
                    .headers
                    .iter()
                    .filter(|(n, _)| n == "cookie")
                    .flat_map(|(_, v)| v.split(';'))
                    .any(|c| c.trim() == cookie)
            };
            if has("ory_kratos_session=down") {
                status(StatusCode::INTERNAL_SERVER_ERROR)
            } else if has("ory_kratos_session=valid") {
                axum::Json(json!({
                    "id": "s1",
                    "active": true,
                    "identity": {"id": "user-1", "traits": {"email": "a@example.com"}},
                }))
                .into_response()
            } else {
                status(StatusCode::UNAUTHORIZED)
            }
        }
        ("GET", "/check") => {
            if request.header("authorization") == Some("Bearer good-token") {
                axum::Json(json!({"sub": "svc-1", "extra": {"role": "reader"}})).into_response()
            } else {
                status(StatusCode::UNAUTHORIZED)
            }
        }
        ("POST", "/relation-tuples/check") => {
            let body = request.json();
            if body["subject_id"] == "user-1" && body["object"] == "report" {
                ([("x-permission", "granted")], axum::Json(json!({"allowed": true}))).into_response()
            } else {
                (StatusCode::FORBIDDEN, axum::Json(json!({"allowed": false}))).into_response()
            }
        }
        ("POST", "/hydrate") => {
            let mut session = request.json();
            if !session.is_object() {
                return status(StatusCode::BAD_REQUEST);
            }
            if !session["extra"].is_object() {
                session["extra"] = json!({});
            }
            session["extra"]["plan"] = json!("gold");
            axum::Json(session).into_response()
        }
        _ => status(StatusCode::NOT_FOUND),
    }
}

/// Starts a testbed on free ports for one test; panics with the reason (and log tail) when it
/// cannot. See [`start_on_free_ports`].
pub async fn testbed() -> Testbed {
    testbed_with(|_| Extras::default()).await
}

/// [`testbed`] with [`Extras`] that may depend on the ports (a return URL on the gateway).
pub async fn testbed_with(extras: impl Fn(&Ports) -> Extras) -> Testbed {
    start_on_free_ports(false, extras).await.unwrap_or_else(|e| panic!("testbed did not start: {e}"))
}

/// How many sets of ports a testbed tries before giving up.
pub const START_ATTEMPTS: u32 = 4;

/// Starts a testbed on free ports. A port [`Ports::free`] found free is released before Envoy,
/// the control plane or the in-process servers bind it, so a neighbouring test (or any
/// outgoing connection) can take it first: "address in use" from any of them earns a fresh
/// set of ports. Every start path of the tests goes through here.
pub async fn start_on_free_ports(dev: bool, extras: impl Fn(&Ports) -> Extras) -> Result<Testbed, String> {
    start_retrying(START_ATTEMPTS, |_| Ports::free(), dev, extras).await
}

/// [`start_on_free_ports`] with the ports of each attempt (from 1) given by `ports`.
pub async fn start_retrying(
    attempts: u32,
    mut ports: impl FnMut(u32) -> Result<Ports, String>,
    dev: bool,
    extras: impl Fn(&Ports) -> Extras,
) -> Result<Testbed, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ports = ports(attempt)?;
        match Testbed::start_with(Options { ports, dir: None, dev }, extras(&ports)).await {
            Ok(t) => return Ok(t),
            Err(e) if attempt < attempts && port_taken(&e) => {
                eprintln!("testbed attempt {attempt}: a port was taken, retrying on fresh ports: {e}");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a start failed because a port it was to listen on is taken (Envoy: "cannot bind
/// ...: Address already in use"; the control plane and the in-process servers: the OS error).
pub fn port_taken(error: &str) -> bool {
    error.contains("Address already in use") || error.contains("address already in use")
}

/// What a client sees of one answer.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The raw body; for an upstream answer, the echo's `{"method", "path", "headers"}`.
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The values the upstream received for a request header.
    pub fn upstream(&self, name: &str) -> Value {
        self.body["headers"][name].clone()
    }

    /// The `error.reason` of a Portcullis denial.
    pub fn reason(&self) -> Option<&str> {
        self.body["error"]["reason"].as_str()
    }
}

/// Sends a request to `url` on a new connection (so requests spread over Envoy's workers),
/// without following redirects.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let client = fresh_client().unwrap_or_else(|e| panic!("{e}"));
    let mut request = client.request(method.parse().unwrap_or(reqwest::Method::GET), url);
    for (n, v) in headers {
        request = request.header(*n, *v);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, text, body }
}

/// Replaces the admin-managed rules; panics if the control plane refuses them.
pub async fn put_rules(t: &Testbed, rules: Value) {
    let response = t.admin_put("/admin/rules").json(&rules).send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    assert_eq!(status, 200, "rules refused: {}", response.text().await.unwrap_or_default());
}

/// Verifies an ES256 token from the OAuth2 server (ID token, JWT access token) against the
/// control plane's `/.well-known/jwks.json` (the key named by the token's `kid`) and returns its
/// claims; panics when it does not verify.
pub async fn verified_claims(t: &Testbed, token: &str) -> Value {
    verified_claims_at(t, "/.well-known/jwks.json", token).await
}

/// Verifies an ES256 token an `id_token` mutator added against the gateway's JWKS
/// (`/.well-known/gateway-jwks.json`) and returns its claims; panics when it does not verify.
pub async fn verified_gateway_claims(t: &Testbed, token: &str) -> Value {
    verified_claims_at(t, "/.well-known/gateway-jwks.json", token).await
}

/// Verifies an ES256 token against the JWKS at `jwks_path` on the public listener.
pub async fn verified_claims_at(t: &Testbed, jwks_path: &str, token: &str) -> Value {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};

    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).unwrap_or_else(|e| panic!("{token:?} is not a JWT: {e}"));
    let json = |part: &str| -> Value {
        serde_json::from_slice(&decode(part)).unwrap_or_else(|e| panic!("{token:?} is not a JWT: {e}"))
    };
    let (input, signature) = token.rsplit_once('.').unwrap_or_else(|| panic!("{token:?} is not a JWT"));
    let (header, payload) = input.split_once('.').unwrap_or_else(|| panic!("{token:?} is not a JWT"));
    let header = json(header);
    let jwks: Value = match t.http.get(t.public(jwks_path)).send().await {
        Ok(r) => r.json().await.unwrap_or_else(|e| panic!("the JWKS at {jwks_path} is not JSON: {e}")),
        Err(e) => panic!("GET {jwks_path}: {e}"),
    };
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == header["kid"]))
        .unwrap_or_else(|| panic!("the token's kid {} is not in the JWKS at {jwks_path}: {jwks}", header["kid"]));
    let coordinate = |name: &str| decode(key[name].as_str().unwrap_or_else(|| panic!("JWK without {name}: {key}")));
    let mut point = vec![4u8];
    point.extend(coordinate("x"));
    point.extend(coordinate("y"));
    let verifying = VerifyingKey::from_sec1_bytes(&point).unwrap_or_else(|e| panic!("bad JWK {key}: {e}"));
    let signature = Signature::from_slice(&decode(signature)).unwrap_or_else(|e| panic!("bad signature: {e}"));
    assert!(verifying.verify(input.as_bytes(), &signature).is_ok(), "the token verifies with {jwks_path}");
    json(payload)
}

/// Whether `token` (compact ES256) verifies with any key of the JWKS at `jwks_path` on the
/// public listener, whatever its `kid` says: what a lenient relying party would accept.
pub async fn verifies_at(t: &Testbed, jwks_path: &str, token: &str) -> bool {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};

    let jwks: Value = match t.http.get(t.public(jwks_path)).send().await {
        Ok(r) => r.json().await.unwrap_or_else(|e| panic!("the JWKS at {jwks_path} is not JSON: {e}")),
        Err(e) => panic!("GET {jwks_path}: {e}"),
    };
    let Some((input, signature)) = token.rsplit_once('.') else { return false };
    let Some(signature) = URL_SAFE_NO_PAD.decode(signature).ok().and_then(|s| Signature::from_slice(&s).ok()) else {
        return false;
    };
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    keys.iter().any(|key| {
        let coordinate = |name: &str| key[name].as_str().and_then(|c| URL_SAFE_NO_PAD.decode(c).ok());
        let (Some(x), Some(y)) = (coordinate("x"), coordinate("y")) else { return false };
        let point = [vec![4u8], x, y].concat();
        VerifyingKey::from_sec1_bytes(&point).is_ok_and(|k| k.verify(input.as_bytes(), &signature).is_ok())
    })
}

/// Creates a client_credentials client (client_secret_basic) through the admin API, checking
/// the Hydra-shaped answer.
pub async fn create_client(t: &Testbed, id: &str, secret: &str, scope: &str) {
    let response = t
        .admin_post("/admin/clients")
        .json(&json!({"client_id": id, "client_secret": secret, "grant_types": ["client_credentials"], "scope": scope}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 201);
    let client: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(client["client_id"], id);
    assert_eq!(client["client_secret"], secret, "the secret is shown once, on creation");
    assert_eq!(client["token_endpoint_auth_method"], "client_secret_basic");
}

/// A client_credentials access token for `scope`, with client_secret_basic.
pub async fn issue_token(t: &Testbed, id: &str, secret: &str, scope: &str) -> String {
    let response = t
        .http
        .post(t.public("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["scope"], scope);
    body["access_token"].as_str().unwrap().to_owned()
}

/// Seconds since the epoch on the real clock, which the Envoy and the control plane under test
/// also read (tokens minted here must be current for them).
#[expect(clippy::disallowed_methods, reason = "a black-box test shares the processes' real clock")]
pub fn now_secs() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap()
}

#[cfg(test)]
mod tests {
    use std::fs::{File, create_dir_all, write};
    use std::time::{Duration, SystemTime};

    use super::fresh;

    #[expect(clippy::disallowed_methods, reason = "file ages are compared with the real clock")]
    fn set_age(path: &std::path::Path, age_secs: u64) {
        let at = SystemTime::now() - Duration::from_secs(age_secs);
        File::options().write(true).open(path).and_then(|f| f.set_modified(at)).unwrap();
    }

    fn tree(r: &std::path::Path, files: &[(&str, u64)]) {
        for (file, age) in files {
            let path = r.join(file);
            create_dir_all(path.parent().unwrap()).unwrap();
            write(&path, "x").unwrap();
            set_age(&path, *age);
        }
    }

    #[test]
    fn without_dep_info_every_crate_source_counts() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        tree(
            r,
            &[
                ("filter/src/lib.rs", 300),
                ("filter/src/deep/mod.rs", 200),
                ("control-plane/migrations/1.sql", 100),
                ("filter/Cargo.toml", 10),
                ("built.wasm", 150),
            ],
        );
        let built = r.join("built.wasm");
        // Sources older than the build; a manifest edit cargo need not rebuild for is ignored.
        assert_eq!(fresh(&built, r, &["filter"]), Ok(()));
        // A migration changed after the build: refused, naming the file and the command.
        let error = fresh(&built, r, &["filter", "control-plane"]).unwrap_err();
        assert!(error.contains("control-plane/migrations/1.sql changed after it was built"), "{error}");
        assert!(error.contains("run `./just build`"), "{error}");
        set_age(&r.join("filter/src/deep/mod.rs"), 1);
        let error = fresh(&built, r, &["filter"]).unwrap_err();
        assert!(error.contains("filter/src/deep/mod.rs"), "{error}");
    }

    #[test]
    fn cargo_dep_info_decides_what_counts_even_from_another_checkout() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        tree(
            r,
            &[
                ("shared/src/lib.rs", 300),
                ("filter/src/my file.rs", 300),
                ("filter/src/tests.rs", 5),
                ("target/wasm-release/portcullis_filter.wasm", 100),
            ],
        );
        let built = r.join("target/wasm-release/portcullis_filter.wasm");
        // Written by a build in /elsewhere/main, whose target/ was copied here: its paths are
        // mapped onto this checkout. `tests.rs` is only read by test builds: not listed.
        write(
            built.with_extension("d"),
            "/elsewhere/main/target/wasm-release/portcullis_filter.wasm: /elsewhere/main/shared/src/lib.rs \
             /elsewhere/main/filter/src/my\\ file.rs\n\n",
        )
        .unwrap();
        assert_eq!(fresh(&built, r, &["shared", "filter"]), Ok(()), "a test-only file changed: still fresh");
        set_age(&r.join("filter/src/my file.rs"), 1);
        let error = fresh(&built, r, &["shared", "filter"]).unwrap_err();
        assert!(error.contains("filter/src/my file.rs changed after it was built"), "{error}");
    }

    #[test]
    fn only_address_in_use_errors_earn_a_retry() {
        assert!(super::port_taken(
            "Envoy exited (exit status: 1); [critical] cannot bind '127.0.0.1:4001': Address already in use"
        ));
        assert!(super::port_taken("cannot listen on 127.0.0.1:4 (serve.admin): Address already in use (os error 98)"));
        assert!(!super::port_taken("timed out waiting for the control plane to be ready"));
    }
}
