//! RFC 7523 trust relationships (Hydra's `trustOAuth2JwtGrantIssuer` in,
//! `trustedOAuth2JwtGrantIssuer` out): validating a request, storing it, listing, reading and
//! rendering them. A trust names an issuer, one subject or any subject, the scopes it may grant,
//! the issuer's public key and an expiry. Only public keys are accepted: a private key is
//! refused, never stored. It does not check assertions ([`crate::jwt_bearer`] does) and knows
//! no HTTP: the admin handlers map [`TrustError`].

use serde_json::{Map, Value, json};

use crate::crypto;
use crate::keyset::Keyset;
use crate::rfc3339;
use crate::store::{Store, StoreError, trusts::TrustRow};

const FIELDS: [&str; 6] = ["issuer", "subject", "allow_any_subject", "scope", "jwk", "expires_at"];
/// JWK members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Why a trust operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The request is malformed; the sentence starts with the field's name.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// Validates and stores a trust; its rendering.
pub async fn create(store: &Store, now: i64, map: &Map<String, Value>) -> Result<Value, TrustError> {
    let row = parse(map, now)?;
    if !store.insert_trust(&row).await? {
        return Err(TrustError::Conflict(format!(
            "A trust relationship for issuer {:?}, subject {:?} and key id {:?} exists already.",
            row.issuer, row.subject, row.key_id
        )));
    }
    Ok(render(&row))
}

/// A list request: the page and an optional issuer filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub page: Keyset,
    pub issuer: Option<String>,
}

impl ListQuery {
    /// Reads `page_size`, `page_token` and `issuer` from the query's pairs.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, TrustError> {
        let mut q = ListQuery::default();
        for (key, value) in pairs {
            if !q.page.read(key, value).map_err(TrustError::Invalid)? && key == "issuer" && !value.is_empty() {
                q.issuer = Some(value.clone());
            }
        }
        Ok(q)
    }

    /// The `Link` header value on `url` (scheme, host and path).
    pub fn link(&self, url: &str, next: Option<&str>) -> String {
        let filters: Vec<(&str, &str)> = self.issuer.iter().map(|i| ("issuer", i.as_str())).collect();
        self.page.link(url, &filters, next)
    }
}

/// One page of rendered trusts and the next page's token, if there is a next page.
pub async fn list(store: &Store, q: &ListQuery) -> Result<(Vec<Value>, Option<String>), StoreError> {
    let mut rows = store.list_trusts(&q.page.after, q.page.fetch(), q.issuer.as_deref()).await?;
    let next = q.page.cut(&mut rows, |r| &r.id);
    Ok((rows.iter().map(render).collect(), next))
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Value>, StoreError> {
    Ok(store.get_trust(id).await?.as_ref().map(render))
}

pub fn render(row: &TrustRow) -> Value {
    let scope: Value = serde_json::from_str(&row.scope).unwrap_or_else(|_| json!([]));
    json!({
        "id": row.id,
        "issuer": row.issuer,
        "subject": row.subject,
        "allow_any_subject": row.allow_any_subject,
        "scope": scope,
        "public_key": {"set": row.issuer, "kid": row.key_id},
        "expires_at": rfc3339(row.expires_at),
        "created_at": rfc3339(row.created_at),
    })
}

/// Validates a `trustOAuth2JwtGrantIssuer` request; errors name the field.
pub fn parse(map: &Map<String, Value>, now: i64) -> Result<TrustRow, TrustError> {
    let bad = |field: &str, msg: &str| TrustError::Invalid(format!("{field}: {msg}"));
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(TrustError::Invalid(format!("unknown field `{unknown}`: allowed are {}", FIELDS.join(", "))));
    }
    let text = |field: &str| -> Result<String, TrustError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_owned()),
            Some(_) => Err(bad(field, "must be a string")),
        }
    };
    let issuer = text("issuer")?;
    if issuer.is_empty() {
        return Err(bad("issuer", "is required"));
    }
    let subject = text("subject")?;
    let allow_any_subject = match map.get("allow_any_subject") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("allow_any_subject", "must be true or false")),
    };
    match (subject.is_empty(), allow_any_subject) {
        (true, false) => return Err(bad("subject", "is required unless allow_any_subject is true")),
        (false, true) => return Err(bad("subject", "must be empty when allow_any_subject is true")),
        _ => {}
    }
    let Some(Value::Array(items)) = map.get("scope") else {
        return Err(bad("scope", "is required: an array of scope strings (may be empty)"));
    };
    let mut scope = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(s) if portcullis_shared::scope::is_valid_token(s) => scope.push(s.to_owned()),
            _ => return Err(bad("scope", &format!("invalid scope {item}"))),
        }
    }
    let Some(jwk) = map.get("jwk").filter(|v| v.is_object()) else {
        return Err(bad("jwk", "is required: the issuer's public JSON Web Key"));
    };
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.get(**m).is_some()) {
        return Err(bad("jwk", &format!("must be a public key, but it has the private member {member:?}")));
    }
    let key_id = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
    if key_id.is_empty() {
        return Err(bad("jwk", "kid is required"));
    }
    if portcullis_shared::jwt::signing_keys(&json!({"keys": [jwk]})).is_empty() {
        return Err(bad(
            "jwk",
            "is not a supported signing key: expected an EC P-256 or RSA public key with use \"sig\"",
        ));
    }
    let expires_text = text("expires_at")?;
    if expires_text.is_empty() {
        return Err(bad("expires_at", "is required (RFC 3339)"));
    }
    let expires_at = time::OffsetDateTime::parse(&expires_text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| bad("expires_at", &format!("is not an RFC 3339 date-time: {e}")))?
        .unix_timestamp();
    if expires_at <= now {
        return Err(bad("expires_at", "must be in the future"));
    }
    Ok(TrustRow {
        id: crypto::uuid_v4(),
        issuer,
        subject,
        allow_any_subject,
        scope: serde_json::to_string(&scope).map_err(|e| TrustError::Internal(e.to_string()))?,
        key_id: key_id.to_owned(),
        jwk: jwk.to_string(),
        expires_at,
        created_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_list_query_keeps_its_issuer_filter_in_the_link() {
        assert!(matches!(ListQuery::parse(&pairs(&[("page_size", "0")])), Err(TrustError::Invalid(_))));
        let q = ListQuery::parse(&pairs(&[("page_size", "2"), ("issuer", "https://idp.example")])).unwrap();
        let link = q.link("http://h/p", None);
        assert_eq!(link, "<http://h/p?page_size=2&issuer=https%3A%2F%2Fidp.example&page_token=>; rel=\"first\"");
    }

    #[test]
    fn a_private_key_is_refused_and_names_the_field() {
        let map = json!({"issuer": "i", "subject": "s", "scope": [], "jwk": {"kty": "EC", "kid": "k", "d": "x"},
            "expires_at": "2030-01-01T00:00:00Z"});
        let Err(TrustError::Invalid(m)) = parse(map.as_object().unwrap(), 0) else { panic!("accepted") };
        assert!(m.starts_with("jwk: must be a public key"), "{m}");
    }
}
