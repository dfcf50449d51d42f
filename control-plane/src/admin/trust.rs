//! `/admin/trust/grants/jwt-bearer/issuers`: create, list, get and delete RFC 7523 trust
//! relationships in Hydra's shapes (`trustOAuth2JwtGrantIssuer` in,
//! `trustedOAuth2JwtGrantIssuer` out). A trust names an issuer, one subject or any subject,
//! the scopes it may grant, the issuer's public key and an expiry. Only public keys are
//! accepted: a private key sent here is refused, never stored. It does not check assertions
//! (`oauth2::jwt_bearer` does).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::crypto;
use crate::error::{ApiError, ApiJson, parse_urlencoded};
use crate::rfc3339;
use crate::store::trusts::TrustRow;

const DEFAULT_PAGE_SIZE: i64 = 250;
const MAX_PAGE_SIZE: i64 = 1000;
const FIELDS: [&str; 6] = ["issuer", "subject", "allow_any_subject", "scope", "jwk", "expires_at"];
/// JWK members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];
const PATH: &str = "/admin/trust/grants/jwt-bearer/issuers";

pub async fn create(
    State(state): State<AppState>,
    ApiJson(map): ApiJson<Map<String, Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = state.clock.now();
    let row = parse(&map, now)?;
    if !state.store.insert_trust(&row).await? {
        return Err(ApiError::conflict(format!(
            "A trust relationship for issuer {:?}, subject {:?} and key id {:?} exists already.",
            row.issuer, row.subject, row.key_id
        )));
    }
    Ok((StatusCode::CREATED, Json(render(&row))))
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut page_size = DEFAULT_PAGE_SIZE;
    let mut after = String::new();
    let mut issuer = None;
    for (key, value) in parse_urlencoded(query.unwrap_or_default().as_bytes()) {
        match key.as_str() {
            "page_size" => {
                page_size = value.parse::<i64>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
                    ApiError::invalid_request(format!("page_size: must be a number from 1 to {MAX_PAGE_SIZE}"))
                })?;
            }
            "page_token" if !value.is_empty() => {
                after = crypto::b64url_decode(&value)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| ApiError::invalid_request("page_token: malformed"))?;
            }
            "issuer" if !value.is_empty() => issuer = Some(value),
            _ => {}
        }
    }
    let mut rows = state.store.list_trusts(&after, page_size + 1, issuer.as_deref()).await?;
    let more = rows.len() as i64 > page_size;
    rows.truncate(page_size as usize);
    let items: Vec<Value> = rows.iter().map(render).collect();

    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let mut base = format!("http://{host}{PATH}?page_size={page_size}");
    if let Some(issuer) = &issuer {
        base.push_str(&format!("&issuer={}", portcullis_shared::pipeline::form_encode(issuer)));
    }
    let mut link = format!("<{base}&page_token=>; rel=\"first\"");
    if let (true, Some(last)) = (more, rows.last()) {
        link.push_str(&format!(",<{base}&page_token={}>; rel=\"next\"", crypto::b64url(last.id.as_bytes())));
    }
    let mut res = Json(items).into_response();
    if let Ok(v) = HeaderValue::from_str(&link) {
        res.headers_mut().insert(header::LINK, v);
    }
    Ok(res)
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let row = state.store.get_trust(&id).await?.ok_or_else(ApiError::not_found)?;
    Ok(Json(render(&row)))
}

pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if state.store.delete_trust(&id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found()) }
}

fn render(row: &TrustRow) -> Value {
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
fn parse(map: &Map<String, Value>, now: i64) -> Result<TrustRow, ApiError> {
    let bad = |field: &str, msg: &str| ApiError::invalid_request(format!("{field}: {msg}"));
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid_request(format!("unknown field `{unknown}`: allowed are {}", FIELDS.join(", "))));
    }
    let text = |field: &str| -> Result<String, ApiError> {
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
        scope: serde_json::to_string(&scope).map_err(|e| ApiError::internal(&e))?,
        key_id: key_id.to_owned(),
        jwk: jwk.to_string(),
        expires_at,
        created_at: now,
    })
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};

    use crate::keys::Signer;
    use crate::testing::{Harness, T0};

    const PATH: &str = "/admin/trust/grants/jwt-bearer/issuers";

    fn request(key: &Signer, subject: Value) -> Value {
        json!({
            "issuer": "https://idp.example",
            "subject": subject,
            "scope": ["read", "write"],
            "jwk": key.public_jwk(),
            "expires_at": "2030-01-01T00:00:00Z",
        })
    }

    #[tokio::test]
    async fn create_get_list_delete_in_hydra_shape() {
        let h = Harness::new().await;
        let key = Signer::generate().unwrap();
        let reply = h.admin_json(Method::POST, PATH, Some(request(&key, json!("alice")))).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json());
        let created = reply.json();
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["issuer"], "https://idp.example");
        assert_eq!(created["subject"], "alice");
        assert_eq!(created["allow_any_subject"], false);
        assert_eq!(created["scope"], json!(["read", "write"]));
        assert_eq!(created["public_key"], json!({"set": "https://idp.example", "kid": key.kid()}));
        assert_eq!(created["expires_at"], "2030-01-01T00:00:00Z");
        assert_eq!(created["created_at"], crate::rfc3339(T0));

        let dup = h.admin_json(Method::POST, PATH, Some(request(&key, json!("alice")))).await;
        assert_eq!(dup.status, StatusCode::CONFLICT);
        let mut any = request(&key, Value::Null);
        any["allow_any_subject"] = json!(true);
        let any = h.admin_json(Method::POST, PATH, Some(any)).await;
        assert_eq!(any.status, StatusCode::CREATED, "{}", any.json());

        assert_eq!(h.admin_json(Method::GET, &format!("{PATH}/{id}"), None).await.json(), created);
        let v1 = h.admin_json(Method::GET, &format!("/trust/grants/jwt-bearer/issuers/{id}"), None).await;
        assert_eq!(v1.json(), created, "Hydra v1 path without /admin");
        let listed = h.admin_json(Method::GET, &format!("{PATH}?page_size=1"), None).await;
        assert_eq!(listed.json().as_array().unwrap().len(), 1);
        assert!(listed.header("link").contains("rel=\"next\""), "{}", listed.header("link"));
        let all = h.admin_json(Method::GET, &format!("{PATH}?issuer=https%3A%2F%2Fidp.example"), None).await;
        assert_eq!(all.json().as_array().unwrap().len(), 2);
        let none = h.admin_json(Method::GET, &format!("{PATH}?issuer=https%3A%2F%2Fother"), None).await;
        assert_eq!(none.json(), json!([]));

        assert_eq!(h.admin_json(Method::DELETE, &format!("{PATH}/{id}"), None).await.status, StatusCode::NO_CONTENT);
        assert_eq!(h.admin_json(Method::GET, &format!("{PATH}/{id}"), None).await.status, StatusCode::NOT_FOUND);
        assert_eq!(h.admin_json(Method::DELETE, &format!("{PATH}/{id}"), None).await.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn invalid_requests_name_the_field_and_private_keys_are_refused() {
        let h = Harness::new().await;
        let key = Signer::generate().unwrap();
        let with = |field: &str, value: Value| {
            let mut r = request(&key, json!("alice"));
            r[field] = value;
            r
        };
        let mut private = key.public_jwk();
        private["d"] = json!("c2VjcmV0");
        let mut no_kid = key.public_jwk();
        no_kid.as_object_mut().unwrap().remove("kid");
        let mut both = request(&key, json!("alice"));
        both["allow_any_subject"] = json!(true);
        let cases = [
            (with("issuer", json!("")), "issuer:"),
            (with("subject", Value::Null), "subject:"),
            (both, "subject:"),
            (with("scope", Value::Null), "scope:"),
            (with("scope", json!(["a b"])), "scope:"),
            (with("jwk", Value::Null), "jwk:"),
            (with("jwk", private), "jwk:"),
            (with("jwk", no_kid), "jwk:"),
            (with("jwk", json!({"kty": "oct", "kid": "x"})), "jwk:"),
            (with("expires_at", Value::Null), "expires_at:"),
            (with("expires_at", json!("tomorrow")), "expires_at:"),
            (with("expires_at", json!("2020-01-01T00:00:00Z")), "expires_at:"),
            (with("extra", json!(1)), "unknown field `extra`"),
        ];
        for (body, field) in cases {
            let reply = h.admin_json(Method::POST, PATH, Some(body.clone())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
            let text = reply.json()["error_description"].as_str().unwrap().to_owned();
            assert!(text.starts_with(field), "{body}: {text}");
        }
        assert_eq!(h.admin_json(Method::GET, PATH, None).await.json(), json!([]), "nothing stored");
    }
}
