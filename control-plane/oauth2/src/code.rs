//! Authorization codes: the hand-off from the authorization endpoint (`/oauth2/auth`, after
//! login and consent) to the token endpoint. A [`Grant`] records everything the token endpoint
//! needs to mint tokens — who, for which client, which scopes and audience were granted, the
//! PKCE challenge, the OIDC `nonce`, `auth_time`, `acr`/`amr`, the login session id and the
//! consent's extra claims — so the token endpoint never re-reads login or consent state.
//!
//! Codes are `pc_ac_` + 256 random bits, stored only as their SHA-256, valid for `ttl.auth_code`
//! and redeemable once. This module neither authenticates clients nor checks PKCE: it issues and
//! redeems; the token endpoint judges.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Ctx;
use crate::crypto;
use crate::store::StoreError;
use crate::store::codes::CodeRow;

pub const CODE_PREFIX: &str = "pc_ac_";

/// What a user granted a client, carried from consent to the token endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub client_id: String,
    /// The user (identity id) or the subject an external login app accepted.
    pub subject: String,
    /// Granted scopes (consent's `grant_scope`), in order, without duplicates.
    pub scope: Vec<String>,
    /// Granted access-token audiences (`grant_access_token_audience`).
    pub audience: Vec<String>,
    /// The `redirect_uri` parameter as the authorization request sent it; `None` when the
    /// request omitted it (allowed only for a client with exactly one registered URI). RFC 6749
    /// §4.1.3: the token request must then repeat it exactly.
    pub redirect_uri: Option<String>,
    /// PKCE (RFC 7636): the challenge and its method (`S256`; `plain` is refused upstream).
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// OIDC `nonce`, echoed in the ID token.
    pub nonce: Option<String>,
    /// When the user authenticated (unix seconds), for `auth_time`.
    pub auth_time: i64,
    /// Authentication context class and methods from the login accept.
    #[serde(default)]
    pub acr: String,
    #[serde(default)]
    pub amr: Vec<String>,
    /// The login session id, the ID token's `sid` (back-channel logout).
    #[serde(default)]
    pub sid: String,
    /// The consent request id, so revoking a consent can revoke the tokens it produced.
    #[serde(default)]
    pub consent_id: String,
    /// Consent `session.access_token`: extra claims for the access token (`ext`).
    #[serde(default)]
    pub access_token_claims: Map<String, Value>,
    /// Consent `session.id_token`: extra claims for the ID token and `/userinfo`.
    #[serde(default)]
    pub id_token_claims: Map<String, Value>,
    /// When the authorization request was made (unix seconds).
    pub requested_at: i64,
}

/// What redeeming a code found.
#[derive(Debug, Clone, PartialEq)]
pub enum Redeemed {
    /// Valid, unexpired and now spent: mint tokens for this grant.
    Fresh(Grant),
    /// Spent before: a replay. RFC 6749 §4.1.2 says the tokens issued for it should be revoked.
    Replayed(Grant),
    /// Unknown, expired, or issued to another client (all `invalid_grant`, indistinguishably).
    Invalid,
}

fn generate() -> String {
    format!("{CODE_PREFIX}{}", crypto::b64url(&crypto::random_bytes::<32>()))
}

/// Stores `grant` and returns the code to put in the redirect.
pub async fn issue(ctx: &Ctx<'_>, grant: &Grant) -> Result<String, StoreError> {
    let code = generate();
    let now = ctx.clock.now();
    let lifespan = i64::try_from(ctx.ttl.auth_code.as_secs()).unwrap_or(i64::MAX);
    let grant_body =
        serde_json::to_string(grant).map_err(|e| StoreError::corrupt("authorization_codes.grant_body", e))?;
    ctx.store
        .insert_code(&CodeRow {
            signature: crypto::token_signature(&code),
            client_id: grant.client_id.clone(),
            grant_body,
            issued_at: now,
            expires_at: now.saturating_add(lifespan),
            redeemed_at: None,
        })
        .await?;
    Ok(code)
}

/// Spends `code` for `client_id`. A code presented by another client is [`Redeemed::Invalid`]
/// and stays unspent, so a stolen code cannot be burnt by the thief.
pub async fn redeem(ctx: &Ctx<'_>, code: &str, client_id: &str) -> Result<Redeemed, StoreError> {
    match redeem_if(ctx, code, client_id, |_| Ok::<(), std::convert::Infallible>(())).await? {
        Ok(redeemed) => Ok(redeemed),
        Err(never) => match never {},
    }
}

/// As [`redeem`], but an unspent code is spent only if `check` accepts the request against its
/// grant (redirect_uri, PKCE): a request that fails the check burns nothing, so whoever holds a
/// code without its verifier cannot spoil the real client's exchange.
pub async fn redeem_if<E>(
    ctx: &Ctx<'_>,
    code: &str,
    client_id: &str,
    check: impl FnOnce(&Grant) -> Result<(), E>,
) -> Result<Result<Redeemed, E>, StoreError> {
    let signature = crypto::token_signature(code);
    let Some(row) = ctx.store.get_code(&signature).await? else { return Ok(Ok(Redeemed::Invalid)) };
    if !crypto::secret_eq(&row.client_id, client_id) || row.expires_at <= ctx.clock.now() {
        return Ok(Ok(Redeemed::Invalid));
    }
    let grant: Grant =
        serde_json::from_str(&row.grant_body).map_err(|e| StoreError::corrupt("authorization_codes.grant_body", e))?;
    if row.redeemed_at.is_none() {
        if let Err(e) = check(&grant) {
            return Ok(Err(e));
        }
    }
    if ctx.store.redeem_code(&signature, ctx.clock.now()).await? {
        Ok(Ok(Redeemed::Fresh(grant)))
    } else {
        Ok(Ok(Redeemed::Replayed(grant)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Fixture;

    fn grant() -> Grant {
        Grant {
            client_id: "web".into(),
            subject: "user-1".into(),
            scope: vec!["openid".into(), "offline_access".into()],
            audience: vec![],
            redirect_uri: Some("https://app.example/cb".into()),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            code_challenge_method: Some("S256".into()),
            nonce: Some("n-0S6_WzA2Mj".into()),
            auth_time: 1,
            acr: "0".into(),
            amr: vec!["pwd".into()],
            sid: "sid-1".into(),
            consent_id: "consent-1".into(),
            access_token_claims: Map::new(),
            id_token_claims: Map::new(),
            requested_at: 1,
        }
    }

    #[tokio::test]
    async fn a_code_is_single_use_bound_to_its_client_and_expires() {
        let f = Fixture::new().await;
        let ctx = f.ctx();
        let code = issue(&ctx, &grant()).await.unwrap();
        assert!(code.starts_with(CODE_PREFIX));
        assert_eq!(redeem(&ctx, &code, "other").await.unwrap(), Redeemed::Invalid, "another client");
        assert_eq!(redeem(&ctx, &code, "web").await.unwrap(), Redeemed::Fresh(grant()), "the thief burnt nothing");
        assert_eq!(redeem(&ctx, &code, "web").await.unwrap(), Redeemed::Replayed(grant()));
        assert_eq!(redeem(&ctx, "pc_ac_unknown", "web").await.unwrap(), Redeemed::Invalid);

        let checked = issue(&ctx, &grant()).await.unwrap();
        let refused = redeem_if(&ctx, &checked, "web", |_| Err("wrong verifier")).await.unwrap();
        assert_eq!(refused, Err("wrong verifier"));
        assert_eq!(
            redeem(&ctx, &checked, "web").await.unwrap(),
            Redeemed::Fresh(grant()),
            "a failed check burns nothing"
        );

        let late = issue(&ctx, &grant()).await.unwrap();
        f.clock.advance(600);
        assert_eq!(redeem(&ctx, &late, "web").await.unwrap(), Redeemed::Invalid, "10 minutes by default");
    }
}
