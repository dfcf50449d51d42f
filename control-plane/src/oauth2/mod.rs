//! The public OAuth2 and OpenID Connect endpoints (Hydra paths): `/oauth2/auth` (with the
//! login and consent contract in [`flow`]), `/oauth2/token` (grants in [`token`] and
//! [`refresh`], minting in [`issue`]), `/oauth2/introspect`, `/oauth2/revoke`, `/userinfo`,
//! discovery and `/.well-known/jwks.json`, plus client authentication shared by them. Errors on
//! the public endpoints are RFC 6749 shaped ([`crate::error::OAuthError`]); the admin side of the
//! login/consent/logout contract and admin introspection answer [`crate::error::ApiError`].
//! Revoking tokens (revoke, refresh reuse, consent revocation) republishes the revoked digests
//! to the filters through `state.rules`; nothing here reads or changes access rules.

pub mod assertion;
pub mod authorize;
pub mod client_auth;
pub mod code;
pub mod discovery;
pub mod flow;
pub mod introspect;
pub mod issue;
pub mod jwks;
pub mod jwt_bearer;
pub mod logout;
pub mod refresh;
pub mod revoke;
pub mod token;
pub mod userinfo;

use crate::error::{FormParams, OAuthError};

/// Form parameters whose rejections are OAuth2 errors.
pub type OAuthParams = FormParams<OAuthError>;
