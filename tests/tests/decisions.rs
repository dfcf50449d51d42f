//! The Oathkeeper-compatible decisions API, black-box: a real `portcullis` with the demo rules
//! judges `GET /decisions/ratings/1` on its admin port, calling its own introspection endpoint,
//! as Envoy `ext_authz` or nginx `auth_request` would ask it.

use portcullis_e2e::{create_client, issue_token, testbed};
use serde_json::Value;

#[tokio::test]
async fn decisions_api_allows_a_valid_token_and_denies_none() {
    let t = testbed().await;
    create_client(&t, "rater", "secret", "read").await;
    let token = issue_token(&t, "rater", "secret", "read").await;

    let allowed = t.http.get(t.admin("/decisions/ratings/1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers().get("x-user").and_then(|v| v.to_str().ok()), Some("rater"));
    assert!(allowed.bytes().await.unwrap().is_empty());

    let denied = t.http.get(t.admin("/decisions/ratings/1")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(denied.headers().get("www-authenticate").is_some());
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401);
}
