//! The configuration sections the OAuth2 server owns: `urls` (issuer, public base, the login,
//! consent, logout and error apps), `ttl`, `strategies` and `oauth2` (grant behaviour, the
//! clients file). The control plane's `config` assembles them with the other crates' sections;
//! this module only describes and defaults them and must not read files or the environment.

use std::time::Duration;

use portcullis_model::token::AccessTokenStrategy;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Urls {
    #[serde(rename = "self")]
    pub self_: SelfUrls,
    /// Hydra's login, consent, logout and error apps. Empty: the built-in pages
    /// (`/ui/oauth2/login`, `/ui/oauth2/consent`, `/ui/oauth2/logout`, `/ui/error`).
    pub login: String,
    pub consent: String,
    pub logout: String,
    pub error: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfUrls {
    pub issuer: String,
    /// Where browsers reach the public listener (self-service flows, built-in pages, cookies).
    /// Empty: the issuer. Its scheme decides whether cookies are `Secure`.
    pub public: String,
}

impl Default for SelfUrls {
    fn default() -> Self {
        Self { issuer: "http://127.0.0.1:4444/".into(), public: String::new() }
    }
}

impl SelfUrls {
    /// The public base URL without a trailing slash.
    pub fn public_base(&self) -> &str {
        let url = if self.public.is_empty() { &self.issuer } else { &self.public };
        url.trim_end_matches('/')
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ttl {
    #[serde(with = "humantime_serde")]
    pub access_token: Duration,
    /// Authorization codes (Hydra's `ttl.auth_code`, 10 minutes).
    #[serde(with = "humantime_serde")]
    pub auth_code: Duration,
    /// ID tokens (Hydra's `ttl.id_token`, 1 hour).
    #[serde(with = "humantime_serde")]
    pub id_token: Duration,
    /// Refresh tokens (Hydra's `ttl.refresh_token`, 720 hours).
    #[serde(with = "humantime_serde")]
    pub refresh_token: Duration,
    /// Login, consent and logout requests (Hydra's `ttl.login_consent_request`, 30 minutes).
    #[serde(with = "humantime_serde")]
    pub login_consent_request: Duration,
}

impl Default for Ttl {
    fn default() -> Self {
        Self {
            access_token: Duration::from_secs(3600),
            auth_code: Duration::from_secs(600),
            id_token: Duration::from_secs(3600),
            refresh_token: Duration::from_secs(720 * 3600),
            login_consent_request: Duration::from_secs(1800),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Strategies {
    pub access_token: AccessTokenStrategy,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2 {
    pub grant: Grants,
    /// A YAML file or a directory of Kubernetes `OAuth2Client` resources reconciled into
    /// clients (see [`crate::clients_file`]); unset: no reconciling.
    pub clients_file: Option<String>,
    /// Where credentials files are read and written (`<dir>/<namespace>/<secretName>`).
    pub clients_secrets_dir: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    pub refresh_token: RefreshTokenGrant,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshTokenGrant {
    /// How long after a refresh token was exchanged a retry with it is taken for a client that
    /// lost the answer (it gets a new pair and the lost one is revoked) rather than for theft
    /// (which revokes the whole family). Hydra's key; 10 s by default, at most 5 min.
    #[serde(with = "humantime_serde")]
    pub rotation_grace_period: Duration,
}

impl Default for RefreshTokenGrant {
    fn default() -> Self {
        Self { rotation_grace_period: Duration::from_secs(10) }
    }
}
