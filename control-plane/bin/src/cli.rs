//! The commands besides `serve` and `migrate`: `rules check` validates rule files offline,
//! `rules explain` asks a running control plane's admin API why a request would be allowed or
//! denied, and `keys create|list|revoke` manage admin API keys directly in the database (so the
//! first key can be made before any exists); `clients create|list|get|delete` and `token
//! client-credentials|introspect` talk to a running server's admin and public APIs and print
//! the server's message (exit 1) when it refuses. They print human-readable lines to stdout and
//! return the exit code; the binary only parses arguments. A new key goes to stdout alone, so
//! `KEY=$(portcullis keys create ...)` captures it; everything else about it goes to stderr.
#![expect(clippy::print_stdout, reason = "a CLI: stdout is its output")]

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use portcullis_control_plane::admin::auth::{self, Scopes};
use portcullis_control_plane::clock::{Clock as _, SystemClock};
use portcullis_control_plane::config::Config;
use portcullis_control_plane::error::StartupError;
use portcullis_control_plane::rfc3339;
use portcullis_control_plane::rules::check;
use portcullis_control_plane::store::Store;

/// `portcullis rules check FILE...`: exit 1 on any error, 0 otherwise (warnings included).
pub fn rules_check(paths: &[String]) -> ExitCode {
    let report = check::check(paths);
    for e in &report.errors {
        println!("error: {e}");
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    if report.errors.is_empty() {
        println!("ok: {} rules in {} location(s), {} warning(s)", report.rules, paths.len(), report.warnings.len());
        ExitCode::SUCCESS
    } else {
        println!("{} error(s), {} warning(s)", report.errors.len(), report.warnings.len());
        ExitCode::FAILURE
    }
}

/// `portcullis rules explain`: exit 0 on allow, 2 on deny, 1 when it could not ask. `api_key`
/// is sent as `Authorization: Bearer` (it needs `rules:read`; none is needed under `--dev`).
pub async fn rules_explain(
    admin_url: &str,
    api_key: Option<&str>,
    method: &str,
    url: &str,
    headers: &[String],
) -> ExitCode {
    match explain(admin_url, api_key, method, url, headers).await {
        Ok(answer) => {
            print!("{}", summary(&answer));
            if answer["decision"] == "allow" { ExitCode::SUCCESS } else { ExitCode::from(2) }
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn explain(
    admin_url: &str,
    api_key: Option<&str>,
    method: &str,
    url: &str,
    headers: &[String],
) -> Result<Value, String> {
    let mut map = Map::new();
    for h in headers {
        let (name, value) = h.split_once(':').ok_or_else(|| format!("-H {h:?}: expected 'Name: value'"))?;
        map.insert(name.trim().to_owned(), json!(value.trim()));
    }
    let endpoint = format!("{}/admin/rules/explain", admin_url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().post(&endpoint);
    if let Some(key) = api_key.filter(|k| !k.is_empty()) {
        request = request.bearer_auth(key);
    }
    let response = request
        .json(&json!({"method": method, "url": url, "headers": map}))
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| format!("{endpoint} answered {status} without JSON: {e}"))?;
    if !status.is_success() {
        let why = body["error_description"].as_str().unwrap_or("no description");
        return Err(format!("{endpoint} answered {status}: {why}"));
    }
    Ok(body)
}

async fn open_store(config: &Config) -> Result<Store, StartupError> {
    let store = portcullis_control_plane::app::connect(config).await?;
    store.migrate().await?;
    Ok(store)
}

/// `portcullis keys create --name N --scopes a,b`: prints the key, alone, on stdout.
pub async fn keys_create(config: &Config, name: &str, scopes: &str) -> Result<ExitCode, StartupError> {
    let scopes = Scopes::parse(scopes.split([',', ' ']).filter(|s| !s.trim().is_empty()))
        .map_err(|e| StartupError(format!("--scopes: {e}")))?;
    let (key, row) = auth::new_key(name, &scopes, SystemClock.now()).map_err(|e| StartupError(format!("--{e}")))?;
    let store = open_store(config).await?;
    store.insert_api_key(&row).await?;
    store.close().await;
    println!("{key}");
    eprintln!(
        "created API key {} ({:?}, scopes: {}); the key above will not be shown again",
        row.id,
        row.name,
        scopes.names().join(",")
    );
    Ok(ExitCode::SUCCESS)
}

/// `portcullis keys list`: one line per key, revoked ones included; never a key or its hash.
pub async fn keys_list(config: &Config) -> Result<ExitCode, StartupError> {
    let store = open_store(config).await?;
    let rows = store.list_api_keys().await?;
    store.close().await;
    print!("{}", key_table(&rows));
    Ok(ExitCode::SUCCESS)
}

fn key_table(rows: &[portcullis_control_plane::store::api_keys::ApiKeyRow]) -> String {
    let mut out =
        format!("{:<36}  {:<20}  {:<20}  {:<20}  {:<20}  SCOPES\n", "ID", "NAME", "CREATED", "LAST USED", "REVOKED");
    for r in rows {
        let when = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), rfc3339);
        out.push_str(&format!(
            "{:<36}  {:<20}  {:<20}  {:<20}  {:<20}  {}\n",
            r.id,
            r.name,
            rfc3339(r.created_at),
            when(r.last_used_at),
            when(r.revoked_at),
            Scopes::from_stored(&r.scopes).names().join(",")
        ));
    }
    out
}

/// `portcullis keys revoke ID`: exit 1 when no active key has that id. A running server on
/// another node may accept the key for a few more seconds (its cache); revoking through the
/// admin API evicts on the node that answers at once.
pub async fn keys_revoke(config: &Config, id: &str) -> Result<ExitCode, StartupError> {
    let store = open_store(config).await?;
    let revoked = store.revoke_api_key(id, SystemClock.now()).await?;
    store.close().await;
    if revoked {
        eprintln!("revoked API key {id}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("portcullis: no active API key with id {id:?}");
        Ok(ExitCode::FAILURE)
    }
}

/// Where and how the client commands reach a running control plane.
pub struct Remote {
    pub admin_url: String,
    pub public_url: String,
    /// Sent as `Authorization: Bearer` to the admin API (not needed under `--dev`).
    pub api_key: Option<String>,
}

/// `--format`: JSON as the server answered it, or a table for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// The flags of `portcullis clients create`, as Hydra's `hydra create oauth2-client`.
#[derive(Debug, Default, clap::Args)]
pub struct NewClient {
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Repeatable or comma-separated, e.g. `client_credentials`.
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
    #[arg(long = "response-type")]
    pub response_types: Vec<String>,
    #[arg(long)]
    pub scope: Vec<String>,
    #[arg(long)]
    pub audience: Vec<String>,
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    #[arg(long)]
    pub token_endpoint_auth_method: Option<String>,
    /// The secret to set (otherwise one is generated).
    #[arg(long)]
    pub secret: Option<String>,
}

/// Sends one request; a non-2xx answer becomes its `error_description` (or body) as the error.
async fn call(
    method: reqwest::Method,
    url: String,
    api_key: Option<&str>,
    body: Option<Body>,
) -> Result<Option<Value>, String> {
    let mut request = reqwest::Client::new().request(method, &url);
    if let Some(key) = api_key.filter(|k| !k.is_empty()) {
        request = request.bearer_auth(key);
    }
    request = match body {
        Some(Body::Json(v)) => request.json(&v),
        Some(Body::Form(pairs, basic)) => {
            let r = request.form(&pairs);
            match basic {
                Some((id, secret)) => r.basic_auth(id, Some(secret)),
                None => r,
            }
        }
        None => request,
    };
    let response = request.send().await.map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    let json: Option<Value> = serde_json::from_str(&text).ok();
    if !status.is_success() {
        let why = json
            .as_ref()
            .and_then(|j| j["error_description"].as_str().or(j["error"].as_str()).map(str::to_owned))
            .unwrap_or(text);
        return Err(format!("{url} answered {status}: {why}"));
    }
    Ok(json)
}

enum Body {
    Json(Value),
    Form(Vec<(String, String)>, Option<(String, String)>),
}

fn admin(remote: &Remote, path: &str) -> String {
    format!("{}{path}", remote.admin_url.trim_end_matches('/'))
}

fn enc(s: &str) -> String {
    portcullis_shared::pipeline::form_encode(s)
}

/// The request body of `clients create`.
pub fn client_body(c: &NewClient) -> Value {
    let mut body = Map::new();
    let mut put = |k: &str, v: Value| {
        body.insert(k.to_owned(), v);
    };
    if let Some(id) = &c.id {
        put("client_id", json!(id));
    }
    if let Some(name) = &c.name {
        put("client_name", json!(name));
    }
    let split = |items: &[String]| -> Vec<String> {
        items.iter().flat_map(|i| i.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    };
    for (key, items) in [
        ("grant_types", &c.grant_types),
        ("response_types", &c.response_types),
        ("audience", &c.audience),
        ("redirect_uris", &c.redirect_uris),
    ] {
        if !items.is_empty() {
            put(key, json!(split(items)));
        }
    }
    if !c.scope.is_empty() {
        put("scope", json!(split(&c.scope).join(" ")));
    }
    if let Some(m) = &c.token_endpoint_auth_method {
        put("token_endpoint_auth_method", json!(m));
    }
    if let Some(s) = &c.secret {
        put("client_secret", json!(s));
    }
    Value::Object(body)
}

/// Clients as a table: id, name, grant types, scope, owner (never a secret but the one shown
/// at creation, which `create` prints on its own line).
pub fn client_table(clients: &[Value]) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let list = |v: &Value| {
        v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")).unwrap_or_default()
    };
    let mut out = format!("{:<36}  {:<20}  {:<30}  {:<20}  OWNER\n", "CLIENT ID", "NAME", "GRANT TYPES", "SCOPE");
    for c in clients {
        out.push_str(&format!(
            "{:<36}  {:<20}  {:<30}  {:<20}  {}\n",
            text(&c["client_id"]),
            text(&c["client_name"]),
            list(&c["grant_types"]),
            text(&c["scope"]),
            text(&c["owner"])
        ));
    }
    out
}

fn finish(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

/// `portcullis clients create ...`: the client (its generated secret shown this once).
pub async fn clients_create(remote: &Remote, c: &NewClient, format: Format) -> ExitCode {
    finish(clients_create_text(remote, c, format).await)
}

async fn clients_create_text(remote: &Remote, c: &NewClient, format: Format) -> Result<String, String> {
    let created = call(
        reqwest::Method::POST,
        admin(remote, "/admin/clients"),
        remote.api_key.as_deref(),
        Some(Body::Json(client_body(c))),
    )
    .await?
    .unwrap_or_default();
    Ok(match format {
        Format::Json => pretty(&created),
        Format::Table => {
            let mut out = client_table(std::slice::from_ref(&created));
            if let Some(secret) = created["client_secret"].as_str() {
                out.push_str(&format!("CLIENT SECRET (shown once): {secret}\n"));
            }
            out
        }
    })
}

/// `portcullis clients list`.
pub async fn clients_list(remote: &Remote, format: Format) -> ExitCode {
    finish(clients_list_text(remote, format).await)
}

async fn clients_list_text(remote: &Remote, format: Format) -> Result<String, String> {
    let listed =
        call(reqwest::Method::GET, admin(remote, "/admin/clients?page_size=1000"), remote.api_key.as_deref(), None)
            .await?
            .unwrap_or_default();
    let clients = listed.as_array().cloned().unwrap_or_default();
    Ok(match format {
        Format::Json => pretty(&listed),
        Format::Table => client_table(&clients),
    })
}

/// `portcullis clients get ID`.
pub async fn clients_get(remote: &Remote, id: &str, format: Format) -> ExitCode {
    finish(clients_get_text(remote, id, format).await)
}

async fn clients_get_text(remote: &Remote, id: &str, format: Format) -> Result<String, String> {
    let path = format!("/admin/clients/{}", enc(id));
    let client =
        call(reqwest::Method::GET, admin(remote, &path), remote.api_key.as_deref(), None).await?.unwrap_or_default();
    Ok(match format {
        Format::Json => pretty(&client),
        Format::Table => client_table(std::slice::from_ref(&client)),
    })
}

/// `portcullis clients delete ID`.
pub async fn clients_delete(remote: &Remote, id: &str) -> ExitCode {
    let path = format!("/admin/clients/{}", enc(id));
    let result = call(reqwest::Method::DELETE, admin(remote, &path), remote.api_key.as_deref(), None).await;
    finish(result.map(|_| format!("deleted client {id}\n")))
}

/// `portcullis token client-credentials`: the access token alone (so `TOKEN=$(...)` works), or
/// the whole token response with `--format json`.
pub async fn token_client_credentials(
    remote: &Remote,
    client_id: &str,
    client_secret: &str,
    scope: &[String],
    audience: &[String],
    format: Format,
) -> ExitCode {
    finish(token_text(remote, client_id, client_secret, scope, audience, format).await)
}

async fn token_text(
    remote: &Remote,
    client_id: &str,
    client_secret: &str,
    scope: &[String],
    audience: &[String],
    format: Format,
) -> Result<String, String> {
    let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
    if !scope.is_empty() {
        form.push(("scope".into(), scope.join(" ")));
    }
    for a in audience {
        form.push(("audience".into(), a.clone()));
    }
    let url = format!("{}/oauth2/token", remote.public_url.trim_end_matches('/'));
    // RFC 6749 §2.3.1: the credentials are form-encoded before they go into Basic.
    let basic = Some((enc(client_id), enc(client_secret)));
    let answer = call(reqwest::Method::POST, url, None, Some(Body::Form(form, basic))).await?.unwrap_or_default();
    Ok(match format {
        Format::Json => pretty(&answer),
        Format::Table => format!("{}\n", answer["access_token"].as_str().unwrap_or_default()),
    })
}

/// `portcullis token introspect TOKEN`: the introspection answer as JSON; exit 2 when the token
/// is not active.
pub async fn token_introspect(remote: &Remote, token: &str) -> ExitCode {
    let form = vec![("token".to_owned(), token.to_owned())];
    let url = admin(remote, "/admin/oauth2/introspect");
    match call(reqwest::Method::POST, url, remote.api_key.as_deref(), Some(Body::Form(form, None))).await {
        Ok(answer) => {
            let answer = answer.unwrap_or_default();
            print!("{}", pretty(&answer));
            if answer["active"] == true { ExitCode::SUCCESS } else { ExitCode::from(2) }
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The explain answer as a few aligned lines.
pub fn summary(a: &Value) -> String {
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    let mut out = String::new();
    out.push_str(&format!("rule:     {}\n", text(&a["rule"])));
    out.push_str(&format!("decision: {} ({})\n", text(&a["decision"]), a["status"]));
    out.push_str(&format!("reason:   {}\n", text(&a["reason"])));
    out.push_str(&format!("message:  {}\n", text(&a["message"])));
    let calls = a["calls"].as_array().map(Vec::as_slice).unwrap_or_default();
    if calls.is_empty() {
        out.push_str("calls:    none\n");
    }
    for c in calls {
        let result = match (&c["status"], &c["error"]) {
            (Value::Number(s), _) => s.to_string(),
            (_, e) => format!("error: {}", text(e)),
        };
        let cached = if c["cached"] == true { " (cached)" } else { "" };
        out.push_str(&format!("call:     {} {} -> {result}{cached}\n", text(&c["method"]), text(&c["url"])));
    }
    if let Some(h) = a["upstream_headers"].as_object() {
        for (n, v) in h {
            out.push_str(&format!("upstream: {n}: {}\n", text(v)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_the_verdict_and_every_call() {
        let answer = json!({"rule": "private", "decision": "deny", "status": 503, "reason": "upstream_unavailable",
            "message": "down", "calls": [{"method": "GET", "url": "http://s/session", "error": "timed out", "cached": false},
                                         {"method": "POST", "url": "http://i/", "status": 200, "cached": true}]});
        let text = summary(&answer);
        assert!(text.contains("rule:     private\n"), "{text}");
        assert!(text.contains("decision: deny (503)\n"), "{text}");
        assert!(text.contains("reason:   upstream_unavailable\n"), "{text}");
        assert!(text.contains("call:     GET http://s/session -> error: timed out\n"), "{text}");
        assert!(text.contains("call:     POST http://i/ -> 200 (cached)\n"), "{text}");
    }

    #[tokio::test]
    async fn keys_are_created_listed_and_revoked_in_the_configured_database() {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-cli-{}",
            portcullis_control_plane::crypto::hex(&portcullis_control_plane::crypto::random_bytes::<6>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config =
            Config { dsn: format!("sqlite://{}?mode=rwc", dir.join("p.sqlite").display()), ..Config::default() };
        let err = keys_create(&config, "ci", "clients:read,clients:erase").await.unwrap_err().to_string();
        assert!(err.contains("--scopes") && err.contains("\"clients:erase\""), "{err}");
        assert!(err.contains("login-consent"), "the error lists every resource: {err}");
        assert_eq!(keys_create(&config, "ci", "clients:read, rules:write").await.unwrap(), ExitCode::SUCCESS);

        let store = open_store(&config).await.unwrap();
        let rows = store.list_api_keys().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].name.as_str(), rows[0].scopes.as_str()), ("ci", "clients:read rules:write"));
        let table = key_table(&rows);
        assert!(table.contains(&rows[0].id) && table.contains("clients:read,rules:write"), "{table}");
        assert!(!table.contains(&rows[0].key_hash), "{table}");

        assert_eq!(keys_revoke(&config, &rows[0].id).await.unwrap(), ExitCode::SUCCESS);
        assert_eq!(keys_revoke(&config, &rows[0].id).await.unwrap(), ExitCode::FAILURE, "already revoked");
        assert_eq!(store.count_active_api_keys().await.unwrap(), 0);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Both routers of a harness on loopback ports: `(admin_url, public_url)`.
    async fn serve(h: &portcullis_control_plane::testing::Harness) -> (String, String) {
        let mut urls = Vec::new();
        for router in [h.admin(), h.public()] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            urls.push(format!("http://{}", listener.local_addr().unwrap()));
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
        (urls.remove(0), urls.remove(0))
    }

    #[tokio::test]
    async fn clients_and_tokens_through_a_running_server() {
        let h = portcullis_control_plane::testing::Harness::new().await;
        let (admin_url, public_url) = serve(&h).await;
        let remote = Remote { admin_url, public_url, api_key: None };
        let new = NewClient {
            id: Some("cli-client".into()),
            name: Some("From the CLI".into()),
            grant_types: vec!["client_credentials".into()],
            scope: vec!["read,write".into()],
            audience: vec!["https://api".into()],
            ..NewClient::default()
        };
        let created: Value =
            serde_json::from_str(&clients_create_text(&remote, &new, Format::Json).await.unwrap()).unwrap();
        assert_eq!(created["client_id"], "cli-client");
        assert_eq!(created["scope"], "read write");
        let secret = created["client_secret"].as_str().unwrap().to_owned();

        let err = clients_create_text(&remote, &new, Format::Table).await.unwrap_err();
        assert!(err.contains("409") && err.contains("is taken"), "the server's message: {err}");

        let table = clients_list_text(&remote, Format::Table).await.unwrap();
        assert!(table.contains("cli-client") && table.contains("From the CLI") && !table.contains(&secret), "{table}");
        let one = clients_get_text(&remote, "cli-client", Format::Table).await.unwrap();
        assert!(one.contains("client_credentials"), "{one}");
        assert!(clients_get_text(&remote, "nope", Format::Json).await.unwrap_err().contains("404"));

        let token =
            token_text(&remote, "cli-client", &secret, &["read".into()], &["https://api".into()], Format::Table)
                .await
                .unwrap();
        let token = token.trim().to_owned();
        assert!(!token.is_empty() && !token.contains(' '), "{token}");
        let introspected = h.form(true, "/admin/oauth2/introspect", &[("token", &token)], &[]).await.json();
        assert_eq!(introspected["active"], true);
        assert_eq!(token_introspect(&remote, &token).await, ExitCode::SUCCESS);
        assert_eq!(token_introspect(&remote, "not-a-token").await, ExitCode::from(2));
        let err = token_text(&remote, "cli-client", "wrong-secret", &[], &[], Format::Json).await.unwrap_err();
        assert!(err.contains("401"), "{err}");

        assert_eq!(clients_delete(&remote, "cli-client").await, ExitCode::SUCCESS);
        assert_eq!(clients_delete(&remote, "cli-client").await, ExitCode::FAILURE);
    }
}
