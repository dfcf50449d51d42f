//! Authorizers: may this subject do this? `allow`, `deny`, and the call-out authorizers
//! `remote` and `remote_json` (how Keto v0.6+ permission checks are written in Oathkeeper
//! rules). A call-out answers 200 to allow and 403 to deny; its listed response headers are
//! passed on to the upstream.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::config::{self, Empty, HandlerError};
use super::{HttpCall, HttpResponse, Request, Session};
use crate::denial::{Denial, DenialKind};
use crate::rule::HandlerSpec;
use crate::template::Template;

pub const HANDLERS: &[&str] = &["allow", "deny", "remote", "remote_json"];

#[derive(Debug, Clone, PartialEq)]
pub enum Authorizer {
    Allow,
    Deny,
    Remote(Box<Remote>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub url: String,
    /// `remote_json`: the rendered JSON body. `remote`: none (see [`Authorizer::start`]).
    pub payload: Option<Template>,
    pub headers: Vec<(String, Template)>,
    /// Lower-cased names of response headers to pass to the upstream.
    pub forward_response_headers: Vec<String>,
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
        struct Spec {
            remote: String,
            payload: Option<String>,
            #[serde(default)]
            headers: BTreeMap<String, String>,
            #[serde(default)]
            forward_response_headers_to_upstream: Vec<String>,
            #[serde(default)]
            #[allow(dead_code)]
            retry: Option<Value>,
        }
        match h.handler.as_str() {
            "allow" => config::config::<Empty>(h).map(|_| Authorizer::Allow),
            "deny" => config::config::<Empty>(h).map(|_| Authorizer::Deny),
            kind @ ("remote" | "remote_json") => {
                let c: Spec = config::config(h)?;
                config::http_url("config.remote", &c.remote)?;
                let payload = match (kind, c.payload) {
                    ("remote_json", Some(p)) => {
                        Some(Template::compile(&p).map_err(|e| ("config.payload".to_owned(), e))?)
                    }
                    ("remote_json", None) => return Err(("config.payload".into(), "is required".into())),
                    (_, Some(_)) => return Err(("config.payload".into(), "is a remote_json key".into())),
                    (_, None) => None,
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
                    payload,
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
        let ctx = session.context(req, captures);
        let mut headers: Vec<(String, String)> = Vec::new();
        let body = match &remote.payload {
            Some(payload) => {
                let rendered = payload.render(&ctx);
                if serde_json::from_str::<Value>(&rendered).is_err() {
                    return Start::Deny(
                        Denial::new(DenialKind::Internal, "The authorizer payload template did not render valid JSON")
                            .with_reason("authorizer_payload"),
                    );
                }
                headers.push(("content-type".into(), "application/json".into()));
                rendered.into_bytes()
            }
            None => {
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
            let value = template.render(&ctx);
            if !value.is_empty() {
                headers.retain(|(n, _)| n != name);
                headers.push((name.clone(), value));
            }
        }
        Start::Call(HttpCall { method: "POST".into(), url: remote.url.clone(), headers, body, cache_key: None })
    }

    pub fn finish(&self, outcome: Result<HttpResponse, String>, session: &mut Session) -> Result<(), Denial> {
        let Authorizer::Remote(remote) = self else {
            return Err(Denial::new(DenialKind::Internal, "unexpected call result"));
        };
        let response = outcome.map_err(|_| {
            Denial::new(DenialKind::Unavailable, "The authorizer is unavailable").with_reason("upstream_unavailable")
        })?;
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
