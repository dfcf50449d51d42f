//! Target `template`: template source (before the first NUL) compiled, then rendered against a
//! context read from the rest as JSON (`{"subject", "extra", "captures", "headers"}`, anything
//! missing or malformed left empty).
//! Asserts: compiling is deterministic; text without actions renders as itself; rendering
//! never panics, and either fails as too large or stays within `MAX_RENDERED` bytes (a rule
//! author must not be able to turn a short template and a short token into megabytes per
//! request: `quote` repeated, or `join` nested, once did).

use portcullis_shared::template::{Context, MAX_RENDERED, Template};
use serde_json::{Map, Value};

use crate::split_nul;

pub fn run(data: &[u8]) {
    let (source, context) = split_nul(data);
    let source = String::from_utf8_lossy(source);
    let compiled = Template::compile(&source);
    assert_eq!(compiled, Template::compile(&source), "compiling is not deterministic");
    let Ok(template) = compiled else { return };

    let context: Value = serde_json::from_slice(context).unwrap_or(Value::Null);
    let subject = context.get("subject").and_then(Value::as_str).unwrap_or("");
    let extra = context.get("extra").and_then(Value::as_object).cloned().unwrap_or_else(Map::new);
    let captures: Vec<String> = context
        .get("captures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = context
        .get("headers")
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_owned())).collect())
        .unwrap_or_default();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let ctx = Context { subject, extra: &extra, captures: &captures, headers: &headers };

    let out = template.render(&ctx);
    assert_eq!(out, template.render(&ctx), "rendering is not deterministic");
    let Ok(out) = out else { return };
    assert!(out.len() <= MAX_RENDERED, "{} bytes rendered", out.len());
    if !source.contains("{{") {
        assert_eq!(out, source, "text without actions must render as itself");
    }
}
