//! Identity JSON Schemas: loading (config `identity.schemas`, a built-in `default`),
//! validation of `traits` (draft-07, formats checked, as Kratos), and reading the Kratos
//! `ory.sh/kratos` extension — which trait is the login identifier for `password`, `code` and
//! `passkey`, and which addresses are verifiable or used for recovery. The HTTP
//! handlers that serve them live in the control plane. Only top-level traits can carry the extension.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use portcullis_model::StartupError;
use portcullis_model::identity::normalise_identifier;

/// The built-in schema: an e-mail address (identifier for every method, verifiable,
/// recoverable) and an optional display name.
pub const DEFAULT_SCHEMA: &str = r#"{
  "$id": "https://portcullis.dev/schemas/default.json",
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Person",
  "type": "object",
  "properties": {
    "traits": {
      "type": "object",
      "properties": {
        "email": {
          "type": "string",
          "format": "email",
          "title": "E-mail",
          "minLength": 3,
          "maxLength": 320,
          "ory.sh/kratos": {
            "credentials": {
              "password": { "identifier": true },
              "code": { "identifier": true, "via": "email" },
              "passkey": { "display_name": true }
            },
            "verification": { "via": "email" },
            "recovery": { "via": "email" }
          }
        },
        "name": { "type": "string", "title": "Name", "maxLength": 256 }
      },
      "required": ["email"],
      "additionalProperties": false
    }
  }
}"#;

/// One top-level trait and what the extension says about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraitField {
    pub name: String,
    pub title: String,
    pub required: bool,
    pub is_email: bool,
    /// Renders as `<select>` (Kratos turns a string `enum` into options).
    pub options: Vec<String>,
    pub password_identifier: bool,
    pub code_identifier: bool,
    pub passkey_display_name: bool,
    pub verifiable: bool,
    pub recovery: bool,
}

pub struct Schema {
    pub id: String,
    pub raw: Value,
    pub fields: Vec<TraitField>,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("id", &self.id).field("fields", &self.fields).finish()
    }
}

/// A validation failure on one trait: a JSON pointer (`/traits/email`), Kratos's message id
/// and a readable text.
#[derive(Clone, Debug, PartialEq)]
pub struct TraitError {
    pub pointer: String,
    pub id: u32,
    pub text: String,
}

impl Schema {
    pub fn compile(id: &str, raw: Value) -> Result<Self, String> {
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(true)
            .build(&raw)
            .map_err(|e| format!("is not a valid JSON Schema: {e}"))?;
        let traits = raw.pointer("/properties/traits").ok_or("has no properties.traits")?;
        let required: Vec<&str> =
            traits["required"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let mut fields = Vec::new();
        if let Some(props) = traits["properties"].as_object() {
            for (name, p) in props {
                let ext = &p["ory.sh/kratos"];
                let creds = &ext["credentials"];
                fields.push(TraitField {
                    name: name.clone(),
                    title: p["title"].as_str().unwrap_or(name).to_owned(),
                    required: required.contains(&name.as_str()),
                    is_email: p["format"] == "email",
                    options: p["enum"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        .unwrap_or_default(),
                    password_identifier: creds["password"]["identifier"] == true,
                    code_identifier: creds["code"]["identifier"] == true,
                    passkey_display_name: creds["passkey"]["display_name"] == true
                        || creds["webauthn"]["identifier"] == true,
                    verifiable: ext["verification"]["via"] == "email",
                    recovery: ext["recovery"]["via"] == "email",
                });
            }
        }
        Ok(Self { id: id.to_owned(), raw, fields, validator })
    }

    /// Validates `traits` as Kratos does (the schema describes `{"traits": ...}`).
    pub fn validate(&self, traits: &Value) -> Result<(), Vec<TraitError>> {
        let doc = json!({ "traits": traits });
        let errors: Vec<TraitError> = self
            .validator
            .iter_errors(&doc)
            .map(|e| {
                let mut pointer = e.instance_path().as_str().to_owned();
                let (id, text) = match e.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        let p = property.as_str().unwrap_or_default();
                        pointer = format!("{pointer}/{p}");
                        (4_000_002, format!("Property {p} is missing."))
                    }
                    jsonschema::error::ValidationErrorKind::MinLength { limit } => {
                        (4_000_003, format!("length must be >= {limit}"))
                    }
                    jsonschema::error::ValidationErrorKind::MaxLength { limit } => {
                        (4_000_017, format!("length must be <= {limit}"))
                    }
                    jsonschema::error::ValidationErrorKind::Format { format } if format == "email" => {
                        (4_000_001, "is not a valid e-mail address".to_owned())
                    }
                    _ => (4_000_001, e.to_string()),
                };
                TraitError { pointer, id, text }
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    pub fn field(&self, name: &str) -> Option<&TraitField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The string values of the traits marked by `pick`, normalised (e-mail lower-cased).
    pub fn values(&self, traits: &Value, pick: impl Fn(&TraitField) -> bool) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| pick(f))
            .filter_map(|f| traits[&f.name].as_str().map(|v| normalise_identifier(v, f.is_email)))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The trait that names a passkey for the user (its value, if set).
    pub fn display_name(&self, traits: &Value) -> Option<String> {
        self.values(traits, |f| f.passkey_display_name)
            .into_iter()
            .next()
            .or_else(|| self.values(traits, |f| f.password_identifier).into_iter().next())
    }
}

#[derive(Debug)]
pub struct Schemas {
    pub default_id: String,
    list: Vec<Arc<Schema>>,
}

impl Schemas {
    /// The configured schemas, or the built-in default when none is configured.
    pub fn load(config: &crate::config::IdentityConfig) -> Result<Self, StartupError> {
        let mut list = Vec::new();
        for (i, s) in config.schemas.iter().enumerate() {
            let key = format!("config key identity.schemas[{i}]");
            if s.id.is_empty() {
                return Err(StartupError(format!("{key}.id: must not be empty")));
            }
            let raw = read_schema(&s.url).map_err(|e| StartupError(format!("{key}.url: {e}")))?;
            let schema = Schema::compile(&s.id, raw).map_err(|e| StartupError(format!("{key}: the schema {e}")))?;
            list.push(Arc::new(schema));
        }
        if list.is_empty() {
            let raw: Value = serde_json::from_str(DEFAULT_SCHEMA).map_err(|e| StartupError(e.to_string()))?;
            list.push(Arc::new(Schema::compile("default", raw).map_err(StartupError)?));
        }
        let default_id =
            if config.default_schema_id.is_empty() { list[0].id.clone() } else { config.default_schema_id.clone() };
        if !list.iter().any(|s| s.id == default_id) {
            return Err(StartupError(format!(
                "config key identity.default_schema_id: no schema with id {default_id:?} in identity.schemas"
            )));
        }
        Ok(Self { default_id, list })
    }

    pub fn get(&self, id: &str) -> Option<Arc<Schema>> {
        self.list.iter().find(|s| s.id == id).cloned()
    }

    pub fn default_schema(&self) -> Arc<Schema> {
        self.get(&self.default_id).unwrap_or_else(|| self.list[0].clone())
    }

    pub fn all(&self) -> &[Arc<Schema>] {
        &self.list
    }
}

fn read_schema(url: &str) -> Result<Value, String> {
    let text = if let Some(b64) = url.strip_prefix("base64://") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim()))
            .map_err(|e| format!("is not valid base64: {e}"))?;
        String::from_utf8(bytes).map_err(|_| "is not UTF-8".to_owned())?
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| format!("is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Schema {
        Schema::compile("default", serde_json::from_str(DEFAULT_SCHEMA).unwrap()).unwrap()
    }

    #[test]
    fn default_schema_marks_email_for_every_method() {
        let s = default();
        let email = s.field("email").unwrap();
        assert!(email.password_identifier && email.code_identifier && email.passkey_display_name);
        assert!(email.verifiable && email.recovery && email.is_email && email.required);
        assert!(!s.field("name").unwrap().required);
        assert_eq!(
            s.values(&json!({"email": " Alice@Example.COM "}), |f| f.password_identifier),
            ["alice@example.com"]
        );
    }

    #[test]
    fn validation_names_the_trait_with_kratos_ids() {
        let s = default();
        assert!(s.validate(&json!({"email": "a@example.com", "name": "A"})).is_ok());
        let errs = s.validate(&json!({"name": "A"})).unwrap_err();
        assert_eq!(errs[0].pointer, "/traits/email");
        assert_eq!(errs[0].id, 4_000_002);
        let errs = s.validate(&json!({"email": "not-an-address"})).unwrap_err();
        assert_eq!((errs[0].pointer.as_str(), errs[0].id), ("/traits/email", 4_000_001));
        assert!(s.validate(&json!({"email": "a@example.com", "admin": true})).is_err(), "unknown traits are refused");
    }

    #[test]
    fn configured_schemas_load_from_base64_and_bad_ones_are_named() {
        let raw = r#"{"type":"object","properties":{"traits":{"type":"object","properties":{"username":{"type":"string","enum":["a","b"],"ory.sh/kratos":{"credentials":{"password":{"identifier":true}}}}}}}}"#;
        let cfg = crate::config::IdentityConfig {
            default_schema_id: "u".into(),
            schemas: vec![crate::config::SchemaSource {
                id: "u".into(),
                url: format!("base64://{}", base64::engine::general_purpose::STANDARD.encode(raw)),
            }],
        };
        let schemas = Schemas::load(&cfg).unwrap();
        let u = schemas.default_schema();
        assert_eq!(u.field("username").unwrap().options, ["a", "b"]);
        assert!(!u.field("username").unwrap().is_email);
        let bad = crate::config::IdentityConfig {
            default_schema_id: String::new(),
            schemas: vec![crate::config::SchemaSource { id: "x".into(), url: "file:///nonexistent.json".into() }],
        };
        let err = Schemas::load(&bad).unwrap_err().to_string();
        assert!(err.contains("identity.schemas[0].url"), "{err}");
    }
}
