//! Target `scope`: OAuth2 scope strategies (fosite's `exact`, `hierarchic`, `wildcard`,
//! `none`) on a granted scope string and a needed one (`GRANTED\0NEEDED`), and scope-token
//! syntax.
//! Asserts each strategy against its definition, written as segment matching rather than
//! string slicing: `none` covers nothing; `exact` covers equal scopes only, and whatever it
//! covers the others cover too; `hierarchic` covers a scope whose dotted segments start with a
//! granted scope's segments; `wildcard` lets `*` stand for exactly one non-empty segment, and a
//! final `*` after at least one segment also for any number of further ones; `covers_all`
//! is `covers` for every needed scope; a scope token is printable ASCII without space, `"`
//! or `\` (RFC 6749 §3.3).

use portcullis_shared::scope::{ScopeStrategy, is_valid_token, split};

use crate::split_nul;

pub fn run(data: &[u8]) {
    let (granted, needed) = split_nul(data);
    let (granted, needed) = (String::from_utf8_lossy(granted), String::from_utf8_lossy(needed));
    let granted: Vec<&str> = split(&granted).collect();
    let needed_all: Vec<&str> = split(&needed).collect();
    for n in needed_all.iter().copied().chain([needed.as_ref()]) {
        let covers = |s: ScopeStrategy| s.covers(granted.iter().copied(), n);
        assert!(!covers(ScopeStrategy::None));
        let exact = granted.contains(&n);
        assert_eq!(covers(ScopeStrategy::Exact), exact, "exact {granted:?} {n:?}");
        let segments = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        let hierarchic = granted.iter().any(|g| segments(n).starts_with(&segments(g)));
        assert_eq!(covers(ScopeStrategy::Hierarchic), hierarchic, "hierarchic {granted:?} {n:?}");
        let wildcard = granted.iter().any(|g| wildcard(&segments(g), &segments(n), true));
        assert_eq!(covers(ScopeStrategy::Wildcard), wildcard, "wildcard {granted:?} {n:?}");
    }
    for s in [ScopeStrategy::Exact, ScopeStrategy::Hierarchic, ScopeStrategy::Wildcard, ScopeStrategy::None] {
        let all = needed_all.iter().all(|n| s.covers(granted.iter().copied(), n));
        assert_eq!(s.covers_all(&granted, needed_all.iter().copied()), all);
    }
    for token in granted.iter().chain(&needed_all) {
        let valid = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        assert_eq!(is_valid_token(token), valid, "token {token:?}");
    }
}

/// `pattern` against `scope`, segment by segment. `first`: no segment consumed yet (a lone
/// `*` is one segment, not "anything").
fn wildcard(pattern: &[String], scope: &[String], first: bool) -> bool {
    match (pattern.split_first(), scope.split_first()) {
        (None, None) => true,
        (Some((p, rest)), _) if p == "*" && rest.is_empty() && !first => true,
        (Some((p, rest)), Some((s, scope_rest))) => {
            (p == s || (p == "*" && !s.is_empty())) && wildcard(rest, scope_rest, false)
        }
        _ => false,
    }
}
