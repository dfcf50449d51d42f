//! RFC 7009 token revocation at `POST /oauth2/revoke` (Hydra's path), client-authenticated.
//! A client may revoke only its own tokens; every outcome but an authentication or request
//! error is 200, so the endpoint does not reveal which tokens exist. The revocation is
//! published at once: filters refuse the token on their next snapshot, cached or not.
//! Revoking a refresh token revokes its whole grant (RFC 7009 §2.1: the access tokens issued
//! under the same authorization grant go with it); revoking an access token revokes only it.
//! `Ok(())` is the 200 the edge answers; this module writes no response.

use crate::client_auth::authenticate;
use crate::crypto;
use crate::store::tokens::{Selector, TokenUse};
use crate::{Ctx, OAuth2Error, Params};

/// A revocation request; `authorization` is the `Authorization` header's value.
pub async fn revoke(ctx: &Ctx<'_>, authorization: Option<&str>, params: &Params<'_>) -> Result<(), OAuth2Error> {
    let client = authenticate(ctx, authorization, params).await?;
    let Some(token) = params.single("token")?.filter(|t| !t.is_empty()) else {
        return Err(OAuth2Error::invalid_request("The request is missing a required parameter: token."));
    };
    // RFC 7009 §2.1: the hint only speeds up the lookup, and one lookup finds both kinds.
    let _ = params.single("token_type_hint")?;
    let Some(row) = ctx.store.get_token(&crypto::token_signature(token)).await? else {
        return Ok(());
    };
    if row.client_id != client.row.client_id || row.expires_at <= ctx.clock.now() {
        return Ok(());
    }
    if row.token_use == TokenUse::RefreshToken {
        let which = if row.family_id.is_empty() {
            Selector::Request(&row.request_id)
        } else {
            Selector::Family(&row.family_id)
        };
        ctx.store.revoke_tokens(which).await?;
    } else {
        ctx.store.revoke_token(&row).await?;
    }
    ctx.revocations.publish(ctx.store, ctx.clock.now()).await?;
    tracing::info!(client_id = %row.client_id, token_use = %row.token_use, "token revoked");
    Ok(())
}
