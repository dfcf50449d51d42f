//! `POST /oauth2/token`: grant dispatch and the `authorization_code` (RFC 6749 §4.1.3, PKCE
//! RFC 7636) and `client_credentials` grants; `refresh_token` is in [`crate::refresh`], minting
//! in [`crate::issue`]. The client authenticates first, then must be allowed the grant it uses;
//! every refusal is an RFC 6749 §5.2 error. It answers a [`Minted`] or an [`OAuth2Error`]; the
//! HTTP edge writes either.

use portcullis_shared::scope::{self, ScopeStrategy};

use crate::client::ClientBody;
use crate::client_auth::{Authenticated, authenticate};
use crate::code::{self, Grant, Redeemed};
use crate::crypto;
use crate::issue::{self, GrantType, Mint, Minted};
use crate::store::tokens::Selector;
use crate::{Ctx, OAuth2Error, Params};

const SUPPORTED: &str =
    "authorization_code, refresh_token, client_credentials, urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A token request: authenticates the client (`authorization` is the `Authorization` header's
/// value), checks it may use the grant, and runs the grant.
pub async fn exchange(ctx: &Ctx<'_>, authorization: Option<&str>, params: &Params<'_>) -> Result<Minted, OAuth2Error> {
    let grant_type = match params.single("grant_type")? {
        None | Some("") => {
            return Err(OAuth2Error::invalid_request("The request is missing a required parameter: grant_type."));
        }
        Some(g @ ("client_credentials" | "authorization_code" | "refresh_token" | crate::jwt_bearer::GRANT_TYPE)) => g,
        Some(other) => {
            return Err(OAuth2Error::unsupported_grant_type(format!(
                "The authorization grant type '{other}' is not supported by this server; supported: {SUPPORTED}."
            )));
        }
    };
    let client = authenticate(ctx, authorization, params).await?;
    if !client.body.grant_types.iter().any(|g| g == grant_type) {
        return Err(OAuth2Error::unauthorized_client(format!(
            "The OAuth 2.0 Client is not allowed to use authorization grant '{grant_type}'."
        )));
    }
    let minted = match grant_type {
        "authorization_code" => authorization_code(ctx, &client, params).await?,
        "refresh_token" => crate::refresh::exchange(ctx, &client, params).await?,
        crate::jwt_bearer::GRANT_TYPE => crate::jwt_bearer::exchange(ctx, &client, params).await?,
        _ => client_credentials(ctx, &client, params).await?,
    };
    Ok(minted)
}

async fn client_credentials(
    ctx: &Ctx<'_>,
    client: &Authenticated,
    params: &Params<'_>,
) -> Result<issue::Minted, OAuth2Error> {
    let body = &client.body;
    let allowed: Vec<&str> = scope::split(&body.scope).collect();
    let mut granted: Vec<String> = Vec::new();
    for s in scope::split(params.single("scope")?.unwrap_or("")) {
        if !ScopeStrategy::Wildcard.covers(allowed.iter().copied(), s) {
            return Err(OAuth2Error::invalid_scope(format!(
                "The OAuth 2.0 Client is not allowed to request scope '{s}'."
            )));
        }
        if !granted.iter().any(|g| g == s) {
            granted.push(s.to_owned());
        }
    }

    let audience = requested_audience(body, params)?;
    Ok(issue::Minter::of(ctx)
        .mint(&Mint {
            grant_type: GrantType::ClientCredentials,
            client_id: &client.row.client_id,
            client: body,
            // client_credentials: the client acts on its own behalf.
            subject: &client.row.client_id,
            scope: &granted,
            audience: &audience,
            grant: None,
            family_id: "",
            parent_id: "",
        })
        .await?)
}

/// The `audience` parameters (repeated or space-separated), each on the client's allow-list.
pub(crate) fn requested_audience(body: &ClientBody, params: &Params<'_>) -> Result<Vec<String>, OAuth2Error> {
    let mut audience: Vec<String> = Vec::new();
    for a in params.all("audience").flat_map(scope::split) {
        if !body.audience.iter().any(|allowed| allowed == a) {
            return Err(OAuth2Error::invalid_request(format!(
                "Requested audience '{a}' has not been whitelisted by the OAuth 2.0 Client."
            )));
        }
        if !audience.iter().any(|x| x == a) {
            audience.push(a.to_owned());
        }
    }
    Ok(audience)
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Checks the token request against what the authorization request recorded.
fn check_code_request(client: &Authenticated, grant: &Grant, params: &Params<'_>) -> Result<(), OAuth2Error> {
    let redirect_uri = params.single("redirect_uri")?;
    match (&grant.redirect_uri, redirect_uri) {
        (Some(expected), Some(sent)) if expected == sent => {}
        (Some(_), None) => {
            return Err(OAuth2Error::invalid_grant(
                "The 'redirect_uri' parameter is required because the authorization request included it.",
            ));
        }
        // Omitted at /oauth2/auth (the client has one URI): a repeat must be that URI.
        (None, None) => {}
        (None, Some(sent)) if client.body.redirect_uris.len() == 1 && client.body.redirect_uris[0] == sent => {}
        _ => {
            return Err(OAuth2Error::invalid_grant(
                "The 'redirect_uri' parameter does not match the one used in the authorization request.",
            ));
        }
    }
    let verifier = params.single("code_verifier")?;
    match (&grant.code_challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(OAuth2Error::invalid_grant(
            "The 'code_verifier' parameter was sent, but the authorization request had no code_challenge.",
        )),
        (Some(_), None) => Err(OAuth2Error::invalid_grant(
            "The PKCE code_verifier is required because the authorization request included a code_challenge.",
        )),
        (Some(_), Some(v)) if !valid_verifier(v) => Err(OAuth2Error::invalid_grant(
            "The PKCE code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~.",
        )),
        (Some(challenge), Some(v)) => {
            if crypto::secret_eq(&crypto::b64url(&crypto::sha256(v.as_bytes())), challenge) {
                Ok(())
            } else {
                Err(OAuth2Error::invalid_grant("The PKCE code_verifier does not match the code_challenge."))
            }
        }
    }
}

async fn authorization_code(
    ctx: &Ctx<'_>,
    client: &Authenticated,
    params: &Params<'_>,
) -> Result<issue::Minted, OAuth2Error> {
    let Some(code) = params.single("code")?.filter(|c| !c.is_empty()) else {
        return Err(OAuth2Error::invalid_request("The request is missing a required parameter: code."));
    };
    // Every token descended from this code shares its digest as the family id.
    let family_id = crypto::token_signature(code);
    let grant = match code::redeem_if(ctx, code, &client.row.client_id, |g| check_code_request(client, g, params))
        .await??
    {
        Redeemed::Fresh(grant) => grant,
        Redeemed::Invalid => {
            return Err(OAuth2Error::invalid_grant(
                "The provided authorization grant is invalid, expired, revoked, or was issued to another client.",
            ));
        }
        Redeemed::Replayed(_) => {
            // RFC 6749 §4.1.2: a code used twice may be stolen; revoke what it produced.
            let n = ctx.store.revoke_tokens(Selector::Family(&family_id)).await?;
            ctx.revocations.publish(ctx.store, ctx.clock.now()).await?;
            tracing::warn!(client_id = %client.row.client_id, revoked = n, "authorization code replayed; its tokens were revoked");
            return Err(OAuth2Error::invalid_grant(
                "The authorization code has already been used; the tokens issued for it were revoked.",
            ));
        }
    };
    Ok(issue::Minter::of(ctx)
        .mint(&Mint {
            grant_type: GrantType::AuthorizationCode,
            client_id: &client.row.client_id,
            client: &client.body,
            subject: &grant.subject,
            scope: &grant.scope,
            audience: &grant.audience,
            grant: Some(&grant),
            family_id: &family_id,
            parent_id: "",
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use base64::Engine as _;
    use serde_json::{Value, json};

    use crate::client::ClientRequest;
    use crate::testing::Fixture;
    use crate::{ErrorCode, Params, clients};

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    }

    async fn client(f: &Fixture, body: Value) -> String {
        let Value::Object(map) = body else { panic!("not an object") };
        let created = clients::create(&f.ctx(), &ClientRequest::parse(map).unwrap()).await.unwrap();
        created["client_secret"].as_str().unwrap_or_default().to_owned()
    }

    /// The grants run here without a router: client authentication, grant checks, minting and
    /// revocation publishing, with the RFC 6749 code as a plain value.
    #[tokio::test]
    async fn client_credentials_is_minted_and_refusals_carry_their_code() {
        let f = Fixture::new().await;
        let ctx = f.ctx();
        let secret =
            client(&f, json!({"client_id": "svc", "grant_types": ["client_credentials"], "scope": "read"})).await;
        let ok = pairs(&[("grant_type", "client_credentials"), ("scope", "read")]);
        let minted = super::exchange(&ctx, Some(&basic("svc", &secret)), &Params(&ok)).await.unwrap();
        assert_eq!(minted.scope, "read");

        let code = |r: Result<crate::issue::Minted, crate::OAuth2Error>| r.unwrap_err().code();
        let wrong = super::exchange(&ctx, Some(&basic("svc", "guess")), &Params(&ok)).await;
        let unknown = super::exchange(&ctx, Some(&basic("nobody", "guess")), &Params(&ok)).await;
        let (wrong, unknown) = (wrong.unwrap_err(), unknown.unwrap_err());
        assert_eq!(wrong.code(), Some(ErrorCode::InvalidClient));
        assert_eq!(wrong.to_string(), unknown.to_string(), "an unknown client and a wrong secret look alike");
        let wide = pairs(&[("grant_type", "client_credentials"), ("scope", "write")]);
        assert_eq!(
            code(super::exchange(&ctx, Some(&basic("svc", &secret)), &Params(&wide)).await),
            Some(ErrorCode::InvalidScope)
        );
        let other = pairs(&[("grant_type", "authorization_code"), ("code", "x")]);
        assert_eq!(
            code(super::exchange(&ctx, Some(&basic("svc", &secret)), &Params(&other)).await),
            Some(ErrorCode::UnauthorizedClient)
        );
        let twice = pairs(&[("grant_type", "client_credentials"), ("grant_type", "client_credentials")]);
        assert_eq!(
            code(super::exchange(&ctx, Some(&basic("svc", &secret)), &Params(&twice)).await),
            Some(ErrorCode::InvalidRequest)
        );

        // Revoking publishes at once; the token is then inactive.
        let revoke = pairs(&[("token", &minted.access_token)]);
        crate::revoke::revoke(&ctx, Some(&basic("svc", &secret)), &Params(&revoke)).await.unwrap();
        assert_eq!(f.published.0.load(Ordering::SeqCst), 1);
        assert!(!crate::introspect::introspect(&ctx, &minted.access_token, None).await.unwrap().active);
    }
}
