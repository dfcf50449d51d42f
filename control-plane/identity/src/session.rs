//! Sessions: issuing one after a successful flow (within the rate limits and while the
//! revocation list has room), reading it from a request (`X-Session-Token`, the session cookie,
//! `Authorization: Bearer`) with sliding refresh, the session cookie and Kratos's session JSON.
//! Tokens are random 256-bit strings stored only as SHA-256 digests; revoking sessions tells
//! every filter at once, through the rules. This module must not answer HTTP requests.

use portcullis_model::identity::{Identity, View};
use portcullis_model::{crypto, rfc3339};
use std::sync::Arc;

use portcullis_rules::Rules;
use portcullis_store::sessions::Deactivate;
use portcullis_store::sessions::SessionRow;
use portcullis_store::{Store, StoreError};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::context::Identities;
use crate::flow::FlowError;

pub const SESSION_TOKEN_PREFIX: &str = "pc_st_";
pub const LOGOUT_TOKEN_PREFIX: &str = "pc_lo_";

/// A session just issued: the row and the token only its holder ever sees.
pub struct Issued {
    pub row: SessionRow,
    pub token: String,
}

/// How the user proved who they are (Kratos's `authentication_methods[].method`).
pub fn method_entry(method: &str, now: i64) -> Value {
    json!({"method": method, "aal": "aal1", "completed_at": rfc3339(now)})
}

/// Creates and stores a session for `identity`, within `session.rate_limit` and while the
/// revocation list is below `session.revocation_list.max_entries`.
pub async fn issue(
    state: &Identities,
    identity: &Identity,
    method: &str,
    headers: &HeaderMap,
) -> Result<Issued, FlowError> {
    let now = state.clock.now();
    let ip = client_ip(headers);
    may_issue(state, identity, &ip, now).await?;
    let token = format!("{SESSION_TOKEN_PREFIX}{}", crypto::b64url(&crypto::random_bytes::<32>()));
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let row = SessionRow {
        id: crypto::uuid_v4(),
        token_hash: crypto::sha256_hex(token.as_bytes()),
        identity_id: identity.id.clone(),
        active: true,
        aal: "aal1".into(),
        methods: json!([method_entry(method, now)]),
        devices: json!([{"id": crypto::uuid_v4(), "ip_address": ip, "user_agent": truncate(user_agent, 512)}]),
        issued_at: now,
        authenticated_at: now,
        expires_at: now + lifespan(state),
    };
    state.store.insert_session(&row).await?;
    tracing::info!(session_id = %row.id, identity_id = %identity.id, method, "session issued");
    Ok(Issued { row, token })
}

/// Refuses a new session beyond the per-identity and per-address rates, or while the
/// revocation list is full. Every session may end in a revocation that filters keep until the
/// session would have expired, so this is what bounds that list: a live revocation is never
/// dropped to make room (that would let a signed-out session back in wherever a filter still
/// caches it); new sign-ins wait for old revocations to expire instead.
async fn may_issue(state: &Identities, identity: &Identity, ip: &str, now: i64) -> Result<(), FlowError> {
    let cap = state.config.session.revocation_list.max_entries;
    if cap > 0 {
        let (live, first_expiry) = state.store.revocation_stats(now).await?;
        if usize::try_from(live).unwrap_or(usize::MAX) >= cap {
            tracing::error!(
                live,
                cap,
                "session refused: the revocation list is full (session.revocation_list.max_entries); new sessions \
                 resume as revocations expire"
            );
            let mut e = FlowError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "session_revocation_list_full",
                "Signing in is paused for a moment: too many sessions were ended recently. Try again later.",
            );
            e.retry_after = first_expiry.and_then(|t| u64::try_from((t - now).clamp(1, 3600)).ok());
            return Err(e);
        }
    }
    let limits = &state.config.session.rate_limit;
    let window = i64::try_from(limits.window.as_secs()).unwrap_or(3600);
    let buckets = [
        (limits.per_identity, format!("session:id:{}", identity.id), "this account"),
        (limits.per_address, format!("session:ip:{ip}"), "this address"),
    ];
    for (limit, bucket, whom) in buckets {
        if limit == 0 || (bucket.starts_with("session:ip:") && ip.is_empty()) {
            continue;
        }
        let (taken, started) = state.store.reserve_attempt(&bucket, now, window).await?;
        if taken > i64::from(limit) {
            tracing::warn!(identity_id = %identity.id, limit, "session refused: too many sign-ins for {whom}");
            let wait = (started + window - now).max(1);
            let mut e = FlowError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "self_service_flow_rate_limited",
                format!("Too many sign-ins for {whom} in a short time; try again in {} minute(s).", (wait + 59) / 60),
            );
            e.retry_after = u64::try_from(wait).ok();
            return Err(e);
        }
    }
    Ok(())
}

/// How long a session lasts (`session.lifespan`), in seconds.
pub fn lifespan(state: &Identities) -> i64 {
    i64::try_from(state.config.session.lifespan.as_secs()).unwrap_or(i64::MAX / 4)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The address Envoy saw (`X-Forwarded-For`'s last hop is the one our proxy added), or empty.
pub fn client_ip(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// Whether cookies must carry `Secure` (the public URL is https).
pub fn secure_cookies(state: &Identities) -> bool {
    state.config.public_base.starts_with("https://")
}

/// `Set-Cookie` for a fresh session.
pub fn session_cookie(state: &Identities, token: &str, expires_at: i64) -> HeaderValue {
    let c = &state.config.session.cookie;
    let mut v = format!("{}={token}; Path={}; HttpOnly; SameSite={}", c.name, c.path, c.same_site);
    if c.persistent {
        v.push_str(&format!("; Max-Age={}", (expires_at - state.clock.now()).max(0)));
    }
    if let Some(d) = &c.domain {
        v.push_str(&format!("; Domain={d}"));
    }
    if secure_cookies(state) {
        v.push_str("; Secure");
    }
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(state: &Identities) -> HeaderValue {
    let c = &state.config.session.cookie;
    let mut v = format!("{}=; Path={}; HttpOnly; SameSite={}; Max-Age=0", c.name, c.path, c.same_site);
    if let Some(d) = &c.domain {
        v.push_str(&format!("; Domain={d}"));
    }
    if secure_cookies(state) {
        v.push_str("; Secure");
    }
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The session token the request carries: `X-Session-Token`, then the cookie, then
/// `Authorization: Bearer` (Kratos's order).
pub fn presented_token(state: &Identities, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers.get("x-session-token").and_then(|v| v.to_str().ok()) {
        return Some(t.trim().to_owned());
    }
    if let Some(t) = cookie(headers, &state.config.session.cookie.name) {
        return Some(t.to_owned());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// An active session and its identity.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session: SessionRow,
    pub identity: Identity,
    /// Set when the sliding refresh moved `expires_at`: the cookie should be re-issued.
    pub refreshed: bool,
}

/// The request's session if it is active, unexpired and its identity active; slides the
/// expiry forward when less than half the lifespan is left.
pub async fn authenticate(state: &Identities, headers: &HeaderMap) -> Result<Option<Authenticated>, StoreError> {
    let Some(token) = presented_token(state, headers) else {
        return Ok(None);
    };
    if !token.starts_with(SESSION_TOKEN_PREFIX) {
        return Ok(None);
    }
    let Some(mut session) = state.store.get_session_by_token(&crypto::sha256_hex(token.as_bytes())).await? else {
        return Ok(None);
    };
    let now = state.clock.now();
    if !session.active || session.expires_at <= now {
        return Ok(None);
    }
    let Some(identity) = state.store.get_identity(&session.identity_id).await? else {
        return Ok(None);
    };
    if !identity.is_active() {
        return Ok(None);
    }
    let mut refreshed = false;
    let span = lifespan(state);
    if state.config.session.sliding && session.expires_at - now < span / 2 {
        session.expires_at = now + span;
        state.store.set_session_expiry(&session.id, session.expires_at).await?;
        refreshed = true;
    }
    Ok(Some(Authenticated { session, identity, refreshed }))
}

/// Kratos's session JSON.
pub fn session_json(state: &Identities, s: &SessionRow, identity: Option<&Identity>) -> Value {
    let now = state.clock.now();
    let mut o = json!({
        "id": s.id,
        "active": s.active && s.expires_at > now && identity.is_none_or(Identity::is_active),
        "expires_at": rfc3339(s.expires_at),
        "authenticated_at": rfc3339(s.authenticated_at),
        "issued_at": rfc3339(s.issued_at),
        "authenticator_assurance_level": s.aal,
        "authentication_methods": s.methods,
        "devices": s.devices,
    });
    if let Some(i) = identity {
        o["identity"] = i.to_json(&state.config.public_base, View::Owner, None);
    }
    o
}

/// A logout token for the browser holding `session_token`: an HMAC-like digest of the session
/// token, so only that browser (or whoever saw this URL) can end the session, and a cross-site
/// request cannot forge it.
pub fn logout_token_for(session: &SessionRow, session_token: &str) -> String {
    let digest = crypto::sha256(format!("logout:{}:{session_token}", session.id).as_bytes());
    format!("{LOGOUT_TOKEN_PREFIX}{}.{}", session.id, crypto::b64url(&digest))
}

/// Deactivates sessions at `now` and tells every filter at once (through `rules`, which
/// publishes the revoked tokens). Takes only what it uses, so it is callable without a server.
pub async fn revoke(store: &Store, rules: &Arc<Rules>, now: i64, which: Deactivate<'_>) -> Result<u64, StoreError> {
    let n = store.deactivate_sessions(which, now).await?;
    if n > 0 {
        rules.refresh_revocations(store, now).await?;
    }
    Ok(n)
}
