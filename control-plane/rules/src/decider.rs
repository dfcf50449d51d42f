//! The driver loop behind the decisions API (`/decisions[/*]`) and `/admin/rules/explain`: the
//! shared pipeline decides, and the [`Decider`] only performs the call-outs it asks for, with a
//! timeout and a bounded, sharded cache keyed by a hash of the pipeline's cache key (which holds
//! credentials), and signs the id_tokens `id_token` mutators ask for with the active key of the
//! gateway set (`portcullis.gateway`, never an OAuth2 key), reusing a minted token until the
//! pipeline's `cache_until_ms`. It knows no HTTP server (the handlers that rebuild the judged
//! request from `X-Forwarded-*` live in the control plane) and makes no decision of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use portcullis_shared::denial::{Denial, DenialKind};
use portcullis_shared::pipeline::mutate::MintRequest;
use portcullis_shared::pipeline::{self, HttpCall, HttpResponse, Step, Verdict};
use portcullis_shared::rule::RuleSet;

use portcullis_keys::Signer;
use portcullis_keys::jws::verify_signature;
use portcullis_model::clock::Clock;
use portcullis_model::crypto;

use crate::config;

/// A pipeline needs at most a handful of calls (authenticators, authorizer, hydrators); more
/// means something loops, and the request is refused rather than left hanging.
const MAX_CALLS: usize = 16;

/// Call-out answers larger than this are treated as a failed call.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

const SHARDS: usize = 16;

/// One call-out as it happened, for `explain`. Holds no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub method: String,
    pub url: String,
    /// Request headers, with credential values replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// The status, or why the call failed.
    pub outcome: Result<u16, String>,
    /// Answered from the cache, without a network call.
    pub cached: bool,
}

/// A finished decision.
#[derive(Debug)]
pub struct Decision {
    pub verdict: Verdict,
    /// The rule that judged the request, when a call-out was made (allow verdicts carry their
    /// own).
    pub rule_id: Option<String>,
}

/// Performs the pipeline's call-outs and caches their answers. One per process.
pub struct Decider {
    http: reqwest::Client,
    cache: CallCache,
    /// The gateway key id_tokens are signed with; swappable so a rotation needs no restart.
    signer: ArcSwapOption<Signer>,
    /// Minted id_tokens by hashed mint cache key (which holds the subject and claims).
    minted: CallCache<String>,
}

impl std::fmt::Debug for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decider").field("cache_capacity", &self.cache.capacity()).finish()
    }
}

/// An owned request to judge; the pipeline borrows from it.
#[derive(Debug, Clone)]
pub struct Judged {
    pub method: String,
    pub scheme: String,
    pub host: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The client IP the calling proxy vouches for ([`forwarded_client`]).
    pub remote_addr: Option<String>,
}

impl Judged {
    /// The headers as the pipeline borrows them.
    fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    fn view<'a>(&'a self, headers: &'a [(&'a str, &'a str)]) -> pipeline::Request<'a> {
        pipeline::Request {
            method: &self.method,
            scheme: &self.scheme,
            host: &self.host,
            target: &self.target,
            headers,
            remote_addr: self.remote_addr.as_deref(),
        }
    }
}

/// The client address for Keto's `remoteIpAddress`: the right-most `X-Forwarded-For` entry,
/// the one the proxy calling `/decisions` appended (Envoy with `use_remote_address`, nginx's
/// `$proxy_add_x_forwarded_for`, Traefik) — never the left-most, which the client wrote. `None`
/// when the last entry is not an IP address.
pub fn forwarded_client<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let last = values.last()?.rsplit(',').next()?.trim();
    last.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

impl Decider {
    pub fn new(config: &config::Decisions) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(config.call_timeout)
            .connect_timeout(config.call_timeout)
            // A session endpoint redirecting to a login page must not count as a valid session.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for call-outs: {e}"))?;
        Ok(Self {
            http,
            cache: CallCache::new(config.cache_capacity),
            signer: ArcSwapOption::empty(),
            minted: CallCache::new(config.cache_capacity),
        })
    }

    /// Sets the key `id_token` mutators are signed with (`None`: they answer 503).
    pub fn set_signer(&self, signer: Option<Arc<Signer>>) {
        self.signer.store(signer);
    }

    /// The token for `mint`: a cached one minted for the same key, subject and claims, or a
    /// new signature. The error text is the pipeline's to keep; it names no key material.
    fn mint(&self, mint: &MintRequest, now_ms: i64) -> Result<String, String> {
        let key = crypto::sha256(mint.cache_key.as_bytes());
        if let Some(token) = self.minted.get(&key, now_ms) {
            return Ok(token);
        }
        let signer = self.signer.load_full().ok_or("no signing key")?;
        // The rules were compiled with another key's id (mid-rotation): a token whose `kid`
        // names a key that did not sign it would never verify.
        if signer.kid() != mint.kid {
            return Err(format!("signing key {:?} is not available", mint.kid));
        }
        let token = signer.sign(&mint.signing_input()?).ok_or("signing failed")?;
        if mint.cache_until_ms > now_ms {
            self.minted.insert(key, token.clone(), mint.cache_until_ms, now_ms);
        }
        Ok(token)
    }

    /// Runs the pipeline to a verdict, performing (or answering from the cache) each call it
    /// asks for. With `record`, every call is appended there.
    pub async fn decide(
        &self,
        rules: &RuleSet,
        judged: &Judged,
        clock: &dyn Clock,
        mut record: Option<&mut Vec<CallRecord>>,
    ) -> Decision {
        let headers = judged.header_pairs();
        let req = judged.view(&headers);
        let (mut evaluation, mut step) = pipeline::begin(rules, &req, clock.now_ms());
        let rule_id = evaluation.as_ref().map(|e| e.rule_id().to_owned());
        let mut calls = 0;
        loop {
            let call = match step {
                Step::Done(verdict) => return Decision { verdict, rule_id },
                Step::Call(call) => call,
                Step::Mint(mint) => {
                    let Some(eval) = evaluation.as_mut() else {
                        return internal(rule_id, "the pipeline asked for a token without an evaluation");
                    };
                    let now = clock.now_ms();
                    let token = self.mint(&mint, now);
                    if let Err(e) = &token {
                        tracing::warn!(kid = %mint.kid, error = %e, "cannot mint an id_token");
                    }
                    step = eval.resume_minted(&req, token, now);
                    continue;
                }
                Step::Verify(check) => {
                    let Some(eval) = evaluation.as_mut() else {
                        return internal(rule_id, "the pipeline asked for a signature check without an evaluation");
                    };
                    let verified = check
                        .keys
                        .iter()
                        .any(|key| verify_signature(check.alg, &key.spki_der, &check.signature, &check.message));
                    step = eval.resume_verified(&req, verified, clock.now_ms());
                    continue;
                }
            };
            let Some(eval) = evaluation.as_mut() else {
                return internal(rule_id, "the pipeline asked for a call without an evaluation");
            };
            calls += 1;
            if calls > MAX_CALLS {
                return internal(rule_id, "the rule needs too many call-outs");
            }
            let key = call.cache_key.as_deref().map(|k| crypto::sha256(k.as_bytes()));
            let hit = key.and_then(|k| self.cache.get(&k, clock.now_ms()));
            let cached = hit.is_some();
            let outcome = match hit {
                Some(response) => Ok(response),
                None => self.perform(&call).await,
            };
            if let Some(record) = record.as_deref_mut() {
                record.push(CallRecord {
                    method: call.method.clone(),
                    url: call.url.clone(),
                    headers: redact(&call.headers),
                    outcome: outcome.as_ref().map(|r| r.status).map_err(Clone::clone),
                    cached,
                });
            }
            if let Err(e) = &outcome {
                // The URL is the rule's configured endpoint; the headers and body, which carry
                // the credential, are not logged.
                tracing::warn!(method = %call.method, url = %call.url, error = %e, "decision call-out failed");
            }
            let now = clock.now_ms();
            let resumed = eval.resume(&req, outcome.clone(), now);
            if let (Some(key), Some(until), Ok(response), false) = (key, resumed.cache_until_ms, outcome, cached) {
                if until > now {
                    self.cache.insert(key, response, until, now);
                }
            }
            step = resumed.step;
        }
    }

    async fn perform(&self, call: &HttpCall) -> Result<HttpResponse, String> {
        let method = reqwest::Method::from_bytes(call.method.as_bytes())
            .map_err(|_| format!("{:?} is not an HTTP method", call.method))?;
        let mut request = self.http.request(method, &call.url);
        for (name, value) in &call.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if !call.body.is_empty() {
            request = request.body(call.body.clone());
        }
        // Without the URL: reqwest's messages repeat it, and a query may carry a credential.
        let describe = |e: reqwest::Error| {
            let e = e.without_url();
            if e.is_timeout() { "timed out".to_owned() } else { e.to_string() }
        };
        let mut response = request.send().await.map_err(describe)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, headers, body })
    }
}

fn internal(rule_id: Option<String>, message: &str) -> Decision {
    let denial = Denial::new(DenialKind::Internal, message).with_reason("pipeline_state");
    let response = denial.to_response();
    Decision { verdict: Verdict::Deny { denial, response }, rule_id }
}

/// Header values that are credentials, which must never be shown back.
pub fn redact(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            let secret = matches!(n.as_str(), "authorization" | "cookie" | "proxy-authorization" | "x-api-key");
            (n.clone(), if secret { "<redacted>".to_owned() } else { v.clone() })
        })
        .collect()
}

/// Call-out answers (or minted tokens) by hashed cache key, split over shards so concurrent
/// decisions rarely wait on the same lock; no lock is held across an `await`.
struct CallCache<V = HttpResponse> {
    shards: Vec<Mutex<HashMap<[u8; 32], Entry<V>>>>,
    per_shard: usize,
}

struct Entry<V> {
    until_ms: i64,
    response: V,
}

impl<V: Clone> CallCache<V> {
    fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), per_shard }
    }

    fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<HashMap<[u8; 32], Entry<V>>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    fn get(&self, key: &[u8; 32], now_ms: i64) -> Option<V> {
        if self.per_shard == 0 {
            return None;
        }
        // A poisoned shard only means another request panicked mid-insert; the map is intact.
        let mut shard = self.shard(key).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match shard.get(key) {
            Some(entry) if entry.until_ms > now_ms => Some(entry.response.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: [u8; 32], response: V, until_ms: i64, now_ms: i64) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self.shard(&key).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.until_ms > now_ms);
            if shard.len() >= self.per_shard {
                // Still full of live answers: drop the one that would expire first.
                if let Some(oldest) = shard.iter().min_by_key(|(_, e)| e.until_ms).map(|(k, _)| *k) {
                    shard.remove(&oldest);
                }
            }
        }
        shard.insert(key, Entry { until_ms, response });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_the_hop_the_proxy_appended() {
        assert_eq!(forwarded_client(["6.6.6.6, 203.0.113.7"].into_iter()), Some("203.0.113.7".into()));
        assert_eq!(forwarded_client(["6.6.6.6", "203.0.113.7 "].into_iter()), Some("203.0.113.7".into()));
        assert_eq!(forwarded_client(["203.0.113.7, spoofed"].into_iter()), None);
        assert_eq!(forwarded_client(std::iter::empty()), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = CallCache::new(16);
        let response = HttpResponse { status: 200, ..Default::default() };
        for i in 0..100u8 {
            let mut key = [0u8; 32];
            key[0] = 0;
            key[1] = i;
            cache.insert(key, response.clone(), 1000 + i64::from(i), 0);
        }
        let shard = cache.shards[0].lock().unwrap();
        assert_eq!(shard.len(), 1, "one entry per shard at capacity 16");
        assert!(shard.keys().all(|k| k[1] == 99), "the entry expiring last stays");
    }
}
