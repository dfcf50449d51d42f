//! Target `rules`: a rule file's bytes (JSON, else YAML, as the control plane reads
//! `access_rules.repositories`) parsed into rule specs and compiled with both matching
//! strategies.
//! Asserts: no panic; a compiled set has one rule per spec, with distinct ids; what parses
//! serialises and parses back to the same specs, which compile the same way; guarded header
//! names are lower-case, sorted and unique.

use portcullis_shared::matching::Strategy;
use portcullis_shared::rule::{RuleSet, parse_rules};
use serde_json::Value;

pub fn run(data: &[u8]) {
    let value: Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(_) => match serde_yaml::from_slice(data) {
            Ok(v) => v,
            Err(_) => return,
        },
    };
    let Ok(specs) = parse_rules(value) else { return };
    let wire = serde_json::to_value(&specs).unwrap_or_else(|e| panic!("specs do not serialise: {e}"));
    let again = parse_rules(wire).unwrap_or_else(|e| panic!("serialised specs do not parse: {e}"));
    assert_eq!(again, specs, "specs change through their wire form");

    for strategy in [Strategy::Regexp, Strategy::Glob] {
        let compiled = RuleSet::compile_with(&specs, strategy);
        let recompiled = RuleSet::compile_with(&again, strategy);
        assert_eq!(compiled.as_ref().err(), recompiled.as_ref().err());
        let Ok(set) = compiled else { continue };
        assert_eq!(set.len(), specs.len());
        let mut ids: Vec<&str> = set.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), specs.len(), "duplicate ids compiled");
        let guarded = set.guarded_headers();
        assert!(guarded.windows(2).all(|w| w[0] < w[1]), "guarded headers not sorted and unique: {guarded:?}");
        assert!(guarded.iter().all(|h| *h == h.to_ascii_lowercase()), "guarded headers not lower-case: {guarded:?}");
    }
}
