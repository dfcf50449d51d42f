//! The `portcullis rules ...` commands that need no server state: `check` validates rule files
//! offline, `explain` asks a running control plane's admin API why a request would be allowed
//! or denied. They print human-readable lines to stdout and return the exit code; the binary
//! only parses arguments.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use crate::rules::check;

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

/// `portcullis rules explain`: exit 0 on allow, 2 on deny, 1 when it could not ask.
pub async fn rules_explain(admin_url: &str, method: &str, url: &str, headers: &[String]) -> ExitCode {
    match explain(admin_url, method, url, headers).await {
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

async fn explain(admin_url: &str, method: &str, url: &str, headers: &[String]) -> Result<Value, String> {
    let mut map = Map::new();
    for h in headers {
        let (name, value) = h.split_once(':').ok_or_else(|| format!("-H {h:?}: expected 'Name: value'"))?;
        map.insert(name.trim().to_owned(), json!(value.trim()));
    }
    let endpoint = format!("{}/admin/rules/explain", admin_url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&endpoint)
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
}
