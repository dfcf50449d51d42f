//! OpenID Connect UserInfo (`GET`/`POST /userinfo`, OIDC Core §5.3) for an access token issued
//! under a user grant that holds `openid`. The answer is `sub`, the consent's
//! `session.id_token` claims, and — when the subject is a Portcullis identity — standard claims
//! from its traits by granted scope: `email` (+ `email_verified` from its verifiable
//! addresses) and `profile` (`name`). Errors are RFC 6750 §3 bearer errors with
//! `WWW-Authenticate`, written by the handler; a store failure stays a 500, never "invalid token".

use serde_json::{Map, Value};

use crate::Ctx;
use crate::code::Grant;
use crate::crypto;
use crate::store::StoreError;
use crate::store::tokens::TokenUse;

/// Why a token gets no claims (RFC 6750 §3); the edge picks status and `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerRefusal {
    /// No bearer token was sent (`invalid_request`).
    Missing,
    /// Unknown, malformed, expired or revoked, or not an access token (`invalid_token`).
    Invalid,
    /// The token's grant does not hold `openid` (`insufficient_scope`).
    InsufficientScope,
}

/// The claims for the bearer `token` (the `Authorization: Bearer` value, if any).
pub async fn claims(ctx: &Ctx<'_>, token: Option<&str>) -> Result<Result<Value, BearerRefusal>, StoreError> {
    let token = token.map(str::trim).filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Ok(Err(BearerRefusal::Missing));
    };
    let Some(row) = ctx.store.get_token(&crypto::token_signature(token)).await? else {
        return Ok(Err(BearerRefusal::Invalid));
    };
    if row.token_use != TokenUse::AccessToken || row.expires_at <= ctx.clock.now() {
        return Ok(Err(BearerRefusal::Invalid));
    }
    let scope: Vec<&str> = row.scope.split(' ').collect();
    if row.grant_body.is_empty() || !scope.contains(&"openid") {
        return Ok(Err(BearerRefusal::InsufficientScope));
    }
    let grant: Grant =
        serde_json::from_str(&row.grant_body).map_err(|e| StoreError::corrupt("access_tokens.grant_body", e))?;
    let mut claims = Map::new();
    if let Some(identity) = ctx.store.get_identity(&row.subject).await? {
        let traits = &identity.body.traits;
        if scope.contains(&"email") {
            if let Some(email) = traits.get("email").and_then(Value::as_str) {
                let verified = identity
                    .body
                    .verifiable_addresses
                    .iter()
                    .any(|a| a.verified && a.value.eq_ignore_ascii_case(email));
                claims.insert("email".into(), email.into());
                claims.insert("email_verified".into(), verified.into());
            }
        }
        if scope.contains(&"profile") {
            if let Some(name) = traits.get("name").filter(|n| !n.is_null()) {
                claims.insert("name".into(), name.clone());
            }
        }
    }
    // What the consent granted wins over what the traits say.
    for (k, v) in grant.id_token_claims {
        claims.insert(k, v);
    }
    claims.insert("sub".into(), row.subject.into());
    Ok(Ok(Value::Object(claims)))
}
