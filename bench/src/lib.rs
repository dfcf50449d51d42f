//! Rule sets and requests for the micro-benchmarks, shared by the criterion benches (native)
//! and the `wasm-timing` binary (wasm32-wasip1 under Node's V8, like Envoy's runtime).

pub mod filter;

use portcullis_shared::pipeline::Request;
use portcullis_shared::rule::{RuleSet, parse_rules};
use serde_json::{Value, json};

/// `n` rules in the shapes people write: per-service path rules, per-host rules, and a few
/// regex-heavy ones; the one `last_url()` hits is the last rule in the file.
pub fn rule_set(n: usize) -> RuleSet {
    let header = json!({"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}});
    let rules: Vec<Value> = (0..n)
        .map(|i| {
            let url = match i % 4 {
                0 | 1 => format!("<http|https>://<[^/]+>/svc{i}/<[a-z0-9/-]*>"),
                2 => format!("https://api{i}.example.com/v1/users/<[0-9a-f-]+>/orders<(/[^/]+)?>"),
                _ => format!("<http|https>://<[^/]+>/v2/tenants/<[a-z]+>/items{i}/<.*>"),
            };
            json!({"id": format!("rule-{i}"), "match": {"url": url, "methods": ["GET", "POST"]},
                   "authenticators": [{"handler": "anonymous"}], "authorizer": {"handler": "allow"},
                   "mutators": [header]})
        })
        .collect();
    let specs = parse_rules(Value::Array(rules)).unwrap_or_default();
    RuleSet::compile(&specs).unwrap_or_default()
}

/// A URL matched by the last rule of `rule_set(n)`.
pub fn last_url(n: usize) -> String {
    let i = n - 1;
    match i % 4 {
        0 | 1 => format!("http://gateway.local/svc{i}/a/b-1"),
        2 => format!("https://api{i}.example.com/v1/users/0f3a-11/orders/42"),
        _ => format!("http://gateway.local/v2/tenants/acme/items{i}/x"),
    }
}

/// Splits a URL into the request the pipeline sees.
pub fn request<'a>(url: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let slash = rest.find('/').unwrap_or(rest.len());
    Request { method: "GET", scheme, host: &rest[..slash], target: &rest[slash..], headers, remote_addr: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_rule_is_the_one_selected() {
        for n in [10, 1_000] {
            let set = rule_set(n);
            assert_eq!(set.len(), n);
            let (rule, _) = set.select("GET", &last_url(n)).unwrap();
            assert_eq!(rule.id, format!("rule-{}", n - 1));
        }
    }
}
