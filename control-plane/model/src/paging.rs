//! Keyset pagination for the list endpoints (courier messages, identities, sessions): an
//! opaque `page_token` that carries the last row's `(timestamp, id)`, so a page is a range
//! query, never an OFFSET. Only the token lives here; each endpoint writes its own `Link`.

use crate::crypto;

/// A `page_token` this server did not issue; the admin API answers 400 naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("page_token: not a token this server issued")]
pub struct BadPageToken;

/// The token for the page after the row at `(at, id)`.
pub fn token(at: i64, id: &str) -> String {
    crypto::b64url(format!("{at}:{id}").as_bytes())
}

/// Reads a token made by [`token`]; anything else is [`BadPageToken`].
pub fn parse_token(token: &str) -> Result<(i64, String), BadPageToken> {
    crypto::b64url_decode(token)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (at, id) = s.split_once(':')?;
            Some((at.parse().ok()?, id.to_owned()))
        })
        .ok_or(BadPageToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_token(&token(42, "a:b")).unwrap(), (42, "a:b".to_owned()));
        for bad in ["", "%%", "bm90LWEtdG9rZW4"] {
            assert!(parse_token(bad).is_err(), "{bad}");
        }
    }
}
