//! Access-rule sources and snapshot publication.
//!
//! The active set is the rules from the configured repositories (files, or directories of
//! `*.json`/`*.yaml`/`*.yml` files, polled for changes every second) followed by the
//! admin-managed rules in the `rule_set` row. Every change is validated as a whole with the
//! same compiler the filter uses before anything is stored or published, so a bad rule never
//! replaces a good set. The published snapshot lives in a `watch` channel as pre-serialized
//! bytes with a content-addressed version, so serving it is a clone of an `Arc`, and replicas
//! sharing a database publish identical versions; the compiled [`RuleSet`] the decisions API
//! reads sits in an `ArcSwap`, so the request path takes no lock. This file does no HTTP; the
//! HTTP handlers (`/decisions`, `/admin/rules/explain`, `/admin/snapshot`) live in the
//! control plane's `rules` module and call into this crate.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

pub mod check;
pub mod config;
pub mod decider;
pub mod revocations;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use portcullis_shared::cors::{CorsPolicy, CorsSpec};
use portcullis_shared::matching::Strategy;
use portcullis_shared::rule::Environment;
use portcullis_shared::rule::{RuleSet, RuleSpec, parse_rules};
use portcullis_shared::snapshot::{SigningKey, Snapshot, parse_digest};
use serde_json::Value;
use tokio::sync::{Mutex, watch};

use portcullis_model::StartupError;
use portcullis_model::crypto;
use portcullis_store::{Store, StoreError};

/// How often replicas re-read `rule_set` to pick up changes made elsewhere.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// How often rule files and directories are checked for changes.
pub const FILE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A published snapshot, serialized once. Its body carries the gateway's private signing key
/// (set `portcullis.gateway`, never an OAuth2 key): it goes to authenticated filters only, and
/// `Debug` leaves it out.
pub struct Published {
    /// First 16 hex chars of sha256 of the serialized rules array.
    pub version: String,
    /// `"<version>"`, ready for `ETag` / `If-None-Match`.
    pub etag: String,
    /// The [`Snapshot`] JSON.
    pub body: bytes::Bytes,
    /// The active rules (file then admin) as a JSON array.
    pub rules: bytes::Bytes,
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published").field("version", &self.version).finish_non_exhaustive()
    }
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

/// The rules of one file, in file order.
#[derive(Debug, Clone)]
pub struct FileRules {
    pub file: String,
    pub rules: Vec<RuleSpec>,
}

/// Everything the active set is made of; changed only under the lock, in one piece.
struct Sources {
    /// `rule_set.version` the admin rules came from.
    admin_version: i64,
    admin_rules: Vec<RuleSpec>,
    /// File rules, in repository order (a directory's files sorted by name).
    files: Vec<FileRules>,
    /// What the repositories looked like when `files` was read; a change triggers a reload.
    fingerprint: Vec<Stamp>,
}

impl Sources {
    fn file_rules(&self) -> impl Iterator<Item = &RuleSpec> {
        self.files.iter().flat_map(|f| &f.rules)
    }

    fn file_of(&self, id: &str) -> Option<&str> {
        self.files.iter().find(|f| f.rules.iter().any(|r| r.id == id)).map(|f| f.file.as_str())
    }

    fn combined(&self, admin: &[RuleSpec]) -> Vec<RuleSpec> {
        self.file_rules().chain(admin).cloned().collect()
    }

    /// Admin rules must compile on their own and together with the file rules, and must not
    /// reuse a file rule's id.
    fn check_admin(&self, specs: &[RuleSpec], strategy: Strategy) -> Result<(), String> {
        for (index, spec) in specs.iter().enumerate() {
            if let Some(file) = self.file_of(&spec.id) {
                return Err(format!(
                    "rule {:?} (#{index}): id: already defined by rule file {file}; rules from files cannot be replaced through the API",
                    spec.id
                ));
            }
        }
        RuleSet::compile_with(specs, strategy).map_err(|e| e.to_string())?;
        RuleSet::compile_with(&self.combined(specs), strategy).map_err(|e| e.to_string())?;
        Ok(())
    }
}

pub struct Rules {
    repositories: Vec<String>,
    strategy: Strategy,
    cors: Option<CorsSpec>,
    /// Key sets for `jwt` authenticators by URL, as last fetched; pushed in every snapshot.
    jwks: std::sync::Mutex<BTreeMap<String, Value>>,
    /// Hex SHA-256 of revoked, unexpired tokens; pushed in every snapshot (see `revocations`).
    revocations: revocations::Revocations,
    /// The gateway key `id_token` mutators sign with; pushed in every snapshot, its kid
    /// compiled in. Only ever `portcullis_keys::Keys::snapshot_key` of the gateway set.
    signing_key: std::sync::Mutex<Option<SigningKey>>,
    sources: Mutex<Sources>,
    tx: watch::Sender<Arc<Published>>,
    compiled: ArcSwap<RuleSet>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("repositories", &self.repositories)
            .field("version", &self.tx.borrow().version)
            .finish()
    }
}

impl Rules {
    /// Reads the rule repositories and the stored admin rules, validates the combination and
    /// publishes the first snapshot. A missing file or directory is a startup error.
    pub async fn load(repositories: &[String], store: &Store) -> Result<Self, StartupError> {
        Self::load_with(repositories, Strategy::Regexp, None, store).await
    }

    /// [`Rules::load`] with `strategy` for rules that do not set `match.strategy`, and the
    /// global CORS policy.
    pub async fn load_with(
        repositories: &[String],
        strategy: Strategy,
        cors: Option<CorsSpec>,
        store: &Store,
    ) -> Result<Self, StartupError> {
        let cors_policy = match &cors {
            Some(spec) => CorsPolicy::compile(spec)
                .map_err(|(field, message)| StartupError(format!("access_rules.{field}: {message}")))?,
            None => None,
        };
        let fingerprint = fingerprint(repositories);
        let files = read_repositories(repositories).map_err(StartupError)?;
        compile_files(&files, strategy).map_err(StartupError)?;
        let (admin_version, body) = store.get_rule_set().await?;
        let admin_rules = serde_json::from_str::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|v| parse_rules(v).map_err(|e| e.to_string()))
            .map_err(|e| StartupError(format!("stored admin rules (rule_set): {e}")))?;
        let sources = Sources { admin_version, admin_rules: Vec::new(), files, fingerprint };
        sources.check_admin(&admin_rules, strategy).map_err(|e| {
            StartupError(format!("the admin-managed rules in the database conflict with the rule files: {e}"))
        })?;
        let combined = sources.combined(&admin_rules);
        let env = Environment { strategy, cors: cors_policy, ..Environment::default() };
        let compiled = RuleSet::compile_in(&combined, &env).map_err(|e| StartupError(e.to_string()))?;
        let rules = Self {
            repositories: repositories.to_vec(),
            strategy,
            cors: cors.clone(),
            jwks: std::sync::Mutex::new(BTreeMap::new()),
            revocations: revocations::Revocations::default(),
            signing_key: std::sync::Mutex::new(None),
            sources: Mutex::new(Sources { admin_rules, ..sources }),
            tx: watch::Sender::new(Arc::new(publication(&combined, &env, cors.as_ref(), Vec::new(), None))),
            compiled: ArcSwap::from_pointee(compiled),
        };
        Ok(rules)
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Arc<Published> {
        self.tx.borrow().clone()
    }

    /// The compiled active set, for judging requests; lock-free.
    pub fn rule_set(&self) -> Arc<RuleSet> {
        self.compiled.load_full()
    }

    /// The active rule list, file rules first.
    pub fn active(&self) -> Vec<RuleSpec> {
        serde_json::from_slice(&self.current().rules).unwrap_or_default()
    }

    pub async fn admin_rules(&self) -> Vec<RuleSpec> {
        self.sources.lock().await.admin_rules.clone()
    }

    /// Validates `value` (a JSON array) as the new admin-managed set, stores it and publishes.
    pub async fn replace_admin(&self, store: &Store, value: Value) -> Result<Vec<RuleSpec>, ReplaceError> {
        let specs = parse_rules(value).map_err(|e| ReplaceError::Invalid(e.to_string()))?;
        let body =
            serde_json::to_string(&specs).map_err(|e| ReplaceError::Store(StoreError::corrupt("rule_set.body", e)))?;
        // Holding the lock across the check and the write keeps store order and publish order
        // the same, and a file reload cannot slip in between.
        let mut sources = self.sources.lock().await;
        sources.check_admin(&specs, self.strategy).map_err(ReplaceError::Invalid)?;
        sources.admin_version = store.put_rule_set(&body).await?;
        sources.admin_rules = specs.clone();
        self.publish(&sources.combined(&specs));
        Ok(specs)
    }

    /// Makes `key` the one `id_token` mutators sign with (its kid compiled into the rules, the
    /// key itself in the snapshot) and republishes; returns whether the snapshot changed.
    pub async fn set_signing_key(&self, key: Option<SigningKey>) -> bool {
        // Under the sources lock, like every other publish of the whole set, so a concurrent
        // rule change cannot publish an older combination after this one.
        let sources = self.sources.lock().await;
        if let Ok(mut current) = self.signing_key.lock() {
            *current = key;
        }
        self.publish(&sources.combined(&sources.admin_rules))
    }

    /// Picks up admin rules written by another replica.
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let (version, body) = store.get_rule_set().await?;
        let mut sources = self.sources.lock().await;
        if version == sources.admin_version {
            return Ok(());
        }
        sources.admin_version = version;
        let parsed = serde_json::from_str::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|v| parse_rules(v).map_err(|e| e.to_string()))
            .and_then(|specs| sources.check_admin(&specs, self.strategy).map(|()| specs));
        match parsed {
            Ok(specs) => {
                self.publish(&sources.combined(&specs));
                sources.admin_rules = specs;
            }
            Err(e) => tracing::error!(
                version,
                error = %e,
                "stored admin rules are invalid here; keeping the previous rule set"
            ),
        }
        Ok(())
    }

    /// Re-reads the rule repositories if any changed since the last look. A change that
    /// validates replaces the file rules and publishes; one that does not is logged and the
    /// old rules stay. Returns whether new rules were published.
    pub async fn reload_files(&self) -> bool {
        let now = fingerprint(&self.repositories);
        let mut sources = self.sources.lock().await;
        if now == sources.fingerprint {
            return false;
        }
        // Record the state even when it is invalid, so one bad edit is logged once, not every
        // second; the next edit triggers another attempt.
        sources.fingerprint = now;
        let mut files = Vec::new();
        for repository in &self.repositories {
            match read_repository(repository) {
                Ok(read) => files.extend(read),
                Err(RepoError::Missing(msg)) => {
                    tracing::error!(repository = %repository, error = %msg, "rule repository disappeared; keeping its rules");
                    let keep = |f: &&FileRules| {
                        f.file == *repository || Path::new(&f.file).parent() == Some(Path::new(repository))
                    };
                    files.extend(sources.files.iter().filter(keep).cloned());
                }
                Err(RepoError::Invalid(msg)) => {
                    tracing::error!(error = %msg, "rule files changed but are invalid; keeping the previous rules");
                    return false;
                }
            }
        }
        if let Err(e) = compile_files(&files, self.strategy) {
            tracing::error!(error = %e, "rule files changed but are invalid; keeping the previous rules");
            return false;
        }
        let admin = sources.admin_rules.clone();
        let previous = std::mem::replace(&mut sources.files, files);
        if let Err(e) = sources.check_admin(&admin, self.strategy) {
            tracing::error!(error = %e, "rule files changed but conflict with the admin-managed rules; keeping the previous rules");
            sources.files = previous;
            return false;
        }
        let count: usize = sources.files.iter().map(|f| f.rules.len()).sum();
        tracing::info!(files = sources.files.len(), rules = count, "reloaded rule files");
        self.publish(&sources.combined(&admin))
    }

    /// Re-reads `rule_set` and the revoked tokens every [`REFRESH_INTERVAL`] until the process
    /// ends; revocations are dated by `clock`.
    pub fn spawn_refresher(
        self: Arc<Self>,
        store: Store,
        clock: Arc<dyn portcullis_model::clock::Clock>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.refresh(&store).await {
                    tracing::warn!(error = %e, "could not re-read the admin rules");
                }
                if let Err(e) = self.reload_revocations(&store, clock.now()).await {
                    tracing::warn!(error = %e, "could not re-read the revoked tokens");
                }
            }
        })
    }

    /// Polls the rule repositories every [`FILE_POLL_INTERVAL`] until the process ends.
    pub fn spawn_file_watcher(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FILE_POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if self.repositories.is_empty() {
                    continue;
                }
                self.reload_files().await;
            }
        })
    }

    fn environment(&self) -> Environment {
        let jwks = self.jwks.lock().map(|j| j.clone()).unwrap_or_default();
        // Validated at load: a policy that compiled once compiles again.
        let cors = self.cors.as_ref().and_then(|c| CorsPolicy::compile(c).ok().flatten());
        let revoked = self.revocations.digests().iter().filter_map(|h| parse_digest(h)).collect();
        let signing_kid = self.signing_key().map(|k| k.kid);
        Environment { strategy: self.strategy, jwks, cors, revoked: Arc::new(revoked), signing_kid }
    }

    fn signing_key(&self) -> Option<SigningKey> {
        self.signing_key.lock().ok().and_then(|k| k.clone())
    }

    /// Fetches the key sets `jwt` rules name — every second for URLs not fetched yet, all of
    /// them every `every` — and republishes when they change. A failing URL keeps its last
    /// good keys; one never fetched leaves its rules failing closed (503) in the filter.
    pub fn spawn_jwks_refresher(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the JWKS client; jwt rules will fail closed");
                    return;
                }
            };
            let mut last_full = tokio::time::Instant::now();
            let mut first = true;
            loop {
                let wanted = jwks_urls(&self.active());
                let known: BTreeMap<String, Value> = self.jwks.lock().map(|j| j.clone()).unwrap_or_default();
                let full = first || last_full.elapsed() >= every;
                let to_fetch: Vec<&String> = wanted.iter().filter(|u| full || !known.contains_key(*u)).collect();
                if !to_fetch.is_empty() {
                    let mut next: BTreeMap<String, Value> =
                        known.into_iter().filter(|(u, _)| wanted.contains(u)).collect();
                    for url in to_fetch {
                        match fetch_jwks(&client, url).await {
                            Ok(set) => {
                                next.insert(url.clone(), set);
                            }
                            Err(e) => {
                                tracing::warn!(url = %url, error = %e, "cannot fetch JWKS; keeping the last good keys")
                            }
                        }
                    }
                    let changed =
                        self.jwks.lock().map(|mut j| std::mem::replace(&mut *j, next.clone()) != next).unwrap_or(false);
                    if changed {
                        self.publish(&self.active());
                    }
                    if full {
                        last_full = tokio::time::Instant::now();
                    }
                }
                first = false;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    /// Publishes `rules` (already validated); returns whether the version changed.
    fn publish(&self, rules: &[RuleSpec]) -> bool {
        let env = self.environment();
        let revoked = self.revocations.digests();
        let compiled = match RuleSet::compile_in(rules, &env) {
            Ok(c) => c,
            Err(e) => {
                // Unreachable in practice: every caller validated the same list.
                tracing::error!(error = %e, "validated rules failed to compile; keeping the previous rule set");
                return false;
            }
        };
        let next = publication(rules, &env, self.cors.as_ref(), revoked, self.signing_key());
        let compiled = Arc::new(compiled);
        self.tx.send_if_modified(|current| {
            if current.version == next.version {
                false
            } else {
                tracing::info!(version = %next.version, rules = rules.len(), "published rule snapshot");
                // Swapped before the snapshot so a filter never sees rules the decisions API
                // does not yet apply.
                self.compiled.store(compiled);
                *current = Arc::new(next);
                true
            }
        })
    }
}

/// The JWKS URLs that `jwt` authenticators in `rules` name.
pub fn jwks_urls(rules: &[RuleSpec]) -> std::collections::BTreeSet<String> {
    rules
        .iter()
        .flat_map(|r| &r.authenticators)
        .filter(|a| a.handler == "jwt")
        .filter_map(|a| a.config.get("jwks_urls").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let body = match url.strip_prefix("file://") {
        Some(path) => tokio::fs::read(path).await.map_err(|e| e.to_string())?,
        None => {
            let response = client.get(url).send().await.map_err(|e| e.without_url().to_string())?;
            if !response.status().is_success() {
                return Err(format!("answered {}", response.status()));
            }
            response.bytes().await.map_err(|e| e.without_url().to_string())?.to_vec()
        }
    };
    let set: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
    if !set.get("keys").is_some_and(Value::is_array) {
        return Err("not a JWKS document (no \"keys\" array)".into());
    }
    Ok(set)
}

fn publication(
    rules: &[RuleSpec],
    env: &Environment,
    cors: Option<&CorsSpec>,
    revoked: Vec<String>,
    signing_key: Option<SigningKey>,
) -> Published {
    // Serializing plain data structures cannot fail.
    let rules_json = serde_json::to_vec(rules).unwrap_or_else(|_| b"[]".to_vec());
    let mut snapshot = Snapshot {
        version: String::new(),
        rules: rules.to_vec(),
        matching_strategy: env.strategy,
        jwks: env.jwks.clone(),
        cors: cors.cloned(),
        revoked,
        signing_key,
    };
    // Content-addressed: the same rules, strategy and keys give the same version everywhere.
    let version = crypto::sha256_hex(&serde_json::to_vec(&snapshot).unwrap_or_default())[..16].to_owned();
    snapshot.version = version.clone();
    let body = serde_json::to_vec(&snapshot).unwrap_or_default();
    Published { etag: format!("\"{version}\""), version, body: body.into(), rules: rules_json.into() }
}

/// Compiles the file rules as one set, naming the file and the rule's position in it on error.
pub fn compile_files(files: &[FileRules], strategy: Strategy) -> Result<RuleSet, String> {
    let all: Vec<RuleSpec> = files.iter().flat_map(|f| f.rules.iter().cloned()).collect();
    RuleSet::compile_with(&all, strategy).map_err(|mut e| {
        let mut index = e.index;
        for f in files {
            if index < f.rules.len() {
                e.index = index;
                return format!("rule file {}: {e}", f.file);
            }
            index -= f.rules.len();
        }
        e.to_string()
    })
}

/// Why a repository could not be read.
#[derive(Debug)]
pub enum RepoError {
    /// The file or directory does not exist (or cannot be listed).
    Missing(String),
    /// A file exists but is not a valid rule file.
    Invalid(String),
}

impl std::fmt::Display for RepoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoError::Missing(m) | RepoError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Reads every repository in order; the first problem is an error.
pub fn read_repositories(repositories: &[String]) -> Result<Vec<FileRules>, String> {
    let mut files = Vec::new();
    for repository in repositories {
        files.extend(read_repository(repository).map_err(|e| e.to_string())?);
    }
    Ok(files)
}

/// One repository: a rule file, or a directory whose rule files are read in name order.
pub fn read_repository(repository: &str) -> Result<Vec<FileRules>, RepoError> {
    let path = Path::new(repository);
    let meta = std::fs::metadata(path).map_err(|e| RepoError::Missing(format!("rule repository {repository}: {e}")))?;
    if !meta.is_dir() {
        let rules = read_rule_file(repository).map_err(|e| RepoError::Invalid(e.0))?;
        return Ok(vec![FileRules { file: repository.to_owned(), rules }]);
    }
    directory_entries(path)
        .map_err(|e| RepoError::Missing(format!("rule directory {repository}: {e}")))?
        .into_iter()
        .map(|file| {
            let file = file.display().to_string();
            let rules = read_rule_file(&file).map_err(|e| RepoError::Invalid(e.0))?;
            Ok(FileRules { file, rules })
        })
        .collect()
}

/// The rule files directly inside `dir` (not recursive), sorted by file name.
fn directory_entries(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_rule_file(p))
        .collect();
    files.sort();
    Ok(files)
}

fn is_rule_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    // Editors' hidden swap and backup files are not rules.
    !name.starts_with('.') && [".json", ".yaml", ".yml"].iter().any(|ext| name.ends_with(ext))
}

/// What one file looked like: enough to notice an edit without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: String,
    modified: Option<SystemTime>,
    len: Option<u64>,
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok();
    Stamp {
        path: path.display().to_string(),
        modified: meta.as_ref().and_then(|m| m.modified().ok()),
        len: meta.as_ref().map(std::fs::Metadata::len),
    }
}

fn fingerprint(repositories: &[String]) -> Vec<Stamp> {
    let mut stamps = Vec::new();
    for repository in repositories {
        let path = Path::new(repository);
        stamps.push(stamp(path));
        if path.is_dir() {
            stamps.extend(directory_entries(path).unwrap_or_default().iter().map(|p| stamp(p)));
        }
    }
    stamps
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
mod tests {
    use super::*;
    use serde_json::json;

    use crate::testing::rule;

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
        let store = portcullis_store::testing::sqlite().await;
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

    #[tokio::test]
    async fn a_new_signing_key_is_a_new_version() {
        let store = portcullis_store::testing::sqlite().await;
        let rules = Rules::load(&[], &store).await.unwrap();
        let v0 = rules.current().version.clone();
        assert_eq!(rules.rule_set().signing_kid(), None);
        let keys =
            portcullis_keys::Keys::load(portcullis_keys::GATEWAY_SET, &Default::default(), &store, 0).await.unwrap();
        let key = keys.snapshot_key().unwrap();
        assert!(rules.set_signing_key(Some(key.clone())).await);
        assert_ne!(rules.current().version, v0);
        assert_eq!(rules.rule_set().signing_kid(), Some(keys.signer().kid()));
        assert!(!rules.set_signing_key(Some(key)).await, "same key, same version");
        assert!(rules.set_signing_key(None).await);
        assert_eq!(rules.current().version, v0, "content-addressed");
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

    fn rules_json(ids_and_urls: &[(&str, &str)]) -> String {
        Value::Array(ids_and_urls.iter().map(|(id, url)| rule(id, url)).collect()).to_string()
    }

    fn ids(rules: &Rules) -> Vec<String> {
        rules.active().into_iter().map(|r| r.id).collect()
    }

    #[tokio::test]
    async fn a_watched_directory_reloads_valid_changes_and_keeps_old_rules_on_bad_ones() {
        let first = temp_file("b.json", &rules_json(&[("b", "http://b/")]));
        let dir = std::path::Path::new(&first).parent().unwrap().to_path_buf();
        std::fs::write(dir.join("a.yaml"), "- id: a\n  match: {url: 'http://a/', methods: [GET]}\n  authenticators: [{handler: noop}]\n  authorizer: {handler: allow}\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "not rules").unwrap();
        let store = portcullis_store::testing::sqlite().await;
        let rules = Rules::load(&[dir.display().to_string()], &store).await.unwrap();
        assert_eq!(ids(&rules), ["a", "b"], "files in name order; other extensions ignored");
        assert!(!rules.reload_files().await, "nothing changed");

        std::fs::write(dir.join("c.json"), rules_json(&[("c", "http://c/")])).unwrap();
        assert!(rules.reload_files().await);
        assert_eq!(ids(&rules), ["a", "b", "c"]);
        assert!(rules.rule_set().select("GET", "http://c/").is_some(), "the decisions API sees it too");

        let version = rules.current().version.clone();
        std::fs::write(dir.join("c.json"), rules_json(&[("c", "http://c/<[>")])).unwrap();
        assert!(!rules.reload_files().await);
        std::fs::write(dir.join("d.json"), rules_json(&[("a", "http://d/")])).unwrap();
        assert!(!rules.reload_files().await, "a duplicate id across files is refused");
        assert_eq!(rules.current().version, version);
        assert!(rules.rule_set().select("GET", "http://c/").is_some());

        std::fs::remove_file(dir.join("d.json")).unwrap();
        std::fs::write(dir.join("c.json"), rules_json(&[("c2", "http://c2/")])).unwrap();
        assert!(rules.reload_files().await);
        assert_eq!(ids(&rules), ["a", "b", "c2"]);
    }

    #[tokio::test]
    async fn a_file_that_disappears_keeps_its_rules_and_a_missing_one_fails_start() {
        let file = temp_file("r.json", &rules_json(&[("r", "http://r/")]));
        let store = portcullis_store::testing::sqlite().await;
        let rules = Rules::load(std::slice::from_ref(&file), &store).await.unwrap();
        std::fs::remove_file(&file).unwrap();
        assert!(!rules.reload_files().await);
        assert_eq!(ids(&rules), ["r"]);
        std::fs::write(&file, rules_json(&[("r", "http://r/"), ("s", "http://s/")])).unwrap();
        assert!(rules.reload_files().await);
        assert_eq!(ids(&rules), ["r", "s"]);

        let err = Rules::load(&["/nonexistent/portcullis/rules.json".to_owned()], &store).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/portcullis/rules.json"), "{err}");
    }

    #[tokio::test]
    async fn jwks_named_by_jwt_rules_are_fetched_into_the_snapshot() {
        let store = portcullis_store::testing::sqlite().await;
        let jwks =
            temp_file("jwks.json", r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "AQ", "y": "AQ"}]}"#);
        let url = format!("file://{jwks}");
        let rules = Arc::new(Rules::load(&[], &store).await.unwrap());
        let jwt_rule = json!([{"id": "api", "match": {"url": "http://h/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "jwt", "config": {"jwks_urls": [url]}}], "authorizer": {"handler": "allow"}}]);
        rules.replace_admin(&store, jwt_rule).await.unwrap();
        let before = rules.current().version.clone();
        let task = rules.clone().spawn_jwks_refresher(Duration::from_secs(300));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let snapshot: Snapshot = serde_json::from_slice(&rules.current().body).unwrap();
            if let Some(set) = snapshot.jwks.get(&url) {
                assert_eq!(set["keys"][0]["kid"], "k");
                assert_ne!(snapshot.version, before, "new keys, new version");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the key set never reached the snapshot");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
        assert_eq!(jwks_urls(&rules.active()).into_iter().collect::<Vec<_>>(), [url]);
    }
}
