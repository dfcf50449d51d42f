//! Offline validation of rule files (`portcullis rules check`): the same loader and compiler
//! as the server, applied to all files as one set so duplicate ids across files are caught.
//! Beyond errors it warns about rules that can never match because an earlier rule already
//! takes their (literal) URL. Pure apart from reading the files; prints nothing itself.

use portcullis_shared::rule::{RuleSet, RuleSpec};

use crate::{FileRules, read_repository};

/// What `rules check` found: each line names the file, the rule and, for errors, the field.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// How many rules were read.
    pub rules: usize,
}

/// Checks files (or directories of rule files) together, in the order given.
pub fn check(paths: &[String]) -> Report {
    let mut report = Report::default();
    let mut files = Vec::new();
    for path in paths {
        match read_repository(path) {
            Ok(read) => files.extend(read),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    let rules: Vec<(&str, &RuleSpec)> =
        files.iter().flat_map(|f| f.rules.iter().map(|r| (f.file.as_str(), r))).collect();
    report.rules = rules.len();

    // Each rule alone first, so one run reports every broken rule instead of the first.
    let mut singles: Vec<Option<RuleSet>> = Vec::with_capacity(rules.len());
    for (file, spec) in &rules {
        match RuleSet::compile(std::slice::from_ref(*spec)) {
            Ok(set) => singles.push(Some(set)),
            Err(e) => {
                report.errors.push(format!("rule file {file}: rule {:?}: {}: {}", spec.id, field(&e.field), e.message));
                singles.push(None);
            }
        }
    }
    for (i, (file, spec)) in rules.iter().enumerate() {
        if let Some((first_file, _)) = rules[..i].iter().find(|(_, earlier)| earlier.id == spec.id) {
            report.errors.push(format!(
                "rule file {file}: rule {:?}: id: duplicate id, already defined in {first_file}",
                spec.id
            ));
        }
    }
    if report.errors.is_empty() {
        // Anything only the whole set can reveal, with the server's own message.
        if let Err(e) = crate::compile_files(&files, portcullis_shared::matching::Strategy::Regexp) {
            report.errors.push(e);
        }
    }
    report.warnings = shadowed(&files, &singles);
    report
}

fn field(f: &str) -> &str {
    if f.is_empty() { "(rule)" } else { f }
}

/// Rules whose `match.url` is literal (no `<...>`) and which an earlier rule with a common
/// method already matches: the first match wins, so they never judge anything.
fn shadowed(files: &[FileRules], singles: &[Option<RuleSet>]) -> Vec<String> {
    let rules: Vec<(&str, &RuleSpec)> =
        files.iter().flat_map(|f| f.rules.iter().map(|r| (f.file.as_str(), r))).collect();
    let mut warnings = Vec::new();
    for (j, (file, spec)) in rules.iter().enumerate() {
        let url = &spec.matcher.url;
        if url.contains('<') || singles.get(j).is_none_or(Option::is_none) {
            continue;
        }
        let shadow = rules[..j].iter().zip(singles).find_map(|((_, earlier), set)| {
            let set = set.as_ref()?;
            spec.matcher.methods.iter().any(|m| set.select(m, url).is_some()).then_some(&earlier.id)
        });
        if let Some(earlier) = shadow {
            warnings.push(format!(
                "rule file {file}: rule {:?} is shadowed by rule {earlier:?}, which comes first and matches {url}",
                spec.id
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-check-{}",
            portcullis_model::crypto::hex(&portcullis_model::crypto::random_bytes::<6>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    fn rule(id: &str, url: &str, methods: &str) -> String {
        format!(
            r#"{{"id": "{id}", "match": {{"url": "{url}", "methods": {methods}}}, "authenticators": [{{"handler": "noop"}}], "authorizer": {{"handler": "allow"}}}}"#
        )
    }

    #[test]
    fn errors_name_file_rule_and_field_and_span_files() {
        let a = format!("[{}, {}]", rule("dup", "http://a/", r#"["GET"]"#), rule("bad", "http://a/<[>", r#"["GET"]"#));
        let b = format!("[{}]", rule("dup", "http://b/", r#"["GET"]"#));
        let dir = dir_with(&[
            ("a.json", &a),
            ("b.json", &b),
            (
                "c.yaml",
                "- id: y\n  match: {url: 'http://c/', methods: []}\n  authenticators: []\n  authorizer: {handler: allow}\n",
            ),
        ]);
        let paths: Vec<String> =
            ["a.json", "b.json", "c.yaml", "missing.json"].iter().map(|n| dir.join(n).display().to_string()).collect();
        let report = check(&paths);
        assert_eq!(report.errors.len(), 4, "{:#?}", report.errors);
        assert!(report.errors.iter().any(|e| e.contains("a.json") && e.contains("\"bad\"") && e.contains("match.url")));
        assert!(report.errors.iter().any(|e| e.contains("b.json")
            && e.contains("\"dup\"")
            && e.contains("id: duplicate")
            && e.contains("a.json")));
        assert!(
            report.errors.iter().any(|e| e.contains("c.yaml") && e.contains("\"y\"") && e.contains("match.methods"))
        );
        assert!(report.errors.iter().any(|e| e.contains("missing.json")));
    }

    #[test]
    fn a_literal_rule_behind_a_broader_one_is_a_warning() {
        let text = format!(
            "[{}, {}, {}, {}]",
            rule("all", "http://api/<.*>", r#"["GET"]"#),
            rule("one", "http://api/items", r#"["get", "POST"]"#),
            rule("post-only", "http://api/x", r#"["POST"]"#),
            rule("other-host", "http://web/items", r#"["GET"]"#),
        );
        let dir = dir_with(&[("r.json", &text)]);
        let report = check(&[dir.display().to_string()]);
        assert_eq!(report.errors, Vec::<String>::new());
        assert_eq!(report.rules, 4);
        assert_eq!(report.warnings.len(), 1, "{:#?}", report.warnings);
        assert!(report.warnings[0].contains(r#"rule "one" is shadowed by rule "all""#), "{}", report.warnings[0]);
    }
}
