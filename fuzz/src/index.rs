//! Target `index`: rule sets built from pattern pieces (literal hosts, segments and prefixes,
//! regexp and glob fragments, priorities, methods) and URLs built from the same vocabulary, so
//! the rule index's tries and segment table see rules that nearly match.
//! Asserts: the rule `RuleSet::select` returns (through the index) is the first rule in
//! precedence order whose method and pattern match, with the same captures. An index that
//! drops a candidate lets a request fall through to a weaker rule.

use arbitrary::{Result, Unstructured};
use portcullis_shared::matching::Strategy;
use portcullis_shared::rule::parse_rules;
use serde_json::json;

use crate::path::Fixed;

const SCHEMES: &[&str] = &["http://", "https://", "<http|https>://", "<{http,https}>://", "<.*>://", "", "<.*>"];
const HOSTS: &[&str] =
    &["a.example", "b.example:8080", "<[^/]+>", "<[a-z0-9-]+>.example", "<.*>", "<*>", "<**>", "<*>.example", ""];
const PIECES: &[&str] = &[
    "/", "/a", "/b", "/v1", "/admin", "/x.y", "/a/", "/v1/", "a", ".", "-", "<.*>", "<[^/]+>", "<[0-9]+>", "<(/.*)?>",
    "/<.*>", "<*>", "<**>", "<?>", "<{a,b}>", "<[a-c]>", "<[!a]>", "<a|b>", "<[/]>", "<\\.>",
];
const URL_SCHEMES: &[&str] = &["http://", "https://", "ftp://", ""];
const URL_HOSTS: &[&str] = &["a.example", "b.example:8080", "x.a.example", "c", ""];
const URL_PIECES: &[&str] = &["/", "/a", "/b", "/v1", "/admin", "/x.y", "a", "b", ".", "1", "/9", "-", "/a/b"];
const METHODS: &[&str] = &["GET", "POST", "get", "DELETE"];

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> Result<&'a str> {
    u.choose(from).copied()
}

fn pattern(u: &mut Unstructured<'_>) -> Result<String> {
    let mut p = String::new();
    p.push_str(pick(u, SCHEMES)?);
    p.push_str(pick(u, HOSTS)?);
    for _ in 0..u.int_in_range(0..=5)? {
        if u.ratio(1, 16)? {
            p.push_str(u.arbitrary::<&str>()?);
        } else {
            p.push_str(pick(u, PIECES)?);
        }
    }
    Ok(p)
}

fn url(u: &mut Unstructured<'_>) -> Result<String> {
    let mut s = String::new();
    s.push_str(pick(u, URL_SCHEMES)?);
    s.push_str(pick(u, URL_HOSTS)?);
    for _ in 0..u.int_in_range(0..=6)? {
        if u.ratio(1, 16)? {
            s.push_str(u.arbitrary::<&str>()?);
        } else {
            s.push_str(pick(u, URL_PIECES)?);
        }
    }
    Ok(s)
}

fn scenario(u: &mut Unstructured<'_>) -> Result<()> {
    let default = if u.arbitrary()? { Strategy::Glob } else { Strategy::Regexp };
    let mut rules = Vec::new();
    for i in 0..u.int_in_range(1..=8)? {
        let methods: Vec<&str> = METHODS.iter().copied().filter(|_| u.arbitrary().unwrap_or(true)).collect();
        let methods = if methods.is_empty() { vec!["GET"] } else { methods };
        let mut matcher = json!({"url": pattern(u)?, "methods": methods});
        match u.int_in_range(0..=2)? {
            0 => {}
            1 => matcher["strategy"] = json!("glob"),
            _ => matcher["strategy"] = json!("regexp"),
        }
        rules.push(json!({"id": format!("r{i}"), "priority": u.int_in_range(-1..=1)?, "match": matcher,
                          "authenticators": [{"handler": "noop"}], "authorizer": {"handler": "allow"}}));
    }
    let Ok(specs) = parse_rules(json!(rules)) else { return Ok(()) };
    // A pattern that does not compile refuses the whole set: nothing to select from.
    let Some(fixed) = Fixed::new(specs, default) else { return Ok(()) };
    for _ in 0..u.int_in_range(1..=4)? {
        let method = pick(u, METHODS)?;
        fixed.check_selection(method, &url(u)?);
    }
    Ok(())
}

pub fn run(data: &[u8]) {
    let _ = scenario(&mut Unstructured::new(data));
}
