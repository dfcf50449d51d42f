//! The RFC 7523 §2.1 jwt-bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`):
//! an authenticated client trades a JWT assertion, signed by an issuer an operator trusts
//! (`/admin/trust/grants/jwt-bearer/issuers`), for an access token (opaque or JWT, per the client) whose
//! subject is the assertion's `sub`. The assertion must be signed by the trusted key, unexpired (at most
//! [`MAX_TTL`] ahead), addressed to this server, carry `iat` and a single-use `jti`; the scopes
//! must be allowed by the trust and by the client. It must not accept an assertion a trust
//! does not cover, nor record a `jti` before the signature verified (that would let anyone
//! burn other issuers' ids).

use portcullis_shared::jwt::signing_keys;
use portcullis_shared::scope::{self, ScopeStrategy};
use serde_json::{Value, json};

use crate::Ctx;
use crate::OAuth2Error;
use crate::client_auth::Authenticated;
use crate::crypto;
use crate::issue::{self, GrantType, Mint, Minted};
use crate::store::trusts::TrustRow;
use crate::{Params, assertion};

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The furthest ahead an assertion's `exp` may be (Hydra's `oauth2.grant.jwt.max_ttl`
/// default, 720h); `jti`s are kept that long.
pub const MAX_TTL: i64 = 720 * 3600;

/// Exchanges the `assertion` of an authenticated client already allowed this grant.
pub async fn exchange(ctx: &Ctx<'_>, client: &Authenticated, params: &Params<'_>) -> Result<Minted, OAuth2Error> {
    let body = &client.body;
    let Some(jws) = params.single("assertion")?.filter(|a| !a.is_empty()) else {
        return Err(OAuth2Error::invalid_request("The request is missing a required parameter: assertion."));
    };
    let now = ctx.clock.now();
    let (trusts, claims) = verify(ctx, jws, now).await?;
    let issuer = trusts.first().map(|t| t.issuer.clone()).unwrap_or_default();

    // Each requested scope must be allowed by a trust the assertion verified under (several
    // can cover one issuer, subject and key) and by the client.
    let trusted: Vec<String> =
        trusts.iter().flat_map(|t| serde_json::from_str::<Vec<String>>(&t.scope).unwrap_or_default()).collect();
    let allowed: Vec<&str> = scope::split(&body.scope).collect();
    let mut granted: Vec<String> = Vec::new();
    for s in scope::split(params.single("scope")?.unwrap_or("")) {
        if !ScopeStrategy::Wildcard.covers(trusted.iter().map(String::as_str), s) {
            return Err(OAuth2Error::invalid_scope(format!(
                "The trust relationship for issuer '{issuer}' does not allow scope '{s}'."
            )));
        }
        if !ScopeStrategy::Wildcard.covers(allowed.iter().copied(), s) {
            return Err(OAuth2Error::invalid_scope(format!(
                "The OAuth 2.0 Client is not allowed to request scope '{s}'."
            )));
        }
        if !granted.iter().any(|g| g == s) {
            granted.push(s.to_owned());
        }
    }
    let audience = crate::token::requested_audience(body, params)?;

    // Single use, recorded only now that the assertion is known to be genuine and usable.
    let key = crypto::sha256_hex(format!("jwt-bearer\0{issuer}\0{}", claims.jti).as_bytes());
    if !ctx.store.use_assertion_jti(&key, claims.exp, now).await? {
        return Err(OAuth2Error::invalid_grant("The assertion's jti has already been used."));
    }
    Ok(issue::Minter::of(ctx)
        .mint(&Mint {
            grant_type: GrantType::JwtBearer,
            client_id: &client.row.client_id,
            client: body,
            subject: &claims.subject,
            scope: &granted,
            audience: &audience,
            grant: None,
            family_id: "",
            parent_id: "",
        })
        .await?)
}

/// The trusts (at least one) whose key signed `jws`, and the assertion's checked claims.
async fn verify(ctx: &Ctx<'_>, jws: &str, now: i64) -> Result<(Vec<TrustRow>, assertion::Claims), OAuth2Error> {
    let fail = |why: String| OAuth2Error::invalid_grant(format!("assertion: {why}"));
    let token = assertion::parse(jws).map_err(fail)?;
    // Not verified yet: only to find the trusts whose keys may verify it.
    let claim = |name: &str| token.unverified_claims().get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    let issuer = claim("iss").ok_or_else(|| fail("claim iss is missing".into()))?;
    let subject = claim("sub").ok_or_else(|| fail("claim sub is missing".into()))?;
    let trusts = ctx.store.trusts_for(issuer, subject, now).await?;
    if trusts.is_empty() {
        return Err(fail(format!("no unexpired trust relationship for issuer {issuer:?} and subject {subject:?}")));
    }
    let mut verified_claims = None;
    let mut verified: Vec<TrustRow> = Vec::new();
    for trust in trusts {
        let jwk: Value = serde_json::from_str(&trust.jwk).unwrap_or(Value::Null);
        if let Some(claims) = token.verify(&signing_keys(&json!({"keys": [jwk]}))) {
            verified_claims.get_or_insert(claims);
            verified.push(trust);
        }
    }
    let Some(verified_claims) = verified_claims else {
        return Err(fail(format!("the signature does not verify with a key trusted for issuer {issuer:?}")));
    };
    let audiences = assertion::audiences(&ctx.urls.self_);
    let expected =
        assertion::Expected { issuer, subject: Some(subject), audiences: &audiences, max_lifetime: MAX_TTL, now };
    let claims = assertion::check_claims(verified_claims, &expected).map_err(fail)?;
    // Hydra requires `iat` unless `oauth2.grant.jwt.iat_optional`.
    if !claims.all.contains_key("iat") {
        return Err(fail("claim iat is missing".into()));
    }
    Ok((verified, claims))
}
