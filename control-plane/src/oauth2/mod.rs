//! The public OAuth2 and OpenID Connect endpoints (Hydra paths) and the admin side of the
//! login/consent/logout contract, as axum handlers over [`portcullis_oauth2`], which holds the
//! logic (grants, minting, client authentication, the contract, introspection, revocation,
//! discovery, userinfo claims). A handler extracts the request, builds the domain's inputs
//! ([`AppState::oauth2`]), calls in and answers; the domain's errors are mapped here once, to
//! RFC 6749 bodies ([`crate::error::OAuthError`]) or, on the admin side, to
//! [`crate::error::ApiError`]. `authorize` and `logout` also read the browser's cookies and
//! identity session, which the domain must not. Nothing here reads or changes access rules:
//! revocations are published through [`portcullis_oauth2::Revocations`], which `AppState`
//! implements with the rules' snapshot.

pub mod authorize;
pub mod client_auth;
pub mod discovery;
pub mod flow;
pub mod introspect;
pub mod jwks;
#[cfg(test)]
mod jwt_bearer;
pub mod logout;
#[cfg(test)]
pub(crate) mod refresh;
pub mod revoke;
pub mod token;
pub mod userinfo;

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use portcullis_oauth2::issue::{MintError, Minted};
use portcullis_oauth2::{Ctx, ErrorCode, OAuth2Error};
pub use portcullis_oauth2::{assertion, code, issue};
use serde_json::json;

use crate::app::AppState;
use crate::error::{FormParams, OAuthError};

/// Form parameters whose rejections are OAuth2 errors.
pub type OAuthParams = FormParams<OAuthError>;

impl AppState {
    /// The OAuth2 domain's inputs, borrowed from the server's state.
    pub fn oauth2(&self) -> Ctx<'_> {
        Ctx {
            store: &self.store,
            clock: self.clock.as_ref(),
            keys: &self.keys,
            urls: &self.config.urls,
            ttl: &self.config.ttl,
            strategies: &self.config.strategies,
            oauth2: &self.config.oauth2,
            secrets: &self.secrets,
            hashing: &self.hashing,
            client_jwks: &self.client_jwks,
            http: &self.http,
            revocations: self,
        }
    }
}

/// Revoked digests reach the filters through the rules' snapshot.
impl portcullis_oauth2::Revocations for AppState {
    fn publish<'a>(
        &'a self,
        store: &'a portcullis_store::Store,
        now: i64,
    ) -> portcullis_oauth2::context::Publishing<'a> {
        Box::pin(async move { self.rules.refresh_revocations(store, now).await.map(|_| ()) })
    }
}

/// The one mapping of the domain's errors to RFC 6749 bodies.
impl From<OAuth2Error> for OAuthError {
    fn from(e: OAuth2Error) -> Self {
        match e {
            OAuth2Error::Refused { code, description: d } => match code {
                ErrorCode::InvalidRequest => OAuthError::invalid_request(d),
                ErrorCode::InvalidClient => OAuthError::invalid_client(d),
                ErrorCode::InvalidGrant => OAuthError::invalid_grant(d),
                ErrorCode::InvalidScope => OAuthError::invalid_scope(d),
                ErrorCode::UnauthorizedClient => OAuthError::unauthorized_client(d),
                ErrorCode::UnsupportedGrantType => OAuthError::unsupported_grant_type(d),
                ErrorCode::TemporarilyUnavailable => OAuthError::temporarily_unavailable(d),
            },
            e => OAuthError::server_error(&e),
        }
    }
}

/// Every minting failure is a server fault (the grant judged the request).
impl From<MintError> for OAuthError {
    fn from(e: MintError) -> Self {
        OAuthError::server_error(&e)
    }
}

/// A token-endpoint answer (RFC 6749 §5.1), served with `Cache-Control: no-store`.
pub fn token_response(m: Minted) -> Response {
    let mut body = json!({
        "access_token": m.access_token,
        "token_type": "bearer",
        "expires_in": m.expires_in,
        "scope": m.scope,
    });
    if let Some(rt) = m.refresh_token {
        body["refresh_token"] = rt.into();
    }
    if let Some(id) = m.id_token {
        body["id_token"] = id.into();
    }
    let mut res = Json(body).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_fault_is_a_500_server_error_and_a_refusal_keeps_its_code() {
        let e = OAuthError::from(MintError::Sign);
        assert_eq!((e.status.as_u16(), e.error), (500, "server_error"), "a minting fault is the server's");
        let e = OAuthError::from(OAuth2Error::invalid_client("no such client"));
        assert_eq!((e.status.as_u16(), e.error, e.description.as_str()), (401, "invalid_client", "no such client"));
        let e = OAuthError::from(OAuth2Error::temporarily_unavailable("busy"));
        assert_eq!(e.status.as_u16(), 503);
    }
}
