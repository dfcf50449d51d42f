//! The two error vocabularies of the API and the rejections that feed them.
//!
//! OAuth2 endpoints answer RFC 6749 errors (`{"error","error_description"}`, 401 +
//! `WWW-Authenticate` for `invalid_client`); the admin API answers
//! `{"error","error_description","status_code"}`. Extractor wrappers here turn axum's
//! plain-text rejections (bad JSON, wrong content type, oversized body) into those shapes.
//! Internal causes are logged, never sent to the caller.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

pub use portcullis_model::StartupError;
pub use portcullis_model::form::{form_decode, parse_urlencoded};
pub use portcullis_store::StoreError;

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into() }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }
    pub fn too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "The request body is too large.")
    }
    /// 503 with `Retry-After`: the server could not take the request now (hashing is saturated).
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", d)
    }
    pub fn server_error(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error on an OAuth2 endpoint");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The authorization server encountered an unexpected condition that prevented it from fulfilling the request.",
        )
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        Self::server_error(&e)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res =
            (self.status, Json(json!({"error": self.error, "error_description": self.description}))).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.error == "invalid_client" {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"portcullis\""));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

/// An admin API error.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into() }
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Unable to locate the requested resource")
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn conflict(d: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", d)
    }
    pub fn invalid_rule(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_rule", d)
    }
    pub fn unauthorized(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", d)
    }
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error on the admin API");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "An internal error occurred; see the server log.")
    }
    /// Maps a rejection's status onto our codes, keeping axum's explanation where it helps.
    fn from_rejection(status: StatusCode, text: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(status, "request_too_large", "The request body is too large."),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::new(status, "unsupported_media_type", "Expected request with `Content-Type: application/json`")
            }
            s if s.is_server_error() => Self::internal(&text),
            _ => Self::invalid_request(text),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::internal(&e)
    }
}

impl From<portcullis_keys::ReloadError> for ApiError {
    fn from(e: portcullis_keys::ReloadError) -> Self {
        Self::internal(&e)
    }
}

impl From<portcullis_model::client::InvalidClient> for ApiError {
    fn from(e: portcullis_model::client::InvalidClient) -> Self {
        Self::invalid_request(e.0)
    }
}

impl From<portcullis_model::paging::BadPageToken> for ApiError {
    fn from(e: portcullis_model::paging::BadPageToken) -> Self {
        Self::invalid_request(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({
                "error": self.error,
                "error_description": self.description,
                "status_code": self.status.as_u16(),
            })),
        )
            .into_response()
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    ApiError::from_rejection(r.status(), r.body_text())
}

/// Where a [`FormParams`] rejection is going: the OAuth2 or the admin vocabulary.
pub enum ParamsRejection {
    TooLarge,
    Malformed(String),
}

impl From<ParamsRejection> for OAuthError {
    fn from(r: ParamsRejection) -> Self {
        match r {
            ParamsRejection::TooLarge => OAuthError::too_large(),
            ParamsRejection::Malformed(m) => OAuthError::invalid_request(m),
        }
    }
}

impl From<ParamsRejection> for ApiError {
    fn from(r: ParamsRejection) -> Self {
        match r {
            ParamsRejection::TooLarge => ApiError::from_rejection(StatusCode::PAYLOAD_TOO_LARGE, String::new()),
            ParamsRejection::Malformed(m) => ApiError::invalid_request(m),
        }
    }
}

/// Form fields from an `application/x-www-form-urlencoded` or `multipart/form-data` body, in
/// order and with repeats (`audience=a&audience=b`). Rejections carry the shape of whichever
/// API uses it (`E`).
pub struct FormParams<E>(pub Vec<(String, String)>, std::marker::PhantomData<E>);

impl<E> FormParams<E> {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs, std::marker::PhantomData)
    }

    /// The single value of `name`; a repeated parameter is a malformed request (RFC 6749 §3.1).
    pub fn single(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(portcullis_model::form::Repeated(name.to_owned()).to_string()));
        }
        Ok(first)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl<S, E> FromRequest<S> for FormParams<E>
where
    S: Send + Sync,
    E: From<ParamsRejection> + IntoResponse,
{
    type Rejection = E;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(req, state)
                .await
                .map_err(|e| E::from(ParamsRejection::Malformed(e.body_text())))?;
            let mut pairs = Vec::new();
            loop {
                match multipart.next_field().await {
                    Ok(Some(field)) => {
                        let name = field.name().unwrap_or_default().to_owned();
                        let value = field.text().await.map_err(multipart_rejection)?;
                        pairs.push((name, value));
                    }
                    Ok(None) => break,
                    Err(e) => return Err(multipart_rejection(e).into()),
                }
            }
            return Ok(Self::new(pairs));
        }
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return Err(ParamsRejection::Malformed(
                "The request must use Content-Type application/x-www-form-urlencoded or multipart/form-data.".into(),
            )
            .into());
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            E::from(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ParamsRejection::TooLarge
            } else {
                ParamsRejection::Malformed(e.body_text())
            })
        })?;
        Ok(Self::new(parse_urlencoded(&bytes)))
    }
}

fn multipart_rejection(e: axum::extract::multipart::MultipartError) -> ParamsRejection {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ParamsRejection::TooLarge
    } else {
        ParamsRejection::Malformed(e.body_text())
    }
}
