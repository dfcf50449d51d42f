//! The configuration sections this crate owns: `access_rules`, `decisions` and `filters`. The
//! control plane's config file assembles them with the other crates' sections.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessRules {
    /// Rule files or directories of rule files (`*.json`, `*.yaml`, `*.yml`, read in name
    /// order); after [`Config::load`] these are absolute or relative to the working directory,
    /// with any `file://` prefix removed. All are polled for changes every second.
    pub repositories: Vec<String>,
    /// How `<...>` parts of `match.url` are read when a rule does not say: `regexp` (default)
    /// or `glob`, as Oathkeeper's `access_rules.matching_strategy`.
    pub matching_strategy: portcullis_shared::matching::Strategy,
    /// How often the key sets named by `jwt` authenticators' `jwks_urls` are fetched again
    /// (new URLs are fetched within a second).
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// The CORS policy for rules without their own (`allowed_origins`, `allowed_methods`,
    /// `allowed_headers`, `exposed_headers`, `allow_credentials`, `max_age`).
    pub cors: Option<portcullis_shared::cors::CorsSpec>,
}

impl Default for AccessRules {
    fn default() -> Self {
        Self {
            repositories: Vec::new(),
            matching_strategy: portcullis_shared::matching::Strategy::Regexp,
            jwks_refresh: Duration::from_secs(300),
            cors: None,
        }
    }
}

/// The decisions API (`/decisions`) and rule explanation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Decisions {
    /// Limit for one call-out (introspection, session check, remote authorizer), connect
    /// included; a call that takes longer counts as the endpoint being unavailable.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// How many call-out answers are kept for reuse at most; 0 turns the cache off.
    pub cache_capacity: usize,
}

impl Default for Decisions {
    fn default() -> Self {
        Self { call_timeout: Duration::from_secs(2), cache_capacity: 10_000 }
    }
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filters {
    /// Bearer tokens filters present to `GET /admin/snapshot`.
    pub tokens: Vec<String>,
}

impl std::fmt::Debug for Filters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filters {{ tokens: <{} redacted> }}", self.tokens.len())
    }
}
