//! The RFC 7662 token introspection response, in Hydra's shape (`token_use`, `ext`, `aud`
//! always a list). The control plane serialises it; the filter parses what any RFC 7662
//! server returns, including `aud` as a single string.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, deserialize_with = "string_or_list", skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Map<String, Value>>,
}

impl IntrospectionResponse {
    /// The answer for an unknown, expired or revoked token.
    pub fn inactive() -> Self {
        Self::default()
    }
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inactive_serialises_to_active_false_only() {
        assert_eq!(serde_json::to_value(IntrospectionResponse::inactive()).unwrap(), json!({"active": false}));
    }

    #[test]
    fn accepts_audience_as_string_or_list() {
        let one: IntrospectionResponse = serde_json::from_value(json!({"active": true, "aud": "api"})).unwrap();
        assert_eq!(one.aud, Some(vec!["api".to_owned()]));
        let many: IntrospectionResponse = serde_json::from_value(json!({"active": true, "aud": ["a", "b"]})).unwrap();
        assert_eq!(many.aud.unwrap().len(), 2);
    }
}
