//! The public OAuth2 endpoints (Hydra paths): `/oauth2/auth` (with the login and consent
//! contract in [`flow`]), `/oauth2/token`, `/oauth2/introspect`,
//! `/oauth2/revoke` and `/.well-known/jwks.json`, plus
//! client authentication shared by both. Errors are RFC 6749 shaped ([`crate::error::OAuthError`]).
//! Nothing here renders admin-API errors or touches rules.

pub mod assertion;
pub mod authorize;
pub mod client_auth;
pub mod code;
pub mod flow;
pub mod introspect;
pub mod jwks;
pub mod jwt_bearer;
pub mod logout;
pub mod revoke;
pub mod token;

use crate::error::{FormParams, OAuthError};

/// Form parameters whose rejections are OAuth2 errors.
pub type OAuthParams = FormParams<OAuthError>;
