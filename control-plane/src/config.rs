//! Configuration: one YAML file (optional) overridden by `PORTCULLIS_` environment variables
//! with `__` for nesting (`PORTCULLIS_SERVE__ADMIN__PORT=5555`). Unknown keys are rejected so a
//! typo never silently falls back to a default. This module only reads and validates; it
//! opens no sockets and no database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Yaml};
use serde::Deserialize;

pub use crate::courier::config::CourierConfig;
use crate::error::StartupError;
pub use crate::identity::config::{IdentityConfig, SchemaSource, SelfService, SessionConfig};
pub use crate::ui::UiConfig;
pub use portcullis_keys::config::{MIN_SYSTEM_SECRET_CHARS, Secrets};
pub use portcullis_model::token::AccessTokenStrategy;
pub use portcullis_oauth2::config::{Grants, OAuth2, RefreshTokenGrant, SelfUrls, Strategies, Ttl, Urls};
pub use portcullis_rules::config::{AccessRules, Decisions, Filters};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://path?mode=rwc`, `memory`, or `postgres://...`.
    pub dsn: String,
    pub serve: Serve,
    pub urls: Urls,
    pub ttl: Ttl,
    /// Hydra's `strategies`: how access tokens are minted.
    pub strategies: Strategies,
    /// Hydra's `oauth2` section: grant behaviour.
    pub oauth2: OAuth2,
    pub access_rules: AccessRules,
    pub filters: Filters,
    pub decisions: Decisions,
    pub secrets: Secrets,
    pub identity: IdentityConfig,
    pub selfservice: SelfService,
    pub session: SessionConfig,
    /// Bounds on password hashing (`hashers.argon2`), see [`crate::crypto::Hashers`].
    pub hashers: crate::crypto::Hashers,
    /// E-mail delivery (Kratos's `courier`); the SMTP URI's password is redacted in `Debug`.
    pub courier: CourierConfig,
    /// The built-in pages: site title and an optional operator layout (`templates_dir`).
    pub ui: UiConfig,
    /// Set by `portcullis serve --dev`, never by a file or the environment: the admin
    /// listener accepts requests without an API key and the courier's outbox is browsable.
    #[serde(skip)]
    pub dev: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dsn: "sqlite://portcullis.sqlite?mode=rwc".into(),
            serve: Serve::default(),
            urls: Urls::default(),
            ttl: Ttl::default(),
            strategies: Strategies::default(),
            oauth2: OAuth2::default(),
            access_rules: AccessRules::default(),
            filters: Filters::default(),
            decisions: Decisions::default(),
            secrets: Secrets::default(),
            identity: IdentityConfig::default(),
            selfservice: SelfService::default(),
            session: SessionConfig::default(),
            hashers: crate::crypto::Hashers::default(),
            courier: CourierConfig::default(),
            ui: UiConfig::default(),
            dev: false,
        }
    }
}

// The DSN may carry a database password and filter tokens are credentials: keep both out of
// any log line that formats the config.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("dsn", &"<redacted>")
            .field("serve", &self.serve)
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .field("strategies", &self.strategies)
            .field("oauth2", &self.oauth2)
            .field("access_rules", &self.access_rules)
            .field("filters", &self.filters)
            .field("decisions", &self.decisions)
            .field("secrets", &self.secrets)
            .field("identity", &self.identity)
            .field("selfservice", &self.selfservice)
            .field("session", &self.session)
            .field("hashers", &self.hashers)
            .field("courier", &self.courier)
            .field("ui", &self.ui)
            .field("dev", &self.dev)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Serve {
    pub public: Listen,
    pub admin: Listen,
}

impl Default for Serve {
    fn default() -> Self {
        Self {
            public: Listen { host: "127.0.0.1".into(), port: 4444 },
            admin: Listen { host: "127.0.0.1".into(), port: 4445 },
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default = "default_host")]
    pub host: String,
    pub port: u16,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

impl Listen {
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl Config {
    /// Reads `file` (if any), applies `PORTCULLIS_*` overrides, validates, and resolves rule
    /// file paths against the config file's directory.
    pub fn load(file: Option<&Path>) -> Result<Self, StartupError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(StartupError(format!("config file {}: not found or not a regular file", path.display())));
            }
            figment = figment.merge(Yaml::file_exact(path));
        }
        // PORTCULLIS_CONFIG names the file itself, and PORTCULLIS_TEST_* belong to the test
        // suites; neither is a config key.
        let env = Env::prefixed("PORTCULLIS_")
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                // PORTCULLIS_API_KEY, PORTCULLIS_ADMIN_URL and PORTCULLIS_PUBLIC_URL belong to the
                // CLI's client commands.
                !matches!(key.as_str(), "config" | "api_key" | "admin_url" | "public_url") && !key.starts_with("test_")
            })
            .split("__");
        figment = figment.merge(env);
        let mut config: Config = figment.extract().map_err(|e| StartupError(one_line(&e)))?;
        let base = file.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        config.access_rules.repositories = config.access_rules.repositories.iter().map(|r| resolve(&base, r)).collect();
        config.ui.load_templates(&base)?;
        for path in [&mut config.oauth2.clients_file, &mut config.oauth2.clients_secrets_dir].into_iter().flatten() {
            *path = resolve(&base, path);
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), StartupError> {
        if self.ttl.access_token.as_secs() == 0 {
            return Err(StartupError("config key ttl.access_token: must be at least 1s".into()));
        }
        let grace = self.oauth2.grant.refresh_token.rotation_grace_period;
        if grace > Duration::from_secs(300) {
            return Err(StartupError(
                "config key oauth2.grant.refresh_token.rotation_grace_period: must be at most 5m (inside the window a replayed refresh token is not detected)".into(),
            ));
        }
        if self.filters.tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(StartupError("config key filters.tokens: tokens must not be empty".into()));
        }
        if self.decisions.call_timeout.is_zero() || self.decisions.call_timeout > Duration::from_secs(60) {
            return Err(StartupError("config key decisions.call_timeout: must be between 1ms and 60s".into()));
        }
        if self.dsn.trim().is_empty() {
            return Err(StartupError("config key dsn: must not be empty".into()));
        }
        self.selfservice.validate()?;
        self.session.validate(self.urls.self_.public_base().starts_with("https://"))?;
        self.courier.validate()?;
        self.secrets.validate()
    }
}

fn resolve(base: &Path, repository: &str) -> String {
    let path = repository.strip_prefix("file://").unwrap_or(repository);
    let path = PathBuf::from(path);
    if path.is_absolute() || base.as_os_str().is_empty() {
        path.display().to_string()
    } else {
        base.join(path).display().to_string()
    }
}

/// Every figment error on one line, each naming its key and where the value came from.
fn one_line(e: &figment::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for err in e.clone() {
        let origin = match err.metadata.as_ref().and_then(|m| m.source.as_ref()) {
            Some(figment::Source::File(path)) => format!("config file {}", path.display()),
            _ => match &err.metadata {
                Some(m) if m.name.contains("environment") => "environment".to_owned(),
                Some(m) => m.name.to_string(),
                None => "configuration".to_owned(),
            },
        };
        let key = err.path.join(".");
        if key.is_empty() {
            parts.push(format!("{origin}: {}", err.kind));
        } else {
            parts.push(format!("{origin}: key {key}: {}", err.kind));
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("portcullis-config-{tag}-{}", crate::crypto::hex(&crate::crypto::random_bytes::<6>())));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn defaults_without_a_file() {
        let c = Config::default();
        assert_eq!(c.serve.public.address(), "127.0.0.1:4444");
        assert_eq!(c.serve.admin.port, 4445);
        assert_eq!(c.ttl.access_token, Duration::from_secs(3600));
        assert_eq!(c.urls.self_.issuer, "http://127.0.0.1:4444/");
    }

    #[test]
    fn file_values_and_relative_rule_paths() {
        let dir = temp_dir("ok");
        let path = write(
            &dir,
            "c.yaml",
            "dsn: memory\nserve:\n  admin:\n    port: 5555\nttl:\n  access_token: 90s\naccess_rules:\n  repositories: [rules.json, 'file:///abs/r.yaml']\nfilters:\n  tokens: [t1]\n",
        );
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.dsn, "memory");
        assert_eq!(c.serve.admin.port, 5555);
        assert_eq!(c.serve.admin.host, "127.0.0.1");
        assert_eq!(c.serve.public.port, 4444);
        assert_eq!(c.ttl.access_token, Duration::from_secs(90));
        assert_eq!(
            c.access_rules.repositories,
            [dir.join("rules.json").display().to_string(), "/abs/r.yaml".to_owned()]
        );
        assert!(!format!("{c:?}").contains("t1"));
    }

    #[test]
    fn unknown_key_is_named() {
        let dir = temp_dir("bad");
        let path = write(&dir, "c.yaml", "serve:\n  admn:\n    port: 1\n");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("admn"), "{err}");
        assert!(err.contains("c.yaml"), "{err}");
        let path = write(&dir, "d.yaml", "ttl:\n  access_token: soon\n");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("ttl.access_token"), "{err}");
    }

    #[test]
    fn short_system_secrets_are_named_and_never_shown() {
        let dir = temp_dir("secrets");
        let path = write(&dir, "c.yaml", "secrets:\n  system: ['a-long-enough-secret-1', 'short-secret']\n");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("secrets.system[1]") && err.contains("16"), "{err}");
        assert!(!err.contains("short-secret"), "{err}");
        let path = write(&dir, "d.yaml", "secrets:\n  system: ['a-long-enough-secret-1']\n");
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.secrets.system.len(), 1);
        assert!(!format!("{c:?}").contains("a-long-enough"));
    }
}
