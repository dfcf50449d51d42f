//! Target `pipeline`: one request through the filter's `Stream` — header stripping, rule
//! selection, every authenticator family, authorizers, mutators, call-outs, the call-out cache,
//! signature checks and id_token signing — with the request, every call-out answer, every
//! signature verdict and the signer's answer taken from the input.
//! Asserts: the stream always ends (forwarded, or answered locally) within a bounded number of
//! call-outs; a request judged by a rule that needs credentials is forwarded only after a
//! call-out answered 2xx or a signature verified; a forwarded request carries no header a
//! mutator owns unless the filter wrote it; every header the filter writes has a valid, non-
//! pseudo, non-framing name and a value without CR, LF or NUL; local replies have sane status
//! codes and header values.

use std::cell::RefCell;
use std::rc::Rc;

use arbitrary::{Result, Unstructured};
use portcullis_filter::cache::WorkerCaches;
use portcullis_filter::config::Config;
use portcullis_filter::host::CallResponse;
use portcullis_filter::stream::{Action, Stream};
use portcullis_shared::matching::request_url;
use portcullis_shared::snapshot::{CompiledSnapshot, Snapshot};

use crate::filter_host::{FuzzHost, config};

/// The rule set every request is judged by (also a seed of the `snapshot` target).
pub const SNAPSHOT: &str = include_str!("pipeline_snapshot.json");
/// Rules that must not forward without a credential someone vouched for.
const PROTECTED: &[&str] = &["introspected", "jwt", "session", "bearer", "client-credentials", "remote-authz"];
const MAX_CALLS: usize = 8;
const NOW_MS: u64 = 1_700_000_000_000;

thread_local! {
    /// Compiled once: compiling twelve rules per input would be most of the work. Caches are
    /// fresh for every input, so one input never sees another's answers.
    static COMPILED: (Rc<CompiledSnapshot>, Rc<Config>) = {
        let snapshot: Snapshot =
            serde_json::from_str(SNAPSHOT).unwrap_or_else(|e| panic!("pipeline snapshot: {e}"));
        let compiled = snapshot.compile().unwrap_or_else(|e| panic!("pipeline snapshot does not compile: {e}"));
        (Rc::new(compiled), Rc::new(config()))
    };
}

const PATHS: &[&str] = &[
    "/api/",
    "/jwt/",
    "/app/",
    "/bearer/",
    "/public/",
    "/closed",
    "/cc/",
    "/authz/",
    "/hydrated/",
    "/minted/",
    "/chain/",
    "/redirect/",
    "/",
    "/nothing",
];
const HEADER_NAMES: &[&str] = &[
    "authorization",
    "cookie",
    "x-user",
    "x-scope",
    "x-email",
    "x-role",
    "x-permission",
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
    "x-forwarded-for",
    "x-tenant",
    "content-type",
    "accept",
    "x-request-id",
];
const VALUES: &[&str] = &[
    "Bearer tok",
    "Bearer ",
    "Basic c3ZjOnBhc3M=",
    "ory_kratos_session=abc",
    "ory_kratos_session=abc; other=1",
    "https://app.example",
    "GET",
    "POST",
    "authorization, x-tenant",
    "text/html",
    "application/json",
    "1.2.3.4",
];
const BODIES: &[&str] = &[
    r#"{"active":true,"sub":"alice","client_id":"c","scope":"read write","exp":1700000060}"#,
    r#"{"active":true,"sub":"alice","scope":"read","exp":1700000060,"aud":["api"],"iss":"https://issuer.example/","ext":{"role":"admin"}}"#,
    r#"{"active":false}"#,
    r#"{"identity":{"id":"u1","traits":{"email":"a@example.com"}},"active":true}"#,
    r#"{"sub":"alice","extra":{"role":"admin"}}"#,
    r#"{"subject":"alice","extra":{"plan":"pro"},"header":{"X-Role":["admin"]}}"#,
    r#"{"access_token":"t","token_type":"bearer","expires_in":60,"scope":"read"}"#,
    r#"{"allowed":true}"#,
    "",
];

/// A request header value as Envoy would hand it over: no CR, LF or NUL.
fn header_value(u: &mut Unstructured<'_>) -> Result<String> {
    let s: String = if u.ratio(1, 2)? { u.choose(VALUES)?.to_string() } else { u.arbitrary()? };
    Ok(s.replace(['\r', '\n', '\0'], ""))
}

fn body(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => u.arbitrary::<Vec<u8>>()?,
        // A known answer with one string swapped for the input's (claims with CR/LF, huge, odd).
        1 => {
            let text = u.choose(BODIES)?.to_string();
            let replacement: String = u.arbitrary()?;
            let quoted = serde_json::to_string(&replacement).unwrap_or_default();
            text.replacen("\"alice\"", &quoted, 1).replacen("\"admin\"", &quoted, 1).into_bytes()
        }
        _ => u.choose(BODIES)?.as_bytes().to_vec(),
    })
}

fn scenario(u: &mut Unstructured<'_>) -> Result<()> {
    let (snapshot, config) = COMPILED.with(|(s, c)| (Rc::clone(s), Rc::clone(c)));
    let host = FuzzHost::default();
    host.now_ms.set(NOW_MS);

    let method = if u.ratio(1, 8)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        u.choose(&["GET", "POST", "OPTIONS"])?.to_string()
    };
    let scheme = u.choose(&["http", "https"])?.to_string();
    let authority = if u.ratio(1, 8)? { header_value(u)? } else { u.choose(&["gw", "gw:80", "GW."])?.to_string() };
    let mut path = u.choose(PATHS)?.to_string();
    path.push_str(&header_value(u)?);
    let mut headers = vec![
        (":method".to_owned(), method.clone()),
        (":scheme".to_owned(), scheme.clone()),
        (":authority".to_owned(), authority.clone()),
        (":path".to_owned(), path.clone()),
    ];
    for _ in 0..u.int_in_range(0..=6)? {
        let name = if u.ratio(1, 8)? {
            u.arbitrary::<String>()?.to_ascii_lowercase()
        } else {
            u.choose(HEADER_NAMES)?.to_string()
        };
        if !name.starts_with(':') {
            headers.push((name, header_value(u)?));
        }
    }
    *host.request_headers.borrow_mut() = headers.clone();
    *host.source_address.borrow_mut() = match u.int_in_range(0..=3)? {
        0 => None,
        1 => Some(u.arbitrary::<String>()?),
        _ => Some(u.choose(&["10.0.0.7:5120", "[2001:db8::7]:443", "127.0.0.1:1"])?.to_string()),
    };
    for _ in 0..u.int_in_range(0..=3)? {
        let answer = if u.ratio(1, 8)? { Err("host cannot verify".to_owned()) } else { Ok(u.arbitrary()?) };
        host.verify_answers.borrow_mut().push_back(answer);
    }
    *host.sign_answer.borrow_mut() = Some(if u.ratio(1, 4)? { Err("no".into()) } else { Ok(u.arbitrary()?) });

    let mut stream = Stream::new(config, Some(Rc::clone(&snapshot)), Rc::new(RefCell::new(WorkerCaches::default())));
    let mut action = stream.on_request_headers(&host);
    let mut vouched = 0;
    let mut answered = 0;
    while action == Action::Pause && host.sent.borrow().is_none() {
        let calls = host.calls.borrow().clone();
        assert!(calls.len() > answered, "paused with no call-out outstanding and no reply");
        assert!(calls.len() <= MAX_CALLS, "more than {MAX_CALLS} call-outs for one request");
        let token = calls[calls.len() - 1].0;
        answered = calls.len();
        let status = if u.ratio(1, 8)? {
            None
        } else {
            Some(*u.choose(&[200u16, 200, 201, 204, 302, 401, 403, 404, 500, 503])?)
        };
        let response_headers: Vec<(String, String)> =
            if u.ratio(1, 4)? { vec![("X-Permission".into(), header_value(u)?)] } else { Vec::new() };
        let response = CallResponse { status, headers: response_headers, body: body(u)? };
        if status.is_some_and(|s| (200..300).contains(&s)) {
            vouched += 1;
        }
        action = stream.on_call_response(&host, token, response);
        if action == Action::Continue {
            assert!(host.resumed.get(), "decided to forward after a call-out but did not resume");
        }
    }
    let vouched = vouched + host.verified.get();

    let sent = host.sent.borrow().clone();
    match (action, sent) {
        (Action::Continue, None) => forwarded(&host, &snapshot, &method, &scheme, &authority, &path, &headers, vouched),
        (Action::Pause, Some((status, reply_headers, _))) => {
            assert!(matches!(status, 204 | 302 | 400 | 401 | 403 | 404 | 500 | 502 | 503), "reply status {status}");
            for (name, value) in &reply_headers {
                check_header(name, value);
            }
        }
        (action, sent) => panic!("inconsistent end: {action:?}, reply {sent:?}"),
    }
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per input the fuzz case varies; a struct would only rename them"
)]
fn forwarded(
    host: &FuzzHost,
    snapshot: &CompiledSnapshot,
    method: &str,
    scheme: &str,
    authority: &str,
    path: &str,
    sent: &[(String, String)],
    vouched: usize,
) {
    let url = request_url(scheme, authority, path).unwrap_or_else(|e| panic!("forwarded {authority:?} {path:?}: {e}"));
    let rule = snapshot.rules.select(method, &url).map(|(r, _)| r.id.clone());
    let rule = rule.unwrap_or_else(|| panic!("forwarded {method} {url} without a rule"));
    if PROTECTED.contains(&rule.as_str()) {
        assert!(vouched > 0, "rule {rule} forwarded without any credential vouched for");
    }
    let writes = host.header_writes.borrow();
    for (name, value) in writes.iter() {
        if let Some(value) = value {
            check_header(name, value);
        }
    }
    let final_headers = host.request_headers.borrow();
    for guarded in snapshot.rules.guarded_headers() {
        for (name, value) in final_headers.iter().filter(|(n, _)| n == guarded) {
            let written = writes.iter().any(|(n, v)| n == name && v.as_deref() == Some(value.as_str()));
            let from_client = sent.iter().any(|(n, v)| n == name && v == value);
            assert!(written || !from_client, "client-sent {name}: {value:?} reached the upstream");
        }
    }
}

fn check_header(name: &str, value: &str) {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    assert!(!name.is_empty() && name.bytes().all(token), "invalid header name {name:?}");
    assert_eq!(name, name.to_ascii_lowercase(), "header name not lower-case");
    assert!(
        !["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive"]
            .contains(&name),
        "the filter wrote the framing header {name}"
    );
    assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0), "{name}: {value:?} would split the header");
}

pub fn run(data: &[u8]) {
    let _ = scenario(&mut Unstructured::new(data));
}
