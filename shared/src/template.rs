//! The null-safe subset of Go templates that Oathkeeper rules use in mutators, compiled once
//! when a rule loads. Supported actions: `{{ .Subject }}`, `{{ print .Subject }}`,
//! `{{ .Extra.a.b }}`, `{{ .MatchContext.RegexpCaptureGroups }}`,
//! `{{ printIndex .MatchContext.RegexpCaptureGroups 0 }}` and
//! `{{ .MatchContext.Header.Get "name" }}`. A missing value renders as the empty string, never
//! Oathkeeper's "nil pointer evaluating interface {}" error, and lists and objects render as
//! JSON rather than Go's `[a b]`. The full engine (pipelines, `if`, `default`, ...) grows here.

use serde_json::{Map, Value};

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Subject,
    Extra(Vec<String>),
    Captures,
    CaptureAt(usize),
    Header(String),
}

/// What a template is rendered against: the authenticated session and the request.
pub struct Context<'a> {
    pub subject: &'a str,
    pub extra: &'a Map<String, Value>,
    pub captures: &'a [String],
    /// Request headers, names lower-cased.
    pub headers: &'a [(String, String)],
}

impl Template {
    /// Compiles template source; an error names the byte offset of the offending action.
    pub fn compile(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0usize;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "template: action at byte {} is not closed with }}}}",
                    offset + open
                )
            })?;
            let action = after[..close].trim_matches(|c: char| c == '-' || c.is_whitespace());
            parts.push(
                parse_action(action)
                    .map_err(|e| format!("template: action at byte {}: {e}", offset + open))?,
            );
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    pub fn render(&self, ctx: &Context<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Subject => out.push_str(ctx.subject),
                Part::Extra(path) => {
                    let mut value = ctx.extra.get(path[0].as_str());
                    for key in &path[1..] {
                        value = value.and_then(|v| v.get(key.as_str()));
                    }
                    if let Some(v) = value {
                        push_value(&mut out, v);
                    }
                }
                Part::Captures => {
                    out.push_str(&serde_json::to_string(ctx.captures).unwrap_or_default());
                }
                Part::CaptureAt(i) => {
                    if let Some(c) = ctx.captures.get(*i) {
                        out.push_str(c);
                    }
                }
                Part::Header(name) => {
                    if let Some((_, v)) = ctx.headers.iter().find(|(n, _)| n == name) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        other => out.push_str(&other.to_string()),
    }
}

fn parse_action(action: &str) -> Result<Part, String> {
    let words: Vec<&str> = action.split_whitespace().collect();
    match words.as_slice() {
        [path] | ["print", path] => parse_path(path),
        ["printIndex", ".MatchContext.RegexpCaptureGroups", index] => index
            .parse()
            .map(Part::CaptureAt)
            .map_err(|_| format!("printIndex needs a non-negative number, got {index:?}")),
        [".MatchContext.Header.Get", name] => {
            let name = name
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .ok_or_else(|| format!("Header.Get needs a quoted header name, got {name}"))?;
            Ok(Part::Header(name.to_ascii_lowercase()))
        }
        [] => Err("empty action".into()),
        _ => Err(format!("unsupported action {{{{ {action} }}}}")),
    }
}

fn parse_path(path: &str) -> Result<Part, String> {
    match path {
        ".Subject" => return Ok(Part::Subject),
        ".MatchContext.RegexpCaptureGroups" => return Ok(Part::Captures),
        _ => {}
    }
    if let Some(keys) = path.strip_prefix(".Extra.") {
        let keys: Vec<String> = keys.split('.').map(str::to_owned).collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(format!("empty key in {path}"));
        }
        return Ok(Part::Extra(keys));
    }
    Err(format!(
        "unknown field {path} (expected .Subject, .Extra.<key>, or .MatchContext.<field>)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, subject: &str, extra: Value) -> String {
        let extra = extra.as_object().cloned().unwrap_or_default();
        let headers = vec![("x-tenant".to_owned(), "acme".to_owned())];
        let captures = vec!["a".to_owned(), "42".to_owned()];
        Template::compile(src).unwrap().render(&Context {
            subject,
            extra: &extra,
            captures: &captures,
            headers: &headers,
        })
    }

    #[test]
    fn renders_subject_extra_captures_and_headers() {
        assert_eq!(
            render("{{ print .Subject }}", "my-client", json!({})),
            "my-client"
        );
        assert_eq!(render("user:{{.Subject}}!", "u1", json!({})), "user:u1!");
        assert_eq!(
            render(
                "{{ .Extra.identity.traits.email }}",
                "u",
                json!({"identity": {"traits": {"email": "a@b.c"}}})
            ),
            "a@b.c"
        );
        assert_eq!(
            render(
                "{{ printIndex .MatchContext.RegexpCaptureGroups 1 }}",
                "u",
                json!({})
            ),
            "42"
        );
        assert_eq!(
            render("{{ .MatchContext.RegexpCaptureGroups }}", "u", json!({})),
            r#"["a","42"]"#
        );
        assert_eq!(
            render(
                r#"{{ .MatchContext.Header.Get "X-Tenant" }}"#,
                "u",
                json!({})
            ),
            "acme"
        );
    }

    #[test]
    fn missing_values_render_empty_instead_of_failing() {
        // Oathkeeper fails here with "nil pointer evaluating interface {}.traits".
        assert_eq!(
            render(
                "[{{ print .Extra.identity.traits.email }}]",
                "anonymous",
                json!({})
            ),
            "[]"
        );
        assert_eq!(
            render(
                "{{ printIndex .MatchContext.RegexpCaptureGroups 9 }}",
                "u",
                json!({})
            ),
            ""
        );
    }

    #[test]
    fn lists_render_as_json() {
        assert_eq!(
            render("{{ .Extra.aud }}", "u", json!({"aud": ["a", "b"]})),
            r#"["a","b"]"#
        );
        assert_eq!(
            render(
                "{{ .Extra.n }}/{{ .Extra.ok }}",
                "u",
                json!({"n": 3, "ok": true})
            ),
            "3/true"
        );
    }

    #[test]
    fn compile_errors_give_the_position() {
        let err = Template::compile("abc {{ .Subjekt }}").unwrap_err();
        assert!(err.contains("byte 4") && err.contains(".Subjekt"), "{err}");
        assert!(
            Template::compile("{{ .Subject ")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(
            Template::compile("{{ }}")
                .unwrap_err()
                .contains("empty action")
        );
    }
}
