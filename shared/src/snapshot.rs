//! What the control plane pushes to filters: the rule set in its wire form plus a version.
//! The version is a digest of the content computed by the control plane, so replicas agree on
//! it and a filter can ask "anything newer than this?" with `If-None-Match`.

use serde::{Deserialize, Serialize};

use crate::rule::{RuleError, RuleSet, RuleSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    pub rules: Vec<RuleSpec>,
}

/// A snapshot ready to judge requests.
#[derive(Debug)]
pub struct CompiledSnapshot {
    pub version: String,
    pub rules: RuleSet,
}

impl Snapshot {
    pub fn compile(&self) -> Result<CompiledSnapshot, RuleError> {
        Ok(CompiledSnapshot { version: self.version.clone(), rules: RuleSet::compile(&self.rules)? })
    }
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
