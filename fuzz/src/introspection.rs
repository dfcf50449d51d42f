//! Target `introspection`: an RFC 7662 introspection answer from any server, as the filter
//! reads it (`aud` as a string or a list).
//! Asserts: no panic; an answer that decodes keeps its meaning through our own wire form
//! (what the control plane serialises, the filter reads back identically); a string `aud`
//! becomes a one-element list.

use portcullis_shared::introspection::IntrospectionResponse;
use serde_json::Value;

pub fn run(data: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<IntrospectionResponse>(data) else { return };
    let wire = serde_json::to_vec(&answer).unwrap_or_else(|e| panic!("does not serialise: {e}"));
    let again: IntrospectionResponse =
        serde_json::from_slice(&wire).unwrap_or_else(|e| panic!("our own wire form does not decode: {e}"));
    assert_eq!(again, answer);
    if let Ok(Value::Object(raw)) = serde_json::from_slice::<Value>(data) {
        if let Some(Value::String(aud)) = raw.get("aud") {
            assert_eq!(answer.aud, Some(vec![aud.clone()]));
        }
        assert_eq!(raw.get("active").and_then(Value::as_bool), Some(answer.active));
    }
}
