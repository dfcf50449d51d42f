//! `GET /dev/outbox` on the public listener, routed only under `--dev`: an HTML page listing
//! the courier's in-memory outbox, newest first, so a developer without a mail server can read
//! the codes Portcullis "sent". Everything shown is HTML-escaped; the page stores nothing and
//! must never be routed outside `--dev` (it shows one-time codes).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

use crate::app::AppState;
use crate::ui::html::escape;

pub async fn page(State(state): State<AppState>) -> Response {
    let entries = state.courier.outbox();
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Dev outbox · Portcullis</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#111;background:#fff}\n\
         ol{list-style:none;padding:0}li{border:1px solid #767676;border-radius:.5rem;padding:1rem;margin:1rem 0}\n\
         h2{font-size:1.125rem;margin:0 0 .5rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}\n\
         dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f3f3f3;padding:.75rem;border-radius:.25rem}\n\
         a{color:#0645ad}a:focus,a:hover{outline:2px solid #0645ad;outline-offset:2px}\n\
         </style>\n</head>\n<body>\n<main>\n<h1>Dev outbox</h1>\n",
    );
    html.push_str(
        "<p>Development only (<code>portcullis serve --dev</code>): the last 100 e-mails the courier handled \
         in this process, newest first. They are kept in memory only.",
    );
    if !state.courier.delivers() {
        html.push_str(" No <code>courier.smtp.connection_uri</code> is set, so none of them was sent.");
    }
    html.push_str(" <a href=\"/dev/outbox\">Refresh</a></p>\n");
    if entries.is_empty() {
        html.push_str("<p>No e-mails yet.</p>\n");
    } else {
        html.push_str(&format!("<ol aria-label=\"{} e-mails\">\n", entries.len()));
        for (n, e) in entries.iter().enumerate() {
            let when = crate::rfc3339(e.sent_at);
            html.push_str(&format!(
                "<li><article aria-labelledby=\"m{n}\">\n<h2 id=\"m{n}\">{subject}</h2>\n<dl>\n\
                 <dt>To</dt><dd>{to}</dd>\n<dt>Sent</dt><dd><time datetime=\"{when}\">{when}</time></dd>\n\
                 <dt>Template</dt><dd>{template}</dd>\n</dl>\n<pre>{body}</pre>\n</article></li>\n",
                subject = escape(&e.subject),
                to = escape(&e.recipient),
                template = escape(&e.template_type),
                body = escape(&e.body),
            ));
        }
        html.push_str("</ol>\n");
    }
    html.push_str("</main>\n</body>\n</html>\n");
    let mut res = Html(html).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};

    use crate::clock::Clock as _;
    use crate::config::Config;
    use crate::courier::NewMessage;
    use crate::testing::Harness;

    async fn get_outbox(h: &Harness) -> crate::testing::Reply {
        Harness::send(h.public(), Request::get("/dev/outbox").body(Body::empty()).unwrap()).await
    }

    #[tokio::test]
    async fn courier_dev_outbox_lists_messages_escaped_newest_first() {
        let h = Harness::with_config(Config { dev: true, ..Config::default() }).await;
        assert!(h.state.config.dev);
        let worker = h.state.courier.clone().spawn_worker(h.state.store.clone(), h.state.clock.clone());
        let reply = get_outbox(&h).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&reply.bytes).contains("No e-mails yet"));
        for (to, code) in [("first@example.com", "111111"), ("second@example.com", "222222")] {
            let message = NewMessage {
                recipient: to.into(),
                subject: "<b>Code</b> & more".into(),
                body: format!("Use {code} <script>alert(1)</script>"),
                template_type: "login_code".into(),
                secret: Some(code.into()),
            };
            let before = h.state.courier.outbox().len();
            h.state.courier.enqueue(&h.state.store, h.clock.now(), message).await.unwrap();
            // One at a time, so "newest" is well defined.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while h.state.courier.outbox().len() == before {
                assert!(tokio::time::Instant::now() < deadline, "the worker never handled the message");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let reply = get_outbox(&h).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.header("content-type").starts_with("text/html"));
        assert_eq!(reply.header("cache-control"), "no-store");
        let page = String::from_utf8(reply.bytes).unwrap();
        assert!(page.contains("<html lang=\"en\">") && page.contains("<h1>Dev outbox</h1>"));
        assert!(!page.contains("<script>") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;b&gt;Code&lt;/b&gt; &amp; more"));
        let (first, second) = (page.find("first@example.com").unwrap(), page.find("second@example.com").unwrap());
        assert!(second < first, "newest first");
        assert!(page.contains("<pre>Use 222222 "));
        worker.abort();
    }

    #[tokio::test]
    async fn courier_dev_outbox_is_absent_outside_dev() {
        // `secured` is the harness without `--dev`.
        let h = Harness::secured().await;
        let reply = get_outbox(&h).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert!(!String::from_utf8_lossy(&reply.bytes).contains("outbox"));
    }
}
