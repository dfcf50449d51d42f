//! Mutators: what the upstream learns about the caller. `noop`, `header` (templated headers),
//! `cookie` (templated cookies merged into the request's `Cookie` header) and `hydrator`
//! (an API that may enrich the session's `extra` before the other mutators run).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::config::{self, CacheSpec, Empty, HandlerError};
use super::{HttpCall, HttpResponse, Request, Session};
use crate::denial::{Denial, DenialKind};
use crate::rule::HandlerSpec;
use crate::template::Template;

pub const HANDLERS: &[&str] = &["noop", "header", "cookie", "hydrator", "id_token"];

/// Headers no mutator may set: they change framing or routing, not identity.
const FRAMING_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive"];

/// Per-request correlation headers (Envoy's `x-request-id`, W3C and B3 tracing) that are not
/// sent to a hydrator whose answers are cached: they differ on every request, so keeping them
/// in the call (and so in its cache key) would make every answer a miss, and a cached answer
/// serves many requests anyway. Every other header is sent, and so is part of the key.
const CORRELATION_HEADERS: &[&str] = &["x-request-id", "traceparent", "tracestate", "b3", "x-client-trace-id"];

fn is_correlation_header(name: &str) -> bool {
    CORRELATION_HEADERS.contains(&name) || name.starts_with("x-b3-")
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mutator {
    Noop,
    /// Header names are lower-cased.
    Header(Vec<(String, Template)>),
    Cookie(Vec<(String, Template)>),
    Hydrator(Box<Hydrator>),
    IdToken(Box<IdToken>),
}

/// `id_token`: a short-lived JWT about the session, signed in the gateway with the key the
/// control plane distributes, sent upstream as `Authorization: Bearer`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdToken {
    pub issuer_url: String,
    pub ttl_ms: u64,
    /// Renders a JSON object of extra claims; `exp`, `iat`, `nbf`, `iss`, `sub` and `jti` are
    /// always set by the mutator and override it.
    pub claims: Option<Template>,
}

/// What a mutator needs done outside the pipeline.
pub enum Effect {
    Call(HttpCall),
    Mint(MintRequest),
}

/// A token to sign, or to take from the caller's cache: a hit on `cache_key` needs nothing
/// else, so the claims are only assembled and encoded ([`MintRequest::signing_input`]) when
/// the caller has no live token for the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    pub kid: String,
    /// Same key, issuer, lifetime, subject and rendered claims: the caller may hand back a
    /// token it minted before...
    pub cache_key: String,
    /// ...until then (unix ms).
    pub cache_until_ms: i64,
    /// The claims template's output, already checked to be one JSON object (`{}` without a
    /// template).
    claims: String,
    issuer: String,
    subject: String,
    iat: i64,
    exp: i64,
}

impl MintRequest {
    /// `base64url(header).base64url(claims)`, for the caller to sign with the key `kid`; the
    /// registered claims (`iss`, `sub`, `iat`, `nbf`, `exp`, `jti`) override the template's.
    pub fn signing_input(&self) -> Result<String, String> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use sha2::Digest;
        let Ok(Value::Object(mut claims)) = serde_json::from_str::<Value>(&self.claims) else {
            return Err("the claims are not a JSON object".into());
        };
        let jti: [u8; 32] = sha2::Sha256::digest(format!("{}\n{}", self.cache_key, self.iat).as_bytes()).into();
        for (name, value) in [
            ("iss", Value::from(self.issuer.as_str())),
            ("sub", Value::from(self.subject.as_str())),
            ("iat", Value::from(self.iat)),
            ("nbf", Value::from(self.iat)),
            ("exp", Value::from(self.exp)),
            ("jti", Value::from(URL_SAFE_NO_PAD.encode(&jti[..16]))),
        ] {
            claims.insert(name.into(), value);
        }
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        ))
    }
}

#[derive(Clone, PartialEq)]
pub struct Hydrator {
    pub url: String,
    /// `Basic …`: a credential, kept out of `Debug`.
    pub basic_auth: Option<String>,
    pub cache_ttl_ms: Option<u64>,
}

impl std::fmt::Debug for Hydrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hydrator")
            .field("url", &self.url)
            .field("cache_ttl_ms", &self.cache_ttl_ms)
            .finish_non_exhaustive()
    }
}

impl Mutator {
    pub fn compile(h: &HandlerSpec) -> Result<Self, HandlerError> {
        match h.handler.as_str() {
            "noop" => config::config::<Empty>(h).map(|_| Mutator::Noop),
            "header" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Spec {
                    headers: BTreeMap<String, String>,
                }
                let c: Spec = config::config(h)?;
                let headers = config::header_templates("config.headers", c.headers)?;
                if let Some((name, _)) =
                    headers.iter().find(|(n, _)| FRAMING_HEADERS.contains(&n.as_str()) || n == "cookie")
                {
                    let hint = if name == "cookie" { " (use the cookie mutator)" } else { "" };
                    return Err((format!("config.headers.{name}"), format!("cannot be set by a mutator{hint}")));
                }
                Ok(Mutator::Header(headers))
            }
            "cookie" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Spec {
                    cookies: BTreeMap<String, String>,
                }
                let c: Spec = config::config(h)?;
                let mut cookies = Vec::with_capacity(c.cookies.len());
                for (name, source) in c.cookies {
                    let field = format!("config.cookies.{name}");
                    if !config::is_header_name(&name) {
                        return Err((field, "is not a valid cookie name".into()));
                    }
                    cookies.push((name, Template::compile(&source).map_err(|e| (field, e))?));
                }
                Ok(Mutator::Cookie(cookies))
            }
            "hydrator" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Spec {
                    api: Api,
                    cache: Option<CacheSpec>,
                }
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Api {
                    url: String,
                    auth: Option<Auth>,
                    #[expect(dead_code, reason = "an Oathkeeper option Portcullis accepts and does not need")]
                    retry: Option<Value>,
                }
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Auth {
                    basic: Basic,
                }
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Basic {
                    username: String,
                    password: String,
                }
                let c: Spec = config::config(h)?;
                config::http_url("config.api.url", &c.api.url)?;
                Ok(Mutator::Hydrator(Box::new(Hydrator {
                    url: c.api.url,
                    basic_auth: c.api.auth.map(|a| {
                        format!("Basic {}", STANDARD.encode(format!("{}:{}", a.basic.username, a.basic.password)))
                    }),
                    cache_ttl_ms: CacheSpec::ttl_ms(c.cache, 60_000)?,
                })))
            }
            "id_token" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Spec {
                    issuer_url: String,
                    /// Accepted for compatibility: the public keys are on the control plane's
                    /// `/.well-known/gateway-jwks.json`.
                    #[expect(dead_code, reason = "an Oathkeeper option Portcullis accepts and does not need")]
                    jwks_url: Option<String>,
                    ttl: Option<String>,
                    claims: Option<String>,
                }
                let c: Spec = config::config(h)?;
                config::http_url("config.issuer_url", &c.issuer_url)?;
                let ttl_ms = match c.ttl {
                    Some(t) => config::duration("config.ttl", &t)?,
                    None => 15 * 60_000,
                };
                if ttl_ms < 60_000 {
                    return Err((
                        "config.ttl".into(),
                        "must be at least 1m (tokens are cached until shortly before expiry)".into(),
                    ));
                }
                let claims =
                    c.claims.map(|t| Template::compile(&t).map_err(|e| ("config.claims".to_owned(), e))).transpose()?;
                Ok(Mutator::IdToken(Box::new(IdToken { issuer_url: c.issuer_url, ttl_ms, claims })))
            }
            other => Err(config::unknown_handler("mutator", other, HANDLERS)),
        }
    }

    /// Header names this mutator sets on the upstream request, which clients therefore must not
    /// be able to send themselves.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        let headers: &[(String, Template)] = match self {
            Mutator::Header(h) => h,
            _ => &[],
        };
        headers.iter().map(|(n, _)| n.as_str())
    }

    pub fn apply(
        &self,
        session: &mut Session,
        req: &Request<'_>,
        captures: &[String],
        now_ms: i64,
        signing_kid: Option<&str>,
    ) -> Result<Option<Effect>, Denial> {
        match self {
            Mutator::Noop => Ok(None),
            Mutator::IdToken(t) => {
                mint_request(t, session, req, captures, now_ms, signing_kid).map(|m| Some(Effect::Mint(m)))
            }
            Mutator::Header(templates) => {
                for (name, template) in templates {
                    let value = template.render(&session.context(req, captures)).map_err(|_| too_large(name))?;
                    // CR, LF or NUL in a value would let a claim inject headers.
                    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                        return Err(invalid_value(name));
                    }
                    session.set_header(name, value);
                }
                Ok(None)
            }
            Mutator::Cookie(templates) => {
                let mut cookies: Vec<(String, String)> = Vec::new();
                for (name, template) in templates {
                    let value = template.render(&session.context(req, captures)).map_err(|_| too_large(name))?;
                    if value.bytes().any(|b| b.is_ascii_control() || b == b';' || b == b',') {
                        return Err(invalid_value(name));
                    }
                    cookies.push((name.clone(), value));
                }
                let original: Vec<(String, String)> = req
                    .cookies()
                    .filter(|(n, _)| !cookies.iter().any(|(c, _)| c == n))
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect();
                let header = cookies.iter().chain(&original).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>();
                session.set_header("cookie", header.join("; "));
                Ok(None)
            }
            Mutator::Hydrator(h) => {
                let body = json!({
                    "subject": session.subject,
                    "extra": *session.extra,
                    "header": header_map(&session.header),
                    "match_context": {"regexp_capture_groups": captures, "url": req.url(), "method": req.method},
                })
                .to_string();
                let cached = h.cache_ttl_ms.is_some();
                let mut headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        let framing = matches!(
                            *n,
                            "content-length" | "content-type" | "transfer-encoding" | "connection" | "host"
                        );
                        let uncacheable = cached && is_correlation_header(n);
                        !(framing || uncacheable)
                    })
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect();
                headers.push(("content-type".into(), "application/json".into()));
                if let Some(auth) = &h.basic_auth {
                    headers.retain(|(n, _)| n != "authorization");
                    headers.push(("authorization".into(), auth.clone()));
                }
                let url = match req.query() {
                    Some(q) if !q.is_empty() => format!("{}{}{q}", h.url, if h.url.contains('?') { '&' } else { '?' }),
                    _ => h.url.clone(),
                };
                // The hydrator sees the caller's headers (Authorization, cookies, API keys), not only
                // the session: the key is the whole call.
                let call = HttpCall { method: "POST".into(), url, headers, body: body.into_bytes(), cache_key: None };
                Ok(Some(Effect::Call(call.cacheable(cached))))
            }
        }
    }

    pub fn finish(
        &self,
        outcome: Result<HttpResponse, String>,
        session: &mut Session,
        now_ms: i64,
    ) -> (Result<(), Denial>, Option<i64>) {
        let Mutator::Hydrator(h) = self else {
            return (Err(Denial::new(DenialKind::Internal, "unexpected call result")), None);
        };
        let response = match outcome {
            Ok(r) => r,
            Err(_) => {
                let d = Denial::new(DenialKind::Unavailable, "The hydrator is unavailable")
                    .with_reason("upstream_unavailable");
                return (Err(d), None);
            }
        };
        let error = |kind, message: &str| (Err(Denial::new(kind, message).with_reason("hydrator_error")), None);
        match response.status {
            200 => {}
            401 => return error(DenialKind::Unauthorized, "The hydrator refused the credentials"),
            status => return error(DenialKind::Internal, &format!("The hydrator answered {status}")),
        }
        let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(&response.body) else {
            return error(DenialKind::Internal, "The hydrator did not answer with a session object");
        };
        if answer.get("subject").and_then(Value::as_str) != Some(session.subject.as_str()) {
            return error(DenialKind::Internal, "The hydrator changed the session's subject");
        }
        match answer.get("extra") {
            Some(Value::Object(extra)) => session.extra = Arc::new(extra.clone()),
            None | Some(Value::Null) => session.extra = Session::default().extra,
            Some(_) => return error(DenialKind::Internal, "The hydrator's extra is not an object"),
        }
        if let Some(Value::Object(header)) = answer.get("header") {
            for (name, values) in header {
                let value = match values {
                    Value::Array(list) => list.first().and_then(Value::as_str),
                    other => other.as_str(),
                };
                let name = name.to_ascii_lowercase();
                // Only a real header name (no pseudo-header such as `:path`, no space), never
                // one that changes framing, and no value that could start another header.
                let settable = config::is_header_name(&name) && !FRAMING_HEADERS.contains(&name.as_str());
                if let Some(v) = value.filter(|v| settable && !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)) {
                    session.set_header(&name, v.to_owned());
                }
            }
        }
        let cache_until = h.cache_ttl_ms.map(|ttl| now_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
        (Ok(()), cache_until)
    }
}

fn mint_request(
    t: &IdToken,
    session: &Session,
    req: &Request<'_>,
    captures: &[String],
    now_ms: i64,
    signing_kid: Option<&str>,
) -> Result<MintRequest, Denial> {
    let Some(kid) = signing_kid else {
        return Err(Denial::new(DenialKind::Unavailable, "The gateway has no signing key for id tokens yet")
            .with_reason("signing_key_unavailable"));
    };
    let claims = match &t.claims {
        None => "{}".to_owned(),
        Some(template) => {
            let text =
                template.render(&session.context(req, captures)).map_err(|_| too_large("the id_token claims"))?;
            // Checked here, without building the object: on a cache hit it is never built.
            let object =
                text.trim_start().starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
            if !object {
                return Err(Denial::new(
                    DenialKind::Internal,
                    "The id_token claims template did not render a JSON object",
                )
                .with_reason("mutator_invalid_value"));
            }
            text
        }
    };
    // A JSON array, so no two keys differ only in where one part ends; the time fields follow
    // from the lifetime.
    let cache_key = serde_json::to_string(&("id_token", kid, &t.issuer_url, t.ttl_ms, &session.subject, &claims))
        .map_err(|_| too_large("the id_token claims"))?;
    let iat = now_ms / 1000;
    let exp = iat + i64::try_from(t.ttl_ms / 1000).unwrap_or(i64::MAX / 2);
    Ok(MintRequest {
        kid: kid.to_owned(),
        cache_key,
        // Reused until a minute before it expires, so the upstream never receives a dying token.
        cache_until_ms: (exp - 60) * 1000,
        claims,
        issuer: t.issuer_url.clone(),
        subject: session.subject.clone(),
        iat,
        exp,
    })
}

fn too_large(name: &str) -> Denial {
    Denial::new(DenialKind::Internal, format!("The mutator's template for {name} rendered too much"))
        .with_reason("template_too_large")
}

fn invalid_value(name: &str) -> Denial {
    Denial::new(DenialKind::Internal, format!("The mutator produced an invalid value for {name}"))
        .with_reason("mutator_invalid_value")
}

fn header_map(headers: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (n, v) in headers {
        map.insert(n.clone(), json!([v]));
    }
    Value::Object(map)
}
