//! OpenID Connect Discovery 1.0 (`/.well-known/openid-configuration`) and RFC 8414
//! (`/.well-known/oauth-authorization-server`): one document, derived from the
//! configured URLs (the handler serves it). It advertises only what this server implements — a client that trusts it
//! never meets an "unsupported" surprise — so a new feature adds its line here with its code.

use serde_json::{Value, json};

use crate::client::AUTH_METHODS;
use crate::config::Urls;

pub const GRANT_TYPES: [&str; 4] =
    ["authorization_code", "refresh_token", "client_credentials", crate::jwt_bearer::GRANT_TYPE];

/// The discovery document for the configured `urls`.
pub fn document(urls: &Urls) -> Value {
    let base = urls.self_.public_base();
    let url = |path: &str| format!("{base}{path}");
    json!({
        "issuer": urls.self_.issuer,
        "authorization_endpoint": url("/oauth2/auth"),
        "token_endpoint": url("/oauth2/token"),
        "userinfo_endpoint": url("/userinfo"),
        "jwks_uri": url("/.well-known/jwks.json"),
        "revocation_endpoint": url("/oauth2/revoke"),
        "introspection_endpoint": url("/oauth2/introspect"),
        "end_session_endpoint": url("/oauth2/sessions/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": crate::assertion::ALGORITHM_NAMES,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "offline_access", "offline", "email", "profile"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "rat", "auth_time", "nonce", "at_hash", "acr", "amr", "sid",
            "jti", "email", "email_verified", "name"
        ],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    })
}
