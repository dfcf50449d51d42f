//! Access-rule sources and snapshot publication.
//!
//! The active set is the rules from the configured files (read once at start) followed by the
//! admin-managed rules in the `rule_set` row. Every change is validated as a whole with the
//! same compiler the filter uses before anything is stored or published, so a bad rule never
//! replaces a good set. The published snapshot lives in a `watch` channel as pre-serialized
//! bytes with a content-addressed version, so serving it is a clone of an `Arc`, and replicas
//! sharing a database publish identical versions. This module does no HTTP.

pub mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_shared::rule::{RuleSet, RuleSpec, parse_rules};
use portcullis_shared::snapshot::Snapshot;
use serde_json::Value;
use tokio::sync::{Mutex, watch};

use crate::crypto;
use crate::error::{StartupError, StoreError};
use crate::store::Store;

/// How often replicas re-read `rule_set` to pick up changes made elsewhere.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// A published snapshot, serialized once.
#[derive(Debug)]
pub struct Published {
    /// First 16 hex chars of sha256 of the serialized rules array.
    pub version: String,
    /// `"<version>"`, ready for `ETag` / `If-None-Match`.
    pub etag: String,
    /// The [`Snapshot`] JSON.
    pub body: axum::body::Bytes,
    /// The active rules (file then admin) as a JSON array.
    pub rules: axum::body::Bytes,
}

/// Why a replacement of the admin-managed rules was refused.
#[derive(Debug)]
pub enum ReplaceError {
    Invalid(String),
    Store(StoreError),
}

impl From<StoreError> for ReplaceError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

struct AdminRules {
    /// `rule_set.version` these rules came from.
    version: i64,
    rules: Vec<RuleSpec>,
}

pub struct Rules {
    file_rules: Vec<RuleSpec>,
    /// Rule id → the file that defines it.
    file_of: HashMap<String, String>,
    admin: Mutex<AdminRules>,
    tx: watch::Sender<Arc<Published>>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("file_rules", &self.file_rules.len())
            .field("version", &self.tx.borrow().version)
            .finish()
    }
}

impl Rules {
    /// Reads the rule files and the stored admin rules, validates the combination and
    /// publishes the first snapshot.
    pub async fn load(files: &[String], store: &Store) -> Result<Self, StartupError> {
        let mut file_rules = Vec::new();
        let mut origin = Vec::new();
        for file in files {
            let rules = read_rule_file(file)?;
            origin.extend((0..rules.len()).map(|i| (file.clone(), i)));
            file_rules.extend(rules);
        }
        RuleSet::compile(&file_rules).map_err(|mut e| {
            let (file, local) = origin[e.index].clone();
            e.index = local;
            StartupError(format!("rule file {file}: {e}"))
        })?;
        let file_of = file_rules.iter().zip(&origin).map(|(r, (file, _))| (r.id.clone(), file.clone())).collect();
        let (version, body) = store.get_rule_set().await?;
        let admin_rules = serde_json::from_str::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|v| parse_rules(v).map_err(|e| e.to_string()))
            .map_err(|e| StartupError(format!("stored admin rules (rule_set): {e}")))?;
        let mut rules = Self {
            file_rules,
            file_of,
            admin: Mutex::new(AdminRules { version, rules: Vec::new() }),
            tx: watch::Sender::new(Arc::new(publication(&[]))),
        };
        rules.check_admin(&admin_rules).map_err(|e| {
            StartupError(format!("the admin-managed rules in the database conflict with the rule files: {e}"))
        })?;
        let combined = rules.combined(&admin_rules);
        rules.admin.get_mut().rules = admin_rules;
        rules.tx.send_replace(Arc::new(publication(&combined)));
        Ok(rules)
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Arc<Published> {
        self.tx.borrow().clone()
    }

    /// The active rule list, file rules first.
    pub fn active(&self) -> Vec<RuleSpec> {
        serde_json::from_slice(&self.current().rules).unwrap_or_default()
    }

    pub async fn admin_rules(&self) -> Vec<RuleSpec> {
        self.admin.lock().await.rules.clone()
    }

    /// Validates `value` (a JSON array) as the new admin-managed set, stores it and publishes.
    pub async fn replace_admin(&self, store: &Store, value: Value) -> Result<Vec<RuleSpec>, ReplaceError> {
        let specs = parse_rules(value).map_err(|e| ReplaceError::Invalid(e.to_string()))?;
        self.check_admin(&specs).map_err(ReplaceError::Invalid)?;
        let body = serde_json::to_string(&specs).map_err(|e| ReplaceError::Store(StoreError(e.to_string())))?;
        // Holding the lock across the write keeps store order and publish order the same.
        let mut admin = self.admin.lock().await;
        admin.version = store.put_rule_set(&body).await?;
        admin.rules = specs.clone();
        self.publish(&self.combined(&specs));
        Ok(specs)
    }

    /// Picks up admin rules written by another replica.
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let (version, body) = store.get_rule_set().await?;
        let mut admin = self.admin.lock().await;
        if version == admin.version {
            return Ok(());
        }
        admin.version = version;
        let parsed = serde_json::from_str::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|v| parse_rules(v).map_err(|e| e.to_string()))
            .and_then(|specs| self.check_admin(&specs).map(|()| specs));
        match parsed {
            Ok(specs) => {
                self.publish(&self.combined(&specs));
                admin.rules = specs;
            }
            Err(e) => tracing::error!(
                version,
                error = %e,
                "stored admin rules are invalid here; keeping the previous rule set"
            ),
        }
        Ok(())
    }

    /// Re-reads `rule_set` every [`REFRESH_INTERVAL`] until the process ends.
    pub fn spawn_refresher(self: Arc<Self>, store: Store) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.refresh(&store).await {
                    tracing::warn!(error = %e, "could not re-read the admin rules");
                }
            }
        })
    }

    /// Admin rules must compile on their own and together with the file rules, and must not
    /// reuse a file rule's id.
    fn check_admin(&self, specs: &[RuleSpec]) -> Result<(), String> {
        for (index, spec) in specs.iter().enumerate() {
            if let Some(file) = self.file_of.get(&spec.id) {
                return Err(format!(
                    "rule {:?} (#{index}): id: already defined by rule file {file}; rules from files cannot be replaced through the API",
                    spec.id
                ));
            }
        }
        RuleSet::compile(specs).map_err(|e| e.to_string())?;
        RuleSet::compile(&self.combined(specs)).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn combined(&self, admin: &[RuleSpec]) -> Vec<RuleSpec> {
        self.file_rules.iter().chain(admin).cloned().collect()
    }

    fn publish(&self, rules: &[RuleSpec]) {
        let next = publication(rules);
        self.tx.send_if_modified(|current| {
            if current.version == next.version {
                false
            } else {
                tracing::info!(version = %next.version, rules = rules.len(), "published rule snapshot");
                *current = Arc::new(next);
                true
            }
        });
    }
}

fn publication(rules: &[RuleSpec]) -> Published {
    // Serializing plain data structures cannot fail.
    let rules_json = serde_json::to_vec(rules).unwrap_or_else(|_| b"[]".to_vec());
    let version = crypto::sha256_hex(&rules_json)[..16].to_owned();
    let body = serde_json::to_vec(&Snapshot { version: version.clone(), rules: rules.to_vec() }).unwrap_or_default();
    Published { etag: format!("\"{version}\""), version, body: body.into(), rules: rules_json.into() }
}

/// Reads one Oathkeeper rule file (JSON or YAML array).
pub fn read_rule_file(path: &str) -> Result<Vec<RuleSpec>, StartupError> {
    let fail = |msg: String| StartupError(format!("rule file {path}: {msg}"));
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let lower = path.to_ascii_lowercase();
    let value: Value = if lower.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| fail(format!("invalid JSON: {e}")))?
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        serde_yaml::from_str(&text).map_err(|e| fail(format!("invalid YAML: {e}")))?
    } else {
        return Err(fail("unsupported file type; use .json, .yaml or .yml".into()));
    };
    parse_rules(value).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn rule(id: &str, url: &str) -> Value {
        json!({"id": id, "match": {"url": url, "methods": ["GET"]},
               "authenticators": [{"handler": "noop"}], "authorizer": {"handler": "allow"}})
    }

    fn temp_file(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("portcullis-rules-{}", crypto::hex(&crypto::random_bytes::<6>())));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    #[tokio::test]
    async fn files_then_admin_rules_and_content_addressed_versions() {
        let yaml = temp_file(
            "r.yaml",
            "- id: file-1\n  match: {url: 'http://a/<.*>', methods: [GET]}\n  authenticators: [{handler: noop}]\n  authorizer: {handler: allow}\n",
        );
        let store = crate::store::testing::sqlite().await;
        let rules = Rules::load(std::slice::from_ref(&yaml), &store).await.unwrap();
        let v0 = rules.current().version.clone();
        assert_eq!(v0.len(), 16);

        let err = rules.replace_admin(&store, json!([rule("file-1", "http://b/")])).await.unwrap_err();
        assert!(matches!(&err, ReplaceError::Invalid(m) if m.contains("file-1") && m.contains("r.yaml")), "{err:?}");

        rules.replace_admin(&store, json!([rule("api", "http://b/")])).await.unwrap();
        let ids: Vec<String> = rules.active().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["file-1", "api"]);
        assert_ne!(rules.current().version, v0);

        // A second replica on the same store converges to the same version.
        let other = Rules::load(std::slice::from_ref(&yaml), &store).await.unwrap();
        assert_eq!(other.current().version, rules.current().version);
        rules.replace_admin(&store, json!([])).await.unwrap();
        other.refresh(&store).await.unwrap();
        assert_eq!(other.current().version, v0);
    }

    #[test]
    fn bad_rule_file_is_named() {
        let path = temp_file(
            "bad.json",
            r#"[{"id": "x", "match": {"url": "http://a/", "methods": ["GET"]}, "authenticators": [], "authorizer": {"handler": "allow"}, "typo": 1}]"#,
        );
        let err = read_rule_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.json") && err.contains("\"x\"") && err.contains("typo"), "{err}");
        let err = read_rule_file("/nonexistent/rules.txt").unwrap_err().to_string();
        assert!(err.contains("rules.txt"), "{err}");
    }
}
