//! `/admin/rules`: read the active rules, replace the admin-managed ones. A replacement is
//! validated as a whole (with the file rules) before anything is stored; on error the old set
//! stays in force and the answer names the rule and field.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use portcullis_shared::rule::RuleSpec;
use serde_json::Value;

use crate::app::AppState;
use crate::error::{ApiError, ApiJson};
use crate::rules::ReplaceError;

pub async fn list(State(state): State<AppState>) -> Response {
    let rules = state.rules.current().rules.clone();
    ([(header::CONTENT_TYPE, "application/json")], rules).into_response()
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<RuleSpec>, ApiError> {
    state.rules.active().into_iter().find(|r| r.id == id).map(Json).ok_or_else(ApiError::not_found)
}

pub async fn replace(
    State(state): State<AppState>,
    ApiJson(value): ApiJson<Value>,
) -> Result<Json<Vec<RuleSpec>>, ApiError> {
    match state.rules.replace_admin(&state.store, value).await {
        Ok(rules) => Ok(Json(rules)),
        Err(ReplaceError::Invalid(msg)) => Err(ApiError::invalid_rule(msg)),
        Err(ReplaceError::Store(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use crate::testing::Harness;
    use portcullis_rules::testing::rule;

    #[tokio::test]
    async fn put_valid_rules_then_read_them_back() {
        let h = Harness::new().await;
        let v0 = h.state.rules.current().version.clone();
        assert_eq!(h.admin_json(Method::GET, "/admin/rules", None).await.json(), json!([]));
        let put = h
            .admin_json(
                Method::PUT,
                "/admin/rules",
                Some(json!([rule("r1", "http://api/<.*>"), rule("r2", "http://b/")])),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.json());
        assert_eq!(put.json()[1]["id"], "r2");
        let all = h.admin_json(Method::GET, "/rules", None).await.json();
        assert_eq!(all.as_array().unwrap().len(), 2);
        let one = h.admin_json(Method::GET, "/admin/rules/r1", None).await;
        assert_eq!(one.json()["match"]["url"], "http://api/<.*>");
        assert_eq!(h.admin_json(Method::GET, "/admin/rules/zz", None).await.status, StatusCode::NOT_FOUND);
        assert_ne!(h.state.rules.current().version, v0);
    }

    #[tokio::test]
    async fn invalid_rules_are_rejected_and_the_old_set_stays() {
        let h = Harness::new().await;
        h.admin_json(Method::PUT, "/admin/rules", Some(json!([rule("good", "http://a/")]))).await;
        let version = h.state.rules.current().version.clone();
        let bad = h
            .admin_json(
                Method::PUT,
                "/admin/rules",
                Some(json!([rule("ok", "http://a/"), rule("broken", "http://a/<[>")])),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.json()["error"], "invalid_rule");
        let text = bad.json()["error_description"].as_str().unwrap().to_owned();
        assert!(text.starts_with("rule \"broken\" (#1): match.url"), "{text}");

        let mut typo = rule("t", "http://a/");
        typo["authorizer"]["handlr"] = json!("x");
        let bad = h.admin_json(Method::PUT, "/admin/rules", Some(json!([typo]))).await;
        assert!(bad.json()["error_description"].as_str().unwrap().contains("authorizer"), "{}", bad.json());
        let bad = h.admin_json(Method::PUT, "/admin/rules", Some(json!({"id": "not-an-array"}))).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);

        assert_eq!(h.state.rules.current().version, version);
        let ids: Vec<_> = h
            .admin_json(Method::GET, "/admin/rules", None)
            .await
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect();
        assert_eq!(ids, [json!("good")]);
    }
}
