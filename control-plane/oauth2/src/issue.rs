//! Token minting, shared by every grant of `/oauth2/token`: the access token (opaque `pc_at_…`
//! or an ES256 JWT, per the client's `access_token_strategy` or `strategies.access_token`), the
//! refresh token (`pc_rt_…`, only for a user grant that holds `offline_access`/`offline` and a
//! client allowed the `refresh_token` grant) and the OpenID Connect ID token (when `openid` was
//! granted). Every token is recorded by its SHA-256 — JWTs too, so introspection and revocation
//! treat both formats alike and a revoked JWT's digest reaches the filters. One answer is
//! stored in one transaction. Lifespans come from the client's `*_lifespan` fields, else `ttl.*`.
//! This module judges nothing: the grant handlers have checked the request before calling it.
//! The minting itself ([`Minter::mint`]) takes what it reads explicitly (store, clock, the
//! OAuth2 key set, issuer, `ttl`, the default strategy) and fails with a [`MintError`]; the
//! HTTP edge turns a [`Minted`] into the token endpoint's JSON and a `MintError` into an RFC body.

use portcullis_keys::Keys;
use portcullis_model::token::AccessTokenStrategy;
use serde_json::{Map, Value, json};

use crate::Ctx;
use crate::client::{ClientBody, lifespan_seconds};
use crate::clock::Clock;
use crate::code::Grant;
use crate::config::Ttl;
use crate::crypto;
use crate::store::tokens::TokenUse;
use crate::store::{Store, StoreError, TokenRow};

pub const REFRESH_TOKEN_PREFIX: &str = "pc_rt_";

/// ID-token claims the consent's `session.id_token` cannot override.
const RESERVED_ID_TOKEN_CLAIMS: [&str; 14] =
    ["iss", "sub", "aud", "exp", "iat", "nbf", "rat", "auth_time", "nonce", "at_hash", "acr", "amr", "sid", "jti"];

/// The grant an answer is minted for; it picks the client's lifespan fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    JwtBearer,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Access,
    Refresh,
    Id,
}

impl GrantType {
    /// The Hydra client field that overrides this grant's lifespan of `kind`, if it has one.
    fn lifespan_field(self, kind: Kind) -> Option<&'static str> {
        use GrantType::*;
        use Kind::*;
        Some(match (self, kind) {
            (AuthorizationCode, Access) => "authorization_code_grant_access_token_lifespan",
            (AuthorizationCode, Refresh) => "authorization_code_grant_refresh_token_lifespan",
            (AuthorizationCode, Id) => "authorization_code_grant_id_token_lifespan",
            (RefreshToken, Access) => "refresh_token_grant_access_token_lifespan",
            (RefreshToken, Refresh) => "refresh_token_grant_refresh_token_lifespan",
            (RefreshToken, Id) => "refresh_token_grant_id_token_lifespan",
            (ClientCredentials, Access) => "client_credentials_grant_access_token_lifespan",
            (JwtBearer, Access) => "jwt_bearer_grant_access_token_lifespan",
            (ClientCredentials | JwtBearer, Refresh | Id) => return None,
        })
    }
}

/// What to mint. `grant` is the user's grant (authorization_code, refresh_token); without it
/// there is neither a refresh token nor an ID token.
pub struct Mint<'a> {
    pub grant_type: GrantType,
    pub client_id: &'a str,
    pub client: &'a ClientBody,
    pub subject: &'a str,
    /// The access token's scopes (for a refresh, possibly narrower than the grant's).
    pub scope: &'a [String],
    pub audience: &'a [String],
    pub grant: Option<&'a Grant>,
    /// See [`TokenRow::family_id`] and [`TokenRow::parent_id`].
    pub family_id: &'a str,
    pub parent_id: &'a str,
}

/// A token-endpoint answer (RFC 6749 §5.1); the edge serves it with `Cache-Control: no-store`.
#[derive(Debug)]
pub struct Minted {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
}

/// Why an answer could not be minted. Every case is a server fault (the grant handlers judged
/// the request), so each maps to `server_error` — the store's to its own mapping.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored client's lifespan override does not parse (clients are validated when written).
    #[error("client field {field}: {reason}")]
    ClientLifespan { field: &'static str, reason: String },
    #[error("could not encode the grant: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("could not sign a token")]
    Sign,
}

/// What minting reads from the server, passed in (or taken from a [`Ctx`]).
pub struct Minter<'a> {
    pub store: &'a Store,
    pub clock: &'a dyn Clock,
    /// The OAuth2 set (`portcullis.id-token`), whose keys never leave the control plane; never
    /// the gateway's, which filters and `rules:write` keys can sign with.
    pub keys: &'a Keys,
    pub issuer: &'a str,
    pub ttl: &'a Ttl,
    /// `strategies.access_token`, for clients without `access_token_strategy`.
    pub default_strategy: AccessTokenStrategy,
}

impl<'a> Minter<'a> {
    pub fn of(ctx: &Ctx<'a>) -> Self {
        Self {
            store: ctx.store,
            clock: ctx.clock,
            keys: ctx.keys,
            issuer: &ctx.urls.self_.issuer,
            ttl: ctx.ttl,
            default_strategy: ctx.strategies.access_token,
        }
    }
}

/// The client's lifespan override `field`, if set. Stored clients were validated, so a bad
/// value here is a server fault, not the caller's.
fn client_lifespan(client: &ClientBody, field: &'static str) -> Result<Option<i64>, MintError> {
    let text = if field == "client_credentials_grant_access_token_lifespan" {
        client.client_credentials_grant_access_token_lifespan.as_deref()
    } else {
        client.extra.get(field).and_then(Value::as_str)
    };
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => {
            lifespan_seconds(t).map(Some).map_err(|e| MintError::ClientLifespan { field, reason: e.to_string() })
        }
    }
}

fn lifespan(ttl: &Ttl, m: &Mint<'_>, kind: Kind) -> Result<i64, MintError> {
    if let Some(secs) = m.grant_type.lifespan_field(kind).map(|f| client_lifespan(m.client, f)).transpose()?.flatten() {
        return Ok(secs);
    }
    let default = match kind {
        Kind::Access => ttl.access_token,
        Kind::Refresh => ttl.refresh_token,
        Kind::Id => ttl.id_token,
    };
    Ok(i64::try_from(default.as_secs()).unwrap_or(i64::MAX))
}

/// The access-token format for `client`.
fn strategy(default: AccessTokenStrategy, client: &ClientBody) -> AccessTokenStrategy {
    client
        .extra
        .get("access_token_strategy")
        .and_then(Value::as_str)
        .and_then(AccessTokenStrategy::parse)
        .unwrap_or(default)
}

/// Whether the granted scopes ask for a refresh token (Hydra accepts both spellings).
pub fn wants_refresh(scope: &[String]) -> bool {
    scope.iter().any(|s| s == "offline_access" || s == "offline")
}

/// OIDC Core §3.1.3.6: the left half of the SHA-256 of the access token, base64url.
pub fn at_hash(access_token: &str) -> String {
    crypto::b64url(&crypto::sha256(access_token.as_bytes())[..16])
}

/// Signs `claims`, issued at `now` and valid for `lifetime` seconds (and not before `now` when
/// `with_nbf`), with `keys` (the OAuth2 set: see [`Minter::keys`]).
fn sign(keys: &Keys, claims: Map<String, Value>, now: i64, lifetime: i64, with_nbf: bool) -> Result<String, MintError> {
    crate::jwt::issue(claims, now, lifetime, with_nbf)
        .and_then(|claims| keys.signer().sign_jwt("JWT", &claims))
        .ok_or(MintError::Sign)
}

impl Minter<'_> {
    /// Mints and stores one answer.
    pub async fn mint(&self, m: &Mint<'_>) -> Result<Minted, MintError> {
        let now = self.clock.now();
        let issuer = self.issuer;
        let request_id = crypto::uuid_v4();
        let scope = m.scope.join(" ");
        let ext = m.grant.map(|g| g.access_token_claims.clone()).unwrap_or_default();
        let grant_body = match m.grant {
            Some(g) => serde_json::to_string(g)?,
            None => String::new(),
        };
        let row = |token: &str, token_use: TokenUse, scope: String, expires_at: i64| TokenRow {
            signature: crypto::token_signature(token),
            client_id: m.client_id.to_owned(),
            subject: m.subject.to_owned(),
            scope,
            audience: m.audience.to_vec(),
            issued_at: now,
            expires_at,
            token_use,
            request_id: request_id.clone(),
            family_id: m.family_id.to_owned(),
            parent_id: m.parent_id.to_owned(),
            consent_id: m.grant.map(|g| g.consent_id.clone()).unwrap_or_default(),
            ext: Value::Object(ext.clone()).to_string(),
            grant_body: grant_body.clone(),
            spent_at: None,
        };

        let at_lifespan = lifespan(self.ttl, m, Kind::Access)?;
        let access_token = match strategy(self.default_strategy, m.client) {
            AccessTokenStrategy::Opaque => crypto::generate_access_token(),
            AccessTokenStrategy::Jwt => {
                let claims = json!({
                    "iss": issuer,
                    "sub": m.subject,
                    "aud": m.audience,
                    "jti": crypto::uuid_v4(),
                    "client_id": m.client_id,
                    "scp": m.scope,
                });
                let mut claims = claims.as_object().cloned().unwrap_or_default();
                if !ext.is_empty() {
                    claims.insert("ext".into(), Value::Object(ext.clone()));
                }
                sign(self.keys, claims, now, at_lifespan, true)?
            }
        };
        let mut rows = vec![row(&access_token, TokenUse::AccessToken, scope.clone(), now.saturating_add(at_lifespan))];

        let mut refresh_token = None;
        let mut id_token = None;
        if let Some(grant) = m.grant {
            if wants_refresh(&grant.scope) && m.client.grant_types.iter().any(|g| g == "refresh_token") {
                let token = format!("{REFRESH_TOKEN_PREFIX}{}", crypto::b64url(&crypto::random_bytes::<32>()));
                // A refresh token carries the whole grant's scope: narrowing applies per access token.
                let expires_at = now.saturating_add(lifespan(self.ttl, m, Kind::Refresh)?);
                rows.push(row(&token, TokenUse::RefreshToken, grant.scope.join(" "), expires_at));
                refresh_token = Some(token);
            }
            if m.scope.iter().any(|s| s == "openid") {
                let lifetime = lifespan(self.ttl, m, Kind::Id)?;
                id_token =
                    Some(sign(self.keys, id_token_claims(issuer, m, grant, &access_token), now, lifetime, false)?);
            }
        }
        self.store.insert_tokens(&rows).await?;
        Ok(Minted { access_token, expires_in: at_lifespan, scope, refresh_token, id_token })
    }
}

/// The ID token's claims but its times (`iat`, `exp`), which [`sign`] adds.
fn id_token_claims(issuer: &str, m: &Mint<'_>, grant: &Grant, access_token: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    for (k, v) in &grant.id_token_claims {
        if !RESERVED_ID_TOKEN_CLAIMS.contains(&k.as_str()) {
            claims.insert(k.clone(), v.clone());
        }
    }
    let mut set = |k: &str, v: Value| {
        claims.insert(k.into(), v);
    };
    set("iss", issuer.into());
    set("sub", m.subject.into());
    set("aud", json!([m.client_id]));
    set("rat", grant.requested_at.into());
    set("auth_time", grant.auth_time.into());
    set("at_hash", at_hash(access_token).into());
    set("jti", crypto::uuid_v4().into());
    // OIDC Core §12.2: an ID token from a refresh carries no nonce; the original one did.
    if let (Some(nonce), false) = (&grant.nonce, m.grant_type == GrantType::RefreshToken) {
        set("nonce", nonce.clone().into());
    }
    if !grant.acr.is_empty() {
        set("acr", grant.acr.clone().into());
    }
    if !grant.amr.is_empty() {
        set("amr", json!(grant.amr));
    }
    if !grant.sid.is_empty() {
        set("sid", grant.sid.clone().into());
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use portcullis_keys::OAUTH2_SET;
    use portcullis_keys::config::Secrets;

    fn mint(client: &ClientBody) -> Mint<'_> {
        Mint {
            grant_type: GrantType::ClientCredentials,
            client_id: "svc",
            client,
            subject: "svc",
            scope: &[],
            audience: &[],
            grant: None,
            family_id: "",
            parent_id: "",
        }
    }

    /// Minting is tested here with its explicit inputs only: no server state, no router.
    #[tokio::test]
    async fn minting_takes_explicit_inputs_and_a_broken_client_lifespan_is_a_typed_server_fault() {
        let store = crate::store::testing::sqlite().await;
        let clock = FixedClock::new(1_000);
        let keys = Keys::load(OAUTH2_SET, &Secrets::default(), &store, 1_000).await.unwrap();
        let ttl = Ttl::default();
        let minter = Minter {
            store: &store,
            clock: &clock,
            keys: &keys,
            issuer: "https://issuer.example",
            ttl: &ttl,
            default_strategy: AccessTokenStrategy::Opaque,
        };
        let mut client: ClientBody = serde_json::from_value(json!({"grant_types": ["client_credentials"]})).unwrap();
        let minted = minter.mint(&mint(&client)).await.unwrap();
        let row = store.get_token(&crypto::token_signature(&minted.access_token)).await.unwrap().unwrap();
        assert_eq!((row.token_use, row.expires_at), (TokenUse::AccessToken, 1_000 + minted.expires_in));
        assert!(minted.refresh_token.is_none() && minted.id_token.is_none(), "no user grant");

        client.client_credentials_grant_access_token_lifespan = Some("forever".into());
        let e = minter.mint(&mint(&client)).await.unwrap_err();
        assert!(
            matches!(e, MintError::ClientLifespan { field: "client_credentials_grant_access_token_lifespan", .. }),
            "{e:?}"
        );
    }
}
