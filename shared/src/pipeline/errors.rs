//! Error handlers: how a denial is answered. `json` (the default), `redirect` (send browsers to
//! a login page, with the original URL in a query parameter) and `www_authenticate` (a Basic
//! challenge), each chosen by `when` conditions on the error and on the request's `Accept` and
//! `Content-Type`. Where Oathkeeper answers 500 when two handlers match, the first one wins.
//! Every JSON error carries a reason code and the request id, so a 401 can be explained.

use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{self, HandlerError};
use super::{Request, Verdict, form_encode};
use crate::denial::{Denial, DenialKind, LocalResponse};
use crate::rule::HandlerSpec;

pub const HANDLERS: &[&str] = &["json", "redirect", "www_authenticate"];

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorHandler {
    pub kind: Kind,
    /// Any clause matching makes the handler responsible; none means always.
    pub when: Vec<When>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Json,
    Redirect { to: String, code: u16, return_to_query_param: Option<String> },
    WwwAuthenticate { realm: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct When {
    pub errors: Vec<DenialKind>,
    pub accept: Vec<String>,
    pub content_type: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenSpec {
    #[serde(default)]
    error: Vec<String>,
    #[serde(default)]
    request: Option<RequestSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default)]
    header: Option<HeaderSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderSpec {
    #[serde(default)]
    accept: Vec<String>,
    #[serde(default)]
    content_type: Vec<String>,
}

impl ErrorHandler {
    pub fn compile(h: &HandlerSpec) -> Result<Self, HandlerError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Spec {
            #[serde(default)]
            when: Vec<WhenSpec>,
            /// `json`: accepted for compatibility; reason codes are always included.
            #[expect(dead_code, reason = "read by Oathkeeper only; accepted so its rule files load")]
            verbose: Option<bool>,
            to: Option<String>,
            code: Option<u16>,
            return_to_query_param: Option<String>,
            realm: Option<String>,
        }
        let c: Spec = config::config(h)?;
        let only_for = |key: &str, value: bool, handler: &str| {
            if value { Err((format!("config.{key}"), format!("is a {handler} key"))) } else { Ok(()) }
        };
        let kind = match h.handler.as_str() {
            "json" => {
                only_for("to", c.to.is_some(), "redirect")?;
                only_for("realm", c.realm.is_some(), "www_authenticate")?;
                Kind::Json
            }
            "redirect" => {
                only_for("realm", c.realm.is_some(), "www_authenticate")?;
                let to = c.to.ok_or_else(|| ("config.to".to_owned(), "is required".to_owned()))?;
                if to.is_empty() || to.bytes().any(|b| b.is_ascii_control()) {
                    return Err(("config.to".into(), "must be a URL".into()));
                }
                let code = c.code.unwrap_or(302);
                if !matches!(code, 301 | 302 | 303 | 307 | 308) {
                    return Err(("config.code".into(), "must be a redirect status (301, 302, 303, 307, 308)".into()));
                }
                if let Some(p) = &c.return_to_query_param {
                    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b",._~-".contains(&b)) {
                        return Err(("config.return_to_query_param".into(), "must match ^[A-Za-z0-9,._~-]+$".into()));
                    }
                }
                Kind::Redirect { to, code, return_to_query_param: c.return_to_query_param }
            }
            "www_authenticate" => {
                only_for("to", c.to.is_some(), "redirect")?;
                Kind::WwwAuthenticate { realm: c.realm.unwrap_or_else(|| "Please authenticate.".into()) }
            }
            other => return Err(config::unknown_handler("error handler", other, HANDLERS)),
        };
        let when = c
            .when
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                let errors = w
                    .error
                    .iter()
                    .enumerate()
                    .map(|(j, e)| {
                        error_kind(e).ok_or_else(|| {
                            (format!("config.when[{i}].error[{j}]"), format!("unknown error {e:?} (e.g. unauthorized, forbidden, not_found, internal_server_error)"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let header = w.request.and_then(|r| r.header);
                let (accept, content_type) = header.map(|h| (h.accept, h.content_type)).unwrap_or_default();
                Ok(When { errors, accept, content_type })
            })
            .collect::<Result<Vec<_>, HandlerError>>()?;
        Ok(Self { kind, when })
    }

    fn responsible(&self, denial: &Denial, req: &Request<'_>) -> bool {
        self.when.is_empty() || self.when.iter().any(|w| w.matches(denial, req))
    }
}

fn error_kind(name: &str) -> Option<DenialKind> {
    Some(match name {
        "bad_request" => DenialKind::BadRequest,
        "unauthorized" => DenialKind::Unauthorized,
        "forbidden" => DenialKind::Forbidden,
        "not_found" => DenialKind::NotFound,
        "too_many_requests" => DenialKind::TooManyRequests,
        "internal_server_error" => DenialKind::Internal,
        "service_unavailable" => DenialKind::Unavailable,
        _ => return None,
    })
}

impl When {
    fn matches(&self, denial: &Denial, req: &Request<'_>) -> bool {
        (self.errors.is_empty() || self.errors.contains(&denial.kind))
            && (self.accept.is_empty()
                || media_matches(&self.accept, req.header("accept").unwrap_or("application/octet-stream")))
            && (self.content_type.is_empty()
                || req.header("content-type").is_some_and(|ct| media_matches(&self.content_type, ct)))
    }
}

/// Oathkeeper's MIME rule: the handler's values may use wildcards (`text/*`, `*/*`); the
/// request's are taken literally, so a browser's `*/*` matches only a handler's `*/*`.
fn media_matches(wanted: &[String], header: &str) -> bool {
    header.split(',').map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).any(|given| {
        wanted.iter().any(|w| {
            let w = w.to_ascii_lowercase();
            w == given
                || w == "*/*"
                || w.strip_suffix("/*").is_some_and(|prefix| given.split('/').next() == Some(prefix))
        })
    })
}

/// The answer to a denial: the first responsible handler of the rule, or JSON.
pub fn respond(handlers: &[ErrorHandler], denial: Denial, req: &Request<'_>) -> Verdict {
    let kind = handlers.iter().find(|h| h.responsible(&denial, req)).map_or(&Kind::Json, |h| &h.kind);
    let response = match kind {
        Kind::Json => json_response(&denial, req),
        Kind::Redirect { to, code, return_to_query_param } => {
            let mut location = to.clone();
            if let Some(param) = return_to_query_param {
                location.push(if location.contains('?') { '&' } else { '?' });
                location.push_str(param);
                location.push('=');
                location.push_str(&form_encode(&original_url(req)));
            }
            LocalResponse {
                status: *code,
                headers: vec![("location".into(), location), ("cache-control".into(), "no-store".into())],
                body: String::new(),
            }
        }
        Kind::WwwAuthenticate { realm } => {
            let quoted: String = realm.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
            let mut response = json_response(&Denial { kind: DenialKind::Unauthorized, ..denial.clone() }, req);
            response.headers.retain(|(n, _)| n != "www-authenticate");
            response.headers.push(("www-authenticate".into(), format!("Basic realm=\"{quoted}\"")));
            response
        }
    };
    Verdict::Deny { denial, response }
}

/// The URL the client asked for. Only what the proxy itself saw (its `:scheme`, `:authority`
/// and `:path`): Oathkeeper prefers `X-Forwarded-*`, which any client can send, turning
/// `return_to` into an open redirect (`X-Forwarded-Host: evil.example`).
fn original_url(req: &Request<'_>) -> String {
    req.url()
}

/// Oathkeeper's JSON error body, plus the reason code and the request id.
pub fn json_response(denial: &Denial, req: &Request<'_>) -> LocalResponse {
    let mut response = denial.to_response();
    let mut body: Value = json!({
        "code": denial.kind.status(),
        "status": denial.kind.reason(),
        "message": denial.message,
    });
    if !denial.reason.is_empty() {
        body["reason"] = json!(denial.reason);
    }
    if let Some(id) = req.header("x-request-id") {
        body["request_id"] = json!(id);
    }
    response.body = json!({ "error": body }).to_string();
    response
}
