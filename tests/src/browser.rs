//! A small WebDriver harness for the real-browser tests: it starts `chromedriver` on a free
//! port (a child process, stopped with the browser it drove when the [`Browser`] is dropped),
//! opens a headless Chromium session, and offers what a test does to a page — open, fill,
//! click, wait for text or an address — plus a screenshot per step, saved to
//! `target/browser-screenshots/<test>/<n>-<step>.png`, and a WebAuthn virtual authenticator
//! (the W3C WebDriver extension commands that chromedriver implements) for passkeys.
//!
//! It only drives a browser: it knows nothing about Portcullis's pages beyond the selectors a
//! test passes in. Its helpers panic with the page's address and text when something does not
//! happen in time, so a failing test says what the user would have seen.
//!
//! Chromium comes from `CHROME_BIN` (default `/usr/bin/chromium`, else `chromium` on `PATH`),
//! chromedriver from `CHROMEDRIVER` (default `chromedriver` on `PATH`). When either is missing
//! a browser test fails with the command that installs them: it never passes without having
//! run. A machine that cannot have them leaves those tests out by name (`browser_*`) with
//! `PORTCULLIS_TEST_SKIP_BROWSER=1 ./just test`, which reports them as SKIPPED.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::http::Method;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Url;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// How long a helper waits for the page to get where the test expects.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The Chromium and chromedriver executables, when both are installed.
#[derive(Debug, Clone)]
pub struct Installed {
    pub chrome: PathBuf,
    pub chromedriver: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
}

/// Where Chromium and chromedriver are, or what is missing.
pub fn installed() -> Result<Installed, String> {
    let chrome = match std::env::var_os("CHROME_BIN") {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => Some(PathBuf::from("/usr/bin/chromium"))
            .filter(|p| p.is_file())
            .or_else(|| ["chromium", "chromium-browser", "google-chrome"].into_iter().find_map(on_path)),
    };
    let chromedriver = match std::env::var_os("CHROMEDRIVER") {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => {
            on_path("chromedriver").or_else(|| Some(PathBuf::from("/usr/bin/chromedriver")).filter(|p| p.is_file()))
        }
    };
    match (chrome, chromedriver) {
        (Some(chrome), Some(chromedriver)) => Ok(Installed { chrome, chromedriver }),
        (chrome, driver) => {
            let mut missing = Vec::new();
            if chrome.is_none() {
                missing.push("Chromium (set CHROME_BIN, or install the Debian package `chromium`)");
            }
            if driver.is_none() {
                missing.push("chromedriver (set CHROMEDRIVER, or install the Debian package `chromium-driver`)");
            }
            Err(format!(
                "{} not found: install them with `apt-get install -y chromium chromium-driver` (`./just test` \
                 does, as root), or leave the browser tests out with `PORTCULLIS_TEST_SKIP_BROWSER=1 ./just test`, \
                 which reports them as SKIPPED",
                missing.join(" and ")
            ))
        }
    }
}

/// Checks that a browser test can run: `true` when Chromium and chromedriver are installed, a
/// panic naming the install command when they are not. Never `false`: a browser test that
/// returned early would be counted as passed.
pub fn available(test: &str) -> bool {
    match installed() {
        Ok(_) => true,
        Err(e) if std::env::var_os("PORTCULLIS_TEST_SKIP_BROWSER").is_some() => panic!(
            "{test} needs a browser but ran with PORTCULLIS_TEST_SKIP_BROWSER set: name it `browser_*` so that \
             `./just test` leaves it out ({e})"
        ),
        Err(e) => panic!("{test} cannot run: {e}"),
    }
}

/// The directory screenshots go to: `<target>/browser-screenshots`.
pub fn screenshot_root() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
        .join("browser-screenshots")
}

/// A headless Chromium driven through chromedriver, for one test.
pub struct Browser {
    client: Client,
    session_id: String,
    driver: Child,
    driver_port: u16,
    shots: PathBuf,
    step: AtomicU32,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("session_id", &self.session_id).field("shots", &self.shots).finish()
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for `test` (the screenshot directory's
    /// name, emptied first). Panics when they cannot start.
    pub async fn launch(test: &str) -> Browser {
        // chromedriver's port, found free, can be taken before it binds it: try fresh ones.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_launch(test).await {
                Ok(b) => return b,
                Err(e) if attempt < 3 && crate::port_taken(&e) => {
                    eprintln!("chromedriver's port was taken, retrying on another: {e}");
                }
                Err(e) => panic!("the browser did not start: {e}"),
            }
        }
    }

    async fn try_launch(test: &str) -> Result<Browser, String> {
        let Installed { chrome, chromedriver } = installed()?;
        let shots = screenshot_root().join(test.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "-"));
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).map_err(|e| format!("{}: {e}", shots.display()))?;
        let profile = tempfile::Builder::new().prefix("portcullis-chromium-").tempdir().map_err(|e| e.to_string())?;

        let port = free_port()?;
        let log_path = shots.join("chromedriver.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        // Its own process group, so that the browser it starts can be stopped with it.
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromedriver.display()))?;
        let webdriver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{webdriver}/status")).send().await {
                Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            if let Ok(Some(status)) = driver.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("chromedriver exited ({status}) before answering on {webdriver}:\n{log}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chromedriver did not answer on {webdriver} (see {}/chromedriver.log)",
                    shots.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome.display().to_string(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1280,900",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--password-store=basic",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .map_err(|e| format!("no Chromium session from chromedriver ({}): {e}", chrome.display()))?;
        let session_id =
            client.session_id().await.map_err(|e| e.to_string())?.ok_or("chromedriver returned no session id")?;
        Ok(Browser { client, session_id, driver, driver_port: port, shots, step: AtomicU32::new(0), _profile: profile })
    }

    /// The fantoccini client, for anything the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where this test's screenshots go.
    pub fn screenshots(&self) -> &Path {
        &self.shots
    }

    /// Saves `<n>-<step>.png`.
    pub async fn shot(&self, step: &str) {
        let n = self.step.fetch_add(1, Ordering::Relaxed) + 1;
        let name: String = step.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
        let path = self.shots.join(format!("{n:02}-{name}.png"));
        match self.client.screenshot().await {
            Ok(png) => {
                if let Err(e) = std::fs::write(&path, png) {
                    eprintln!("screenshot {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("screenshot {}: {e}", path.display()),
        }
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            self.fail(&format!("opening {url}: {e}")).await;
        }
    }

    /// The page's address.
    pub async fn url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }

    /// What the page shows (`document.body.innerText`).
    pub async fn text(&self) -> String {
        match self.client.execute("return document.body ? document.body.innerText : ''", vec![]).await {
            Ok(Value::String(s)) => s,
            _ => String::new(),
        }
    }

    /// The page's text parsed as JSON (a JSON response shown by the browser, whose viewer puts
    /// it in a `<pre>`), or `Null`.
    pub async fn json(&self) -> Value {
        let script = "const pre = document.querySelector('pre');
            return pre ? pre.innerText : (document.body ? document.body.innerText : '');";
        match self.client.execute(script, vec![]).await {
            Ok(Value::String(s)) => serde_json::from_str(s.trim()).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Takes a screenshot named `FAILED` and panics with what the page shows.
    pub async fn fail(&self, what: &str) -> ! {
        self.shot("FAILED").await;
        if let Ok(html) = self.client.source().await {
            let _ = std::fs::write(self.shots.join("FAILED.html"), html);
        }
        let text = self.text().await;
        let excerpt: String = text.chars().take(1500).collect();
        panic!(
            "{what}\n  page: {}\n  screenshots: {}\n  page text:\n{excerpt}",
            self.url().await,
            self.shots.display()
        );
    }

    /// Waits until `check(url, text)` holds, or fails with `what`.
    pub async fn wait_until(&self, what: &str, check: impl Fn(&str, &str) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let url = self.url().await;
            let text = self.text().await;
            if check(&url, &text) {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {PATIENCE:?} waiting for {what}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page shows `text`.
    pub async fn wait_for_text(&self, text: &str) {
        self.wait_until(&format!("the page to show {text:?}"), |_, page| page.contains(text)).await;
    }

    /// Marks the current document, so that [`Browser::wait_for_new_page`] can tell the page a
    /// form submission loads from the one it was sent from (both may show the same text).
    pub async fn mark_page(&self) {
        if let Err(e) = self.client.execute("window.__portcullisOldPage = true; return true;", vec![]).await {
            self.fail(&format!("marking the page: {e}")).await;
        }
    }

    /// Waits until the document marked by [`Browser::mark_page`] has been replaced.
    pub async fn wait_for_new_page(&self) {
        self.wait_for_js("a new page to load", "document.readyState === 'complete' && !window.__portcullisOldPage")
            .await;
    }

    /// Waits until the page shows the message with Kratos's stable id `id` (the
    /// `data-message-id` the built-in pages render) and returns its text. Tests assert the id,
    /// which does not change with the wording.
    pub async fn wait_for_message(&self, id: u32) -> String {
        let element = self.element(&format!("[data-message-id=\"{id}\"]")).await;
        match element.text().await {
            Ok(text) => text,
            Err(e) => self.fail(&format!("reading message {id}: {e}")).await,
        }
    }

    /// Waits until the address starts with `prefix`.
    pub async fn wait_for_url(&self, prefix: &str) {
        self.wait_until(&format!("the browser to reach {prefix}"), |url, _| url.starts_with(prefix)).await;
    }

    /// Waits until the JavaScript expression `expr` is true on the page (e.g. an async script
    /// has defined its functions).
    pub async fn wait_for_js(&self, what: &str, expr: &str) {
        let script = format!("return !!({expr});");
        let deadline = Instant::now() + PATIENCE;
        while !matches!(self.client.execute(&script, vec![]).await, Ok(Value::Bool(true))) {
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {PATIENCE:?} waiting for {what} ({expr})")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching `css`, waiting for one to appear.
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {PATIENCE:?} waiting for an element {css}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether an element matching `css` is on the page now.
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Types `value` into the form field named `name` (replacing what it held).
    pub async fn fill(&self, name: &str, value: &str) {
        let field = self.element(&format!("[name=\"{name}\"]:not([type=hidden])")).await;
        if let Err(e) = field.clear().await {
            self.fail(&format!("clearing {name}: {e}")).await;
        }
        if let Err(e) = field.send_keys(value).await {
            self.fail(&format!("typing into {name}: {e}")).await;
        }
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        if let Err(e) = element.click().await {
            self.fail(&format!("clicking {css}: {e}")).await;
        }
    }

    /// Clicks the submit button `name=value` (`<button>` or `<input type=submit>`), e.g.
    /// `press("method", "password")`.
    pub async fn press(&self, name: &str, value: &str) {
        self.click(&format!(
            "button[name=\"{name}\"][value=\"{value}\"], input[type=submit][name=\"{name}\"][value=\"{value}\"]"
        ))
        .await;
    }

    /// The HTTP status the page's own origin answers for `path` (a same-origin `fetch` with the
    /// browser's cookies), and the body as JSON (`Null` if it is not).
    pub async fn fetch(&self, path: &str) -> (u16, Value) {
        let script = "const [path, done] = arguments;
            fetch(path, {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
              .then(async r => done([r.status, await r.text()]))
              .catch(e => done([0, String(e)]));";
        match self.client.execute_async(script, vec![json!(path)]).await {
            Ok(Value::Array(a)) if a.len() == 2 => {
                let status = a[0].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
                let body = a[1].as_str().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
                (status, body)
            }
            other => self.fail(&format!("fetch {path} from the page: {other:?}")).await,
        }
    }

    /// The value of cookie `name` for the current page, if the browser holds one.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        self.client.get_named_cookie(name).await.ok().map(|c| c.value().to_owned())
    }

    async fn webauthn(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let command = WebAuthnCommand { method, path: path.to_owned(), body };
        match self.client.issue_cmd(command).await {
            Ok(v) => v,
            Err(e) => self.fail(&format!("WebDriver {path}: {e}")).await,
        }
    }

    /// Adds a virtual platform authenticator (CTAP2, internal transport, resident keys, user
    /// verification that always succeeds) and returns its id: from now on the page's
    /// `navigator.credentials` ceremonies are answered by it without any prompt.
    pub async fn add_virtual_authenticator(&self) -> String {
        let answer = self
            .webauthn(
                Method::POST,
                "webauthn/authenticator",
                Some(json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "automaticPresenceSimulation": true,
                })),
            )
            .await;
        match answer.as_str() {
            Some(id) => id.to_owned(),
            None => self.fail(&format!("adding a virtual authenticator answered {answer}")).await,
        }
    }

    /// The credentials the virtual authenticator holds (`credentialId`, `rpId`, `userHandle`,
    /// `signCount`, `isResidentCredential`, ...).
    pub async fn authenticator_credentials(&self, authenticator: &str) -> Vec<Value> {
        let answer =
            self.webauthn(Method::GET, &format!("webauthn/authenticator/{authenticator}/credentials"), None).await;
        answer.as_array().cloned().unwrap_or_default()
    }

    /// Ends the WebDriver session (Chromium quits) and stops chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        self.session_id.clear();
        let _ = self.driver.kill().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that panicked never reached `close`: end the session the blocking way (an
        // HTTP DELETE), so chromedriver makes Chromium quit, then stop the whole process
        // group chromedriver leads, in case any of the browser's processes is left.
        if !self.session_id.is_empty() {
            delete_session(self.driver_port, &self.session_id);
        }
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            // Reap it here: the runtime may be gone before it would.
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(self.driver.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn delete_session(port: u16, session: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
}

/// A WebDriver extension command under `/session/{id}/` (the WebAuthn ones here).
#[derive(Debug)]
struct WebAuthnCommand {
    method: Method,
    path: String,
    body: Option<Value>,
}

/// `url::ParseError`, named through `Url`'s `FromStr` (reqwest re-exports `Url` only).
type UrlParseError = <Url as std::str::FromStr>::Err;

impl WebDriverCompatibleCommand for WebAuthnCommand {
    fn endpoint(&self, base_url: &Url, session_id: Option<&str>) -> Result<Url, UrlParseError> {
        base_url.join(&format!("session/{}/{}", session_id.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _request_url: &Url) -> (Method, Option<String>) {
        (self.method.clone(), self.body.as_ref().map(Value::to_string))
    }
}
