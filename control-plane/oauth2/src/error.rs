//! The OAuth2 domain's error: an RFC 6749 error code with the sentence the client reads, or a
//! server fault that keeps its cause. It is a plain value: the HTTP edge (the control plane's
//! `OAuthError`) picks the status and headers and logs the cause; nothing here knows HTTP.

use portcullis_store::StoreError;

use crate::issue::MintError;

/// The RFC 6749 §5.2 (and RFC 7009, OIDC) error codes the domain refuses a request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    UnauthorizedClient,
    UnsupportedGrantType,
    /// The server could not take the request now (hashing is saturated); retry shortly.
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::InvalidScope => "invalid_scope",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// Why an OAuth2 request was not answered: refused (the caller's fault, with a code) or a
/// server fault (store, minting, anything else), whose cause is kept for the log only.
#[derive(Debug, thiserror::Error)]
pub enum OAuth2Error {
    #[error("{}: {description}", code.as_str())]
    Refused { code: ErrorCode, description: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error("{0}")]
    Internal(String),
}

impl OAuth2Error {
    pub fn refused(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::Refused { code, description: description.into() }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::refused(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::refused(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::refused(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::refused(ErrorCode::InvalidScope, d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::refused(ErrorCode::UnauthorizedClient, d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::refused(ErrorCode::UnsupportedGrantType, d)
    }
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::refused(ErrorCode::TemporarilyUnavailable, d)
    }
    /// A server fault whose cause is only a message (the edge logs it, the client reads a
    /// generic `server_error`).
    pub fn server_error(cause: &dyn std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
    /// The refusal's code, `None` for a server fault.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}
