//! `/admin/courier/messages`: the courier's queue in Kratos's shape (newest first, keyset
//! pages with a `Link` header, filters `status` and `recipient`), or one message by id.
//! Read-only; codes are masked. The handlers extract the query and the origin the `Link` URLs
//! start with, call `portcullis_identity::courier::admin` and map its errors once; listing
//! logic must not be added here.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use portcullis_identity::courier::admin;
use serde_json::Value;

use crate::app::AppState;
use crate::error::{ApiError, parse_urlencoded};

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = parse_urlencoded(query.unwrap_or_default().as_bytes());
    let page = admin::list(&state.store, &pairs, &origin(&headers)).await?;
    let mut res = Json(page.items).into_response();
    if let Ok(v) = HeaderValue::from_str(&page.link) {
        res.headers_mut().insert(header::LINK, v);
    }
    Ok(res)
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(admin::get(&state.store, &id).await?))
}

/// `scheme://host` of this request, for the `Link` URLs.
fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let scheme =
        headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).filter(|p| *p == "https").unwrap_or("http");
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::courier::NewMessage;
    use crate::testing::{Harness, T0};

    async fn enqueue(h: &Harness, to: &str, code: &str, at: i64) -> String {
        let message = NewMessage {
            recipient: to.into(),
            subject: "Recover your account".into(),
            body: format!("Your recovery code is {code}"),
            template_type: "recovery_code".into(),
            secret: Some(code.into()),
        };
        h.state.courier.enqueue(&h.state.store, at, message).await.unwrap()
    }

    /// The `rel="next"` URL's path and query.
    fn next_link(link: &str) -> Option<String> {
        let next = link.split(',').find(|part| part.contains("rel=\"next\""))?;
        let url = next.split(['<', '>']).nth(1)?;
        Some(url.split_once("localhost").map_or(url, |(_, rest)| rest).to_owned())
    }

    #[tokio::test]
    async fn courier_admin_lists_filters_and_pages_like_kratos() {
        let h = Harness::new().await;
        let a1 = enqueue(&h, "a@example.com", "111111", T0).await;
        let b = enqueue(&h, "b@example.com", "222222", T0 + 1).await;
        let a2 = enqueue(&h, "a@example.com", "333333", T0 + 2).await;

        let reply = h.admin_json(Method::GET, "/admin/courier/messages", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        let list = reply.json();
        let ids: Vec<&str> = list.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [a2.as_str(), b.as_str(), a1.as_str()], "newest first");
        let first = &list[0];
        for (key, value) in [
            ("status", "queued"),
            ("type", "email"),
            ("recipient", "a@example.com"),
            ("subject", "Recover your account"),
            ("template_type", "recovery_code"),
            ("created_at", "2023-11-14T22:13:22Z"),
            ("updated_at", "2023-11-14T22:13:22Z"),
        ] {
            assert_eq!(first[key], value, "{key}");
        }
        assert_eq!(first["send_count"], 0);
        assert_eq!(first["dispatches"], serde_json::json!([]));
        // The code is not readable through the admin API, even before delivery.
        assert_eq!(first["body"], "Your recovery code is ******");
        assert!(!reply.bytes.windows(6).any(|w| w == b"333333"));

        let reply =
            h.admin_json(Method::GET, "/admin/courier/messages?recipient=a%40example.com&page_size=1", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()[0]["id"], a2.as_str());
        let next = next_link(reply.header("link")).expect("a next link");
        assert!(next.contains("recipient=a%40example.com") && next.contains("page_size=1"), "{next}");
        let reply = h.admin_json(Method::GET, &next, None).await;
        assert_eq!(reply.json().as_array().unwrap().len(), 1);
        assert_eq!(reply.json()[0]["id"], a1.as_str());
        assert!(next_link(reply.header("link")).is_none(), "last page: {}", reply.header("link"));

        let reply = h.admin_json(Method::GET, "/admin/courier/messages?status=sent", None).await;
        assert_eq!(reply.json(), serde_json::json!([]));
        let reply = h.admin_json(Method::GET, "/admin/courier/messages?status=queued", None).await;
        assert_eq!(reply.json().as_array().unwrap().len(), 3);
        // Hydra's v1 path rewrite applies here too.
        let reply = h.admin_json(Method::GET, "/courier/messages?status=queued", None).await;
        assert_eq!(reply.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn courier_admin_gets_one_and_rejects_bad_parameters() {
        let h = Harness::new().await;
        let id = enqueue(&h, "c@example.com", "444444", T0).await;
        let reply = h.admin_json(Method::GET, &format!("/admin/courier/messages/{id}"), None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["id"], id.as_str());
        assert_eq!(reply.json()["recipient"], "c@example.com");

        let reply = h.admin_json(Method::GET, "/admin/courier/messages/no-such-id", None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.json()["error"], "not_found");

        for (query, parameter) in
            [("status=delivered", "status"), ("page_size=0", "page_size"), ("page_token=%%%", "page_token")]
        {
            let reply = h.admin_json(Method::GET, &format!("/admin/courier/messages?{query}"), None).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(reply.json()["error"], "invalid_request");
            let description = reply.json()["error_description"].as_str().unwrap().to_owned();
            assert!(description.starts_with(parameter), "{query}: {description}");
        }
    }
}
