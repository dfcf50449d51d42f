//! The authorization endpoint's decisions, without HTTP: validating an authorization request
//! (which errors may go to the client's `redirect_uri` and which must not), the browser's
//! remembered login session, whether consent can be skipped, and the URLs the browser is sent
//! to. The control plane's `/oauth2/auth` handler reads cookies, calls in here and answers with
//! redirects or pages; this module reads no cookie and renders nothing.

use portcullis_model::identity::url_segment;
use portcullis_shared::scope::{self, ScopeStrategy};
use serde_json::{Value, json};

use crate::client::ClientBody;
use crate::crypto;
use crate::flow::{self, AuthRequest, Flow, LoginAccept, LoginOutcome};
use crate::store::StoreError;
use crate::store::oauth2_flows::LoginSessionRow;
use crate::{Ctx, OAuth2Error, Params};

/// fosite's `MinParameterEntropy`.
const MIN_STATE_LEN: usize = 8;
const PROMPTS: [&str; 4] = ["none", "login", "consent", "select_account"];
const DISPLAYS: [&str; 4] = ["page", "popup", "touch", "wap"];

/// Why an authorization request was refused.
#[derive(Debug)]
pub enum Rejected {
    /// The client or redirect URI cannot be trusted (or the server failed): the browser gets a
    /// page, never a redirect.
    Page(OAuth2Error),
    /// An RFC 6749 §4.1.2.1 error for the client's (validated) redirect URI.
    Redirect { redirect_uri: String, state: Option<String>, error: String, description: String },
}

impl From<StoreError> for Rejected {
    fn from(e: StoreError) -> Self {
        Rejected::Page(e.into())
    }
}

/// The sentence of a refusal (a server fault's cause never reaches the client).
fn refusal(e: OAuth2Error) -> String {
    match e {
        OAuth2Error::Refused { description, .. } => description,
        _ => "The request could not be read.".into(),
    }
}

/// `uri` with `pairs` added to its query (before any fragment).
pub fn with_query(uri: &str, pairs: &[(&str, String)]) -> String {
    let (base, fragment) = uri.split_once('#').map_or((uri, None), |(b, f)| (b, Some(f)));
    let mut out = base.to_owned();
    let mut sep =
        if base.contains('?') { if base.ends_with('?') || base.ends_with('&') { "" } else { "&" } } else { "?" };
    for (k, v) in pairs {
        out.push_str(sep);
        out.push_str(k);
        out.push('=');
        out.push_str(&url_segment(v));
        sep = "&";
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Validates an authorization request; see the module docs for which errors redirect.
pub async fn validate(ctx: &Ctx<'_>, p: Params<'_>) -> Result<AuthRequest, Rejected> {
    let client_id = p.single("client_id").map_err(Rejected::Page)?.unwrap_or_default();
    let redirect_param = p.single("redirect_uri").map_err(Rejected::Page)?.filter(|v| !v.is_empty());
    if client_id.is_empty() {
        return Err(Rejected::Page(OAuth2Error::invalid_request("client_id: the parameter is missing.")));
    }
    let Some(row) = ctx.store.get_client(client_id).await? else {
        return Err(Rejected::Page(OAuth2Error::invalid_client(
            "client_id: no OAuth 2.0 client with this id is registered.",
        )));
    };
    let client: ClientBody = serde_json::from_str(&row.body)
        .map_err(|e| Rejected::Page(OAuth2Error::server_error(&format!("stored client is not valid: {e}"))))?;
    let redirect_uri = match redirect_param {
        // RFC 6749 §3.1.2.3 and OAuth 2.1: exact string comparison, nothing else.
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
        Some(_) => {
            return Err(Rejected::Page(OAuth2Error::invalid_request(
                "redirect_uri: does not exactly match any of the client's registered redirect_uris.",
            )));
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(Rejected::Page(OAuth2Error::invalid_request(
                "redirect_uri: required, because the client has not exactly one registered redirect_uri.",
            )));
        }
    };

    // From here on errors go to the client.
    let state_param = p.single("state").ok().flatten().map(str::to_owned);
    let fail = |error: &str, description: String| Rejected::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state_param.clone(),
        error: error.to_owned(),
        description,
    };
    let single = |name: &str| {
        p.single(name).map_err(|e| fail("invalid_request", refusal(e))).map(|v| v.filter(|s| !s.is_empty()))
    };

    match single("response_type")? {
        None => return Err(fail("invalid_request", "response_type: the parameter is missing.".into())),
        Some("code") => {}
        Some(other) => {
            return Err(fail(
                "unsupported_response_type",
                format!("response_type: {other:?} is not supported; only \"code\" is."),
            ));
        }
    }
    if !client.response_types.iter().any(|r| r == "code") {
        return Err(fail("unauthorized_client", "The client is not allowed to use response_type \"code\".".into()));
    }
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(fail(
            "unauthorized_client",
            "The client is not allowed to use the authorization_code grant.".into(),
        ));
    }
    match single("response_mode")? {
        None | Some("query") => {}
        Some(other) => {
            return Err(fail(
                "invalid_request",
                format!("response_mode: {other:?} is not supported; only \"query\" is."),
            ));
        }
    }
    if single("request")?.is_some() {
        return Err(fail("request_not_supported", "request: request objects are not supported.".into()));
    }
    if single("request_uri")?.is_some() {
        return Err(fail("request_uri_not_supported", "request_uri: request objects are not supported.".into()));
    }
    let st = single("state")?;
    if st.is_none_or(|s| s.chars().count() < MIN_STATE_LEN) {
        return Err(fail(
            "invalid_state",
            format!("state: is missing or has fewer than {MIN_STATE_LEN} characters, too weak to prevent CSRF."),
        ));
    }

    let allowed: Vec<&str> = scope::split(&client.scope).collect();
    let mut scopes: Vec<String> = Vec::new();
    for s in scope::split(single("scope")?.unwrap_or("")) {
        if !scope::is_valid_token(s) {
            return Err(fail("invalid_scope", format!("scope: {s:?} is not a valid scope token.")));
        }
        if !ScopeStrategy::Wildcard.covers(allowed.iter().copied(), s) {
            return Err(fail("invalid_scope", format!("scope: the client is not allowed to request {s:?}.")));
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    let mut audience: Vec<String> = Vec::new();
    for a in p.all("audience").flat_map(scope::split) {
        if !client.audience.iter().any(|allowed| audience_matches(allowed, a)) {
            return Err(fail(
                "invalid_request",
                format!("audience: {a:?} is not in the client's audience allow-list."),
            ));
        }
        if !audience.iter().any(|x| x == a) {
            audience.push(a.to_owned());
        }
    }

    let challenge = single("code_challenge")?;
    let method = single("code_challenge_method")?;
    match (challenge, method) {
        (None, Some(_)) => {
            return Err(fail(
                "invalid_request",
                "code_challenge: is required when code_challenge_method is sent.".into(),
            ));
        }
        (Some(_), None | Some("plain")) => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method: \"plain\" (the default) is not allowed; use S256.".into(),
            ));
        }
        (Some(_), Some(m)) if m != "S256" => {
            return Err(fail("invalid_request", format!("code_challenge_method: {m:?} is not supported; use S256.")));
        }
        (Some(c), _) if !valid_challenge(c) => {
            return Err(fail(
                "invalid_request",
                "code_challenge: must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (base64url of the SHA-256)."
                    .into(),
            ));
        }
        (None, None) if client.token_endpoint_auth_method == "none" => {
            return Err(fail(
                "invalid_request",
                "code_challenge: PKCE with S256 is required for public clients (token_endpoint_auth_method none)."
                    .into(),
            ));
        }
        _ => {}
    }

    let prompt: Vec<String> = scope::split(single("prompt")?.unwrap_or("")).map(str::to_owned).collect();
    if let Some(bad) = prompt.iter().find(|x| !PROMPTS.contains(&x.as_str())) {
        return Err(fail("invalid_request", format!("prompt: {bad:?} is not supported; use {}.", PROMPTS.join(", "))));
    }
    if prompt.iter().any(|x| x == "none") && prompt.len() > 1 {
        return Err(fail("invalid_request", "prompt: \"none\" cannot be combined with other values.".into()));
    }
    let max_age = match single("max_age")? {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| fail("invalid_request", "max_age: must be a non-negative number of seconds.".into()))?,
        ),
    };
    let display = single("display")?;
    if let Some(d) = display.filter(|d| !DISPLAYS.contains(d)) {
        return Err(fail("invalid_request", format!("display: {d:?} is not one of {}.", DISPLAYS.join(", "))));
    }
    let nonce = single("nonce")?;
    // OIDC Core §3.1.2.1: an ID token this server issued (it may be expired), naming the user
    // the client expects; the login app sees its claims.
    let hint_claims = match single("id_token_hint")? {
        None => Value::Null,
        Some(hint) => crate::logout::verify_own_id_token(ctx, hint)
            .ok_or_else(|| fail("invalid_request", "id_token_hint: not an ID token issued by this server.".into()))?,
    };
    let list = |v: Option<&str>| -> Vec<String> { scope::split(v.unwrap_or("")).map(str::to_owned).collect() };
    let oidc_context = json!({
        "acr_values": list(single("acr_values")?),
        "display": display.unwrap_or(""),
        "id_token_hint_claims": hint_claims,
        "login_hint": single("login_hint")?.unwrap_or(""),
        "ui_locales": list(single("ui_locales")?),
    });
    let query: Vec<(&str, String)> =
        p.0.iter()
            .filter(|(k, _)| k != "login_verifier" && k != "consent_verifier")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
    let request_url = with_query(&format!("{}/oauth2/auth", ctx.public_base()), &query);
    Ok(AuthRequest {
        client_id: row.client_id.clone(),
        redirect_uri,
        redirect_uri_param: redirect_param.map(str::to_owned),
        scope: scopes,
        audience,
        state: st.map(str::to_owned),
        nonce: nonce.map(str::to_owned),
        code_challenge: challenge.map(str::to_owned),
        code_challenge_method: challenge.and(method).map(str::to_owned),
        prompt,
        max_age,
        oidc_context,
        request_url,
    })
}

/// Hydra's audience matching: the allowed URL itself or anything below it, by path segment.
fn audience_matches(allowed: &str, requested: &str) -> bool {
    let base = allowed.trim_end_matches('/');
    requested == allowed
        || requested == base
        || requested.strip_prefix(base).is_some_and(|rest| rest.starts_with('/') && !base.is_empty())
}

fn valid_challenge(c: &str) -> bool {
    (43..=128).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The browser's remembered login session, if it is still good.
///
/// `token` is the browser's remembered-login cookie.
pub async fn remembered_login(ctx: &Ctx<'_>, token: Option<&str>) -> Result<Option<LoginSessionRow>, StoreError> {
    let Some(token) = token else { return Ok(None) };
    let Some(s) = ctx.store.get_login_session_by_token(&crypto::token_signature(token)).await? else {
        return Ok(None);
    };
    let now = ctx.clock.now();
    if !s.remember || s.expires_at <= now {
        return Ok(None);
    }
    let body: Value = serde_json::from_str(&s.body).unwrap_or(Value::Null);
    if body["local_identity_session"] == true {
        // Signed out of Portcullis means signed out of OAuth2 too.
        match ctx.store.get_session(&s.identity_provider_session_id).await? {
            Some(id) if id.active && id.expires_at > now => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(s))
}

/// What a remembered login session says about the login (the flow skips the login app).
pub fn outcome_of(s: &LoginSessionRow) -> LoginOutcome {
    let body: Value = serde_json::from_str(&s.body).unwrap_or(Value::Null);
    LoginOutcome {
        accept: LoginAccept {
            subject: s.subject.clone(),
            acr: body["acr"].as_str().unwrap_or_default().to_owned(),
            amr: body["amr"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            identity_provider_session_id: s.identity_provider_session_id.clone(),
            ..LoginAccept::default()
        },
        auth_time: s.authenticated_at,
        local_identity_session: body["local_identity_session"] == true,
    }
}

/// Whether the consent app can be skipped after a login: never with `prompt=consent`; yes for
/// a first-party client (`skip_consent`) or when a remembered consent covers the request.
pub async fn consent_skippable(ctx: &Ctx<'_>, flow: &Flow, subject: &str) -> Result<bool, StoreError> {
    let request = &flow.body.request;
    if request.prompts("consent") {
        return Ok(false);
    }
    let client = ctx.store.get_client(&flow.row.client_id).await?;
    let first_party =
        client.and_then(|c| serde_json::from_str::<ClientBody>(&c.body).ok()).is_some_and(|c| c.skip_consent);
    Ok(first_party
        || flow::remembered_consent_covers(ctx, subject, &flow.row.client_id, &request.scope, &request.audience)
            .await?)
}

/// What the browser's remembered-login cookie should become after a login.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCookie {
    /// The login was skipped (a remembered session was used): leave the cookie alone.
    Keep,
    /// Set it to this token; `Some(seconds)` for a persistent cookie, `None` for the browser's session.
    Set(String, Option<i64>),
    /// Not remembered: a login session remembered earlier in this browser must not linger.
    Clear,
}

/// Stores the login session behind the flow's `sid` (at most `cap` seconds unless the login
/// app chose `remember_for`) and says what to do with the cookie.
pub async fn establish_login_session(
    ctx: &Ctx<'_>,
    flow: &Flow,
    login: &LoginOutcome,
    cap: i64,
) -> Result<SessionCookie, StoreError> {
    if flow.body.login_skip {
        return Ok(SessionCookie::Keep);
    }
    let a = &login.accept;
    let lifetime = if a.remember_for > 0 { a.remember_for } else { cap };
    let token = a.remember.then(flow::handle);
    ctx.store
        .upsert_login_session(&LoginSessionRow {
            id: flow.body.session_id.clone(),
            token_hash: token.as_deref().map(crypto::token_signature).unwrap_or_default(),
            subject: a.subject.clone(),
            remember: a.remember,
            authenticated_at: login.auth_time,
            expires_at: ctx.clock.now().saturating_add(lifetime),
            identity_provider_session_id: a.identity_provider_session_id.clone(),
            body: json!({"acr": a.acr, "amr": a.amr, "local_identity_session": login.local_identity_session})
                .to_string(),
        })
        .await?;
    Ok(match token {
        // remember_for 0: a browser-session cookie.
        Some(t) => SessionCookie::Set(t, (a.remember_for > 0).then_some(a.remember_for)),
        None => SessionCookie::Clear,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_query_appends_encoded_pairs_before_the_fragment() {
        let pairs = [("state", "a b&c".to_owned()), ("iss", "https://i".to_owned())];
        assert_eq!(
            with_query("https://app/cb#frag", &pairs),
            "https://app/cb?state=a%20b%26c&iss=https%3A%2F%2Fi#frag"
        );
        assert_eq!(with_query("https://app/cb?x=1", &pairs[..1]), "https://app/cb?x=1&state=a%20b%26c");
        assert_eq!(with_query("https://app/cb?", &pairs[..1]), "https://app/cb?state=a%20b%26c");
    }

    #[test]
    fn an_audience_matches_by_path_segment_only() {
        assert!(audience_matches("https://api/v1", "https://api/v1/users"));
        assert!(audience_matches("https://api/v1/", "https://api/v1"));
        assert!(!audience_matches("https://api/v1", "https://api/v10"), "a prefix is not a segment");
        assert!(!audience_matches("", "/anything"));
        assert!(
            valid_challenge(&"a".repeat(43)) && !valid_challenge(&"a".repeat(42)) && !valid_challenge(&"+".repeat(43))
        );
    }
}
