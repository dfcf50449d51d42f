//! The `refresh_token` grant (RFC 6749 §6) with rotation and reuse detection (RFC 6819
//! §5.2.2.3, OAuth 2.1 §4.3.1). Every exchange spends the refresh token — one compare-and-swap
//! UPDATE, so of two concurrent exchanges exactly one wins — revokes the access token it came
//! with, and mints a new pair in the same family. A spent token presented again is theft unless
//! it comes within `oauth2.grant.refresh_token.rotation_grace_period` of the spend: then it is
//! taken for a client that lost the answer (Hydra's problem of users "randomly logged out"), the
//! answer it lost is revoked and a new one is minted, so at most one live pair descends from
//! each spend. Inside the window a replay is therefore not detected — the price of the retry,
//! bounded by the (short, at most 5 min) window. Outside it, the whole family is revoked: every
//! access and refresh token descended from the original authorization code, digests pushed
//! to the filters at once. `scope` may narrow the new access token, never widen the grant.

use portcullis_shared::scope::{self, ScopeStrategy};

use crate::Ctx;
use crate::OAuth2Error;
use crate::Params;
use crate::client_auth::Authenticated;
use crate::code::Grant;
use crate::crypto;
use crate::issue::{self, GrantType, Mint, Minted};
use crate::store::StoreError;
use crate::store::tokens::{Selector, TokenUse};

fn invalid() -> OAuth2Error {
    OAuth2Error::invalid_grant(
        "The provided refresh token is invalid, expired, revoked, or was issued to another client.",
    )
}

pub async fn exchange(ctx: &Ctx<'_>, client: &Authenticated, params: &Params<'_>) -> Result<Minted, OAuth2Error> {
    let Some(token) = params.single("refresh_token")?.filter(|t| !t.is_empty()) else {
        return Err(OAuth2Error::invalid_request("The request is missing a required parameter: refresh_token."));
    };
    let now = ctx.clock.now();
    let signature = crypto::token_signature(token);
    let Some(row) = ctx.store.get_token(&signature).await? else { return Err(invalid()) };
    // Another client's token is refused untouched, so a thief cannot revoke the family.
    if row.token_use != TokenUse::RefreshToken || !crypto::secret_eq(&row.client_id, &client.row.client_id) {
        return Err(invalid());
    }
    if row.expires_at <= now {
        return Err(invalid());
    }
    let grant: Grant =
        serde_json::from_str(&row.grant_body).map_err(|e| StoreError::corrupt("access_tokens.grant_body", e))?;

    // Narrow, never widen (RFC 6749 §6), and never beyond what the client may still ask for.
    let scope = match params.single("scope")? {
        None | Some("") => grant.scope.clone(),
        Some(requested) => {
            let mut narrowed: Vec<String> = Vec::new();
            for s in scope::split(requested) {
                if !grant.scope.iter().any(|g| g == s) {
                    return Err(OAuth2Error::invalid_scope(format!(
                        "The requested scope '{s}' was not granted to this refresh token."
                    )));
                }
                if !narrowed.iter().any(|n| n == s) {
                    narrowed.push(s.to_owned());
                }
            }
            narrowed
        }
    };
    let allowed: Vec<&str> = scope::split(&client.body.scope).collect();
    if let Some(s) = scope.iter().find(|s| !ScopeStrategy::Wildcard.covers(allowed.iter().copied(), s)) {
        return Err(OAuth2Error::invalid_scope(format!("The OAuth 2.0 Client is no longer allowed scope '{s}'.")));
    }

    let revoked = if ctx.store.spend_refresh_token(&signature, now).await? {
        ctx.store.revoke_tokens(Selector::AccessTokenOf(&row.request_id)).await?
    } else {
        let grace = i64::try_from(ctx.oauth2.grant.refresh_token.rotation_grace_period.as_secs()).unwrap_or(i64::MAX);
        let spent_at = row.spent_at.unwrap_or(now);
        // Times are whole seconds: without a window, even a same-second replay is theft.
        if grace == 0 || now.saturating_sub(spent_at) > grace {
            let n = ctx.store.revoke_tokens(Selector::Family(&row.family_id)).await?;
            ctx.revocations.publish(ctx.store, now).await?;
            tracing::warn!(client_id = %row.client_id, revoked = n, "refresh token reused; its family was revoked");
            return Err(OAuth2Error::invalid_grant(
                "The refresh token has already been used; every token of this grant was revoked.",
            ));
        }
        // A retry of a lost answer: that answer must not stay usable next to the new one.
        tracing::info!(client_id = %row.client_id, "refresh retried within the grace period");
        ctx.store.revoke_tokens(Selector::ChildrenOf(&row.request_id)).await?
    };
    if revoked > 0 {
        ctx.revocations.publish(ctx.store, now).await?;
    }
    Ok(issue::Minter::of(ctx)
        .mint(&Mint {
            grant_type: GrantType::RefreshToken,
            client_id: &client.row.client_id,
            client: &client.body,
            subject: &row.subject,
            scope: &scope,
            audience: &row.audience,
            grant: Some(&grant),
            family_id: &row.family_id,
            parent_id: &row.request_id,
        })
        .await?)
}
