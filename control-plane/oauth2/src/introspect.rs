//! RFC 7662 introspection's answer, for the public listener (whose handler authenticates the
//! client) and the admin listener. Unknown, expired or malformed tokens, and tokens lacking a scope the
//! caller asked about, are `{"active":false}`; a store failure is a 500, never inactive, so a
//! database outage cannot masquerade as "token revoked" (or the reverse).

use portcullis_shared::introspection::IntrospectionResponse;
use portcullis_shared::scope::{self, ScopeStrategy};

use crate::store::StoreError;
use crate::{Ctx, crypto};

/// What `token` is, for a caller that asked whether it holds `required_scope`.
pub async fn introspect(
    ctx: &Ctx<'_>,
    token: &str,
    required_scope: Option<&str>,
) -> Result<IntrospectionResponse, StoreError> {
    // Opaque tokens carry our prefixes; anything else must at least look like a JWS.
    let ours = token.starts_with(crypto::ACCESS_TOKEN_PREFIX)
        || token.starts_with(crate::issue::REFRESH_TOKEN_PREFIX)
        || token.bytes().filter(|&b| b == b'.').count() == 2;
    if !ours {
        return Ok(IntrospectionResponse::inactive());
    }
    let Some(row) = ctx.store.get_token(&crypto::token_signature(token)).await? else {
        return Ok(IntrospectionResponse::inactive());
    };
    // A spent refresh token is kept only for reuse detection: it is not active.
    if row.expires_at <= ctx.clock.now() || row.spent_at.is_some() {
        return Ok(IntrospectionResponse::inactive());
    }
    let granted: Vec<&str> = scope::split(&row.scope).collect();
    if let Some(required) = required_scope {
        if !ScopeStrategy::Wildcard.covers_all(&granted, scope::split(required)) {
            return Ok(IntrospectionResponse::inactive());
        }
    }
    let ext: Option<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&row.ext).ok();
    Ok(IntrospectionResponse {
        active: true,
        client_id: Some(row.client_id),
        sub: Some(row.subject),
        scope: Some(row.scope),
        exp: Some(row.expires_at),
        iat: Some(row.issued_at),
        nbf: Some(row.issued_at),
        aud: Some(row.audience),
        iss: Some(ctx.urls.self_.issuer.clone()),
        token_type: Some("Bearer".into()),
        ext: ext.filter(|e| !e.is_empty()),
        token_use: Some(row.token_use.as_str().to_owned()),
        ..IntrospectionResponse::default()
    })
}
