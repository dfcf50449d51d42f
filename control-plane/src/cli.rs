//! The commands besides `serve` and `migrate`: `rules check` validates rule files offline,
//! `rules explain` asks a running control plane's admin API why a request would be allowed or
//! denied, and `keys create|list|revoke` manage admin API keys directly in the database (so the
//! first key can be made before any exists). They print human-readable lines to stdout and
//! return the exit code; the binary only parses arguments. A new key goes to stdout alone, so
//! `KEY=$(portcullis keys create ...)` captures it; everything else about it goes to stderr.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use crate::admin::auth::{self, Scopes};
use crate::client::rfc3339;
use crate::clock::{Clock as _, SystemClock};
use crate::config::Config;
use crate::error::StartupError;
use crate::rules::check;
use crate::store::Store;

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
    let store = crate::app::connect(config).await?;
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

fn key_table(rows: &[crate::store::api_keys::ApiKeyRow]) -> String {
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
        let dir = std::env::temp_dir()
            .join(format!("portcullis-cli-{}", crate::crypto::hex(&crate::crypto::random_bytes::<6>())));
        std::fs::create_dir_all(&dir).unwrap();
        let config =
            Config { dsn: format!("sqlite://{}?mode=rwc", dir.join("p.sqlite").display()), ..Config::default() };
        let err = keys_create(&config, "ci", "clients:read,clients:erase").await.unwrap_err().to_string();
        assert!(err.contains("--scopes") && err.contains("\"clients:erase\""), "{err}");
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
}
