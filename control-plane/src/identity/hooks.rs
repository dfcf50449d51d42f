//! Web hooks (`portcullis_identity::hooks`, re-exported here) and, for the router-driven tests,
//! a local hook server. Running hooks must not be added here.

pub use portcullis_identity::hooks::*;
#[cfg(test)]
use serde_json::Value;

/// A web hook on a local port for tests: `answer` gets the posted JSON and returns the status
/// and raw body to send back.
#[cfg(test)]
pub async fn test_server<F>(answer: F) -> String
where
    F: Fn(Value) -> (u16, String) + Clone + Send + Sync + 'static,
{
    use axum::http::StatusCode;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let answer = answer.clone();
            async move {
                let (status, body) = answer(body);
                (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}
