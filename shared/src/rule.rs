//! Access rules: the Oathkeeper wire format (`id`, `match.url`, `match.methods`,
//! `authenticators`, `authorizer`, `mutators`, `errors`) and the compiled form the filter
//! evaluates. Everything that can be checked is checked when a rule loads: unknown fields,
//! unknown handlers, bad patterns, bad templates, duplicate ids. An error names the rule and
//! the field, and the caller keeps the rule set it already had.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::matching::{Strategy, UrlPattern};
use crate::scope::ScopeStrategy;
use crate::template::Template;

/// One rule as written in an Oathkeeper `access-rules.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    pub handler: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
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
            serde_path_to_error::deserialize::<_, RuleSpec>(item).map_err(|e| {
                let field = e.path().to_string();
                RuleError {
                    index,
                    rule_id,
                    field: if field == "." { String::new() } else { field },
                    message: e.into_inner().to_string(),
                }
            })
        })
        .collect()
}

/// A validated rule, ready to judge requests.
#[derive(Debug)]
pub struct CompiledRule {
    pub id: String,
    methods: Vec<String>,
    pattern: UrlPattern,
    pub authenticators: Vec<Authenticator>,
    pub authorizer: Authorizer,
    pub mutators: Vec<Mutator>,
}

impl CompiledRule {
    pub fn matches_method(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Authenticator {
    Noop,
    Unauthorized,
    Anonymous { subject: String },
    OAuth2Introspection(Box<IntrospectionAuthenticator>),
}

/// Where a bearer credential is read from (Oathkeeper `token_from`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    #[default]
    AuthorizationBearer,
    /// The whole value of another header.
    Header(String),
    QueryParameter(String),
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionAuthenticator {
    pub introspection_url: String,
    pub scope_strategy: ScopeStrategy,
    pub required_scope: Vec<String>,
    pub target_audience: Vec<String>,
    pub trusted_issuers: Vec<String>,
    pub prefix: String,
    pub token_from: TokenSource,
    pub request_headers: Vec<(String, String)>,
    /// How long an active result may be reused, never past the token's `exp`. `None`: no cache.
    pub cache_ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorizer {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mutator {
    Noop,
    /// Header names are lower-cased.
    Header(Vec<(String, Template)>),
}

/// The default cache lifetime when a rule enables the introspection cache without a `ttl`.
pub const DEFAULT_INTROSPECTION_CACHE_TTL_MS: u64 = 60_000;

/// Headers a mutator may not set: they change framing or routing, not identity.
const FORBIDDEN_MUTATOR_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive"];

/// An ordered, validated set of rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Arc<CompiledRule>>,
    guarded_headers: Vec<String>,
}

impl RuleSet {
    /// Validates and compiles every rule with the `regexp` strategy as the default.
    pub fn compile(specs: &[RuleSpec]) -> Result<Self, RuleError> {
        Self::compile_with(specs, Strategy::Regexp)
    }

    /// Validates and compiles every rule; `strategy` applies where a rule does not set
    /// `match.strategy` (Oathkeeper's `access_rules.matching_strategy`). The first error wins
    /// and nothing is half-loaded.
    pub fn compile_with(specs: &[RuleSpec], strategy: Strategy) -> Result<Self, RuleError> {
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
            rules.push(Arc::new(compile_rule(spec, strategy).map_err(|(field, message)| err(&field, message))?));
        }
        let mut guarded_headers: Vec<String> = rules
            .iter()
            .flat_map(|r| r.mutators.iter())
            .flat_map(|m| match m {
                Mutator::Header(headers) => headers.iter().map(|(n, _)| n.clone()).collect(),
                Mutator::Noop => Vec::new(),
            })
            .collect();
        guarded_headers.sort();
        guarded_headers.dedup();
        Ok(Self { rules, guarded_headers })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule (in rule-set order) whose method list and URL pattern match, with its
    /// capture groups.
    pub fn select(&self, method: &str, url: &str) -> Option<(Arc<CompiledRule>, Vec<String>)> {
        self.rules
            .iter()
            .filter(|r| r.matches_method(method))
            .find_map(|r| r.pattern.captures(url).map(|c| (Arc::clone(r), c)))
    }

    /// Every header name any header mutator sets (lower-cased). A client must never be able to
    /// send these itself, so the filter removes them from every request, matched or not.
    pub fn guarded_headers(&self) -> &[String] {
        &self.guarded_headers
    }
}

type FieldError = (String, String);

fn compile_rule(spec: &RuleSpec, default_strategy: Strategy) -> Result<CompiledRule, FieldError> {
    let strategy = spec.matcher.strategy.unwrap_or(default_strategy);
    let pattern = UrlPattern::compile_with(&spec.matcher.url, strategy).map_err(|e| ("match.url".to_owned(), e))?;
    if spec.matcher.methods.is_empty() {
        return Err(("match.methods".into(), "must list at least one HTTP method".into()));
    }
    let mut methods = Vec::with_capacity(spec.matcher.methods.len());
    for (i, m) in spec.matcher.methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(is_token_byte) {
            return Err((format!("match.methods[{i}]"), format!("{m:?} is not an HTTP method")));
        }
        methods.push(m.to_ascii_uppercase());
    }
    if spec.authenticators.is_empty() {
        return Err(("authenticators".into(), "must list at least one authenticator".into()));
    }
    let authenticators = spec
        .authenticators
        .iter()
        .enumerate()
        .map(|(i, h)| compile_authenticator(h).map_err(|(f, m)| (join(&format!("authenticators[{i}]"), &f), m)))
        .collect::<Result<Vec<_>, _>>()?;
    let authorizer = compile_authorizer(&spec.authorizer).map_err(|(f, m)| (join("authorizer", &f), m))?;
    let mutators = spec
        .mutators
        .iter()
        .enumerate()
        .map(|(i, h)| compile_mutator(h).map_err(|(f, m)| (join(&format!("mutators[{i}]"), &f), m)))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, h) in spec.errors.iter().enumerate() {
        check_error_handler(h).map_err(|(f, m)| (join(&format!("errors[{i}]"), &f), m))?;
    }
    Ok(CompiledRule { id: spec.id.clone(), methods, pattern, authenticators, authorizer, mutators })
}

fn join(prefix: &str, field: &str) -> String {
    if field.is_empty() { prefix.to_owned() } else { format!("{prefix}.{field}") }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Deserialises a handler's `config` (absent means `{}`), naming the field on error.
fn config<T: DeserializeOwned>(h: &HandlerSpec) -> Result<T, FieldError> {
    let value = if h.config.is_null() { Value::Object(Default::default()) } else { h.config.clone() };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "config".to_owned() } else { format!("config.{path}") };
        (field, e.into_inner().to_string())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn compile_authenticator(h: &HandlerSpec) -> Result<Authenticator, FieldError> {
    Ok(match h.handler.as_str() {
        "noop" => config::<Empty>(h).map(|_| Authenticator::Noop)?,
        "unauthorized" => config::<Empty>(h).map(|_| Authenticator::Unauthorized)?,
        "anonymous" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Anonymous {
                subject: Option<String>,
            }
            let c: Anonymous = config(h)?;
            Authenticator::Anonymous { subject: c.subject.unwrap_or_else(|| "anonymous".into()) }
        }
        "oauth2_introspection" => Authenticator::OAuth2Introspection(Box::new(compile_introspection(h)?)),
        other => {
            return Err(("handler".into(), unknown_handler("authenticator", other, AUTHENTICATORS)));
        }
    })
}

const AUTHENTICATORS: &[&str] = &["noop", "anonymous", "unauthorized", "oauth2_introspection"];

fn unknown_handler(kind: &str, name: &str, known: &[&str]) -> String {
    format!("unknown {kind} {name:?}; this version supports: {}", known.join(", "))
}

fn compile_introspection(h: &HandlerSpec) -> Result<IntrospectionAuthenticator, FieldError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        introspection_url: String,
        #[serde(default)]
        scope_strategy: ScopeStrategy,
        #[serde(default)]
        required_scope: Vec<String>,
        #[serde(default)]
        target_audience: Vec<String>,
        #[serde(default)]
        trusted_issuers: Vec<String>,
        #[serde(default)]
        prefix: String,
        /// Accepted for compatibility; Envoy keeps the Host header itself.
        #[serde(default)]
        #[allow(dead_code)]
        preserve_host: bool,
        #[serde(default)]
        token_from: Option<TokenFrom>,
        #[serde(default)]
        introspection_request_headers: BTreeMap<String, String>,
        #[serde(default)]
        cache: Option<Cache>,
        /// Accepted for compatibility; the filter's call-out timeout is set in its plugin config.
        #[serde(default)]
        #[allow(dead_code)]
        retry: Option<Value>,
        #[serde(default)]
        pre_authorization: Option<PreAuthorization>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TokenFrom {
        header: Option<String>,
        query_parameter: Option<String>,
        cookie: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cache {
        #[serde(default)]
        enabled: bool,
        ttl: Option<String>,
        #[allow(dead_code)]
        max_cost: Option<i64>,
    }
    #[derive(Deserialize)]
    struct PreAuthorization {
        #[serde(default)]
        enabled: bool,
    }

    let c: Spec = config(h)?;
    if !(c.introspection_url.starts_with("http://") || c.introspection_url.starts_with("https://")) {
        return Err(("config.introspection_url".into(), "must be an http:// or https:// URL".into()));
    }
    if c.pre_authorization.is_some_and(|p| p.enabled) {
        return Err(("config.pre_authorization".into(), "is not supported by this version yet".into()));
    }
    for (i, s) in c.required_scope.iter().enumerate() {
        if !crate::scope::is_valid_token(s) {
            return Err((format!("config.required_scope[{i}]"), format!("{s:?} is not a valid scope")));
        }
    }
    let token_from = match c.token_from {
        None => TokenSource::AuthorizationBearer,
        Some(TokenFrom { header: Some(h), query_parameter: None, cookie: None }) => {
            if h.eq_ignore_ascii_case("authorization") {
                TokenSource::AuthorizationBearer
            } else {
                TokenSource::Header(h.to_ascii_lowercase())
            }
        }
        Some(TokenFrom { header: None, query_parameter: Some(q), cookie: None }) => TokenSource::QueryParameter(q),
        Some(TokenFrom { header: None, query_parameter: None, cookie: Some(c) }) => TokenSource::Cookie(c),
        Some(_) => {
            return Err(("config.token_from".into(), "set exactly one of header, query_parameter or cookie".into()));
        }
    };
    let cache_ttl_ms = match c.cache {
        Some(Cache { enabled: true, ttl, .. }) => Some(match ttl {
            Some(t) => crate::duration::parse_millis(&t).map_err(|e| ("config.cache.ttl".to_owned(), e))?,
            None => DEFAULT_INTROSPECTION_CACHE_TTL_MS,
        }),
        _ => None,
    };
    Ok(IntrospectionAuthenticator {
        introspection_url: c.introspection_url,
        scope_strategy: c.scope_strategy,
        required_scope: c.required_scope,
        target_audience: c.target_audience,
        trusted_issuers: c.trusted_issuers,
        prefix: c.prefix,
        token_from,
        request_headers: c
            .introspection_request_headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        cache_ttl_ms,
    })
}

fn compile_authorizer(h: &HandlerSpec) -> Result<Authorizer, FieldError> {
    match h.handler.as_str() {
        "allow" => config::<Empty>(h).map(|_| Authorizer::Allow),
        "deny" => config::<Empty>(h).map(|_| Authorizer::Deny),
        other => Err(("handler".into(), unknown_handler("authorizer", other, &["allow", "deny"]))),
    }
}

fn compile_mutator(h: &HandlerSpec) -> Result<Mutator, FieldError> {
    match h.handler.as_str() {
        "noop" => config::<Empty>(h).map(|_| Mutator::Noop),
        "header" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Headers {
                headers: BTreeMap<String, String>,
            }
            let c: Headers = config(h)?;
            let mut out = Vec::with_capacity(c.headers.len());
            for (name, source) in c.headers {
                let field = format!("config.headers.{name}");
                let lower = name.to_ascii_lowercase();
                if name.is_empty() || !name.bytes().all(is_token_byte) {
                    return Err((field, "is not a valid header name".into()));
                }
                if FORBIDDEN_MUTATOR_HEADERS.contains(&lower.as_str()) {
                    return Err((field, "cannot be set by a mutator".into()));
                }
                out.push((lower, Template::compile(&source).map_err(|e| (field, e))?));
            }
            Ok(Mutator::Header(out))
        }
        other => Err(("handler".into(), unknown_handler("mutator", other, &["noop", "header"]))),
    }
}

fn check_error_handler(h: &HandlerSpec) -> Result<(), FieldError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Json {
        verbose: Option<bool>,
        when: Option<Value>,
    }
    match h.handler.as_str() {
        "json" => config::<Json>(h).map(|_| ()),
        other => Err(("handler".into(), unknown_handler("error handler", other, &["json"]))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn first_matching_rule_wins_instead_of_a_500() {
        let set = compile(json!([rule("specific", "http://h/a/1"), rule("general", "http://h/a/<.*>")])).unwrap();
        assert_eq!(set.select("GET", "http://h/a/1").unwrap().0.id, "specific");
        assert_eq!(set.select("GET", "http://h/a/2").unwrap().0.id, "general");
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
        let Authenticator::OAuth2Introspection(i) = &rule.authenticators[0] else { panic!() };
        assert_eq!(i.scope_strategy, ScopeStrategy::Exact);
        assert_eq!(i.token_from, TokenSource::Header("x-token".into()));
        assert_eq!(i.cache_ttl_ms, Some(30_000));
    }
}
