//! Why a request is refused and the response that says so: Oathkeeper's JSON error body
//! (`{"error":{"code","status","message"}}`) with its status codes, plus what Oathkeeper
//! leaves out: `WWW-Authenticate: Bearer` on every 401 (RFC 6750), with `invalid_token` or
//! `insufficient_scope` when that is the reason, so a client can tell what to fix.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    TooManyRequests,
    Internal,
    Unavailable,
}

impl DenialKind {
    pub fn status(self) -> u16 {
        match self {
            DenialKind::BadRequest => 400,
            DenialKind::Unauthorized => 401,
            DenialKind::Forbidden => 403,
            DenialKind::NotFound => 404,
            DenialKind::TooManyRequests => 429,
            DenialKind::Internal => 500,
            DenialKind::Unavailable => 503,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            DenialKind::BadRequest => "Bad Request",
            DenialKind::Unauthorized => "Unauthorized",
            DenialKind::Forbidden => "Forbidden",
            DenialKind::NotFound => "Not Found",
            DenialKind::TooManyRequests => "Too Many Requests",
            DenialKind::Internal => "Internal Server Error",
            DenialKind::Unavailable => "Service Unavailable",
        }
    }
}

/// RFC 6750 §3.1 error codes carried in `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    InvalidToken,
    InsufficientScope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub kind: DenialKind,
    pub message: String,
    pub bearer_error: Option<BearerError>,
    /// A stable, machine-readable reason (`token_expired`, `no_rule`, ...), for explaining a
    /// 401/403 without reading logs.
    pub reason: &'static str,
}

/// A response the filter sends instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Denial {
    pub fn new(kind: DenialKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), bearer_error: None, reason: "" }
    }

    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    pub fn with_bearer_error(mut self, error: BearerError) -> Self {
        self.bearer_error = Some(error);
        self
    }

    pub fn unauthorized() -> Self {
        Self::new(DenialKind::Unauthorized, "Access credentials are invalid")
    }

    pub fn no_rule() -> Self {
        Self::new(DenialKind::NotFound, "Requested url does not match any rules").with_reason("no_rule")
    }

    /// The JSON error response.
    pub fn to_response(&self) -> LocalResponse {
        let mut error = serde_json::json!({
            "code": self.kind.status(),
            "status": self.kind.reason(),
            "message": self.message,
        });
        if !self.reason.is_empty() {
            error["reason"] = serde_json::json!(self.reason);
        }
        let body = serde_json::json!({ "error": error }).to_string();
        let mut headers = vec![
            ("content-type".to_owned(), "application/json; charset=utf-8".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ];
        let challenge = match (self.kind, self.bearer_error) {
            (DenialKind::Unauthorized, None) => Some("Bearer".to_owned()),
            (DenialKind::Unauthorized, Some(BearerError::InvalidToken)) => {
                Some(format!("Bearer error=\"invalid_token\", error_description=\"{}\"", quote_safe(&self.message)))
            }
            (_, Some(BearerError::InsufficientScope)) => Some(format!(
                "Bearer error=\"insufficient_scope\", error_description=\"{}\"",
                quote_safe(&self.message)
            )),
            _ => None,
        };
        if let Some(c) = challenge {
            headers.push(("www-authenticate".to_owned(), c));
        }
        LocalResponse { status: self.kind.status(), headers, body }
    }
}

/// RFC 7235 quoted-string content: drop quotes, backslashes and control characters.
fn quote_safe(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a LocalResponse, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn unauthorized_carries_a_bearer_challenge_and_oathkeeper_json() {
        let r = Denial::unauthorized().to_response();
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["code"], 401);
        assert_eq!(body["error"]["status"], "Unauthorized");
        assert_eq!(body["error"]["message"], "Access credentials are invalid");
    }

    #[test]
    fn invalid_token_and_scope_say_why() {
        let r = Denial::new(DenialKind::Unauthorized, "token is \"expired\"")
            .with_bearer_error(BearerError::InvalidToken)
            .to_response();
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer error=\"invalid_token\", error_description=\"token is expired\"")
        );
        let r = Denial::new(DenialKind::Forbidden, "scope admin is required")
            .with_bearer_error(BearerError::InsufficientScope)
            .to_response();
        assert_eq!(r.status, 403);
        assert!(header(&r, "www-authenticate").unwrap().contains("insufficient_scope"));
        assert_eq!(header(&Denial::no_rule().to_response(), "www-authenticate"), None);
    }
}
