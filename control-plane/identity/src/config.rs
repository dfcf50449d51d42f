//! Configuration of identities, self-service flows and sessions (`identity`, `selfservice`,
//! `session`), Kratos's key names where Kratos has one. Read and validated here; used by the
//! rest of `identity`. Unknown keys are rejected like everywhere else in the config.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use portcullis_model::StartupError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Which of `schemas` new identities use; empty: the first (or the built-in `default`).
    pub default_schema_id: String,
    /// `{id, url}` with `file://…`, a path, or `base64://…`. None: the built-in e-mail schema.
    pub schemas: Vec<SchemaSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSource {
    pub id: String,
    pub url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfService {
    /// Where a browser goes after a flow when neither `return_to` nor a flow setting says.
    /// Empty: the built-in account page.
    pub default_browser_return_url: String,
    /// Origins (or URL prefixes) `return_to` may point at, besides the public URL itself.
    pub allowed_return_urls: Vec<String>,
    /// Who may register or sign in, for every method (password, code, passkey).
    pub policy: RegistrationPolicy,
    pub flows: Flows,
    pub methods: Methods,
}

/// E-mail addresses allowed to register and sign in. Both lists empty: everyone.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationPolicy {
    /// `example.com` allows `a@example.com`; `*.example.com` allows every subdomain.
    pub allowed_email_domains: Vec<String>,
    /// Individual addresses allowed whatever their domain (invites).
    pub allowed_emails: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Flows {
    #[serde(with = "humantime_serde")]
    pub lifespan: Duration,
    pub login: LoginFlow,
    pub registration: RegistrationFlow,
    pub settings: SettingsFlow,
    /// The earlier name of `settings.privileged_session_max_age`, still accepted.
    #[serde(default, with = "humantime_serde")]
    pub privileged_session_max_age: Option<Duration>,
    pub recovery: Toggle,
    pub verification: Toggle,
}

impl Default for Flows {
    fn default() -> Self {
        Self {
            lifespan: Duration::from_secs(3600),
            login: LoginFlow::default(),
            registration: RegistrationFlow::default(),
            settings: SettingsFlow::default(),
            privileged_session_max_age: None,
            recovery: Toggle { enabled: true },
            verification: Toggle { enabled: true },
        }
    }
}

impl Flows {
    /// How recent a sign-in must be for a settings change that touches credentials or
    /// addresses (Kratos's `selfservice.flows.settings.privileged_session_max_age`).
    pub fn privileged_session_max_age(&self) -> Duration {
        self.settings
            .privileged_session_max_age
            .or(self.privileged_session_max_age)
            .unwrap_or(PRIVILEGED_SESSION_MAX_AGE)
    }
}

/// Kratos's code default is 1h; its own quickstart configurations all set 15m, which is ours:
/// a stolen session older than this cannot take over the account's credentials or addresses.
pub const PRIVILEGED_SESSION_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// `selfservice.flows.settings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsFlow {
    /// Changing a password, a passkey, a login identifier or a verifiable or recovery address
    /// needs a sign-in at most this old (default 15m); older sessions are sent to sign in
    /// again (`session_refresh_required`).
    #[serde(default, with = "humantime_serde")]
    pub privileged_session_max_age: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationFlow {
    pub enabled: bool,
    /// `after` hooks run once the identity is valid: `session` signs the new user in,
    /// `web_hook` calls out (and may refuse the registration).
    pub after: Vec<Hook>,
}

impl Default for RegistrationFlow {
    fn default() -> Self {
        Self { enabled: true, after: vec![Hook::Session] }
    }
}

/// `selfservice.flows.login`, Kratos's shape: `after.hooks` run after every method unless the
/// method has its own list (`after.password.hooks`, `after.code.hooks`, `after.passkey.hooks`),
/// which then replaces the default as in Kratos.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginFlow {
    pub after: LoginAfter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginAfter {
    pub hooks: Vec<Hook>,
    pub password: Option<HookList>,
    pub code: Option<HookList>,
    pub passkey: Option<HookList>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HookList {
    pub hooks: Vec<Hook>,
}

impl LoginAfter {
    /// The hooks that run after a sign-in with `method`.
    pub fn for_method(&self, method: &str) -> &[Hook] {
        let own = match method {
            "password" => self.password.as_ref(),
            "code" => self.code.as_ref(),
            "passkey" => self.passkey.as_ref(),
            _ => None,
        };
        own.map_or(&self.hooks, |l| &l.hooks)
    }

    fn lists(&self) -> impl Iterator<Item = (String, &[Hook])> {
        let methods = [("password", &self.password), ("code", &self.code), ("passkey", &self.passkey)];
        std::iter::once(("hooks".to_owned(), &self.hooks[..]))
            .chain(methods.into_iter().filter_map(|(m, l)| l.as_ref().map(|l| (format!("{m}.hooks"), &l.hooks[..]))))
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "hook", content = "config", rename_all = "snake_case", deny_unknown_fields)]
pub enum Hook {
    Session,
    WebHook(WebHook),
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebHook {
    pub url: String,
    #[serde(default = "post")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Kratos's deprecated name for `response.parse`; either one turns parsing on.
    #[serde(default)]
    pub can_interrupt: bool,
    #[serde(default)]
    pub response: WebHookResponse,
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    pub timeout: Duration,
}

// Hook headers usually carry an API key.
impl std::fmt::Debug for WebHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebHook")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("headers", &format!("<{} redacted>", self.headers.len()))
            .field("parse", &self.parses())
            .finish()
    }
}

impl WebHook {
    /// Whether the flow waits for the answer: a 4xx with Kratos's `{"messages": [...]}` refuses
    /// the flow with those messages, `{"identity": {"traits"|"metadata_public"|"metadata_admin":
    /// …}}` in a 200 answer changes the identity, and a hook that fails refuses the flow.
    pub fn parses(&self) -> bool {
        self.can_interrupt || self.response.parse
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebHookResponse {
    pub parse: bool,
    /// Accepted for Kratos configs: hooks that do not parse are already fire-and-forget.
    pub ignore: bool,
}

fn post() -> String {
    "POST".into()
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Methods {
    pub password: PasswordMethod,
    pub code: CodeMethod,
    pub passkey: PasskeyMethod,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordMethod {
    pub enabled: bool,
    pub min_password_length: usize,
    /// Refuse passwords found in breaches (Have I Been Pwned's k-anonymity range API; only
    /// the first five hex digits of the SHA-1 leave the server).
    pub haveibeenpwned_enabled: bool,
    /// Failed sign-ins allowed per identifier, and per client address, within `lockout_window`.
    pub max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub lockout_window: Duration,
}

impl Default for PasswordMethod {
    fn default() -> Self {
        Self {
            enabled: true,
            min_password_length: 8,
            haveibeenpwned_enabled: false,
            max_failures: 10,
            lockout_window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodeMethod {
    /// Sign in and register with a six-digit code e-mailed to the address.
    pub passwordless_enabled: bool,
    #[serde(with = "humantime_serde")]
    pub lifespan: Duration,
    /// Wrong codes allowed per sent code; then a new code must be requested.
    pub max_submissions: u32,
}

impl Default for CodeMethod {
    fn default() -> Self {
        Self { passwordless_enabled: true, lifespan: Duration::from_secs(15 * 60), max_submissions: 5 }
    }
}

/// Passkeys (WebAuthn discoverable credentials): usernameless sign-in, passwordless sign-up,
/// add/remove in settings. Checked at startup by `identity::passkey::Passkeys::from_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeyMethod {
    /// `true` (default) offers passkeys wherever the relying party can work. With nothing set
    /// under `rp` and a public URL that cannot be a relying party (an IP address such as the
    /// default `http://127.0.0.1:4444`, or plain http on a host other than localhost), passkeys
    /// are switched off with a startup warning; explicit `rp` settings that cannot work are
    /// startup errors.
    pub enabled: bool,
    pub rp: RelyingParty,
}

impl Default for PasskeyMethod {
    fn default() -> Self {
        Self { enabled: true, rp: RelyingParty::default() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelyingParty {
    /// The domain passkeys are bound to (`example.com`, no scheme or port); empty: the host of
    /// `urls.self.public`. Browsers refuse IP addresses here: `127.0.0.1` is not a valid RP ID,
    /// `localhost` is, which is why the testbed's browser tests reach the public listener as
    /// `http://localhost:4444` for passkeys. Changing it invalidates every registered passkey.
    pub id: String,
    /// Shown by the browser and the authenticator; empty: the id.
    pub display_name: String,
    /// The exact origins (`https://login.example.com`, `http://localhost:4444`) pages run the
    /// ceremony from; each must be on `id` (equal or a subdomain), https or localhost, and
    /// matches scheme, host and port exactly. Empty: the origin of `urls.self.public`.
    pub origins: Vec<String>,
}

impl Default for RelyingParty {
    fn default() -> Self {
        Self { id: String::new(), display_name: "Portcullis".into(), origins: Vec::new() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    #[serde(with = "humantime_serde")]
    pub lifespan: Duration,
    /// Sliding sessions: a session used when less than half its lifespan is left is extended
    /// to a full lifespan (at most one write per half lifespan). `false`: fixed lifetime.
    pub sliding: bool,
    pub cookie: SessionCookie,
    pub whoami: Whoami,
    pub rate_limit: SessionRateLimit,
    pub revocation_list: RevocationList,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            lifespan: Duration::from_secs(24 * 3600),
            sliding: true,
            cookie: SessionCookie::default(),
            whoami: Whoami::default(),
            rate_limit: SessionRateLimit::default(),
            revocation_list: RevocationList::default(),
        }
    }
}

/// `session.rate_limit` (ours; Kratos leaves rate limits to the gateway): new sessions per
/// identity and per client address within `window`, for every method (password, code,
/// passkey, recovery). Beyond either, sign-in answers 429 with `Retry-After`. Each signed-out
/// session stays on the revocation list filters receive until it would have expired, so this
/// is also what keeps one account or one address from growing that list. `0`: no limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionRateLimit {
    pub per_identity: u32,
    /// Larger than `per_identity`: many people may sign in from behind one NAT.
    pub per_address: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for SessionRateLimit {
    fn default() -> Self {
        Self { per_identity: 30, per_address: 600, window: Duration::from_secs(3600) }
    }
}

/// `session.revocation_list`: the digests of signed-out sessions and revoked access tokens
/// pushed to every filter until they would have expired.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationList {
    /// Live revocations beyond which no new session is issued (503 with `Retry-After` until
    /// enough of them expire). A revocation is never dropped early: refusing new sessions is the
    /// only way to bound the list without letting a signed-out session back in. `0`: no cap.
    pub max_entries: usize,
}

impl Default for RevocationList {
    fn default() -> Self {
        Self { max_entries: 100_000 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionCookie {
    pub name: String,
    pub domain: Option<String>,
    pub path: String,
    /// `Lax` (default), `Strict` or `None` (`None` requires an https public URL).
    pub same_site: String,
    /// `Max-Age` = lifespan; `false`: a browser-session cookie.
    pub persistent: bool,
}

impl Default for SessionCookie {
    fn default() -> Self {
        Self {
            name: "ory_kratos_session".into(),
            domain: None,
            path: "/".into(),
            same_site: "Lax".into(),
            persistent: true,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Whoami {
    pub tokenizer: Tokenizer,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tokenizer {
    /// `?tokenize_as=NAME` → a JWT signed with the control plane's key (published at
    /// `/.well-known/jwks.json`).
    pub templates: BTreeMap<String, TokenTemplate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenTemplate {
    #[serde(default = "one_minute", with = "humantime_serde")]
    pub ttl: Duration,
    /// Extra claims; string values are templates over the session (`{{ .identity.traits.email }}`).
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// `id` (default) or `external_id`.
    #[serde(default)]
    pub subject_source: Option<String>,
}

fn one_minute() -> Duration {
    Duration::from_secs(60)
}

impl SelfService {
    pub fn validate(&self) -> Result<(), StartupError> {
        if self.flows.lifespan < Duration::from_secs(60) {
            return Err(StartupError("config key selfservice.flows.lifespan: must be at least 1m".into()));
        }
        if self.flows.settings.privileged_session_max_age.is_some() && self.flows.privileged_session_max_age.is_some() {
            return Err(StartupError(
                "config key selfservice.flows.privileged_session_max_age: set only \
                 selfservice.flows.settings.privileged_session_max_age (Kratos's name)"
                    .into(),
            ));
        }
        let m = &self.methods;
        if m.password.min_password_length < 6 {
            return Err(StartupError(
                "config key selfservice.methods.password.min_password_length: must be at least 6".into(),
            ));
        }
        if !(1..=255).contains(&m.code.max_submissions) {
            return Err(StartupError("config key selfservice.methods.code.max_submissions: must be 1–255".into()));
        }
        if m.code.lifespan < Duration::from_secs(60) {
            return Err(StartupError("config key selfservice.methods.code.lifespan: must be at least 1m".into()));
        }
        let registration = self.flows.registration.after.iter().enumerate();
        for (i, hook) in registration {
            check_hook(hook, &format!("selfservice.flows.registration.after[{i}]"))?;
        }
        for (list, hooks) in self.flows.login.after.lists() {
            for (i, hook) in hooks.iter().enumerate() {
                let key = format!("selfservice.flows.login.after.{list}[{i}]");
                if matches!(hook, Hook::Session) {
                    return Err(StartupError(format!(
                        "config key {key}.hook: `session` is a registration hook; a sign-in always ends in a session"
                    )));
                }
                check_hook(hook, &key)?;
            }
        }
        for (i, d) in self.policy.allowed_email_domains.iter().enumerate() {
            if d.is_empty() || d.contains('@') {
                return Err(StartupError(format!(
                    "config key selfservice.policy.allowed_email_domains[{i}]: {d:?} is not a domain"
                )));
            }
        }
        Ok(())
    }
}

fn check_hook(hook: &Hook, key: &str) -> Result<(), StartupError> {
    let Hook::WebHook(w) = hook else { return Ok(()) };
    if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
        return Err(StartupError(format!("config key {key}.config.url: must be an http(s) URL")));
    }
    if w.response.ignore && w.parses() {
        return Err(StartupError(format!(
            "config key {key}.config.response.ignore: an ignored answer cannot also be parsed (response.parse / \
             can_interrupt)"
        )));
    }
    Ok(())
}

impl SessionConfig {
    pub fn validate(&self, https: bool) -> Result<(), StartupError> {
        if self.lifespan < Duration::from_secs(60) {
            return Err(StartupError("config key session.lifespan: must be at least 1m".into()));
        }
        if self.rate_limit.window < Duration::from_secs(1) {
            return Err(StartupError("config key session.rate_limit.window: must be at least 1s".into()));
        }
        match self.cookie.same_site.as_str() {
            "Lax" | "Strict" => {}
            "None" if https => {}
            "None" => {
                return Err(StartupError(
                    "config key session.cookie.same_site: None needs an https public URL (browsers drop it otherwise)"
                        .into(),
                ));
            }
            other => {
                return Err(StartupError(format!(
                    "config key session.cookie.same_site: {other:?} is not Lax, Strict or None"
                )));
            }
        }
        if self.cookie.name.is_empty()
            || !self.cookie.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(StartupError("config key session.cookie.name: letters, digits, _ and - only".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_login_after(after: serde_json::Value) -> Result<(), String> {
        let mut s = SelfService::default();
        s.flows.login.after = serde_json::from_value(after).map_err(|e| e.to_string())?;
        s.validate().map_err(|e| e.0)
    }

    #[test]
    fn login_hook_mistakes_are_refused_naming_the_key() {
        let hook = |config: serde_json::Value| serde_json::json!({"hook": "web_hook", "config": config});
        let e = with_login_after(serde_json::json!({"hooks": [{"hook": "session"}]})).unwrap_err();
        assert!(e.contains("selfservice.flows.login.after.hooks[0].hook"), "{e}");
        let ignored = hook(serde_json::json!({"url": "http://h/", "response": {"ignore": true, "parse": true}}));
        let e = with_login_after(serde_json::json!({"code": {"hooks": [ignored]}})).unwrap_err();
        assert!(e.contains("selfservice.flows.login.after.code.hooks[0].config.response.ignore"), "{e}");
        let e =
            with_login_after(serde_json::json!({"passkey": {"hooks": [hook(serde_json::json!({"url": "ftp://h"}))]}}))
                .unwrap_err();
        assert!(e.contains("login.after.passkey.hooks[0].config.url"), "{e}");
        let e = with_login_after(serde_json::json!({"totp": {"hooks": []}})).unwrap_err();
        assert!(e.contains("totp"), "unknown methods are refused: {e}");
        assert!(
            with_login_after(serde_json::json!({"hooks": [hook(serde_json::json!({"url": "https://h/"}))]})).is_ok()
        );
    }
}
