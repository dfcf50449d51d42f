//! Access rules: the Oathkeeper wire format (`id`, `match.url`, `match.methods`,
//! `authenticators`, `authorizer`, `mutators`, `errors`) and the compiled form the filter
//! evaluates. Everything that can be checked is checked when a rule loads: unknown fields,
//! unknown handlers, bad patterns, bad templates, duplicate ids. An error names the rule and
//! the field, and the caller keeps the rule set it already had.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cors::{CorsPolicy, CorsSpec};
use crate::matching::{PatternInfo, RuleIndex, Strategy, UrlPattern};
use crate::pipeline::HandlerError;
use crate::pipeline::authn::Authenticator;
use crate::pipeline::authz::Authorizer;
use crate::pipeline::errors::ErrorHandler;
use crate::pipeline::mutate::Mutator;

/// One rule as written in an Oathkeeper `access-rules.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Portcullis: when several rules match, the highest priority wins (default 0); then the
    /// most specific pattern (most literal characters); then the earlier rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// Accepted for compatibility and ignored: Envoy routes the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Value>,
    pub authenticators: Vec<HandlerSpec>,
    pub authorizer: HandlerSpec,
    #[serde(default)]
    pub mutators: Vec<HandlerSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<HandlerSpec>,
    /// Portcullis: this rule's CORS policy, instead of the global one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    pub url: String,
    pub methods: Vec<String>,
    /// Overrides the rule set's matching strategy for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    pub handler: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
}

/// Configs can hold secrets (`pre_authorization.client_secret`, hydrator credentials): `Debug`
/// shows the handler and the config's keys only.
impl std::fmt::Debug for HandlerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self.config.as_object().map(|m| m.keys().collect()).unwrap_or_default();
        f.debug_struct("HandlerSpec").field("handler", &self.handler).field("config_keys", &keys).finish()
    }
}

/// A rule that cannot be loaded, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Position in the submitted list.
    pub index: usize,
    /// The rule's id, when it could be read.
    pub rule_id: Option<String>,
    /// Path of the offending field inside the rule, e.g. `authenticators[0].config.introspection_url`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rule_id {
            Some(id) => write!(f, "rule {id:?} (#{})", self.index)?,
            None => write!(f, "rule #{}", self.index)?,
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for RuleError {}

/// Reads a JSON array of rules, naming the rule and field of the first error.
pub fn parse_rules(value: Value) -> Result<Vec<RuleSpec>, RuleError> {
    let Value::Array(items) = value else {
        return Err(RuleError {
            index: 0,
            rule_id: None,
            field: String::new(),
            message: "expected a JSON array of rules".into(),
        });
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let rule_id = item.get("id").and_then(Value::as_str).map(str::to_owned);
            rule_spec(item).map_err(|(field, message)| RuleError { index, rule_id, field, message })
        })
        .collect()
}

/// One rule's wire form; on error the field path (empty for the rule itself) and the message.
#[cfg(feature = "field-paths")]
fn rule_spec(item: Value) -> Result<RuleSpec, (String, String)> {
    serde_path_to_error::deserialize::<_, RuleSpec>(item).map_err(|e| {
        let field = e.path().to_string();
        (if field == "." { String::new() } else { field }, e.into_inner().to_string())
    })
}

/// Without `field-paths` (the filter): serde's message, which names the field it stopped at.
#[cfg(not(feature = "field-paths"))]
fn rule_spec(item: Value) -> Result<RuleSpec, (String, String)> {
    serde_json::from_value(item).map_err(|e| (String::new(), e.to_string()))
}

/// What compiling a rule set needs besides the rules themselves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Environment {
    /// Oathkeeper's `access_rules.matching_strategy`, for rules without `match.strategy`.
    pub strategy: Strategy,
    /// JWKS documents by URL, fetched by the control plane for `jwt` authenticators.
    pub jwks: BTreeMap<String, Value>,
    /// The CORS policy for rules without their own.
    pub cors: Option<CorsPolicy>,
    /// SHA-256 of tokens revoked before they expired: refused before any cache is consulted.
    pub revoked: Arc<Revoked>,
    /// The `kid` of the key `id_token` mutators sign with, when there is one.
    pub signing_kid: Option<String>,
}

/// Revoked tokens, by SHA-256 (the tokens themselves are never pushed).
pub type Revoked = std::collections::HashSet<[u8; 32]>;

/// A validated rule, ready to judge requests.
#[derive(Debug)]
pub struct CompiledRule {
    pub id: String,
    pub priority: i32,
    methods: Vec<String>,
    pattern: UrlPattern,
    info: PatternInfo,
    pub authenticators: Vec<Authenticator>,
    pub authorizer: Authorizer,
    pub mutators: Vec<Mutator>,
    pub errors: Vec<ErrorHandler>,
    /// `None`: the global policy applies; `Some(None)`: CORS disabled for this rule.
    cors: Option<Option<CorsPolicy>>,
}

impl CompiledRule {
    pub fn matches_method(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }
}

/// An ordered, validated set of rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// In precedence order: the first matching rule of this list is the one that judges.
    rules: Vec<Arc<CompiledRule>>,
    index: RuleIndex,
    guarded_headers: Vec<String>,
    cors: Option<CorsPolicy>,
    revoked: Arc<Revoked>,
    signing_kid: Option<String>,
    needs_client_address: bool,
    /// Unique per compiled set (0 for the empty default), so a worker's memo of selections
    /// made in another set is never consulted for this one.
    generation: u64,
}

/// The generation the next compiled rule set gets.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl RuleSet {
    /// Validates and compiles every rule with the `regexp` strategy as the default.
    pub fn compile(specs: &[RuleSpec]) -> Result<Self, RuleError> {
        Self::compile_in(specs, &Environment::default())
    }

    /// Validates and compiles every rule; `strategy` applies where a rule does not set
    /// `match.strategy` (Oathkeeper's `access_rules.matching_strategy`). The first error wins
    /// and nothing is half-loaded.
    pub fn compile_with(specs: &[RuleSpec], strategy: Strategy) -> Result<Self, RuleError> {
        Self::compile_in(specs, &Environment { strategy, ..Environment::default() })
    }

    /// Validates and compiles every rule in `env`. The first error wins and nothing is
    /// half-loaded.
    pub fn compile_in(specs: &[RuleSpec], env: &Environment) -> Result<Self, RuleError> {
        let mut seen = BTreeMap::new();
        let mut rules = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let err = |field: &str, message: String| RuleError {
                index,
                rule_id: Some(spec.id.clone()),
                field: field.to_owned(),
                message,
            };
            if spec.id.trim().is_empty() {
                return Err(RuleError {
                    index,
                    rule_id: None,
                    field: "id".into(),
                    message: "must not be empty".into(),
                });
            }
            if spec.id.len() > 190 {
                return Err(err("id", "must be at most 190 characters".into()));
            }
            if let Some(first) = seen.insert(spec.id.clone(), index) {
                return Err(err("id", format!("duplicate id, already used by rule #{first}")));
            }
            rules.push(Arc::new(compile_rule(spec, env).map_err(|(field, message)| err(&field, message))?));
        }
        let mut guarded_headers: Vec<String> = rules
            .iter()
            .flat_map(|r| {
                r.mutators
                    .iter()
                    .flat_map(Mutator::header_names)
                    .chain(r.authorizer.header_names().iter().map(String::as_str))
            })
            .map(str::to_owned)
            .collect();
        guarded_headers.sort();
        guarded_headers.dedup();
        let needs_client_address = rules.iter().any(|r| r.authorizer.needs_client_address());
        // A stable sort keeps file order among equals.
        rules.sort_by(|a, b| b.priority.cmp(&a.priority).then(b.info.specificity.cmp(&a.info.specificity)));
        let index = RuleIndex::build(rules.iter().map(|r| &r.info));
        Ok(Self {
            rules,
            index,
            guarded_headers,
            cors: env.cors.clone(),
            revoked: Arc::clone(&env.revoked),
            signing_kid: env.signing_kid.clone(),
            needs_client_address,
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Which compiled set this is: two sets never share a generation (but the empty default).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that judges a request: among the rules whose methods and URL pattern match,
    /// the highest `priority`, then the most specific pattern, then the earliest. Only the
    /// index's candidates are tried, so the cost barely grows with the number of rules.
    pub fn select(&self, method: &str, url: &str) -> Option<(Arc<CompiledRule>, Vec<String>)> {
        self.index.candidates(url).into_iter().find_map(|rank| {
            let rule = self.rules.get(rank as usize)?;
            if !rule.matches_method(method) {
                return None;
            }
            rule.pattern.captures(url).map(|c| (Arc::clone(rule), c))
        })
    }

    /// The CORS policy for requests judged by `rule` (or by no rule).
    pub fn cors_for<'a>(&'a self, rule: Option<&'a CompiledRule>) -> Option<&'a CorsPolicy> {
        match rule.and_then(|r| r.cors.as_ref()) {
            Some(own) => own.as_ref(),
            None => self.cors.as_ref(),
        }
    }

    /// The `kid` `id_token` mutators sign with.
    pub fn signing_kid(&self) -> Option<&str> {
        self.signing_kid.as_deref()
    }

    /// Whether a rule sends the client's address somewhere (Keto's `remoteIpAddress`): only
    /// then does the filter spend a host call on it.
    pub fn needs_client_address(&self) -> bool {
        self.needs_client_address
    }

    /// Revoked token digests, shared with every evaluation.
    pub fn revoked(&self) -> &Arc<Revoked> {
        &self.revoked
    }

    /// The rules in precedence order.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledRule> {
        self.rules.iter().map(|r| &**r)
    }

    /// Every header name any header mutator sets (lower-cased). A client must never be able to
    /// send these itself, so the filter removes them from every request, matched or not.
    pub fn guarded_headers(&self) -> &[String] {
        &self.guarded_headers
    }
}

fn compile_rule(spec: &RuleSpec, env: &Environment) -> Result<CompiledRule, HandlerError> {
    let strategy = spec.matcher.strategy.unwrap_or(env.strategy);
    let pattern = UrlPattern::compile_with(&spec.matcher.url, strategy).map_err(|e| ("match.url".to_owned(), e))?;
    if spec.matcher.methods.is_empty() {
        return Err(("match.methods".into(), "must list at least one HTTP method".into()));
    }
    let mut methods = Vec::with_capacity(spec.matcher.methods.len());
    for (i, m) in spec.matcher.methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            return Err((format!("match.methods[{i}]"), format!("{m:?} is not an HTTP method")));
        }
        methods.push(m.to_ascii_uppercase());
    }
    if spec.authenticators.is_empty() {
        return Err(("authenticators".into(), "must list at least one authenticator".into()));
    }
    Ok(CompiledRule {
        id: spec.id.clone(),
        priority: spec.priority.unwrap_or(0),
        methods,
        pattern,
        info: PatternInfo::analyse(&spec.matcher.url, strategy),
        authenticators: each(&spec.authenticators, "authenticators", |h| Authenticator::compile(h, &env.jwks))?,
        authorizer: Authorizer::compile(&spec.authorizer).map_err(|(f, m)| (join("authorizer", &f), m))?,
        mutators: each(&spec.mutators, "mutators", Mutator::compile)?,
        errors: each(&spec.errors, "errors", ErrorHandler::compile)?,
        cors: spec.cors.as_ref().map(CorsPolicy::compile).transpose()?,
    })
}

/// Compiles a list of handlers, prefixing error fields with `list[i]`.
fn each<T>(
    specs: &[HandlerSpec],
    list: &str,
    compile: impl Fn(&HandlerSpec) -> Result<T, HandlerError>,
) -> Result<Vec<T>, HandlerError> {
    specs.iter().enumerate().map(|(i, h)| compile(h).map_err(|(f, m)| (join(&format!("{list}[{i}]"), &f), m))).collect()
}

fn join(prefix: &str, field: &str) -> String {
    if field.is_empty() { prefix.to_owned() } else { format!("{prefix}.{field}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::authn::{Kind, TokenSource};
    use crate::scope::ScopeStrategy;
    use serde_json::json;

    fn rule(id: &str, url: &str) -> Value {
        json!({
            "id": id,
            "match": {"url": url, "methods": ["get", "POST"]},
            "authenticators": [{"handler": "anonymous"}],
            "authorizer": {"handler": "allow"},
            "mutators": [{"handler": "header", "config": {"headers": {"X-User": "{{ print .Subject }}"}}}]
        })
    }

    fn compile(rules: Value) -> Result<RuleSet, RuleError> {
        RuleSet::compile(&parse_rules(rules)?)
    }

    #[test]
    fn oathkeeper_rule_file_compiles_and_selects() {
        let set = compile(json!([rule("a", "http://<[^/]+>/a/<.*>"), rule("b", "http://<[^/]+>/b")])).unwrap();
        let (r, caps) = set.select("GET", "http://h/a/x/y").unwrap();
        assert_eq!(r.id, "a");
        assert_eq!(caps, vec!["h", "x/y"]);
        assert_eq!(set.select("post", "http://h/b").unwrap().0.id, "b");
        assert!(set.select("DELETE", "http://h/b").is_none());
        assert!(set.select("GET", "http://h/c").is_none());
        assert_eq!(set.guarded_headers(), ["x-user"]);
    }

    #[test]
    fn strategy_is_global_with_a_per_rule_override() {
        let mut glob_rule = rule("g", "http://h/<{a,b}>/<*>");
        glob_rule["match"]["strategy"] = json!("glob");
        let specs = parse_rules(json!([rule("r", "http://h/re/<[0-9]+>"), glob_rule])).unwrap();
        let set = RuleSet::compile(&specs).unwrap();
        assert_eq!(set.select("GET", "http://h/a/x").unwrap().0.id, "g");
        assert_eq!(set.select("GET", "http://h/re/12").unwrap().0.id, "r");
        // With glob as the default, `[0-9]+` means "a digit, then a literal +".
        let set = RuleSet::compile_with(&specs, Strategy::Glob).unwrap();
        assert!(set.select("GET", "http://h/re/12").is_none());
        assert!(set.select("GET", "http://h/re/1+").is_some());
        let mut bad = rule("b", "http://h/");
        bad["match"]["strategy"] = json!("regex");
        assert_eq!(compile(json!([bad])).unwrap_err().field, "match.strategy");
    }

    #[test]
    fn precedence_is_priority_then_specificity_then_order_instead_of_a_500() {
        let set = compile(json!([rule("general", "http://h/a/<.*>"), rule("specific", "http://h/a/1")])).unwrap();
        assert_eq!(set.select("GET", "http://h/a/1").unwrap().0.id, "specific", "more literal text wins");
        assert_eq!(set.select("GET", "http://h/a/2").unwrap().0.id, "general");
        let set = compile(json!([rule("first", "http://h/<[a-z]+>"), rule("second", "http://h/<[a-c]+>")])).unwrap();
        assert_eq!(set.select("GET", "http://h/abc").unwrap().0.id, "first", "equal specificity: file order");
        let mut urgent = rule("urgent", "<.*>");
        urgent["priority"] = json!(10);
        let set = compile(json!([rule("specific", "http://h/a/1"), urgent])).unwrap();
        assert_eq!(set.select("GET", "http://h/a/1").unwrap().0.id, "urgent", "priority beats specificity");
        assert_eq!(set.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["urgent", "specific"]);
    }

    #[test]
    fn selection_agrees_with_a_linear_scan_over_many_rules() {
        let mut rules: Vec<Value> = (0..300)
            .map(|i| match i % 3 {
                0 => rule(&format!("svc{i}"), &format!("<http|https>://<[^/]+>/svc{i}/<.*>")),
                1 => rule(&format!("host{i}"), &format!("https://api{i}.example.com/<.*>")),
                _ => rule(&format!("any{i}"), &format!("<.*>/x{i}")),
            })
            .collect();
        rules.push(rule("fallback", "<.*>"));
        let set = compile(Value::Array(rules)).unwrap();
        for (url, expected) in [
            ("http://gw/svc3/a", "svc3"),
            ("https://api4.example.com/y", "host4"),
            ("http://gw/x5", "any5"),
            ("http://gw/svc999/a", "fallback"),
        ] {
            assert_eq!(set.select("GET", url).unwrap().0.id, expected, "{url}");
            let linear = set.iter().find(|r| r.matches_method("GET") && r.pattern.is_match(url)).unwrap();
            assert_eq!(linear.id, expected);
        }
    }

    #[test]
    fn errors_name_the_rule_and_field() {
        let mut bad = rule("r1", "http://h/<[0-9+>");
        let e = compile(json!([rule("ok", "http://h/"), bad.clone()])).unwrap_err();
        assert_eq!((e.index, e.rule_id.as_deref(), e.field.as_str()), (1, Some("r1"), "match.url"));
        assert!(e.to_string().starts_with("rule \"r1\" (#1): match.url: invalid regular expression"), "{e}");

        bad = rule("r2", "http://h/");
        bad["authenticators"][0] = json!({"handler": "oauth2_introspection", "config": {"introspection_ur": "x"}});
        let e = compile(json!([bad])).unwrap_err();
        assert_eq!(e.field, "authenticators[0].config.introspection_ur");
        assert!(e.message.contains("unknown field"), "{}", e.message);

        bad = rule("r3", "http://h/");
        bad["mutators"][0]["config"]["headers"]["X-User"] = json!("{{ .Nope }}");
        let e = compile(json!([bad])).unwrap_err();
        assert_eq!(e.field, "mutators[0].config.headers.X-User");

        bad = rule("r4", "http://h/");
        bad["authorizer"] = json!({"handler": "keto"});
        assert_eq!(compile(json!([bad])).unwrap_err().field, "authorizer.handler");

        let e = compile(json!([{"id": "r5", "match": {"url": "http://h/", "methods": ["GET"]}, "authenticators": []}]))
            .unwrap_err();
        assert_eq!((e.rule_id.as_deref(), e.field.as_str()), (Some("r5"), ""));
        assert!(e.message.contains("authorizer"), "{}", e.message);

        let e = compile(json!([rule("dup", "http://h/1"), rule("dup", "http://h/2")])).unwrap_err();
        assert!(e.message.contains("duplicate"), "{}", e.message);

        assert!(compile(json!({"id": "x"})).unwrap_err().message.contains("array"));

        bad = rule("r6", "http://h/");
        bad["mutators"][0]["config"]["headers"] = json!({"Content-Length": "1"});
        assert!(compile(json!([bad])).unwrap_err().message.contains("cannot be set"));
    }

    #[test]
    fn secrets_in_handler_configs_stay_out_of_debug_output() {
        let mut r = rule("s", "http://h/");
        r["authenticators"][0] = json!({"handler": "oauth2_introspection", "config": {
            "introspection_url": "http://cp/i",
            "pre_authorization": {"enabled": true, "client_id": "gw", "client_secret": "hunter2-secret", "token_url": "http://cp/t"}}});
        r["mutators"][0] = json!({"handler": "hydrator", "config": {"api": {"url": "http://h/",
            "auth": {"basic": {"username": "u", "password": "hunter2-password"}}}}});
        let specs = parse_rules(json!([r])).unwrap();
        let compiled = RuleSet::compile(&specs).unwrap();
        let printed = format!("{specs:?} {compiled:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("pre_authorization"), "still useful: {printed}");
    }

    #[test]
    fn introspection_config_is_read_with_oathkeeper_keys() {
        let mut r = rule("i", "http://h/");
        r["authenticators"][0] = json!({"handler": "oauth2_introspection", "config": {
            "introspection_url": "http://cp:4445/admin/oauth2/introspect",
            "scope_strategy": "exact", "required_scope": ["read"],
            "token_from": {"header": "X-Token"},
            "cache": {"enabled": true, "ttl": "30s"}
        }});
        let set = compile(json!([r])).unwrap();
        let (rule, _) = set.select("GET", "http://h/").unwrap();
        let Kind::OAuth2Introspection(i) = &rule.authenticators[0].kind else { panic!() };
        assert_eq!(i.scope_strategy, ScopeStrategy::Exact);
        assert_eq!(i.token_from, TokenSource::Header("x-token".into()));
        assert_eq!(i.cache_ttl_ms, Some(30_000));
    }
}
