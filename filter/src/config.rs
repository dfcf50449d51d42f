//! The filter's plugin configuration (Envoy `configuration` / Istio `pluginConfig`, JSON).
//! It only bootstraps: where the control plane is and how to reach the URLs that rules name.
//! Rules themselves arrive as data from the control plane. A bad configuration is refused in
//! `on_configure`, so Envoy reports it instead of running an open filter.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub control_plane: ControlPlane,
    /// URL authority (`host:port`) → Envoy cluster, for call-outs such as introspection URLs.
    /// The control plane's own authority is always known.
    #[serde(default)]
    pub upstreams: BTreeMap<String, String>,
    /// Timeout of per-request call-outs (introspection), in milliseconds.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Number of introspection cache slots in shared data (bounded memory, direct-mapped).
    #[serde(default = "default_cache_slots")]
    pub introspection_cache_slots: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlane {
    /// Envoy cluster that reaches the control plane's admin listener.
    pub cluster: String,
    /// The `:authority` to send, e.g. `127.0.0.1:4445`.
    pub authority: String,
    /// Bearer token the control plane expects on `GET /admin/snapshot`.
    pub token: String,
    #[serde(default = "default_snapshot_path")]
    pub snapshot_path: String,
    /// Long-poll wait the filter asks for, in seconds.
    #[serde(default = "default_poll_wait_seconds")]
    pub poll_wait_seconds: u64,
}

fn default_call_timeout_ms() -> u64 {
    2_000
}
fn default_cache_slots() -> u32 {
    4_096
}
fn default_snapshot_path() -> String {
    "/admin/snapshot".into()
}
fn default_poll_wait_seconds() -> u64 {
    20
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let config: Config = serde_json::from_slice(bytes).map_err(|e| format!("invalid plugin configuration: {e}"))?;
        let cp = &config.control_plane;
        if cp.cluster.is_empty() || cp.authority.is_empty() || cp.token.is_empty() {
            return Err("invalid plugin configuration: control_plane.cluster, authority and token are required".into());
        }
        if !cp.snapshot_path.starts_with('/') {
            return Err("invalid plugin configuration: control_plane.snapshot_path must start with '/'".into());
        }
        if cp.poll_wait_seconds > 60 {
            return Err("invalid plugin configuration: control_plane.poll_wait_seconds must be at most 60".into());
        }
        if config.call_timeout_ms == 0 {
            return Err("invalid plugin configuration: call_timeout_ms must be positive".into());
        }
        if config.introspection_cache_slots == 0 {
            return Err("invalid plugin configuration: introspection_cache_slots must be positive".into());
        }
        Ok(config)
    }

    /// The cluster and `:path`/`:authority` to call for an absolute `http(s)://` URL.
    pub fn route(&self, url: &str) -> Option<CallTarget<'_>> {
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let cluster =
            self.upstreams.get(authority).map(String::as_str).or_else(|| {
                (authority == self.control_plane.authority).then_some(self.control_plane.cluster.as_str())
            })?;
        Some(CallTarget { cluster, authority: authority.to_owned(), path: path.to_owned() })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct CallTarget<'a> {
    pub cluster: &'a str,
    pub authority: String,
    pub path: String,
}

#[cfg(test)]
pub(crate) fn test_config() -> Config {
    Config::parse(
        br#"{"control_plane": {"cluster": "cp", "authority": "cp:4445", "token": "filter-secret"},
             "upstreams": {"idp.example:443": "idp"}}"#,
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_routing() {
        let c = test_config();
        assert_eq!(c.control_plane.snapshot_path, "/admin/snapshot");
        assert_eq!(c.call_timeout_ms, 2_000);
        let t = c.route("http://cp:4445/admin/oauth2/introspect").unwrap();
        assert_eq!((t.cluster, t.path.as_str()), ("cp", "/admin/oauth2/introspect"));
        assert_eq!(c.route("https://idp.example:443/introspect").unwrap().cluster, "idp");
        assert_eq!(c.route("http://unknown:1/x"), None);
        assert_eq!(c.route("ftp://cp:4445/x"), None);
    }

    #[test]
    fn bad_configuration_is_refused_with_a_reason() {
        assert!(Config::parse(b"{}").unwrap_err().contains("control_plane"));
        let unknown = br#"{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "upstream": {}}"#;
        assert!(Config::parse(unknown).unwrap_err().contains("unknown field `upstream`"));
        let empty = br#"{"control_plane": {"cluster": "c", "authority": "a", "token": ""}}"#;
        assert!(Config::parse(empty).unwrap_err().contains("token"));
    }
}
