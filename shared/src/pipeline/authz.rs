//! Authorizers: may this subject do this? `allow`, `deny`, and the call-out authorizers
//! `remote` and `remote_json` (how Keto v0.6+ permission checks are written in Oathkeeper
//! rules) and `keto_engine_acp_ory` (the legacy Keto ≤0.5 ACP engine). A call-out answers 200
//! to allow and 403 to deny; its listed response headers are passed on to the upstream. The
//! client address given to Keto is the one the proxy vouches for, never a client-written
//! `X-Forwarded-For`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::config::{self, Empty, HandlerError};
use super::{HttpCall, HttpResponse, Request, Session};
use crate::denial::{Denial, DenialKind};
use crate::rule::HandlerSpec;
use crate::template::{Template, TooLarge};

pub const HANDLERS: &[&str] = &["allow", "deny", "remote", "remote_json", "keto_engine_acp_ory"];

#[derive(Debug, Clone, PartialEq)]
pub enum Authorizer {
    Allow,
    Deny,
    Remote(Box<Remote>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub url: String,
    pub body: Body,
    pub headers: Vec<(String, Template)>,
    /// Lower-cased names of response headers to pass to the upstream.
    pub forward_response_headers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `remote_json`: a template that must render JSON.
    Json(Template),
    /// `remote` with `body`: a template sent as `text/plain`.
    Text(Template),
    /// `remote` without `body`: no body (see [`Authorizer::start`]).
    Empty,
    /// `keto_engine_acp_ory`: `{action, resource, subject, context}` from these templates.
    Keto { action: Template, resource: Template, subject: Option<Template> },
}

pub enum Start {
    Allow,
    Deny(Denial),
    Call(HttpCall),
}

impl Authorizer {
    pub fn compile(h: &HandlerSpec) -> Result<Self, HandlerError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Keto {
            base_url: String,
            required_action: String,
            required_resource: String,
            subject: Option<String>,
            flavor: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Spec {
            remote: String,
            payload: Option<String>,
            /// Portcullis: a body template for `remote` (Oathkeeper streams the request body).
            body: Option<String>,
            #[serde(default)]
            headers: BTreeMap<String, String>,
            #[serde(default)]
            forward_response_headers_to_upstream: Vec<String>,
            #[serde(default)]
            #[expect(dead_code, reason = "an Oathkeeper option Portcullis accepts and does not need")]
            retry: Option<Value>,
        }
        match h.handler.as_str() {
            "allow" => config::config::<Empty>(h).map(|_| Authorizer::Allow),
            "deny" => config::config::<Empty>(h).map(|_| Authorizer::Deny),
            "keto_engine_acp_ory" => {
                let c: Keto = config::config(h)?;
                config::http_url("config.base_url", &c.base_url)?;
                let flavor = c.flavor.unwrap_or_else(|| "regex".into());
                if !matches!(flavor.as_str(), "regex" | "exact" | "glob") {
                    return Err(("config.flavor".into(), "must be regex, exact or glob".into()));
                }
                let template =
                    |field: &str, source: &str| Template::compile(source).map_err(|e| (format!("config.{field}"), e));
                Ok(Authorizer::Remote(Box::new(Remote {
                    url: format!("{}/engines/acp/ory/{flavor}/allowed", c.base_url.trim_end_matches('/')),
                    body: Body::Keto {
                        action: template("required_action", &c.required_action)?,
                        resource: template("required_resource", &c.required_resource)?,
                        subject: c.subject.as_deref().map(|s| template("subject", s)).transpose()?,
                    },
                    headers: Vec::new(),
                    forward_response_headers: Vec::new(),
                })))
            }
            kind @ ("remote" | "remote_json") => {
                let c: Spec = config::config(h)?;
                config::http_url("config.remote", &c.remote)?;
                let compile =
                    |field: &str, source: &str| Template::compile(source).map_err(|e| (format!("config.{field}"), e));
                let body = match (kind, c.payload, c.body) {
                    ("remote_json", Some(p), None) => Body::Json(compile("payload", &p)?),
                    ("remote_json", None, None) => return Err(("config.payload".into(), "is required".into())),
                    ("remote_json", _, Some(_)) => {
                        return Err(("config.body".into(), "is a remote key; remote_json uses payload".into()));
                    }
                    (_, Some(_), _) => return Err(("config.payload".into(), "is a remote_json key".into())),
                    (_, None, Some(b)) => Body::Text(compile("body", &b)?),
                    (_, None, None) => Body::Empty,
                };
                for (i, name) in c.forward_response_headers_to_upstream.iter().enumerate() {
                    if !config::is_header_name(name) {
                        return Err((
                            format!("config.forward_response_headers_to_upstream[{i}]"),
                            "is not a valid header name".into(),
                        ));
                    }
                }
                Ok(Authorizer::Remote(Box::new(Remote {
                    url: c.remote,
                    body,
                    headers: config::header_templates("config.headers", c.headers)?,
                    forward_response_headers: c
                        .forward_response_headers_to_upstream
                        .iter()
                        .map(|n| n.to_ascii_lowercase())
                        .collect(),
                })))
            }
            other => Err(config::unknown_handler("authorizer", other, HANDLERS)),
        }
    }

    /// Whether this authorizer sends the client's address (Keto's `remoteIpAddress`), which the
    /// caller then has to read for [`Request::remote_addr`].
    pub fn needs_client_address(&self) -> bool {
        matches!(self, Authorizer::Remote(r) if matches!(r.body, Body::Keto { .. }))
    }

    /// Header names this authorizer may set on the upstream request.
    pub fn header_names(&self) -> &[String] {
        match self {
            Authorizer::Remote(r) => &r.forward_response_headers,
            _ => &[],
        }
    }

    pub fn start(&self, session: &Session, req: &Request<'_>, captures: &[String]) -> Start {
        let remote = match self {
            Authorizer::Allow => return Start::Allow,
            Authorizer::Deny => {
                return Start::Deny(
                    Denial::new(DenialKind::Forbidden, "Access credentials are not sufficient to access this resource")
                        .with_reason("denied_by_rule"),
                );
            }
            Authorizer::Remote(r) => r,
        };
        match remote_call(remote, session, req, captures) {
            Ok(call) => call,
            Err(TooLarge) => Start::Deny(
                Denial::new(DenialKind::Internal, "An authorizer template rendered too much")
                    .with_reason("template_too_large"),
            ),
        }
    }

    pub fn finish(&self, outcome: Result<HttpResponse, String>, session: &mut Session) -> Result<(), Denial> {
        let Authorizer::Remote(remote) = self else {
            return Err(Denial::new(DenialKind::Internal, "unexpected call result"));
        };
        let response = outcome.map_err(|_| {
            Denial::new(DenialKind::Unavailable, "The authorizer is unavailable").with_reason("upstream_unavailable")
        })?;
        let keto_refused = matches!(remote.body, Body::Keto { .. })
            && response.status == 200
            && serde_json::from_slice::<Value>(&response.body)
                .ok()
                .and_then(|v| v.get("allowed").and_then(Value::as_bool))
                != Some(true);
        if keto_refused {
            return Err(Denial::new(DenialKind::Forbidden, "Access denied by the authorizer")
                .with_reason("denied_by_authorizer"));
        }
        match response.status {
            200 => {
                for name in &remote.forward_response_headers {
                    if let Some(v) = response.header(name) {
                        session.set_header(name, v.to_owned());
                    }
                }
                Ok(())
            }
            403 => Err(Denial::new(DenialKind::Forbidden, "Access denied by the authorizer")
                .with_reason("denied_by_authorizer")),
            429 => Err(Denial::new(DenialKind::TooManyRequests, "Too many requests").with_reason("rate_limited")),
            status => Err(Denial::new(DenialKind::Internal, format!("The authorizer answered {status}"))
                .with_reason("authorizer_error")),
        }
    }
}

/// The call a `remote`/`remote_json`/Keto authorizer makes, its templates rendered.
fn remote_call(remote: &Remote, session: &Session, req: &Request<'_>, captures: &[String]) -> Result<Start, TooLarge> {
    let ctx = session.context(req, captures);
    let mut headers: Vec<(String, String)> = Vec::new();
    let body = match &remote.body {
        Body::Json(payload) => {
            let rendered = payload.render(&ctx)?;
            if serde_json::from_str::<Value>(&rendered).is_err() {
                return Ok(Start::Deny(
                    Denial::new(DenialKind::Internal, "The authorizer payload template did not render valid JSON")
                        .with_reason("authorizer_payload"),
                ));
            }
            headers.push(("content-type".into(), "application/json".into()));
            rendered.into_bytes()
        }
        Body::Text(template) => {
            headers.push(("content-type".into(), "text/plain; charset=utf-8".into()));
            template.render(&ctx)?.into_bytes()
        }
        Body::Keto { action, resource, subject } => {
            headers.push(("content-type".into(), "application/json".into()));
            let subject = match subject {
                Some(s) => s.render(&ctx)?,
                None => session.subject.clone(),
            };
            // Never X-Forwarded-For: its leftmost entry is whatever the client wrote.
            let remote_ip = req.remote_addr.unwrap_or("");
            serde_json::json!({
                "action": action.render(&ctx)?,
                "resource": resource.render(&ctx)?,
                "subject": subject,
                "context": {"remoteIpAddress": remote_ip},
            })
            .to_string()
            .into_bytes()
        }
        Body::Empty => {
            // `remote`: Oathkeeper streams the request body; the filter decides on headers
            // alone, so the authorizer gets the request's credentials and type, no body.
            for name in ["content-type", "authorization"] {
                if let Some(v) = req.header(name) {
                    headers.push((name.into(), v.to_owned()));
                }
            }
            Vec::new()
        }
    };
    for (name, template) in &remote.headers {
        let value = template.render(&ctx)?;
        if !value.is_empty() {
            headers.retain(|(n, _)| n != name);
            headers.push((name.clone(), value));
        }
    }
    Ok(Start::Call(HttpCall { method: "POST".into(), url: remote.url.clone(), headers, body, cache_key: None }))
}
