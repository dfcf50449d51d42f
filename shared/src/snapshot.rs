//! What the control plane pushes to filters: the rule set in its wire form plus a version.
//! The version is a digest of the content computed by the control plane, so replicas agree on
//! it and a filter can ask "anything newer than this?" with `If-None-Match`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cors::{CorsPolicy, CorsSpec};
use crate::matching::Strategy;
use crate::rule::{Environment, RuleError, RuleSet, RuleSpec};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    pub rules: Vec<RuleSpec>,
    /// The default matching strategy (`access_rules.matching_strategy`).
    #[serde(default)]
    pub matching_strategy: Strategy,
    /// Key sets for `jwt` authenticators, by JWKS URL, fetched by the control plane so the
    /// filter never has to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub jwks: BTreeMap<String, Value>,
    /// The global CORS policy (`access_rules.cors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    /// Hex SHA-256 of tokens revoked before their expiry; filters refuse them at once, cache
    /// or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<String>,
    /// The key `id_token` mutators sign with. Secret: the snapshot is only served to
    /// filters that present their token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SigningKey>,
}

/// A private signing key as the control plane distributes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    /// `ES256` (P-256) — the algorithm Envoy's `sign` and `verify_signature` handle natively.
    pub alg: crate::jwt::Algorithm,
    /// PKCS#8 DER, standard base64.
    pub pkcs8: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// A snapshot ready to judge requests.
#[derive(Debug)]
pub struct CompiledSnapshot {
    pub version: String,
    pub rules: RuleSet,
    /// The id_token signing key: `kid` and PKCS#8 DER.
    pub signing_key: Option<DecodedKey>,
}

/// A signing key ready for a signer; its bytes never appear in `Debug`.
pub struct DecodedKey {
    pub kid: String,
    pub pkcs8_der: Vec<u8>,
}

impl std::fmt::Debug for DecodedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Snapshot {
    pub fn compile(&self) -> Result<CompiledSnapshot, RuleError> {
        let cors = match &self.cors {
            Some(spec) => CorsPolicy::compile(spec).map_err(|(field, message)| RuleError {
                index: 0,
                rule_id: None,
                field,
                message,
            })?,
            None => None,
        };
        let revoked = self
            .revoked
            .iter()
            .enumerate()
            .map(|(i, hex)| {
                parse_digest(hex).ok_or_else(|| RuleError {
                    index: i,
                    rule_id: None,
                    field: format!("revoked[{i}]"),
                    message: "must be 64 hex digits (a SHA-256)".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        let env = Environment {
            strategy: self.matching_strategy,
            jwks: self.jwks.clone(),
            cors,
            revoked: Arc::new(revoked),
            signing_kid: self.signing_key.as_ref().map(|k| k.kid.clone()),
        };
        let signing_key = match &self.signing_key {
            None => None,
            Some(key) => {
                use base64::Engine as _;
                let pkcs8_der =
                    base64::engine::general_purpose::STANDARD.decode(&key.pkcs8).map_err(|_| RuleError {
                        index: 0,
                        rule_id: None,
                        field: "signing_key.pkcs8".into(),
                        message: "is not base64".into(),
                    })?;
                Some(DecodedKey { kid: key.kid.clone(), pkcs8_der })
            }
        };
        Ok(CompiledSnapshot {
            version: self.version.clone(),
            rules: RuleSet::compile_in(&self.rules, &env)?,
            signing_key,
        })
    }
}

/// Reads a hex SHA-256 digest.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshot_round_trips_and_compiles() {
        let wire = json!({"version": "v1", "rules": [{
            "id": "r", "match": {"url": "http://h/", "methods": ["GET"]},
            "authenticators": [{"handler": "noop"}], "authorizer": {"handler": "allow"}
        }]});
        let snapshot: Snapshot = serde_json::from_value(wire.clone()).unwrap();
        let compiled = snapshot.compile().unwrap();
        assert_eq!(compiled.version, "v1");
        assert_eq!(compiled.rules.len(), 1);
        let back = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(back["rules"][0]["id"], "r");
    }
}
