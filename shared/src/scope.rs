//! OAuth2 scope strategies with fosite's names and meanings, used by the token endpoint
//! (requested scope within the client's allow-list), by introspection (`scope` parameter) and
//! by the `oauth2_introspection` authenticator (`required_scope`).

use serde::{Deserialize, Serialize};

/// How a granted scope string covers a required one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeStrategy {
    /// No local check (Oathkeeper: delegate `required_scope` to the introspection server).
    #[default]
    None,
    /// `foo` covers only `foo`.
    Exact,
    /// `foo` covers `foo`, `foo.bar`, `foo.bar.baz`.
    Hierarchic,
    /// `foo.*` covers `foo`, `foo.bar`, `foo.bar.baz`; `a.*.c` covers `a.b.c`; `foo` covers only `foo`.
    Wildcard,
}

impl ScopeStrategy {
    /// Does any of `granted` cover `needed` under this strategy? `None` covers nothing: a caller
    /// that asks it to check something has misconfigured the check and must fail closed.
    pub fn covers<'a>(self, granted: impl IntoIterator<Item = &'a str>, needed: &str) -> bool {
        granted.into_iter().any(|g| match self {
            ScopeStrategy::None => false,
            ScopeStrategy::Exact => g == needed,
            ScopeStrategy::Hierarchic => {
                g == needed || (needed.starts_with(g) && needed.as_bytes().get(g.len()) == Some(&b'.'))
            }
            ScopeStrategy::Wildcard => wildcard_covers(g, needed),
        })
    }

    /// Every scope in `needed` is covered by `granted`.
    pub fn covers_all<'a>(self, granted: &[&'a str], needed: impl IntoIterator<Item = &'a str>) -> bool {
        needed.into_iter().all(|n| self.covers(granted.iter().copied(), n))
    }
}

fn wildcard_covers(granted: &str, needed: &str) -> bool {
    if granted == needed {
        return true;
    }
    let pattern: Vec<&str> = granted.split('.').collect();
    let parts: Vec<&str> = needed.split('.').collect();
    let trailing_star = pattern.last() == Some(&"*");
    if trailing_star && pattern.len() > 1 {
        // `foo.*` also covers `foo` and anything deeper below it.
        let fixed = &pattern[..pattern.len() - 1];
        return parts.len() >= fixed.len() && segments_match(fixed, &parts[..fixed.len()]);
    }
    pattern.len() == parts.len() && segments_match(&pattern, &parts)
}

fn segments_match(pattern: &[&str], parts: &[&str]) -> bool {
    pattern.iter().zip(parts).all(|(p, s)| (*p == "*" && !s.is_empty()) || p == s)
}

/// Splits a space-delimited scope string (RFC 6749 §3.3) into its tokens.
pub fn split(scope: &str) -> impl Iterator<Item = &str> {
    scope.split(' ').filter(|s| !s.is_empty())
}

/// A scope token per RFC 6749 §3.3: printable ASCII except space, `"` and `\`.
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::ScopeStrategy::*;
    use super::*;

    #[test]
    fn exact_needs_equality() {
        assert!(Exact.covers(["read", "write"], "read"));
        assert!(!Exact.covers(["read"], "read.all"));
    }

    #[test]
    fn hierarchic_covers_children_only() {
        assert!(Hierarchic.covers(["foo"], "foo.bar"));
        assert!(Hierarchic.covers(["foo"], "foo"));
        assert!(!Hierarchic.covers(["foo"], "foobar"));
        assert!(!Hierarchic.covers(["foo.bar"], "foo"));
    }

    #[test]
    fn wildcard_follows_the_oathkeeper_docs() {
        assert!(Wildcard.covers(["foo.*"], "foo"));
        assert!(Wildcard.covers(["foo.*"], "foo.bar"));
        assert!(Wildcard.covers(["foo.*"], "foo.bar.baz"));
        assert!(!Wildcard.covers(["foo.*"], "bar"));
        assert!(!Wildcard.covers(["foo"], "foo.bar"));
        assert!(Wildcard.covers(["a.*.c"], "a.b.c"));
        assert!(!Wildcard.covers(["a.*.c"], "a.b.d"));
    }

    #[test]
    fn none_covers_nothing() {
        assert!(!None.covers(["read"], "read"));
    }

    #[test]
    fn covers_all_and_split() {
        let granted: Vec<&str> = split("read  write").collect();
        assert_eq!(granted, ["read", "write"]);
        assert!(Exact.covers_all(&granted, split("write read")));
        assert!(!Exact.covers_all(&granted, split("read admin")));
    }

    #[test]
    fn token_syntax() {
        assert!(is_valid_token("read:all"));
        assert!(!is_valid_token("a\"b"));
        assert!(!is_valid_token("a\\b"));
        assert!(!is_valid_token(""));
    }
}
