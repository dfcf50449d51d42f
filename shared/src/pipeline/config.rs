//! Reading handler `config` objects: strict (unknown keys are errors), with errors that name
//! the field, so a typo in a rule file is reported when the rule loads.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::rule::HandlerSpec;
use crate::template::Template;

/// A field path inside the handler (e.g. `config.introspection_url`) and what is wrong with it.
pub type HandlerError = (String, String);

/// Deserialises a handler's `config` (absent means `{}`), naming the field on error.
pub(crate) fn config<T: DeserializeOwned>(h: &HandlerSpec) -> Result<T, HandlerError> {
    from_value(if h.config.is_null() { Value::Object(Default::default()) } else { h.config.clone() })
}

#[cfg(feature = "field-paths")]
pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, HandlerError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "config".to_owned() } else { format!("config.{path}") };
        (field, e.into_inner().to_string())
    })
}

/// Without `field-paths` (the filter): serde's message, which names the field it stopped at.
#[cfg(not(feature = "field-paths"))]
pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, HandlerError> {
    serde_json::from_value(value).map_err(|e| ("config".to_owned(), e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

pub(crate) fn unknown_handler(kind: &str, name: &str, known: &[&str]) -> HandlerError {
    ("handler".into(), format!("unknown {kind} {name:?}; this version supports: {}", known.join(", ")))
}

pub(crate) fn http_url(field: &str, url: &str) -> Result<(), HandlerError> {
    let ok = ["http://", "https://"].iter().any(|p| url.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    if ok { Ok(()) } else { Err((field.to_owned(), "must be an http:// or https:// URL".into())) }
}

/// `Go duration` → milliseconds, naming the field on error.
pub(crate) fn duration(field: &str, value: &str) -> Result<u64, HandlerError> {
    crate::duration::parse_millis(value).map_err(|e| (field.to_owned(), e))
}

/// Header name → template source, compiled; names lower-cased and checked.
pub(crate) fn header_templates(
    field: &str,
    headers: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, Template)>, HandlerError> {
    headers
        .into_iter()
        .map(|(name, source)| {
            let at = format!("{field}.{name}");
            if !is_header_name(&name) {
                return Err((at, "is not a valid header name".into()));
            }
            let template = Template::compile(&source).map_err(|e| (at, e))?;
            Ok((name.to_ascii_lowercase(), template))
        })
        .collect()
}

/// An HTTP field name (RFC 9110 token): no pseudo-header, no space, no separator.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_byte)
}

pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `cache: {enabled, ttl}` as Oathkeeper writes it; `Some(ttl_ms)` when enabled.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheSpec {
    #[serde(default)]
    pub enabled: bool,
    pub ttl: Option<String>,
    /// Accepted for compatibility: the filter's cache is bounded by slots, not cost.
    #[expect(dead_code, reason = "an Oathkeeper option Portcullis accepts and does not need")]
    pub max_cost: Option<i64>,
    #[expect(dead_code, reason = "an Oathkeeper option Portcullis accepts and does not need")]
    pub max_tokens: Option<i64>,
}

impl CacheSpec {
    pub(crate) fn ttl_ms(spec: Option<CacheSpec>, default_ms: u64) -> Result<Option<u64>, HandlerError> {
        match spec {
            Some(CacheSpec { enabled: true, ttl, .. }) => match ttl {
                Some(t) => duration("config.cache.ttl", &t).map(Some),
                None => Ok(Some(default_ms)),
            },
            _ => Ok(None),
        }
    }
}
