//! Client authentication for the token and introspection endpoints: `client_secret_basic`
//! (RFC 6749 §2.3.1, with the form-urlencoding of id and secret decoded) or
//! `client_secret_post`, exactly one of them, and it must be the client's registered
//! `token_endpoint_auth_method`. Unknown client and wrong secret fail identically so the
//! answer does not reveal which client ids exist.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use super::OAuthParams;
use crate::app::AppState;
use crate::client::ClientBody;
use crate::error::{OAuthError, form_decode};
use crate::store::ClientRow;

const AUTH_FAILED: &str = "Client authentication failed (e.g., unknown client, no client authentication included, or unsupported authentication method).";

/// An authenticated client.
pub struct Authenticated {
    pub row: ClientRow,
    pub body: ClientBody,
}

struct Credentials {
    method: &'static str,
    client_id: String,
    secret: String,
}

pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &OAuthParams,
) -> Result<Authenticated, OAuthError> {
    let creds = credentials(headers, params)?;
    let Some(row) = state.store.get_client(&creds.client_id).await? else {
        return Err(OAuthError::invalid_client(AUTH_FAILED));
    };
    let body: ClientBody = serde_json::from_str(&row.body)
        .map_err(|e| OAuthError::server_error(&format!("client {:?} body: {e}", row.client_id)))?;
    let registered = body.token_endpoint_auth_method.as_str();
    if registered != creds.method {
        return Err(OAuthError::invalid_client(format!(
            "Client authentication failed (e.g., unknown client, no client authentication included, or unsupported authentication method). The OAuth 2.0 Client supports client authentication method '{registered}', but method '{}' was requested. You must configure the OAuth 2.0 client's 'token_endpoint_auth_method' value to accept '{}'.",
            creds.method, creds.method
        )));
    }
    let Some(stored) = row.secret_hash.as_deref() else {
        return Err(OAuthError::invalid_client(AUTH_FAILED));
    };
    if !state.secrets.verify(&row.client_id, stored, &creds.secret).await {
        return Err(OAuthError::invalid_client(AUTH_FAILED));
    }
    Ok(Authenticated { row, body })
}

fn credentials(headers: &HeaderMap, params: &OAuthParams) -> Result<Credentials, OAuthError> {
    let basic = basic_credentials(headers)?;
    let post_id = params.single("client_id")?;
    let post_secret = params.single("client_secret")?;
    match (basic, post_secret) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "The request uses more than one client authentication method (Authorization header and client_secret parameter); use exactly one.",
        )),
        (Some((client_id, secret)), None) => {
            if post_id.is_some_and(|id| id != client_id) {
                return Err(OAuthError::invalid_request(
                    "The client_id parameter does not match the client authenticated by the Authorization header.",
                ));
            }
            Ok(Credentials { method: "client_secret_basic", client_id, secret })
        }
        (None, Some(secret)) => match post_id {
            Some(id) => {
                Ok(Credentials { method: "client_secret_post", client_id: id.to_owned(), secret: secret.to_owned() })
            }
            None => Err(OAuthError::invalid_request(
                "The request is missing the client_id parameter that client_secret_post requires.",
            )),
        },
        (None, None) => Err(OAuthError::invalid_client(AUTH_FAILED)),
    }
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))`; other schemes are not
/// client credentials and are ignored.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("");
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let malformed = || {
        OAuthError::invalid_client(
            "Client authentication failed: the Authorization header is not valid HTTP Basic credentials.",
        )
    };
    let encoded = encoded.trim();
    let decoded = STANDARD.decode(encoded).or_else(|_| STANDARD_NO_PAD.decode(encoded)).map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let id = form_decode(id.as_bytes());
    if id.is_empty() {
        return Err(malformed());
    }
    Ok(Some((id, form_decode(secret.as_bytes()))))
}
