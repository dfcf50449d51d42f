//! Access and refresh tokens as the store keeps them: by digest, never the token itself.

use serde::Deserialize;

/// Access-token format: `opaque` (`pc_at_…`, checked by introspection) or `jwt` (ES256, checked
/// by the filter locally with the public JWKS). A client's `access_token_strategy` overrides it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessTokenStrategy {
    #[default]
    Opaque,
    Jwt,
}

impl AccessTokenStrategy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "opaque" => Some(Self::Opaque),
            "jwt" => Some(Self::Jwt),
            _ => None,
        }
    }
}

/// What a stored token is: the two kinds share one table and one lookup by digest, so every
/// reader checks this before trusting a row (a refresh token is never a bearer credential).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TokenUse {
    #[default]
    AccessToken,
    RefreshToken,
}

impl TokenUse {
    /// The RFC 7662 `token_use` text, also the stored column value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "access_token" => Some(Self::AccessToken),
            "refresh_token" => Some(Self::RefreshToken),
            _ => None,
        }
    }
}

impl std::fmt::Display for TokenUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_use_round_trips_through_its_text_and_refuses_others() {
        for u in [TokenUse::AccessToken, TokenUse::RefreshToken] {
            assert_eq!(TokenUse::parse(u.as_str()), Some(u));
        }
        assert_eq!(TokenUse::parse("id_token"), None);
        assert_eq!(TokenUse::parse("Access_Token"), None);
    }
}
