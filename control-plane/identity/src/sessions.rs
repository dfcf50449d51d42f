//! The session APIs' logic without HTTP: the user's and the admin's session lists (keyset
//! pages, `expand=identity`), one session, extending a session's lifespan, and whoami's
//! `tokenize_as` (a short-lived JWT from a `session.whoami.tokenizer` template, signed with
//! the key the caller passes in: this crate holds no OAuth2 key). Errors are an
//! [`IdentityError`] the control plane maps once; this module must not answer HTTP.

use portcullis_keys::Signer;
use portcullis_model::identity::{Identity, url_segment};
use portcullis_model::paging;
use portcullis_store::sessions::{SessionFilter, SessionRow};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::admin::IdentityError;
use crate::context::Identities;
use crate::crypto;
use crate::session::{Authenticated, lifespan, session_json};

/// A session list's query: `page_size`, `page_token`, `active`, `expand=identity`.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    page_size: Option<i64>,
    page_token: Option<String>,
    active: Option<bool>,
    expand: Option<String>,
}

impl PageQuery {
    fn bounds(&self) -> Result<(i64, Option<(i64, String)>), IdentityError> {
        let size = self.page_size.unwrap_or(250);
        if !(1..=1000).contains(&size) {
            return Err(IdentityError::Invalid("page_size: must be between 1 and 1000".into()));
        }
        let token = self.page_token.as_deref().map(paging::parse_token).transpose();
        let before = token.map_err(|e| IdentityError::Invalid(e.to_string()))?;
        Ok((size, before))
    }

    fn expands_identity(&self) -> bool {
        self.expand.as_deref().is_some_and(|e| e.split(',').any(|x| x.trim() == "identity"))
    }
}

/// Sessions in Kratos's JSON and, when there may be more, the `Link: <…>; rel="next"` value.
#[derive(Debug)]
pub struct SessionPage {
    pub items: Vec<Value>,
    pub link: Option<String>,
}

fn paged(state: &Identities, path: &str, rows: &[SessionRow], size: i64, identities: &[Identity]) -> SessionPage {
    let next = (rows.len() as i64 == size).then(|| rows.last().map(|s| paging::token(s.issued_at, &s.id))).flatten();
    let items =
        rows.iter().map(|s| session_json(state, s, identities.iter().find(|i| i.id == s.identity_id))).collect();
    let link = next.map(|n| format!("<{path}?page_size={size}&page_token={n}>; rel=\"next\""));
    SessionPage { items, link }
}

/// `GET /sessions`: the authenticated user's other active sessions.
pub async fn list_mine(state: &Identities, auth: &Authenticated, q: &PageQuery) -> Result<SessionPage, IdentityError> {
    let (size, before) = q.bounds()?;
    let filter =
        SessionFilter { identity_id: Some(auth.identity.id.clone()), active: Some(true), now: state.clock.now() };
    let mut rows = state.store.list_sessions(&filter, before, size).await?;
    rows.retain(|s| s.id != auth.session.id);
    Ok(paged(state, "/sessions", &rows, size, &[]))
}

/// `GET /admin/sessions?active=&expand=identity`.
pub async fn admin_list(state: &Identities, q: &PageQuery) -> Result<SessionPage, IdentityError> {
    let (size, before) = q.bounds()?;
    let filter = SessionFilter { identity_id: None, active: q.active, now: state.clock.now() };
    let rows = state.store.list_sessions(&filter, before, size).await?;
    let mut identities: Vec<Identity> = Vec::new();
    if q.expands_identity() {
        for r in &rows {
            if !identities.iter().any(|i| i.id == r.identity_id) {
                if let Some(i) = state.store.get_identity(&r.identity_id).await? {
                    identities.push(i);
                }
            }
        }
    }
    Ok(paged(state, "/admin/sessions", &rows, size, &identities))
}

/// `GET /admin/identities/{id}/sessions?active=`: `NotFound` for an unknown identity.
pub async fn admin_list_for_identity(
    state: &Identities,
    id: &str,
    q: &PageQuery,
) -> Result<SessionPage, IdentityError> {
    let identity = state.store.get_identity(id).await?.ok_or(IdentityError::NotFound)?;
    let (size, before) = q.bounds()?;
    let filter = SessionFilter { identity_id: Some(id.to_owned()), active: q.active, now: state.clock.now() };
    let rows = state.store.list_sessions(&filter, before, size).await?;
    let identities = if q.expands_identity() { vec![identity] } else { vec![] };
    Ok(paged(state, &format!("/admin/identities/{}/sessions", url_segment(id)), &rows, size, &identities))
}

/// Session `id`'s JSON, with its identity when `expand` names it.
pub async fn admin_get(state: &Identities, id: &str, expand: Option<&str>) -> Result<Value, IdentityError> {
    let s = state.store.get_session(id).await?.ok_or(IdentityError::NotFound)?;
    let identity = if expand.is_some_and(|e| e.contains("identity")) {
        state.store.get_identity(&s.identity_id).await?
    } else {
        None
    };
    Ok(session_json(state, &s, identity.as_ref()))
}

/// A full lifespan from now for active session `id`; its JSON.
pub async fn extend(state: &Identities, id: &str) -> Result<Value, IdentityError> {
    let mut s = state.store.get_session(id).await?.filter(|s| s.active).ok_or(IdentityError::NotFound)?;
    s.expires_at = state.clock.now() + lifespan(state);
    state.store.set_session_expiry(&s.id, s.expires_at).await?;
    Ok(session_json(state, &s, None))
}

/// A short-lived JWT for session `s` (whose JSON is `session`) from template `name`
/// (`session.whoami.tokenizer`), signed by `signer`.
pub fn tokenize(
    state: &Identities,
    signer: &Signer,
    name: &str,
    s: &SessionRow,
    session: &Value,
) -> Result<String, IdentityError> {
    let Some(t) = state.config.session.whoami.tokenizer.templates.get(name) else {
        return Err(IdentityError::Invalid(format!(
            "tokenize_as: there is no template {name:?} in session.whoami.tokenizer.templates"
        )));
    };
    let now = state.clock.now();
    let ttl = i64::try_from(t.ttl.as_secs()).unwrap_or(60).max(1);
    let sub = match t.subject_source.as_deref() {
        Some("external_id") => session["identity"]["external_id"].as_str().unwrap_or_default().to_owned(),
        _ => s.identity_id.clone(),
    };
    let extra = session.as_object().cloned().unwrap_or_default();
    let failed = |k: &str, e: &dyn std::fmt::Display| {
        IdentityError::Internal(format!("tokenizer template {name}, claim {k}: {e}"))
    };
    let mut claims = Map::new();
    for (k, v) in &t.claims {
        let value = match v {
            Value::String(src) => {
                let template = portcullis_shared::template::Template::compile(src).map_err(|e| failed(k, &e))?;
                let ctx =
                    portcullis_shared::template::Context { subject: &sub, extra: &extra, captures: &[], headers: &[] };
                Value::String(template.render(&ctx).map_err(|e| failed(k, &e))?)
            }
            other => other.clone(),
        };
        claims.insert(k.clone(), value);
    }
    // Registered claims last: a template cannot override them (Kratos protects `sub` too);
    // `iat`, `nbf` and `exp` are the library's, set by `issue`, which drops any of the template's.
    for (k, v) in [
        ("jti", json!(crypto::uuid_v4())),
        ("iss", json!(state.config.public_base)),
        ("sub", json!(sub)),
        ("sid", json!(s.id)),
    ] {
        claims.insert(k.into(), v);
    }
    portcullis_keys::jwt::issue(claims, now, ttl, true)
        .and_then(|claims| signer.sign_jwt("JWT", &claims))
        .ok_or_else(|| IdentityError::Internal("could not sign the session token".into()))
}
