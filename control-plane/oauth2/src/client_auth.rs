//! Client authentication for the token and introspection endpoints: `client_secret_basic`
//! (RFC 6749 §2.3.1, with the form-urlencoding of id and secret decoded), `client_secret_post`,
//! `none` for public clients (a bare `client_id` parameter), or `private_key_jwt` (RFC 7523
//! §2.2: a JWS signed with a key from the client's `jwks` or `jwks_uri`, single use), exactly
//! one of them, and it must be the client's registered `token_endpoint_auth_method`. Unknown
//! client and wrong secret fail identically so the answer does not reveal which client ids
//! exist. It must not issue tokens or decide which grants a client may use. The HTTP edge
//! hands in the `Authorization` header's value; this module does not read requests.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use portcullis_shared::jwt::signing_keys;
use serde_json::Value;

use crate::Ctx;
use crate::OAuth2Error;
use crate::client::ClientBody;
use crate::store::ClientRow;
use crate::{Params, assertion};
use portcullis_model::form::form_decode;

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
    ctx: &Ctx<'_>,
    authorization: Option<&str>,
    params: &Params<'_>,
) -> Result<Authenticated, OAuth2Error> {
    let creds = credentials(authorization, params)?;
    let Some(row) = ctx.store.get_client(&creds.client_id).await? else {
        return Err(refuse(&creds.client_id, creds.method, "unknown client"));
    };
    let body: ClientBody = serde_json::from_str(&row.body)
        .map_err(|e| OAuth2Error::server_error(&format!("client {:?} body: {e}", row.client_id)))?;
    let registered = body.token_endpoint_auth_method.as_str();
    if registered != creds.method {
        tracing::info!(client_id = ?row.client_id, method = creds.method, registered, reason = "method mismatch", "client authentication failed");
        return Err(OAuth2Error::invalid_client(format!(
            "Client authentication failed (e.g., unknown client, no client authentication included, or unsupported authentication method). The OAuth 2.0 Client supports client authentication method '{registered}', but method '{}' was requested. You must configure the OAuth 2.0 client's 'token_endpoint_auth_method' value to accept '{}'.",
            creds.method, creds.method
        )));
    }
    if creds.method == "private_key_jwt" {
        if let Err(e) = verify_client_assertion(ctx, &row.client_id, &body, &creds.secret).await {
            tracing::info!(client_id = ?row.client_id, method = creds.method, reason = %e, "client authentication failed");
            return Err(e);
        }
    } else if creds.method != "none" {
        let Some(stored) = row.secret_hash.as_deref() else {
            return Err(refuse(&row.client_id, creds.method, "the client has no secret"));
        };
        if !ctx.secrets.verify(ctx.hashing, &row.client_id, stored, &creds.secret).await.map_err(busy)? {
            if !rotated_secret_matches(ctx, &row.client_id, &creds.secret).await? {
                return Err(refuse(&row.client_id, creds.method, "wrong secret"));
            }
            // Tells the operator the old secret is still in use, so dropping it is not safe yet.
            tracing::info!(client_id = ?row.client_id, "client authenticated with a rotated secret");
        }
    }
    Ok(Authenticated { row, body, method: creds.method })
}

/// The uniform `invalid_client` answer; the reason goes only to the log, for the operator
/// (the response must not tell an unknown client from a wrong secret). Never the secret.
fn refuse(client_id: &str, method: &str, reason: &str) -> OAuth2Error {
    tracing::info!(client_id = ?client_id, method, reason, "client authentication failed");
    OAuth2Error::invalid_client(AUTH_FAILED)
}

/// Too many secrets are being hashed right now (operator-chosen secrets are argon2id): 503
/// with `Retry-After` rather than an unbounded queue.
fn busy(_: crate::crypto::Busy) -> OAuth2Error {
    tracing::warn!("client authentication refused: every password hashing slot is busy");
    OAuth2Error::temporarily_unavailable("The server is busy verifying client secrets; retry in a moment.")
}

/// Whether `secret` is one of the client's rotated secrets, still valid until an operator
/// drops them (`DELETE /admin/clients/{id}/secrets/rotate`) or sets a new secret.
async fn rotated_secret_matches(ctx: &Ctx<'_>, client_id: &str, secret: &str) -> Result<bool, OAuth2Error> {
    // A separate cache slot, so verifying an old secret does not evict the current one.
    let slot = format!("{client_id}\0rotated");
    for stored in ctx.store.rotated_client_secrets(client_id).await? {
        if ctx.secrets.verify(ctx.hashing, &slot, &stored, secret).await.map_err(busy)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks a `private_key_jwt` assertion for `client_id` and records its `jti`.
async fn verify_client_assertion(
    ctx: &Ctx<'_>,
    client_id: &str,
    body: &ClientBody,
    assertion: &str,
) -> Result<(), OAuth2Error> {
    let fail = |why: String| OAuth2Error::invalid_client(format!("client_assertion: {why}"));
    let token = assertion::parse(assertion).map_err(fail)?;
    let alg = token.alg().name();
    let registered_alg = body.extra.get("token_endpoint_auth_signing_alg").and_then(Value::as_str).unwrap_or("");
    if !registered_alg.is_empty() && registered_alg != alg {
        return Err(fail(format!(
            "signed with {alg}, but the client's token_endpoint_auth_signing_alg is {registered_alg}"
        )));
    }
    let now = ctx.clock.now();
    let keys = if let Some(jwks) = body.extra.get("jwks").filter(|v| v.is_object()) {
        signing_keys(jwks)
    } else if let Some(uri) = body.extra.get("jwks_uri").and_then(Value::as_str).filter(|u| !u.is_empty()) {
        ctx.client_jwks.keys(ctx.http, uri, &token, now).await.map_err(fail)?
    } else {
        return Err(fail("the client has neither jwks nor jwks_uri".into()));
    };
    if !assertion::has_candidate(&token, &keys) {
        return Err(fail(match token.kid() {
            Some(kid) => format!("the client has no {alg} key with kid {kid:?}"),
            None => format!("the client has no {alg} key"),
        }));
    }
    let verified =
        token.verify(&keys).ok_or_else(|| fail("the signature does not verify with the client's keys".into()))?;
    let audiences = assertion::audiences(&ctx.urls.self_);
    let expected = assertion::Expected {
        issuer: client_id,
        subject: Some(client_id),
        audiences: &audiences,
        max_lifetime: assertion::MAX_CLIENT_ASSERTION_LIFETIME,
        now,
    };
    let claims = assertion::check_claims(verified, &expected).map_err(fail)?;
    let key = crate::crypto::sha256_hex(format!("client\0{client_id}\0{}", claims.jti).as_bytes());
    if !ctx.store.use_assertion_jti(&key, claims.exp, now).await? {
        return Err(fail("its jti has already been used".into()));
    }
    Ok(())
}

fn credentials(authorization: Option<&str>, params: &Params<'_>) -> Result<Credentials, OAuth2Error> {
    let basic = basic_credentials(authorization)?;
    let post_id = params.single("client_id")?;
    let post_secret = params.single("client_secret")?;
    let assertion_type = params.single("client_assertion_type")?;
    let client_assertion = params.single("client_assertion")?;
    if assertion_type.is_some() || client_assertion.is_some() {
        if basic.is_some() || post_secret.is_some() {
            return Err(OAuth2Error::invalid_request(
                "The request uses more than one client authentication method (client_assertion and a client secret); use exactly one.",
            ));
        }
        if assertion_type != Some(assertion::CLIENT_ASSERTION_TYPE) {
            return Err(OAuth2Error::invalid_request(format!(
                "client_assertion_type must be {:?}",
                assertion::CLIENT_ASSERTION_TYPE
            )));
        }
        let Some(jws) = client_assertion.filter(|a| !a.is_empty()) else {
            return Err(OAuth2Error::invalid_request("client_assertion is missing"));
        };
        // RFC 7523 §3: the client is the assertion's `sub`; the signature is checked once the
        // client (and so its keys) is known.
        let parsed = assertion::parse(jws);
        let sub = parsed
            .as_ref()
            .ok()
            .and_then(|t| t.unverified_claims().get("sub").and_then(Value::as_str).map(str::to_owned))
            .filter(|s| !s.is_empty());
        let client_id = match (post_id, sub) {
            (Some(id), Some(sub)) if id != sub => {
                return Err(OAuth2Error::invalid_client(
                    "client_assertion: claim sub does not match the client_id parameter",
                ));
            }
            (_, Some(sub)) => sub,
            (Some(id), None) => id.to_owned(),
            // Say why no client could be read from it: an assertion that does not parse has no `sub`.
            (None, None) => {
                let why = parsed.err().unwrap_or_else(|| "claim sub is missing".into());
                return Err(OAuth2Error::invalid_client(format!("client_assertion: {why}")));
            }
        };
        return Ok(Credentials { method: "private_key_jwt", client_id, secret: jws.to_owned() });
    }
    match (basic, post_secret) {
        (Some(_), Some(_)) => Err(OAuth2Error::invalid_request(
            "The request uses more than one client authentication method (Authorization header and client_secret parameter); use exactly one.",
        )),
        (Some((client_id, secret)), None) => {
            if post_id.is_some_and(|id| id != client_id) {
                return Err(OAuth2Error::invalid_request(
                    "The client_id parameter does not match the client authenticated by the Authorization header.",
                ));
            }
            Ok(Credentials { method: "client_secret_basic", client_id, secret })
        }
        (None, Some(secret)) => match post_id {
            Some(id) => {
                Ok(Credentials { method: "client_secret_post", client_id: id.to_owned(), secret: secret.to_owned() })
            }
            None => Err(OAuth2Error::invalid_request(
                "The request is missing the client_id parameter that client_secret_post requires.",
            )),
        },
        // A public client names itself and proves nothing; authenticate() admits this only
        // for clients registered with `none`.
        (None, None) => match post_id {
            Some(id) if !id.is_empty() => {
                Ok(Credentials { method: "none", client_id: id.to_owned(), secret: String::new() })
            }
            _ => Err(OAuth2Error::invalid_client(AUTH_FAILED)),
        },
    }
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))`; other schemes are not
/// client credentials and are ignored.
fn basic_credentials(authorization: Option<&str>) -> Result<Option<(String, String)>, OAuth2Error> {
    let Some(value) = authorization else {
        return Ok(None);
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let malformed = || {
        OAuth2Error::invalid_client(
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
