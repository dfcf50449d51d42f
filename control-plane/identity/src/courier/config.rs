//! The `courier` config section (Kratos's key names): where e-mail goes and how the queue is
//! worked. Parsing the SMTP connection URI lives here so a bad URI is refused at start-up with
//! the key named, and the URI (which may carry a password) never reaches a log or error text.

use std::time::Duration;

use serde::Deserialize;

use portcullis_model::StartupError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CourierConfig {
    pub smtp: Smtp,
    /// Failed attempts retried before a message is `abandoned` (Kratos: 5). A message is tried
    /// at most `1 + message_retries` times; a permanent SMTP failure (5xx) abandons it at once.
    pub message_retries: u32,
    pub worker: Worker,
}

impl Default for CourierConfig {
    fn default() -> Self {
        Self { smtp: Smtp::default(), message_retries: 5, worker: Worker::default() }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// `smtp://user:pass@host:port/` (STARTTLS required, port 587 by default) or
    /// `smtps://…` (implicit TLS, port 465), with Kratos's query options
    /// `disable_starttls=true` (plain SMTP, for local sinks), `skip_ssl_verify=true` and
    /// `server_name=`. Credentials are URL-encoded. Unset: nothing is sent; messages are
    /// logged and kept in memory (the `--dev` outbox).
    pub connection_uri: Option<String>,
    pub from_address: String,
    pub from_name: Option<String>,
}

impl Default for Smtp {
    fn default() -> Self {
        Self { connection_uri: None, from_address: "no-reply@portcullis.local".into(), from_name: None }
    }
}

// The URI's password is a credential; everything else about it helps debugging.
impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("connection_uri", &self.connection_uri.as_deref().map(redact_uri))
            .field("from_address", &self.from_address)
            .field("from_name", &self.from_name)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Worker {
    /// How often the queue is polled besides the immediate wake-up on enqueue (other
    /// replicas' messages, retries whose backoff ended). Also the base of the retry backoff.
    #[serde(with = "humantime_serde")]
    pub pull_wait: Duration,
    /// Messages taken per poll (Kratos: 10).
    pub pull_count: u32,
}

impl Default for Worker {
    fn default() -> Self {
        Self { pull_wait: Duration::from_secs(1), pull_count: 10 }
    }
}

impl CourierConfig {
    /// Refuses a connection URI or from address that could never work, naming the key but
    /// never showing the URI.
    pub fn validate(&self) -> Result<(), StartupError> {
        if let Some(uri) = &self.smtp.connection_uri {
            SmtpSettings::parse(uri)
                .map_err(|e| StartupError(format!("config key courier.smtp.connection_uri: {e}")))?;
        }
        if self.smtp.from_address.parse::<lettre::Address>().is_err() {
            return Err(StartupError("config key courier.smtp.from_address: must be an e-mail address".into()));
        }
        if self.worker.pull_wait.is_zero() || self.worker.pull_wait > Duration::from_secs(3600) {
            return Err(StartupError("config key courier.worker.pull_wait: must be between 1ms and 1h".into()));
        }
        if self.worker.pull_count == 0 {
            return Err(StartupError("config key courier.worker.pull_count: must be at least 1".into()));
        }
        Ok(())
    }
}

/// How the worker reaches the SMTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// `smtp://`: STARTTLS, and the message is not sent if the server does not offer it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://…?disable_starttls=true`: plain text, for local test servers.
    None,
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// The name the certificate must carry (`server_name=`, else the host).
    pub server_name: String,
    pub skip_ssl_verify: bool,
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("server_name", &self.server_name)
            .field("skip_ssl_verify", &self.skip_ssl_verify)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Kratos's reading of `courier.smtp.connection_uri`. Errors never quote the URI.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(uri).map_err(|e| format!("not a URI ({e})"))?;
        let mut tls = match url.scheme() {
            "smtp" => TlsMode::StartTls,
            "smtps" => TlsMode::Implicit,
            other => {
                return Err(format!("scheme must be smtp:// (STARTTLS) or smtps:// (implicit TLS), not {other}://"));
            }
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the URI has no host")?;
        // `Url` keeps IPv6 hosts in brackets; sockets and certificates want them bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let mut server_name = host.clone();
        let mut skip_ssl_verify = false;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "disable_starttls" => {
                    if parse_bool("disable_starttls", &value)? && tls == TlsMode::StartTls {
                        tls = TlsMode::None;
                    }
                }
                "skip_ssl_verify" => skip_ssl_verify = parse_bool("skip_ssl_verify", &value)?,
                "server_name" if !value.is_empty() => server_name = value.into_owned(),
                "server_name" => {}
                other => {
                    return Err(format!(
                        "unknown query option {other:?} (known: disable_starttls, skip_ssl_verify, server_name)"
                    ));
                }
            }
        }
        let port = url.port().unwrap_or(if tls == TlsMode::Implicit { 465 } else { 587 });
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_decode(s).ok_or("the user name or password is not valid URL-encoded UTF-8".to_owned())
            };
            Some((decode(url.username())?, decode(url.password().unwrap_or_default())?))
        };
        Ok(Self { host, port, tls, server_name, skip_ssl_verify, credentials })
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "t" | "TRUE" | "True" => Ok(true),
        "false" | "0" | "f" | "FALSE" | "False" | "" => Ok(false),
        _ => Err(format!("query option {key} must be true or false")),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The URI with its password replaced, for `Debug`.
fn redact_uri(uri: &str) -> String {
    match reqwest::Url::parse(uri) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("REDACTED"));
            }
            url.to_string()
        }
        Err(_) => "<unparsable, redacted>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `courier` section as the server's config file gives it: unknown keys refused, then
    /// validated (the whole file's loading is tested where it is assembled).
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        courier: CourierConfig,
    }

    fn load(yaml: &str) -> Result<File, String> {
        let file: File = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        file.courier.validate().map_err(|e| e.0)?;
        Ok(file)
    }

    #[test]
    fn courier_config_defaults_match_kratos() {
        let c = CourierConfig::default();
        assert_eq!(c.message_retries, 5);
        assert_eq!(c.worker.pull_wait, Duration::from_secs(1));
        assert_eq!(c.worker.pull_count, 10);
        assert_eq!(c.smtp.from_address, "no-reply@portcullis.local");
        assert!(c.smtp.connection_uri.is_none());
        c.validate().unwrap();
    }

    #[test]
    fn courier_config_loads_and_hides_the_smtp_password() {
        let c = load(
            "courier:\n  smtp:\n    connection_uri: 'smtps://mailer:s3cr%40t@mail.example.com/?skip_ssl_verify=true'\n    from_name: Acme\n  message_retries: 2\n  worker:\n    pull_wait: 250ms\n",
        )
        .unwrap();
        assert_eq!(c.courier.message_retries, 2);
        assert_eq!(c.courier.worker.pull_wait, Duration::from_millis(250));
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr"), "{debug}");
        assert!(debug.contains("mail.example.com"), "{debug}");
        let s = SmtpSettings::parse(c.courier.smtp.connection_uri.as_deref().unwrap()).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls, s.skip_ssl_verify),
            ("mail.example.com", 465, TlsMode::Implicit, true)
        );
        assert_eq!(s.credentials, Some(("mailer".into(), "s3cr@t".into())));
        assert!(!format!("{s:?}").contains("s3cr"));
    }

    #[test]
    fn courier_connection_uri_follows_kratos_schemes() {
        let s = SmtpSettings::parse("smtp://mail:2525").unwrap();
        assert_eq!((s.port, s.tls, s.credentials), (2525, TlsMode::StartTls, None));
        let s = SmtpSettings::parse("smtp://127.0.0.1/?disable_starttls=true&server_name=mx.test").unwrap();
        assert_eq!((s.port, s.tls, s.server_name.as_str()), (587, TlsMode::None, "mx.test"));
        // disable_starttls has nothing to disable under implicit TLS.
        assert_eq!(SmtpSettings::parse("smtps://h/?disable_starttls=true").unwrap().tls, TlsMode::Implicit);
        assert_eq!(SmtpSettings::parse("smtp://[::1]:25").unwrap().host, "::1");
    }

    #[test]
    fn courier_bad_config_is_named_and_the_uri_never_shown() {
        for (yaml, key) in [
            ("courier:\n  smtp:\n    connection_uri: 'http://u:hunter2@mail'\n", "courier.smtp.connection_uri"),
            (
                "courier:\n  smtp:\n    connection_uri: 'smtp://u:hunter2@mail/?tls=yes'\n",
                "courier.smtp.connection_uri",
            ),
            (
                "courier:\n  smtp:\n    connection_uri: 'smtp://u:hunter2@mail/?disable_starttls=maybe'\n",
                "courier.smtp.connection_uri",
            ),
            ("courier:\n  smtp:\n    connection_uri: 'hunter2'\n", "courier.smtp.connection_uri"),
            ("courier:\n  smtp:\n    from_address: 'not an address'\n", "courier.smtp.from_address"),
            ("courier:\n  worker:\n    pull_wait: 0s\n", "courier.worker.pull_wait"),
            ("courier:\n  smtp:\n    connection_url: 'smtp://x'\n", "connection_url"),
        ] {
            let err = load(yaml).unwrap_err();
            assert!(err.contains(key), "{yaml}: {err}");
            assert!(!err.contains("hunter2"), "{yaml}: {err}");
        }
    }
}
