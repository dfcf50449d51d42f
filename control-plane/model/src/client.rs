//! The OAuth2 client model in Hydra's JSON shape (`oAuth2Client`): parsing and validating an
//! admin request, defaults, and rendering. It accepts every property Hydra knows (unmodelled
//! ones are stored and echoed as given) and rejects names Hydra does not know, so typos fail
//! loudly. No I/O and no hashing here; secrets pass through only as request input.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::token::AccessTokenStrategy;

/// A client request that cannot be accepted; the message names the field
/// (`redirect_uris: ...`). The admin API answers it as a 400 `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidClient(pub String);

/// The JWS algorithms accepted for client assertions (`private_key_jwt`) and jwt-bearer grants.
pub const ASSERTION_ALGORITHM_NAMES: [&str; 2] = ["ES256", "RS256"];

/// Hydra's 51 `oAuth2Client` properties (hydra `client/client.go`).
pub const HYDRA_FIELDS: [&str; 51] = [
    "client_id",
    "client_name",
    "client_secret",
    "client_secret_expires_at",
    "redirect_uris",
    "grant_types",
    "response_types",
    "scope",
    "audience",
    "owner",
    "policy_uri",
    "tos_uri",
    "client_uri",
    "logo_uri",
    "contacts",
    "allowed_cors_origins",
    "subject_type",
    "sector_identifier_uri",
    "jwks_uri",
    "jwks",
    "token_endpoint_auth_method",
    "token_endpoint_auth_signing_alg",
    "request_uris",
    "request_object_signing_alg",
    "userinfo_signed_response_alg",
    "frontchannel_logout_uri",
    "frontchannel_logout_session_required",
    "backchannel_logout_uri",
    "backchannel_logout_session_required",
    "post_logout_redirect_uris",
    "metadata",
    "access_token_strategy",
    "skip_consent",
    "skip_logout_consent",
    "registration_access_token",
    "registration_client_uri",
    "created_at",
    "updated_at",
    "authorization_code_grant_access_token_lifespan",
    "authorization_code_grant_id_token_lifespan",
    "authorization_code_grant_refresh_token_lifespan",
    "client_credentials_grant_access_token_lifespan",
    "implicit_grant_access_token_lifespan",
    "implicit_grant_id_token_lifespan",
    "jwt_bearer_grant_access_token_lifespan",
    "refresh_token_grant_id_token_lifespan",
    "refresh_token_grant_access_token_lifespan",
    "refresh_token_grant_refresh_token_lifespan",
    "device_authorization_grant_id_token_lifespan",
    "device_authorization_grant_access_token_lifespan",
    "device_authorization_grant_refresh_token_lifespan",
];

/// Managed by the server: accepted in a request (SDKs send them back) but ignored.
const SERVER_MANAGED: [&str; 5] =
    ["client_id", "client_secret", "client_secret_expires_at", "created_at", "updated_at"];

pub const GRANT_TYPES: [&str; 6] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "implicit",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:device_code",
];

/// The per-grant token lifespans (`oAuth2ClientTokenLifespans`): Go duration strings or null.
pub const LIFESPAN_FIELDS: [&str; 13] = [
    "authorization_code_grant_access_token_lifespan",
    "authorization_code_grant_id_token_lifespan",
    "authorization_code_grant_refresh_token_lifespan",
    "client_credentials_grant_access_token_lifespan",
    "implicit_grant_access_token_lifespan",
    "implicit_grant_id_token_lifespan",
    "jwt_bearer_grant_access_token_lifespan",
    "refresh_token_grant_id_token_lifespan",
    "refresh_token_grant_access_token_lifespan",
    "refresh_token_grant_refresh_token_lifespan",
    "device_authorization_grant_id_token_lifespan",
    "device_authorization_grant_access_token_lifespan",
    "device_authorization_grant_refresh_token_lifespan",
];

pub const AUTH_METHODS: [&str; 4] = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];

/// Everything about a client except its id, secret and timestamps; stored as `body` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientBody {
    #[serde(default, deserialize_with = "nullable")]
    pub client_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub redirect_uris: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub grant_types: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub response_types: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub scope: String,
    #[serde(default, deserialize_with = "nullable")]
    pub audience: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub owner: String,
    #[serde(default, deserialize_with = "nullable")]
    pub policy_uri: String,
    #[serde(default, deserialize_with = "nullable")]
    pub tos_uri: String,
    #[serde(default, deserialize_with = "nullable")]
    pub client_uri: String,
    #[serde(default, deserialize_with = "nullable")]
    pub logo_uri: String,
    #[serde(default, deserialize_with = "nullable")]
    pub contacts: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub allowed_cors_origins: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub token_endpoint_auth_method: String,
    #[serde(default = "empty_object", deserialize_with = "nullable_object")]
    pub metadata: Value,
    #[serde(default, deserialize_with = "nullable")]
    pub skip_consent: bool,
    #[serde(default)]
    pub client_credentials_grant_access_token_lifespan: Option<String>,
    /// The other Hydra properties, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn nullable_object<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    match Option::<Map<String, Value>>::deserialize(d)? {
        Some(m) => Ok(Value::Object(m)),
        None => Ok(empty_object()),
    }
}

/// A validated create/replace request.
pub struct ClientRequest {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub body: ClientBody,
}

impl ClientRequest {
    pub fn parse(mut map: Map<String, Value>) -> Result<Self, InvalidClient> {
        if let Some(unknown) = map.keys().find(|k| !HYDRA_FIELDS.contains(&k.as_str())) {
            return Err(InvalidClient(format!("unknown field `{unknown}`: not an OAuth 2.0 client property")));
        }
        let client_id = optional_string(&map, "client_id")?;
        let client_secret = optional_string(&map, "client_secret")?;
        for key in SERVER_MANAGED {
            map.remove(key);
        }
        let mut body: ClientBody = serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
            let path = e.path().to_string();
            InvalidClient(format!("field `{path}`: {}", e.into_inner()))
        })?;
        if body.grant_types.is_empty() {
            body.grant_types = vec!["authorization_code".into()];
        }
        if body.response_types.is_empty() {
            body.response_types = vec!["code".into()];
        }
        if body.token_endpoint_auth_method.is_empty() {
            body.token_endpoint_auth_method = "client_secret_basic".into();
        }
        let request = Self { client_id, client_secret, body };
        request.validate()?;
        Ok(request)
    }

    fn validate(&self) -> Result<(), InvalidClient> {
        let bad = |field: &str, msg: String| InvalidClient(format!("{field}: {msg}"));
        if let Some(id) = &self.client_id {
            validate_client_id(id).map_err(|m| bad("client_id", m))?;
        }
        if let Some(secret) = &self.client_secret {
            if secret.chars().count() < 6 {
                return Err(bad("client_secret", "must be at least 6 characters long".into()));
            }
        }
        let b = &self.body;
        for g in &b.grant_types {
            if !GRANT_TYPES.contains(&g.as_str()) {
                return Err(bad(
                    "grant_types",
                    format!("unsupported grant type {g:?}; allowed: {}", GRANT_TYPES.join(", ")),
                ));
            }
        }
        let method = b.token_endpoint_auth_method.as_str();
        if !AUTH_METHODS.contains(&method) {
            return Err(bad(
                "token_endpoint_auth_method",
                format!("unsupported method {method:?}; allowed: {}", AUTH_METHODS.join(", ")),
            ));
        }
        if method == "none" {
            if b.grant_types.iter().any(|g| g == "client_credentials") {
                return Err(bad(
                    "token_endpoint_auth_method",
                    "\"none\" cannot be used with the client_credentials grant, which requires client authentication"
                        .into(),
                ));
            }
            if self.client_secret.is_some() {
                return Err(bad("client_secret", "must not be set when token_endpoint_auth_method is \"none\"".into()));
            }
        }
        let jwks = b.extra.get("jwks").filter(|v| !v.is_null());
        let jwks_uri = b.extra.get("jwks_uri").filter(|v| !v.is_null() && v.as_str() != Some(""));
        if jwks.is_some() && jwks_uri.is_some() {
            return Err(bad("jwks", "jwks and jwks_uri are mutually exclusive; set one of them".into()));
        }
        if let Some(jwks) = jwks {
            if jwks.get("keys").and_then(Value::as_array).is_none() {
                return Err(bad("jwks", "must be a JSON Web Key Set: an object with a \"keys\" array".into()));
            }
        }
        if let Some(uri) = jwks_uri {
            if !uri.as_str().is_some_and(is_http_url) {
                return Err(bad("jwks_uri", "must be an http(s) URL".into()));
            }
        }
        self.validate_uris()?;
        if method == "private_key_jwt" {
            match jwks {
                Some(set) if portcullis_shared::jwt::signing_keys(set).is_empty() => {
                    return Err(bad("jwks", "has no ES256 (P-256) or RS256 signing key".into()));
                }
                None if jwks_uri.is_none() => {
                    return Err(bad("jwks", "private_key_jwt requires jwks or jwks_uri".into()));
                }
                _ => {}
            }
            if self.client_secret.is_some() {
                return Err(bad(
                    "client_secret",
                    "must not be set when token_endpoint_auth_method is \"private_key_jwt\"".into(),
                ));
            }
        }
        match b.extra.get("token_endpoint_auth_signing_alg") {
            None | Some(Value::Null) => {}
            Some(Value::String(alg)) if alg.is_empty() || ASSERTION_ALGORITHM_NAMES.contains(&alg.as_str()) => {}
            Some(other) => {
                return Err(bad(
                    "token_endpoint_auth_signing_alg",
                    format!("unsupported {other}; allowed: {}", ASSERTION_ALGORITHM_NAMES.join(", ")),
                ));
            }
        }
        for s in portcullis_shared::scope::split(&b.scope) {
            if !portcullis_shared::scope::is_valid_token(s) {
                return Err(bad("scope", format!("invalid scope token {s:?}")));
            }
        }
        if let Some(lifespan) = &b.client_credentials_grant_access_token_lifespan {
            lifespan_seconds(lifespan).map_err(|m| bad("client_credentials_grant_access_token_lifespan", m))?;
        }
        for field in LIFESPAN_FIELDS {
            match b.extra.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(text)) => {
                    lifespan_seconds(text).map_err(|m| bad(field, m))?;
                }
                Some(_) => return Err(bad(field, "must be a duration string such as \"1h0m0s\", or null".into())),
            }
        }
        match b.extra.get("access_token_strategy") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() || AccessTokenStrategy::parse(s).is_some() => {}
            Some(other) => {
                return Err(bad("access_token_strategy", format!("{other} is not supported; allowed: opaque, jwt")));
            }
        }
        Ok(())
    }
}

impl ClientRequest {
    /// Hydra's URI rules: redirect URIs absolute and without a fragment (native apps may use
    /// their own scheme), the informational and logout URIs http(s), CORS origins bare
    /// `scheme://host[:port]`.
    fn validate_uris(&self) -> Result<(), InvalidClient> {
        let bad = |field: &str, msg: String| InvalidClient(format!("{field}: {msg}"));
        let b = &self.body;
        let strings = |field: &str| -> Result<Vec<String>, InvalidClient> {
            match b.extra.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or_else(|| bad(field, "must be an array of strings".into()))
                    })
                    .collect(),
                Some(_) => Err(bad(field, "must be an array of strings".into())),
            }
        };
        let mut redirects = vec![("redirect_uris", b.redirect_uris.clone())];
        redirects.push(("post_logout_redirect_uris", strings("post_logout_redirect_uris")?));
        for (field, uris) in redirects {
            for uri in uris {
                if !has_scheme(&uri) || uri.contains('#') {
                    return Err(bad(field, format!("{uri:?} must be an absolute URI without a fragment")));
                }
            }
        }
        for uri in strings("request_uris")? {
            if !is_http_url(&uri) {
                return Err(bad("request_uris", format!("{uri:?} must be an http(s) URL")));
            }
        }
        let singles = [
            ("policy_uri", &b.policy_uri),
            ("tos_uri", &b.tos_uri),
            ("client_uri", &b.client_uri),
            ("logo_uri", &b.logo_uri),
        ];
        for (field, uri) in singles {
            if !uri.is_empty() && !is_http_url(uri) {
                return Err(bad(field, format!("{uri:?} must be an http(s) URL")));
            }
        }
        for field in ["sector_identifier_uri", "frontchannel_logout_uri", "backchannel_logout_uri"] {
            match b.extra.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(uri)) if uri.is_empty() || is_http_url(uri) => {}
                Some(other) => return Err(bad(field, format!("{other} must be an http(s) URL"))),
            }
        }
        for origin in &b.allowed_cors_origins {
            if !is_origin(origin) {
                return Err(bad(
                    "allowed_cors_origins",
                    format!("{origin:?} must be an origin: scheme://host[:port], no path, query or fragment"),
                ));
            }
        }
        Ok(())
    }
}

/// `scheme:` per RFC 3986 §3.1 followed by something.
fn has_scheme(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else { return false };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
}

/// `http://` or `https://` with a non-empty authority and no whitespace.
fn is_http_url(uri: &str) -> bool {
    let rest = uri.strip_prefix("https://").or_else(|| uri.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let authority = r.split(['/', '?', '#']).next().unwrap_or("");
        !authority.is_empty() && !uri.chars().any(char::is_whitespace)
    })
}

fn is_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else {
        return false;
    };
    // An IPv6 literal carries colons of its own: the port is what follows its bracket.
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, after)) => (addr, after.strip_prefix(':').or(if after.is_empty() { None } else { Some("x") })),
            None => return false,
        },
        None => match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    !host.is_empty()
        && !host.contains(['/', '?', '#', '@', ' ', '*'])
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

fn optional_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, InvalidClient> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(InvalidClient(format!("field `{key}`: must be a string"))),
    }
}

pub fn validate_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 255 {
        return Err("must be 1 to 255 characters long".into());
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "._~:@-".contains(*c))) {
        return Err(format!("contains {c:?}; only A-Z a-z 0-9 . _ ~ : @ - are allowed"));
    }
    Ok(())
}

/// A Go duration string (`"30m"`, `"1h0m0s"`) as whole seconds, at least 1.
pub fn lifespan_seconds(text: &str) -> Result<i64, String> {
    let ms = portcullis_shared::duration::parse_millis(text)?;
    let secs = i64::try_from(ms / 1000).map_err(|_| format!("duration {text:?} is too long"))?;
    if secs < 1 {
        return Err(format!("duration {text:?} must be at least 1s"));
    }
    Ok(secs)
}

/// The client as the admin API shows it; `secret` only right after it was set or generated.
pub fn render(client_id: &str, body: &ClientBody, secret: Option<&str>, created_at: i64, updated_at: i64) -> Value {
    let mut map = match serde_json::to_value(body) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    map.insert("client_id".into(), client_id.into());
    map.insert("client_secret_expires_at".into(), 0.into());
    map.insert("created_at".into(), crate::rfc3339(created_at).into());
    map.insert("updated_at".into(), crate::rfc3339(updated_at).into());
    if let Some(secret) = secret {
        map.insert("client_secret".into(), secret.into());
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ClientRequest, String> {
        let Value::Object(m) = v else { panic!() };
        ClientRequest::parse(m).map_err(|e| e.0)
    }

    #[test]
    fn defaults_and_extra_fields_round_trip() {
        let r = parse(json!({"jwks_uri": "https://k", "redirect_uris": null, "metadata": null})).unwrap();
        assert_eq!(r.body.grant_types, ["authorization_code"]);
        assert_eq!(r.body.response_types, ["code"]);
        assert_eq!(r.body.token_endpoint_auth_method, "client_secret_basic");
        let out = render("id", &r.body, None, 0, 0);
        assert_eq!(out["jwks_uri"], "https://k");
        assert_eq!(out["metadata"], json!({}));
        assert_eq!(out["redirect_uris"], json!([]));
        assert_eq!(out["created_at"], "1970-01-01T00:00:00Z");
        assert_eq!(out["client_credentials_grant_access_token_lifespan"], Value::Null);
        assert!(out.get("client_secret").is_none());
    }

    #[test]
    fn hydra_uri_rules_accept_native_apps_and_origins_with_ports() {
        let ok = parse(json!({
            "redirect_uris": ["com.example.app:/callback", "http://127.0.0.1:8080/cb?x=1"],
            "post_logout_redirect_uris": ["https://app.example/bye"],
            "allowed_cors_origins": ["https://app.example", "http://localhost:3000", "http://[::1]:8443"],
            "logo_uri": "https://cdn.example/logo.png",
            "backchannel_logout_uri": "",
        }));
        assert!(ok.is_ok(), "{:?}", ok.err());
        for bad in ["http://[::1]x", "http://[::1", "https://a:", "https://a:123456"] {
            assert!(!is_origin(bad), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (json!({"client_id": "a b"}), "client_id"),
            (json!({"client_secret": "12345"}), "client_secret"),
            (json!({"grant_types": ["password"]}), "grant_types"),
            (
                json!({"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
                "token_endpoint_auth_method",
            ),
            (json!({"scope": "a\\b"}), "scope"),
            (
                json!({"client_credentials_grant_access_token_lifespan": "soon"}),
                "client_credentials_grant_access_token_lifespan",
            ),
            (json!({"refresh_token_grant_refresh_token_lifespan": "0s"}), "refresh_token_grant_refresh_token_lifespan"),
            (json!({"authorization_code_grant_id_token_lifespan": 60}), "authorization_code_grant_id_token_lifespan"),
            (json!({"access_token_strategy": "paseto"}), "access_token_strategy"),
            (json!({"grant_types": "client_credentials"}), "grant_types"),
            (json!({"client_nmae": "x"}), "client_nmae"),
            (json!({"token_endpoint_auth_method": "private_key_jwt"}), "jwks"),
            (json!({"jwks": {"keys": []}, "jwks_uri": "https://k"}), "jwks"),
            (json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}}), "jwks"),
            (json!({"jwks": "x"}), "jwks"),
            (json!({"jwks_uri": "ftp://k"}), "jwks_uri"),
            (json!({"token_endpoint_auth_signing_alg": "HS256"}), "token_endpoint_auth_signing_alg"),
            (json!({"jwt_bearer_grant_access_token_lifespan": "0s"}), "jwt_bearer_grant_access_token_lifespan"),
            (json!({"redirect_uris": ["/relative"]}), "redirect_uris"),
            (json!({"redirect_uris": ["https://app/cb#frag"]}), "redirect_uris"),
            (json!({"post_logout_redirect_uris": ["nope"]}), "post_logout_redirect_uris"),
            (json!({"request_uris": ["ftp://x"]}), "request_uris"),
            (json!({"logo_uri": "javascript:alert(1)"}), "logo_uri"),
            (json!({"backchannel_logout_uri": "mailto:x"}), "backchannel_logout_uri"),
            (json!({"allowed_cors_origins": ["https://app.example/path"]}), "allowed_cors_origins"),
            (json!({"allowed_cors_origins": ["https://app.example:port"]}), "allowed_cors_origins"),
            (json!({"allowed_cors_origins": ["*"]}), "allowed_cors_origins"),
            (json!({"refresh_token_grant_refresh_token_lifespan": 60}), "refresh_token_grant_refresh_token_lifespan"),
        ];
        for (input, field) in cases {
            let err = parse(input.clone()).err().unwrap_or_else(|| panic!("{input} accepted"));
            assert!(err.contains(field), "{input}: {err}");
        }
    }
}
