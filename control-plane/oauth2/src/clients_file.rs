//! The clients file: Hydra Maester `OAuth2Client` resources (`apiVersion: hydra.ory.sh/v1alpha1`)
//! read from `oauth2.clients_file` (a YAML file, or a directory of `*.yaml`/`*.yml`/`*.json`,
//! several documents each) and reconciled into clients at start and whenever the files change,
//! so Kubernetes manifests work without running a controller. Each client is owned by
//! `<name>/<namespace>`; a resource that disappears takes its client with it unless its
//! `deletionPolicy` is `orphan`. With `secretName` and `oauth2.clients_secrets_dir`, credentials
//! live in `<dir>/<namespace>/<secretName>` (`CLIENT_ID=` and `CLIENT_SECRET=` lines, mode 0600):
//! an existing file supplies them (Maester's user-provided Secret), otherwise they are generated
//! and written once. This module must fail safe: a bad resource is reported by name and field
//! and leaves its client as it was, and when any file cannot be read or parsed nothing at all
//! is changed or deleted. It never logs a secret. The control plane runs the passes (its
//! `clients_file::spawn`); this module does not start tasks of its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::Ctx;
use crate::client::ClientRequest;
use crate::crypto;
use crate::store::ClientRow;
use crate::store::managed_clients::ManagedClient;

const API_VERSION: &str = "hydra.ory.sh/v1alpha1";
const KIND: &str = "OAuth2Client";
/// How often the files are looked at; a full pass also runs every [`RESYNC`] to undo changes
/// made to managed clients through the admin API.
pub const POLL: Duration = Duration::from_secs(2);
pub const RESYNC: Duration = Duration::from_secs(60);

/// What one pass did, for logs and tests.
#[derive(Debug, Default)]
pub struct Report {
    pub applied: Vec<String>,
    pub unchanged: Vec<String>,
    pub deleted: Vec<String>,
    pub orphaned: Vec<String>,
    /// `resource "<owner>" (<file>): <field>: <why>`, or the file that stopped the pass.
    pub errors: Vec<String>,
}

/// Remembers what the last pass applied, so an unchanged resource costs no hashing or write.
#[derive(Default)]
pub struct Reconciler {
    /// owner → digest of (client id, body, secret) as last applied.
    applied: HashMap<String, [u8; 32]>,
    last_digest: Option<[u8; 32]>,
}

/// One resource as read from a file.
struct Resource {
    owner: String,
    namespace: String,
    file: String,
    spec: Map<String, Value>,
}

impl Reconciler {
    /// One pass: `None` when the files are as last seen and `force` is false.
    pub async fn pass(&mut self, ctx: &Ctx<'_>, force: bool) -> Option<Report> {
        let Some(source) = ctx.oauth2.clients_file.as_deref() else {
            return Some(Report::default());
        };
        let files = match read_source(Path::new(source)) {
            Ok(files) => files,
            Err(e) => {
                let report = Report { errors: vec![format!("{e}; no client was changed")], ..Report::default() };
                // A broken file is reported once per change, not every poll.
                let digest = crypto::sha256(e.as_bytes());
                if self.last_digest == Some(digest) && !force {
                    return None;
                }
                self.last_digest = Some(digest);
                return Some(report);
            }
        };
        let mut all = Vec::new();
        for (name, text) in &files {
            all.extend(name.as_bytes());
            all.push(0);
            all.extend(text.as_bytes());
            all.push(0);
        }
        let digest = crypto::sha256(&all);
        if self.last_digest == Some(digest) && !force {
            return None;
        }
        self.last_digest = Some(digest);
        Some(self.reconcile(ctx, &files).await)
    }

    async fn reconcile(&mut self, ctx: &Ctx<'_>, files: &BTreeMap<String, String>) -> Report {
        let mut report = Report::default();
        let mut documents = Vec::new();
        for (file, text) in files {
            match parse_documents(text) {
                Ok(docs) => documents.extend(docs.into_iter().map(|d| (file.clone(), d))),
                Err(e) => {
                    report.errors.push(format!("{file}: {e}; no client was changed"));
                    return report;
                }
            }
        }
        // Every resource that names itself counts as present, valid or not: a bad edit must
        // not delete the client it describes.
        let mut present = HashSet::new();
        let mut resources = Vec::new();
        for (file, doc) in documents {
            match resource(&file, doc) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    if !present.insert(r.owner.clone()) {
                        report.errors.push(format!("resource {:?} ({file}): defined twice; the first wins", r.owner));
                        continue;
                    }
                    resources.push(r);
                }
                Err((owner, e)) => {
                    if let Some(owner) = owner {
                        present.insert(owner);
                    }
                    report.errors.push(e);
                }
            }
        }
        let managed = match ctx.store.managed_clients().await {
            Ok(m) => m,
            Err(e) => {
                report.errors.push(format!("cannot read managed clients: {e}"));
                return report;
            }
        };
        let by_owner: HashMap<&str, &ManagedClient> = managed.iter().map(|m| (m.owner.as_str(), m)).collect();
        for r in &resources {
            match self.apply(ctx, r, by_owner.get(r.owner.as_str()).copied()).await {
                Ok(true) => report.applied.push(r.owner.clone()),
                Ok(false) => report.unchanged.push(r.owner.clone()),
                Err(e) => report.errors.push(format!("resource {:?} ({}): {e}", r.owner, r.file)),
            }
        }
        for m in managed.iter().filter(|m| !present.contains(&m.owner)) {
            match self.remove(ctx, m).await {
                Ok(true) => report.deleted.push(m.owner.clone()),
                Ok(false) => report.orphaned.push(m.owner.clone()),
                Err(e) => report.errors.push(format!("resource {:?} (removed): {e}", m.owner)),
            }
        }
        report
    }

    /// Creates or updates the client of `r`; `Ok(false)` when it was already as described.
    async fn apply(&mut self, ctx: &Ctx<'_>, r: &Resource, prev: Option<&ManagedClient>) -> Result<bool, String> {
        let spec = &r.spec;
        let policy = match spec.get("deletionPolicy") {
            None => "delete",
            Some(Value::String(p)) if p == "delete" || p == "orphan" => p.as_str(),
            Some(other) => return Err(format!("spec.deletionPolicy: {other} must be \"delete\" or \"orphan\"")),
        };
        let mut map = hydra_client(spec)?;
        let public = map.get("token_endpoint_auth_method").and_then(Value::as_str) == Some("none");
        let secret_path = secret_path(ctx, r)?;
        let supplied = match &secret_path {
            Some(path) if path.exists() => Some(read_credentials(path, public)?),
            _ => None,
        };
        let (client_id, mut secret, wrote) = match supplied {
            Some((id, secret)) => (id, secret, prev.map(|p| p.secret_file.clone()).unwrap_or_default()),
            None => {
                let id = prev.map_or_else(crypto::uuid_v4, |p| p.client_id.clone());
                (id, None, String::new())
            }
        };
        // A user-provided secret that now names another client: the old one goes, as Maester does.
        if let Some(prev) = prev.filter(|p| p.client_id != client_id) {
            self.delete_owned(ctx, &prev.client_id, &r.owner).await?;
        }
        let existing = ctx.store.get_client(&client_id).await.map_err(|e| e.to_string())?;
        if let Some(existing) = &existing {
            if existing.owner != r.owner {
                return Err(format!(
                    "client_id {client_id:?} belongs to {:?}, not to this resource; fix the credentials file",
                    existing.owner
                ));
            }
        }
        let mut wrote = wrote;
        if secret.is_none() && !public && existing.is_none() {
            let generated = crypto::generate_client_secret();
            if let Some(path) = &secret_path {
                write_credentials(path, &client_id, Some(&generated))?;
                wrote = path.display().to_string();
            } else {
                tracing::warn!(owner = %r.owner, "the client's generated secret is not written anywhere: set spec.secretName and oauth2.clients_secrets_dir");
            }
            secret = Some(generated);
        } else if public && existing.is_none() {
            if let Some(path) = secret_path.as_ref().filter(|p| !p.exists()) {
                write_credentials(path, &client_id, None)?;
                wrote = path.display().to_string();
            }
        }
        map.insert("client_id".into(), json!(client_id));
        map.insert("owner".into(), json!(r.owner));
        if let Some(secret) = &secret {
            map.insert("client_secret".into(), json!(secret));
        }
        let req = ClientRequest::parse(map).map_err(|e| format!("spec: {e}"))?;
        let body = serde_json::to_string(&req.body).map_err(|e| e.to_string())?;
        let fingerprint = {
            let mut material = format!("{client_id}\0{body}\0").into_bytes();
            material.extend(secret.as_deref().unwrap_or("").as_bytes());
            crypto::sha256(&material)
        };
        // Unchanged since the last pass, and nobody edited the client through the admin API.
        if existing.as_ref().is_some_and(|e| e.body == body) && self.applied.get(&r.owner) == Some(&fingerprint) {
            return Ok(false);
        }
        let now = ctx.clock.now();
        let secret_hash = match (&secret, &existing) {
            (_, _) if public => None,
            (Some(s), _) => Some(hash(s).await?),
            (None, Some(e)) => e.secret_hash.clone(),
            (None, None) => None,
        };
        let row = ClientRow {
            client_id: client_id.clone(),
            secret_hash,
            client_name: req.body.client_name.clone(),
            owner: r.owner.clone(),
            body,
            created_at: existing.as_ref().map_or(now, |e| e.created_at),
            updated_at: now,
        };
        ctx.secrets.forget(&client_id);
        let stored =
            if existing.is_some() { ctx.store.update_client(&row).await } else { ctx.store.insert_client(&row).await }
                .map_err(|e| e.to_string())?;
        if !stored {
            return Err(format!("client_id {client_id:?} changed while it was being written; retried next pass"));
        }
        ctx.store
            .upsert_managed_client(&ManagedClient {
                owner: r.owner.clone(),
                client_id: client_id.clone(),
                deletion_policy: policy.into(),
                secret_file: wrote,
                updated_at: now,
            })
            .await
            .map_err(|e| e.to_string())?;
        ctx.secrets.forget(&client_id);
        self.applied.insert(r.owner.clone(), fingerprint);
        Ok(true)
    }

    /// A resource is gone: delete its client (and the credentials file written for it) unless
    /// its policy was `orphan`. `Ok(false)` when orphaned.
    async fn remove(&mut self, ctx: &Ctx<'_>, m: &ManagedClient) -> Result<bool, String> {
        self.applied.remove(&m.owner);
        let deleted = m.deletion_policy != "orphan";
        if deleted {
            self.delete_owned(ctx, &m.client_id, &m.owner).await?;
            if !m.secret_file.is_empty() {
                match std::fs::remove_file(&m.secret_file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("cannot remove {}: {e}", m.secret_file)),
                }
            }
        }
        ctx.store.delete_managed_client(&m.owner).await.map_err(|e| e.to_string())?;
        Ok(deleted)
    }

    /// Deletes `client_id` if `owner` still owns it (an operator may have re-assigned it).
    async fn delete_owned(&self, ctx: &Ctx<'_>, client_id: &str, owner: &str) -> Result<(), String> {
        let client = ctx.store.get_client(client_id).await.map_err(|e| e.to_string())?;
        if client.is_some_and(|c| c.owner == owner) {
            ctx.secrets.forget(client_id);
            ctx.store.delete_client(client_id).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

pub fn log(report: &Report) {
    for e in &report.errors {
        tracing::error!("clients file: {e}");
    }
    if !report.applied.is_empty() || !report.deleted.is_empty() || !report.orphaned.is_empty() {
        tracing::info!(
            applied = ?report.applied,
            deleted = ?report.deleted,
            orphaned = ?report.orphaned,
            unchanged = report.unchanged.len(),
            "clients file reconciled"
        );
    }
}

async fn hash(secret: &str) -> Result<String, String> {
    let owned = secret.to_owned();
    tokio::task::spawn_blocking(move || crypto::hash_operator_secret(&owned)).await.map_err(|e| e.to_string())?
}

/// Every file of the source, by path: the file itself, or a directory's `*.yaml`, `*.yml` and
/// `*.json` (not recursive).
fn read_source(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()));
    let mut files = BTreeMap::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("{}: cannot list: {e}", path.display()))?;
        for entry in entries {
            let p = entry.map_err(|e| format!("{}: cannot list: {e}", path.display()))?.path();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if p.is_file() && matches!(ext, "yaml" | "yml" | "json") {
                files.insert(p.display().to_string(), read(&p)?);
            }
        }
    } else {
        files.insert(path.display().to_string(), read(path)?);
    }
    Ok(files)
}

/// The YAML documents of a file (`---` separated); `kind: List` documents are unpacked.
fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| format!("not valid YAML: {e}"))?;
        match value {
            Value::Null => {}
            Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                out.extend(o.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
            }
            v => out.push(v),
        }
    }
    Ok(out)
}

/// An `OAuth2Client` resource, `Ok(None)` for other kinds, or the error with the owner when
/// the resource names itself.
fn resource(file: &str, doc: Value) -> Result<Option<Resource>, (Option<String>, String)> {
    let Value::Object(mut doc) = doc else {
        return Err((None, format!("{file}: a document that is not a mapping")));
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    if text(doc.get("kind")).as_deref() != Some(KIND) {
        return Ok(None);
    }
    let meta = doc.get("metadata").cloned().unwrap_or(Value::Null);
    let Some(name) = text(meta.get("name")) else {
        return Err((None, format!("{file}: an {KIND} without metadata.name")));
    };
    let namespace = text(meta.get("namespace")).unwrap_or_else(|| "default".into());
    let owner = format!("{name}/{namespace}");
    let fail = |why: String| Err((Some(owner.clone()), format!("resource {owner:?} ({file}): {why}")));
    for (field, value) in [("metadata.name", &name), ("metadata.namespace", &namespace)] {
        if !dns_label(value) {
            return fail(format!("{field}: {value:?} is not a DNS-1123 name"));
        }
    }
    if text(doc.get("apiVersion")).as_deref() != Some(API_VERSION) {
        return fail(format!("apiVersion: must be {API_VERSION:?}"));
    }
    let spec = match doc.remove("spec") {
        Some(Value::Object(spec)) => spec,
        _ => return fail("spec: is required and must be a mapping".into()),
    };
    Ok(Some(Resource { owner, namespace, file: file.to_owned(), spec }))
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

/// Maester's camelCase spec as Hydra's client JSON. Errors name the spec field.
fn hydra_client(spec: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    const RENAMED: [(&str, &str); 27] = [
        ("clientName", "client_name"),
        ("grantTypes", "grant_types"),
        ("responseTypes", "response_types"),
        ("audience", "audience"),
        ("redirectUris", "redirect_uris"),
        ("requestUris", "request_uris"),
        ("postLogoutRedirectUris", "post_logout_redirect_uris"),
        ("allowedCorsOrigins", "allowed_cors_origins"),
        ("tokenEndpointAuthMethod", "token_endpoint_auth_method"),
        ("skipConsent", "skip_consent"),
        ("skipLogoutConsent", "skip_logout_consent"),
        ("accessTokenStrategy", "access_token_strategy"),
        ("metadata", "metadata"),
        ("jwksUri", "jwks_uri"),
        ("frontChannelLogoutURI", "frontchannel_logout_uri"),
        ("frontChannelLogoutSessionRequired", "frontchannel_logout_session_required"),
        ("backChannelLogoutURI", "backchannel_logout_uri"),
        ("backChannelLogoutSessionRequired", "backchannel_logout_session_required"),
        ("logoUri", "logo_uri"),
        ("clientUri", "client_uri"),
        ("policyUri", "policy_uri"),
        ("tosUri", "tos_uri"),
        ("contacts", "contacts"),
        ("sectorIdentifierUri", "sector_identifier_uri"),
        ("subjectType", "subject_type"),
        ("requestObjectSigningAlg", "request_object_signing_alg"),
        ("tokenEndpointAuthSigningAlg", "token_endpoint_auth_signing_alg"),
    ];
    const MORE: [(&str, &str); 2] = [
        ("userinfoSignedResponseAlg", "userinfo_signed_response_alg"),
        ("clientSecretExpiresAt", "client_secret_expires_at"),
    ];
    const CONTROLLER: [&str; 4] = ["secretName", "deletionPolicy", "hydraAdmin", "scope"];
    let mut out = Map::new();
    for (key, value) in spec {
        if let Some((_, hydra)) = RENAMED.iter().chain(MORE.iter()).find(|(k, _)| k == key) {
            out.insert((*hydra).to_owned(), value.clone());
        } else if key == "scopeArray" {
            let scopes = value.as_array().ok_or("spec.scopeArray: must be a list of strings")?;
            let words: Option<Vec<&str>> = scopes.iter().map(Value::as_str).collect();
            let words = words.ok_or("spec.scopeArray: must be a list of strings")?;
            out.insert("scope".into(), json!(words.join(" ")));
        } else if key == "tokenLifespans" {
            let lifespans = value.as_object().ok_or("spec.tokenLifespans: must be a mapping")?;
            for (name, v) in lifespans {
                let snake = snake_case(name);
                if !snake.ends_with("_lifespan") || !crate::client::HYDRA_FIELDS.contains(&snake.as_str()) {
                    return Err(format!("spec.tokenLifespans.{name}: not a token lifespan"));
                }
                out.insert(snake, v.clone());
            }
        } else if !CONTROLLER.contains(&key.as_str()) {
            return Err(format!("spec.{key}: unknown field"));
        }
    }
    if !spec.contains_key("scopeArray") {
        if let Some(scope) = spec.get("scope") {
            out.insert("scope".into(), scope.clone());
        }
    }
    match spec.get("grantTypes") {
        Some(Value::Array(g)) if !g.is_empty() => {}
        _ => return Err("spec.grantTypes: is required (a non-empty list)".into()),
    }
    Ok(out)
}

fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn secret_path(ctx: &Ctx<'_>, r: &Resource) -> Result<Option<PathBuf>, String> {
    let Some(name) = r.spec.get("secretName") else { return Ok(None) };
    let name = name.as_str().filter(|n| dns_label(n)).ok_or("spec.secretName: must be a DNS-1123 name")?;
    Ok(ctx.oauth2.clients_secrets_dir.as_ref().map(|dir| Path::new(dir).join(&r.namespace).join(name)))
}

/// `(CLIENT_ID, CLIENT_SECRET)` from a credentials file.
fn read_credentials(path: &Path, public: bool) -> Result<(String, Option<String>), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("spec.secretName: cannot read {}: {e}", path.display()))?;
    let mut id = None;
    let mut secret = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("CLIENT_ID", v)) => id = Some(v.to_owned()),
            Some(("CLIENT_SECRET", v)) => secret = Some(v.to_owned()),
            _ => {}
        }
    }
    let id = id.filter(|i| !i.is_empty()).ok_or_else(|| format!("{}: CLIENT_ID is missing", path.display()))?;
    let secret = secret.filter(|s| !s.is_empty());
    if secret.is_none() && !public {
        return Err(format!(
            "{}: CLIENT_SECRET is missing (only a client with tokenEndpointAuthMethod: none has none)",
            path.display()
        ));
    }
    Ok((id, if public { None } else { secret }))
}

/// Writes a credentials file atomically, readable by its owner only.
fn write_credentials(path: &Path, client_id: &str, secret: Option<&str>) -> Result<(), String> {
    use std::io::Write as _;
    let fail = |e: std::io::Error| format!("cannot write credentials to {}: {e}", path.display());
    let dir = path.parent().ok_or_else(|| format!("{}: no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).map_err(fail)?;
    let tmp = dir.join(format!(".{}.tmp", crypto::hex(&crypto::random_bytes::<6>())));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    let mut text = format!("CLIENT_ID={client_id}\n");
    if let Some(secret) = secret {
        text.push_str(&format!("CLIENT_SECRET={secret}\n"));
    }
    let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}
