//! Client authentication for the token and introspection endpoints: `client_secret_basic`
//! (RFC 6749 §2.3.1, with the form-urlencoding of id and secret decoded), `client_secret_post`,
//! or `none` for public clients (a bare `client_id` parameter), exactly one of them, and it
//! must be the client's registered `token_endpoint_auth_method`. Unknown client and wrong secret fail identically so the
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
    /// The `token_endpoint_auth_method` the request used (always the registered one).
    pub method: &'static str,
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
    if creds.method != "none" {
        let Some(stored) = row.secret_hash.as_deref() else {
            return Err(OAuthError::invalid_client(AUTH_FAILED));
        };
        if !state.secrets.verify(&row.client_id, stored, &creds.secret).await {
            return Err(OAuthError::invalid_client(AUTH_FAILED));
        }
    }
    Ok(Authenticated { row, body, method: creds.method })
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
        // A public client names itself and proves nothing; authenticate() admits this only
        // for clients registered with `none`.
        (None, None) => match post_id {
            Some(id) if !id.is_empty() => {
                Ok(Credentials { method: "none", client_id: id.to_owned(), secret: String::new() })
            }
            _ => Err(OAuthError::invalid_client(AUTH_FAILED)),
        },
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

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};
    use serde_json::json;

    use super::*;
    use crate::testing::{Harness, basic};

    fn params(pairs: &[(&str, &str)]) -> OAuthParams {
        OAuthParams::new(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    async fn auth(h: &Harness, headers: &HeaderMap, pairs: &[(&str, &str)]) -> Result<Authenticated, OAuthError> {
        authenticate(&h.state, headers, &params(pairs)).await
    }

    #[tokio::test]
    async fn public_client_authenticates_with_client_id_alone() {
        let h = Harness::new().await;
        let created = h.client(json!({"client_id": "spa", "token_endpoint_auth_method": "none"})).await;
        assert!(created.get("client_secret").is_none(), "a public client gets no secret: {created}");
        assert!(h.state.store.get_client("spa").await.unwrap().unwrap().secret_hash.is_none());

        let ok = auth(&h, &HeaderMap::new(), &[("client_id", "spa")]).await.ok().expect("public client accepted");
        assert_eq!(ok.row.client_id, "spa");
        assert_eq!(ok.method, "none");

        // Presenting a secret is a different method, which the client is not registered for.
        let post = auth(&h, &HeaderMap::new(), &[("client_id", "spa"), ("client_secret", "anything")]).await;
        assert_eq!(post.err().unwrap().error, "invalid_client");
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&basic("spa", "anything")).unwrap());
        let basic_reply = auth(&h, &headers, &[]).await;
        assert_eq!(basic_reply.err().unwrap().error, "invalid_client");
    }

    #[tokio::test]
    async fn confidential_client_cannot_skip_its_secret_and_unknown_ids_look_alike() {
        let h = Harness::new().await;
        h.client(json!({"client_id": "svc", "grant_types": ["client_credentials"]})).await;
        let bare = auth(&h, &HeaderMap::new(), &[("client_id", "svc")]).await.err().unwrap();
        assert_eq!(bare.error, "invalid_client");
        assert!(bare.description.contains("'client_secret_basic'"), "{}", bare.description);
        let unknown = auth(&h, &HeaderMap::new(), &[("client_id", "nobody")]).await.err().unwrap();
        let empty = auth(&h, &HeaderMap::new(), &[("client_id", "")]).await.err().unwrap();
        assert_eq!(unknown.error, "invalid_client");
        assert_eq!(unknown.description, empty.description);
    }
}
