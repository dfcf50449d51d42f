//! The Portcullis testbed: the real `portcullis` binary, a real Envoy loading the built
//! filter, and an upstream that echoes what it received as JSON, wired together on loopback.
//! `just run` starts it on the well-known ports; the end-to-end tests start one per test on
//! free ports. Nothing here is mocked: if the testbed works, the deployment story works.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Where each piece listens.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub gateway: u16,
    pub public: u16,
    pub admin: u16,
    pub upstream: u16,
    pub envoy_admin: u16,
}

impl Ports {
    /// The ports `just run` and the README use.
    pub const WELL_KNOWN: Ports = Ports { gateway: 8080, public: 4444, admin: 4445, upstream: 8090, envoy_admin: 9901 };

    /// Free loopback ports, for tests that run side by side.
    pub fn free() -> Result<Ports, String> {
        let mut listeners = Vec::new();
        let mut next = || -> Result<u16, String> {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            listeners.push(l);
            Ok(port)
        };
        Ok(Ports { gateway: next()?, public: next()?, admin: next()?, upstream: next()?, envoy_admin: next()? })
    }
}

/// The token Envoy's filter presents to the control plane in the testbed.
pub const FILTER_TOKEN: &str = "testbed-filter-token";

pub struct Options {
    pub ports: Ports,
    /// Where configs, logs and the SQLite file go; `None`: a fresh temporary directory.
    pub dir: Option<PathBuf>,
}

pub struct Testbed {
    pub ports: Ports,
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    control_plane: Option<Child>,
    _envoy: Child,
    _upstream: JoinHandle<()>,
    pub http: reqwest::Client,
}

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn artifact(env: &str, default: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| workspace_root().join(default));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} not found (set {env}, or build it with `just build`)", path.display()))
    }
}

fn render(template: &str, ports: &Ports, wasm: &Path) -> String {
    template
        .replace("{{gateway_port}}", &ports.gateway.to_string())
        .replace("{{admin_port}}", &ports.admin.to_string())
        .replace("{{upstream_port}}", &ports.upstream.to_string())
        .replace("{{envoy_admin_port}}", &ports.envoy_admin.to_string())
        .replace("{{filter_token}}", FILTER_TOKEN)
        .replace("{{wasm_path}}", &wasm.display().to_string())
}

impl Testbed {
    pub async fn start(options: Options) -> Result<Testbed, String> {
        let portcullis = artifact("PORTCULLIS_BIN", "target/debug/portcullis")?;
        let envoy = artifact("ENVOY_BIN", ".venv/bin/envoy")?;
        let wasm = artifact("PORTCULLIS_WASM", "target/wasm32-wasip1/wasm-release/portcullis_filter.wasm")?;
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
        write(&dir.join("rules.json"), &render(&read("demo-rules.template.json")?, &ports, &wasm))?;
        write(&dir.join("envoy.yaml"), &render(&read("envoy.template.yaml")?, &ports, &wasm))?;
        write(&dir.join("portcullis.yaml"), &control_plane_config(&dir, &ports))?;

        let upstream = start_echo_upstream(ports.upstream).await?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
        let mut testbed = Testbed {
            ports,
            dir: dir.clone(),
            _temp: temp,
            control_plane: None,
            _envoy: spawn(
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
            )?,
            _upstream: upstream,
            http,
        };
        testbed.start_control_plane_with(&portcullis).await?;
        testbed.wait_for_rules().await?;
        Ok(testbed)
    }

    async fn start_control_plane_with(&mut self, portcullis: &Path) -> Result<(), String> {
        let child = spawn(
            Command::new(portcullis).args(["serve", "--config", "portcullis.yaml"]).env("RUST_LOG", "info"),
            &self.dir,
            "portcullis.log",
        )?;
        self.control_plane = Some(child);
        let ready = self.public("/health/ready");
        self.wait_until("the control plane to be ready", "portcullis.log", || async {
            self.http.get(&ready).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await
    }

    /// Restarts the control plane (same config, same database).
    pub async fn start_control_plane(&mut self) -> Result<(), String> {
        let portcullis = artifact("PORTCULLIS_BIN", "target/debug/portcullis")?;
        self.start_control_plane_with(&portcullis).await
    }

    pub async fn stop_control_plane(&mut self) {
        if let Some(mut child) = self.control_plane.take() {
            let _ = child.kill().await;
        }
    }

    /// Envoy answers 503 until its filter has received a snapshot; wait for a rule to answer.
    async fn wait_for_rules(&self) -> Result<(), String> {
        let url = self.gateway("/public/ready-check");
        self.wait_until("Envoy's filter to load the rules", "envoy.log", || async {
            self.http.get(&url).send().await.is_ok_and(|r| r.status().as_u16() == 200)
        })
        .await
    }

    async fn wait_until<F, Fut>(&self, what: &str, log: &str, mut check: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if check().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        Err(format!(
            "timed out waiting for {what}; last lines of {log}:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }

    pub fn gateway(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.gateway)
    }
    pub fn public(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.public)
    }
    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.admin)
    }
}

fn control_plane_config(dir: &Path, ports: &Ports) -> String {
    format!(
        "# Generated by the Portcullis testbed.\n\
         dsn: sqlite://{db}?mode=rwc\n\
         serve:\n  public: {{ host: 127.0.0.1, port: {public} }}\n  admin: {{ host: 127.0.0.1, port: {admin} }}\n\
         urls:\n  self: {{ issuer: \"http://127.0.0.1:{public}/\" }}\n\
         access_rules:\n  repositories: [rules.json]\n\
         filters:\n  tokens: [{FILTER_TOKEN}]\n",
        db = dir.join("portcullis.sqlite").display(),
        public = ports.public,
        admin = ports.admin,
    )
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
