//! Target `forms`: the control plane's own decoders of request bodies and parameters — the
//! `application/x-www-form-urlencoded` parser behind every OAuth2 and admin form, the
//! `FormParams` extractor (urlencoded and multipart), the self-service `Form` (urlencoded or
//! JSON flattened to dotted names), page tokens, and the decisions API's reading of
//! `X-Forwarded-*`. axum's and multer's own parsing is theirs to fuzz; here it only carries
//! our input to our code.
//! Asserts: the urlencoded parser agrees with the WHATWG reference (`form_urlencoded`) on every
//! input; the extractor hands over exactly those pairs, and for multipart exactly the fields
//! sent; `Form` keeps the last value of a repeated urlencoded field; page tokens round-trip; a
//! judged request has an HTTP-token method in upper case and an `http`/`https` scheme.

use std::cell::RefCell;

use arbitrary::{Result, Unstructured};
use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};
use portcullis_control_plane::error::{ApiError, FormParams, form_decode, parse_urlencoded};
use portcullis_control_plane::identity::flow::Form;
use portcullis_control_plane::paging;
use portcullis_control_plane::rules::decisions::from_request;

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

fn block_on<F: Future>(f: F) -> F::Output {
    RUNTIME.with(|r| {
        let mut r = r.borrow_mut();
        let rt = r.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|e| panic!("runtime: {e}"))
        });
        rt.block_on(f)
    })
}

fn extract(content_type: &str, body: Vec<u8>) -> Option<Vec<(String, String)>> {
    let request = Request::builder().method("POST").uri("/oauth2/token").header(header::CONTENT_TYPE, content_type);
    let request = request.body(Body::from(body)).ok()?;
    block_on(FormParams::<ApiError>::from_request(request, &())).ok().map(|f| f.0)
}

pub fn run(data: &[u8]) {
    let pairs = parse_urlencoded(data);
    let reference: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    assert_eq!(pairs, reference, "urlencoded parsing differs from WHATWG for {data:02x?}");
    if !data.contains(&b'&') {
        // One value, as in HTTP Basic credentials (`urlencode(id):urlencode(secret)`).
        let value = form_urlencoded::parse(&[b"x=", data].concat()).next().map(|(_, v)| v.into_owned());
        assert_eq!(Some(form_decode(data)), value, "form_decode of {data:02x?}");
    }

    assert_eq!(extract("application/x-www-form-urlencoded", data.to_vec()), Some(pairs.clone()));
    let _ = extract("multipart/form-data; boundary=B", data.to_vec());

    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    if let Ok(form) = Form::parse(&headers, data) {
        for (k, v) in &pairs {
            let last = pairs.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            assert_eq!(form.0.get(k).map(String::as_str), last, "field {k:?} (value {v:?})");
        }
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let _ = Form::parse(&headers, data).map(|f| (f.method().map(str::to_owned), f.traits()));

    let text = String::from_utf8_lossy(data);
    let _ = paging::parse_token(&text);
    let _ = structured(&mut Unstructured::new(data));
}

fn structured(u: &mut Unstructured<'_>) -> Result<()> {
    let (at, id): (i64, &str) = u.arbitrary()?;
    let parsed = paging::parse_token(&paging::token(at, id)).ok();
    assert_eq!(parsed, Some((at, id.to_owned())), "page token round trip");

    // Multipart fields as a browser sends them come back as sent.
    let fields: Vec<(String, String)> = u.arbitrary()?;
    let fields: Vec<(String, String)> = fields
        .into_iter()
        .filter(|(n, v)| {
            let plain = |b: u8| b.is_ascii_graphic() && !b"\"\\%;".contains(&b);
            !n.is_empty() && n.bytes().all(plain) && !v.contains("\r\n--")
        })
        .take(8)
        .collect();
    let mut body = Vec::new();
    for (name, value) in &fields {
        body.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    assert_eq!(extract("multipart/form-data; boundary=XyZ", body), Some(fields.clone()), "multipart fields");

    // The decisions API: whatever the proxy forwards.
    let uri: &str = u.arbitrary()?;
    let method: &str = u.arbitrary()?;
    let mut headers = HeaderMap::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let name = *u.choose(&[
            "x-forwarded-method",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-uri",
            "host",
            "authorization",
        ])?;
        let value: &[u8] = u.arbitrary()?;
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let uri = Uri::try_from(uri).unwrap_or_else(|_| Uri::from_static("/decisions/x"));
    if let Ok(judged) = from_request(&uri, method, &headers) {
        assert!(judged.scheme == "http" || judged.scheme == "https", "scheme {:?}", judged.scheme);
        assert_eq!(judged.method, judged.method.to_ascii_uppercase());
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        assert!(judged.method.bytes().all(token), "method {:?}", judged.method);
    }
    Ok(())
}
