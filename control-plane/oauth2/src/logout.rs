//! The logout contract's logic (OIDC RP-Initiated Logout 1.0 with Hydra's logout challenge):
//! recording a logout request, the challenge's accept and reject, completing it with its
//! verifier (the OAuth2 login session ends and every client with a `backchannel_logout_uri` and
//! a consent under it gets a signed `logout_token`), and checking an `id_token_hint` against the
//! OAuth2 key set. It must not read browser cookies or identity sessions, nor answer HTTP: the
//! control plane's `oauth2::logout` decides whose session the browser holds and redirects.

use portcullis_shared::jwt::signing_keys;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Ctx;
use crate::client::ClientBody;
use crate::crypto;
use crate::flow::{self, ContractError};
use crate::jwt::{Alg, Untrusted};
use crate::rfc3339;
use crate::store::StoreError;
use crate::store::oauth2_flows::LogoutRow;

const REQUESTED: &str = "requested";
const ACCEPTED: &str = "accepted";
const REJECTED: &str = "rejected";
const DONE: &str = "done";
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a logout request carries (the row's `body`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogoutBody {
    pub subject: String,
    pub sid: String,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub rp_initiated: bool,
    pub request_url: String,
}

/// The claims of an ID token this server signed (ES256, a key of the OAuth2 set's JWKS, our
/// issuer, not a logout token); `None` for anything else, gateway-minted tokens included.
/// Expiry is not checked: a hint may be expired.
pub fn verify_own_id_token(ctx: &Ctx<'_>, token: &str) -> Option<Value> {
    let token = Untrusted::parse(token, &[Alg::ES256]).ok()?;
    // Our logout tokens are signed with the same key; they are not ID tokens.
    if token.typ() == Some("logout+jwt") {
        return None;
    }
    let keys = signing_keys(&ctx.keys.jwks(ctx.clock.now()));
    let claims = token.verify(&keys)?.into_json();
    let issuer = &ctx.urls.self_.issuer;
    let iss = claims.get("iss").and_then(Value::as_str)?;
    let ours = iss == issuer || iss.trim_end_matches('/') == issuer.trim_end_matches('/');
    (ours && !claims.contains_key("events")).then_some(Value::Object(claims))
}

/// Whether `uri` is one of the `post_logout_redirect_uris` of client `client_id`, exactly.
pub async fn registered_post_logout_uri(ctx: &Ctx<'_>, client_id: &str, uri: &str) -> Result<bool, StoreError> {
    Ok(ctx
        .store
        .get_client(client_id)
        .await?
        .and_then(|row| serde_json::from_str::<ClientBody>(&row.body).ok())
        .is_some_and(|c| {
            c.extra["post_logout_redirect_uris"].as_array().is_some_and(|a| a.iter().any(|v| v.as_str() == Some(uri)))
        }))
}

/// Records a logout request; returns its challenge.
pub async fn create(ctx: &Ctx<'_>, body: &LogoutBody) -> Result<String, StoreError> {
    let challenge = flow::handle();
    let now = ctx.clock.now();
    let ttl = i64::try_from(ctx.ttl.login_consent_request.as_secs()).unwrap_or(i64::MAX / 4);
    ctx.store
        .insert_logout_request(&LogoutRow {
            challenge: crypto::token_signature(&challenge),
            verifier: None,
            stage: REQUESTED.into(),
            body: serde_json::to_string(body).map_err(|e| StoreError::corrupt("oauth2_logout_requests.body", e))?,
            requested_at: now,
            expires_at: now.saturating_add(ttl),
        })
        .await?;
    Ok(challenge)
}

/// Where the browser goes to confirm a logout: `urls.logout`, else the built-in page.
pub fn logout_app(ctx: &Ctx<'_>) -> String {
    if ctx.urls.logout.is_empty() { format!("{}/ui/oauth2/logout", public(ctx)) } else { ctx.urls.logout.clone() }
}

/// Spends an accepted request's `verifier` and ends its login session; `None` when the
/// verifier is unknown, not accepted, or used already.
pub async fn complete(ctx: &Ctx<'_>, verifier: &str) -> Result<Option<LogoutBody>, StoreError> {
    if verifier.len() > 128 {
        return Ok(None);
    }
    let Some(row) = ctx.store.get_logout_request(&crypto::token_signature(verifier), true).await? else {
        return Ok(None);
    };
    if row.stage != ACCEPTED || !ctx.store.advance_logout_request(&row.challenge, ACCEPTED, DONE, None).await? {
        return Ok(None);
    }
    let body: LogoutBody =
        serde_json::from_str(&row.body).map_err(|e| StoreError::corrupt("oauth2_logout_requests.body", e))?;
    end_login_session(ctx, &body.subject, &body.sid).await?;
    Ok(Some(body))
}

fn public<'a>(ctx: &Ctx<'a>) -> &'a str {
    ctx.urls.self_.public_base()
}

/// A logout request by its challenge, still open.
pub async fn load(ctx: &Ctx<'_>, challenge: &str) -> Result<(LogoutRow, LogoutBody), ContractError> {
    if challenge.is_empty() || challenge.len() > 128 {
        return Err(ContractError::NotFound);
    }
    let row = ctx
        .store
        .get_logout_request(&crypto::token_signature(challenge), false)
        .await?
        .ok_or(ContractError::NotFound)?;
    let body: LogoutBody =
        serde_json::from_str(&row.body).map_err(|e| StoreError::corrupt("oauth2_logout_requests.body", e))?;
    if row.stage != REQUESTED {
        return Err(ContractError::Handled(body.request_url.clone()));
    }
    if row.expires_at <= ctx.clock.now() {
        return Err(ContractError::Expired);
    }
    Ok((row, body))
}

/// `oAuth2LogoutRequest`.
pub async fn request_json(ctx: &Ctx<'_>, challenge: &str) -> Result<(LogoutBody, Value), ContractError> {
    let (row, body) = load(ctx, challenge).await?;
    let client = match &body.client_id {
        Some(id) => ctx.store.get_client(id).await?.map(|c| flow::client_json(&c)).unwrap_or(Value::Null),
        None => Value::Null,
    };
    let json = json!({
        "challenge": challenge,
        "subject": body.subject,
        "sid": body.sid,
        "request_url": body.request_url,
        "rp_initiated": body.rp_initiated,
        "client": client,
        "requested_at": rfc3339(row.requested_at),
        "expires_at": rfc3339(row.expires_at),
    });
    Ok((body, json))
}

pub async fn accept(ctx: &Ctx<'_>, challenge: &str) -> Result<String, ContractError> {
    let (row, body) = load(ctx, challenge).await?;
    let verifier = flow::handle();
    let hash = crypto::token_signature(&verifier);
    if !ctx.store.advance_logout_request(&row.challenge, REQUESTED, ACCEPTED, Some(&hash)).await? {
        return Err(ContractError::Handled(body.request_url));
    }
    Ok(format!("{}/oauth2/sessions/logout?logout_verifier={verifier}", public(ctx)))
}

pub async fn reject(ctx: &Ctx<'_>, challenge: &str) -> Result<(), ContractError> {
    let (row, body) = load(ctx, challenge).await?;
    if !ctx.store.advance_logout_request(&row.challenge, REQUESTED, REJECTED, None).await? {
        return Err(ContractError::Handled(body.request_url));
    }
    Ok(())
}

/// Deletes the login session `sid` of `subject` and sends a back-channel `logout_token` to each
/// client with a consent under it (in the background: nobody waits for the clients).
pub async fn end_login_session(ctx: &Ctx<'_>, subject: &str, sid: &str) -> Result<(), StoreError> {
    let body = LogoutBody { subject: subject.to_owned(), sid: sid.to_owned(), ..LogoutBody::default() };
    let clients = backchannel_clients(ctx, &body).await?;
    ctx.store.delete_login_sessions(None, Some(sid)).await?;
    for (client_id, uri) in clients {
        if let Some(token) = logout_token(ctx, &client_id, sid, subject) {
            let http = ctx.http.clone();
            // The browser does not wait for the clients; a failure is logged, not retried.
            tokio::spawn(async move {
                let sent = http
                    .post(&uri)
                    .timeout(std::time::Duration::from_secs(10))
                    .form(&[("logout_token", token)])
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!(client_id, status = %r.status(), "back-channel logout refused"),
                    Err(e) => tracing::warn!(client_id, error = %e, "back-channel logout failed"),
                }
            });
        }
    }
    Ok(())
}

/// `(client_id, backchannel_logout_uri)` of every client with a consent under the session.
async fn backchannel_clients(ctx: &Ctx<'_>, body: &LogoutBody) -> Result<Vec<(String, String)>, StoreError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for consent in ctx.store.list_consents(&body.subject, Some(&body.sid), None, 1000).await? {
        if out.iter().any(|(id, _)| *id == consent.client_id) {
            continue;
        }
        let Some(row) = ctx.store.get_client(&consent.client_id).await? else { continue };
        let Ok(client) = serde_json::from_str::<ClientBody>(&row.body) else { continue };
        if let Some(uri) = client.extra.get("backchannel_logout_uri").and_then(Value::as_str).filter(|u| !u.is_empty())
        {
            out.push((consent.client_id.clone(), uri.to_owned()));
        }
    }
    Ok(out)
}

/// An OIDC Back-Channel Logout 1.0 `logout_token`, signed with the OAuth2 set (the clients
/// verify it at `/.well-known/jwks.json`, like their ID tokens).
pub fn logout_token(ctx: &Ctx<'_>, client_id: &str, sid: &str, subject: &str) -> Option<String> {
    let claims = json!({
        "iss": ctx.urls.self_.issuer,
        "aud": [client_id],
        "jti": crypto::uuid_v4(),
        "sid": sid,
        "sub": subject,
        "events": {BACKCHANNEL_EVENT: {}},
    });
    let claims = crate::jwt::issue(claims.as_object().cloned()?, ctx.clock.now(), 120, false)?;
    ctx.keys.signer().sign_jwt("logout+jwt", &claims)
}

/// Who an RP-initiated logout request names: the client its `id_token_hint` was issued to and
/// the hint's `(sub, sid)`; both `None` without a hint.
#[derive(Debug, Default)]
pub struct Hinted {
    pub client_id: Option<String>,
    pub subject_sid: Option<(String, String)>,
}

/// Checks an RP-initiated logout request (OIDC RP-Initiated Logout §2): `post_logout_redirect_uri`
/// and `state` need an `id_token_hint` issued by this server, and the URI must be one the
/// hinted client registered. `Ok(Err(sentence))` is a refusal for the browser's error page.
pub async fn check_request(
    ctx: &Ctx<'_>,
    hint: Option<&str>,
    redirect: Option<&str>,
    has_state: bool,
) -> Result<Result<Hinted, &'static str>, StoreError> {
    let Some(hint) = hint else {
        if redirect.is_some() || has_state {
            return Ok(Err("post_logout_redirect_uri and state need an id_token_hint naming the client."));
        }
        return Ok(Ok(Hinted::default()));
    };
    let Some(claims) = verify_own_id_token(ctx, hint) else {
        return Ok(Err("id_token_hint: not an ID token issued by this server."));
    };
    let client_id = match &claims["aud"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    let subject_sid = Some((
        claims["sub"].as_str().unwrap_or_default().to_owned(),
        claims["sid"].as_str().unwrap_or_default().to_owned(),
    ));
    if let Some(uri) = redirect {
        let registered = match &client_id {
            Some(id) => registered_post_logout_uri(ctx, id, uri).await?,
            None => false,
        };
        if !registered {
            return Ok(Err(
                "post_logout_redirect_uri: does not exactly match any of the client's post_logout_redirect_uris.",
            ));
        }
    }
    Ok(Ok(Hinted { client_id, subject_sid }))
}
