//! Rule values for tests, here and in the crates that serve rules over HTTP.

use serde_json::{Value, json};

/// A `GET` rule for `url` that lets everyone through (`noop`, `allow`).
pub fn rule(id: &str, url: &str) -> Value {
    json!({"id": id, "match": {"url": url, "methods": ["GET"]},
           "authenticators": [{"handler": "noop"}], "authorizer": {"handler": "allow"}})
}
