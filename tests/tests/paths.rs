//! The differential path test: thousands of generated request paths (encoded separators and
//! dots, `;` parameters, backslashes, double escapes, NUL, unicode look-alikes, case, empty
//! segments) sent as raw bytes through the real Envoy and the real filter. For every request
//! that reaches the echo upstream, the rule the filter chose (the `X-Rule` header its mutator
//! set) must be the rule that matches the path the upstream received under every common way
//! an upstream reads a path: as received, percent-decoded once or twice, with dot segments
//! resolved and slashes merged, with `;` parameters stripped (Tomcat, Jetty, Spring), with
//! backslashes as slashes (IIS), case-folded, with fullwidth forms folded. It runs twice: through
//! the Envoy config we ship (normalize_path, merge_slashes, REJECT_REQUEST), and through an Envoy
//! with all three forgotten, where the filter alone must keep the promise. The decisions API
//! must judge a sample the same way as the filter.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_e2e::{Ports, Testbed, put_rules, testbed, workspace_root};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Requests in flight at once: enough to keep both Envoy workers busy on two cores.
const CONCURRENCY: usize = 8;
const GENERATED: usize = 3000;

/// The rules under test, above the demo rules (priority 10). Each names itself in `X-Rule`.
fn rules(t: &Testbed) -> Value {
    let x_rule = |id: &str| json!([{"handler": "header", "config": {"headers": {"X-Rule": id}}}]);
    json!([
        {
            "id": "paths-public", "priority": 10,
            "match": {"url": "<http|https>://<[^/]+>/public/<.*>", "methods": ["GET"]},
            "authenticators": [{"handler": "anonymous"}],
            "authorizer": {"handler": "allow"}, "mutators": x_rule("public")
        },
        {
            "id": "paths-admin", "priority": 10,
            "match": {"url": "<http|https>://<[^/]+>/admin<(/.*)?>", "methods": ["GET"]},
            "authenticators": [{"handler": "noop"}],
            "authorizer": {"handler": "deny"}, "mutators": x_rule("admin")
        },
        {
            "id": "paths-ratings", "priority": 10,
            "match": {"url": "<http|https>://<[^/]+>/ratings<(/.*)?>", "methods": ["GET"]},
            "authenticators": [{"handler": "cookie_session", "config": {
                "check_session_url": t.mock("/sessions/whoami"), "preserve_path": true,
                "subject_from": "identity.id", "only": ["ory_kratos_session"]
            }}],
            "authorizer": {"handler": "allow"}, "mutators": x_rule("ratings")
        },
    ])
}

/// Which of the rules above an upstream routing on `path` would serve it under.
fn rule_of(path: &str) -> Option<&'static str> {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if path.starts_with("/public/") {
        Some("public")
    } else if under("/admin") {
        Some("admin")
    } else if under("/ratings") {
        Some("ratings")
    } else {
        None
    }
}

// --- how upstreams read a path ------------------------------------------------------------

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3986 `remove_dot_segments`, with repeated slashes merged; a trailing slash stays.
fn resolve(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let trailing = matches!(segments.last(), Some(&"" | &"." | &".."));
    for segment in &segments {
        match *segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut joined = format!("/{}", out.join("/"));
    if trailing && !out.is_empty() {
        joined.push('/');
    }
    joined
}

/// Tomcat, Jetty and Spring: `;...` removed from every segment before anything else.
fn strip_parameters(path: &str) -> String {
    path.split('/').map(|s| s.split(';').next().unwrap_or("")).collect::<Vec<_>>().join("/")
}

/// NFKC's fullwidth forms (U+FF01..U+FF5E) as the ASCII they fold to.
fn fold_fullwidth(path: &str) -> String {
    path.chars()
        .map(|c| match c as u32 {
            cp @ 0xFF01..=0xFF5E => char::from_u32(cp - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Every reading of `path` (without its query) an upstream may make, named.
fn interpretations(path: &str) -> Vec<(&'static str, String)> {
    let decoded = percent_decode(path);
    vec![
        ("as received", path.to_owned()),
        ("as received, resolved", resolve(path)),
        ("decoded once", decoded.clone()),
        ("decoded, resolved", resolve(&decoded)),
        ("decoded twice, resolved", resolve(&percent_decode(&decoded))),
        ("';' parameters stripped, decoded, resolved", resolve(&percent_decode(&strip_parameters(path)))),
        ("backslash as slash, resolved", resolve(&path.replace('\\', "/"))),
        ("decoded, backslash as slash, resolved", resolve(&decoded.replace('\\', "/"))),
        ("decoded, resolved, case-folded", resolve(&decoded).to_lowercase()),
        ("decoded, fullwidth folded, resolved", resolve(&fold_fullwidth(&decoded))),
    ]
}

// --- the generator ------------------------------------------------------------------------

/// xorshift64*: a fixed seed gives the same paths on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// First segments: mostly the three rules' prefixes, some disguised.
#[rustfmt::skip]
const FIRST: &[&str] = &[
    "public", "public", "public", "public", "ratings", "ratings", "ratings", "admin", "admin",
    "PUBLIC", "Admin", "%70ublic", "%61dmin", "publi%63", "public;", "admin;x=1", ".", "..", "%2e%2e", "", "x",
];
/// Pieces no upstream reads in two ways.
#[rustfmt::skip]
const PLAIN: &[&str] = &[
    "public", "admin", "ratings", "x", "1", "42", "a.b", "..x", "x..", ".x", "%C3%A9", "%c3%a9", "~", "x%20y",
    "%25", "%3F", "%23", "%22", "PUBLIC", "Admin", "RATINGS",
];
/// Pieces some upstream reads in another way (or that no upstream can read).
#[rustfmt::skip]
const HOSTILE: &[&str] = &[
    ".", "..", "%2e", "%2E%2e", ".%2e", "%2e.", "%2f", "%2F", "%5c", "%5C", "\\", ";", ";x=1", "%3b", "%3B",
    "%252f", "%252e%252e", "%2541", "%25u002e", "%00", "%0a", "%EF%BC%8E", "%EF%BC%8F", "%E2%88%95",
    "%EF%BC%8E%EF%BC%8E", "%EF%BD%81dmin", "\u{e9}", "%E2%80%8B", "%C0%AE", "%ff", "%70ublic", "%7E", "%20", "x%20", "",
];
/// What joins two pieces: mostly a slash.
#[rustfmt::skip]
const GLUE: &[&str] = &[
    "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/", "/",
    "", "//", "\\", "%2F", "%5C", "/./", "/../",
];

/// The attacks the issue names, then `GENERATED` distinct generated paths.
fn paths() -> Vec<String> {
    let mut out: Vec<String> = [
        "/ratings/..%2Fpublic/x",
        "/public/..%2Fratings/1",
        "/public/..%5Cadmin",
        "/public/%2e%2e/admin",
        "/public/..;/admin",
        "/admin;x=1",
        "/public;/../admin",
        "/public/%252e%252e/admin",
        "/public/..%252Fadmin",
        "/public/\\..\\admin",
        "/public/%EF%BC%8E%EF%BC%8E/admin",
        "/public/..%E2%88%95admin",
        "/public/x%00/../../admin",
        "//admin",
        "/public//../admin",
        "/public/../admin",
        "/public/x#/../../admin",
        "/public/x?/../../admin",
        "/public/hello",
        "/ratings/1",
        "/admin/x",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect();
    let known = out.len();
    let mut seen: HashSet<String> = out.iter().cloned().collect();
    let mut rng = Rng(0x5EED_0F9A_7B00_u64);
    while out.len() < known + GENERATED {
        let mut path = format!("/{}", rng.pick(FIRST));
        for _ in 0..rng.below(5) {
            path.push_str(rng.pick(GLUE));
            path.push_str(if rng.below(5) == 0 { rng.pick(HOSTILE) } else { rng.pick(PLAIN) });
        }
        match rng.below(20) {
            0..=2 => path.push('/'),
            3..=4 => path.push_str("?q=/../admin"),
            5 => path.push_str("#/../admin"),
            _ => {}
        }
        if seen.insert(path.clone()) {
            out.push(path);
        }
    }
    out
}

// --- raw HTTP -----------------------------------------------------------------------------

/// What came back for one request, and who answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Reached the upstream, which received `path`; the filter chose `rule`.
    Upstream { rule: Option<String>, path: String },
    /// Refused by the filter (or the decisions API) with a JSON denial.
    Filter { status: u16, reason: String },
    /// Refused by Envoy itself, before the filter.
    Envoy { status: u16 },
    /// Anything else: always a failure.
    Unexpected(String),
}

/// One parsed HTTP/1.1 response: status, headers (names lower-cased), body.
type RawReply = (u16, Vec<(String, String)>, Vec<u8>);

/// Sends `GET target` as raw bytes (no client normalises it) on a new connection, and reads
/// the answer only as far as its framing says: Envoy keeps a connection it closes open for up
/// to a second (`delayed_close_timeout`) waiting for the client to close first.
async fn raw_get(port: u16, target: &str, headers: &[(&str, &str)]) -> Result<RawReply, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let read = async {
        let mut buffer = [0u8; 16384];
        loop {
            let n = stream.read(&mut buffer).await.map_err(|e| format!("read: {e}"))?;
            raw.extend_from_slice(&buffer[..n]);
            if let Some(reply) = parse(&raw, n == 0)? {
                return Ok(reply);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.map_err(|_| "no answer in 20 s".to_owned())?
}

/// The response in `raw`, once complete (or at end of stream, whatever arrived).
fn parse(raw: &[u8], ended: bool) -> Result<Option<RawReply>, String> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if ended { Err("the connection closed before the headers ended".into()) } else { Ok(None) };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let rest = &raw[split + 4..];
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match dechunk(rest) {
            Ok(body) => body,
            Err(e) if ended => return Err(e),
            Err(_) => return Ok(None),
        }
    } else if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        match rest.get(..length) {
            Some(body) => body.to_vec(),
            None if ended => return Err("the connection closed before the body ended".into()),
            None => return Ok(None),
        }
    } else if ended {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some((status, headers, body)))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size = std::str::from_utf8(&body[..line_end]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let size = size.ok_or("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let data = body.get(line_end + 2..line_end + 2 + size).ok_or("short chunk")?;
        out.extend_from_slice(data);
        body = body.get(line_end + 4 + size..).ok_or("short chunk")?;
    }
}

/// The session the `ratings` rule accepts, sent with every request: a cookie, since the
/// `anonymous` authenticator of `public` steps aside when an `Authorization` header is present.
const SESSION: (&str, &str) = ("cookie", "ory_kratos_session=valid");

/// Through a gateway: Envoy adds `x-envoy-upstream-service-time` to what the upstream
/// answered, never to its own or the filter's replies.
async fn through_gateway(port: u16, path: &str) -> Outcome {
    let (status, headers, body) = match raw_get(port, path, &[SESSION]).await {
        Ok(r) => r,
        Err(e) => return Outcome::Unexpected(e),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if headers.iter().any(|(n, _)| n == "x-envoy-upstream-service-time") {
        return match (status, body["path"].as_str()) {
            (200, Some(received)) => Outcome::Upstream {
                rule: body["headers"]["x-rule"][0].as_str().map(str::to_owned),
                path: received.to_owned(),
            },
            _ => Outcome::Unexpected(format!("the upstream answered {status}: {body}")),
        };
    }
    match body["error"]["reason"].as_str() {
        Some(reason) => Outcome::Filter { status, reason: reason.to_owned() },
        None if (400..500).contains(&status) => Outcome::Envoy { status },
        None => Outcome::Unexpected(format!("{status} from Envoy: {body}")),
    }
}

/// The decisions API's verdict on `uri` as Envoy's gateway `port` would forward it.
async fn decision(t: &Testbed, port: u16, uri: &str) -> Option<Outcome> {
    let value = reqwest::header::HeaderValue::from_bytes(uri.as_bytes()).ok()?;
    let response = t
        .http
        .get(t.admin("/decisions"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", format!("127.0.0.1:{port}"))
        .header("x-forwarded-uri", value)
        .header(SESSION.0, SESSION.1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("/decisions for {uri:?}: {e}"));
    let status = response.status().as_u16();
    let rule = response.headers().get("x-rule").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Some(match (status, body["error"]["reason"].as_str()) {
        (200, _) => Outcome::Upstream { rule, path: uri.to_owned() },
        (_, Some(reason)) => Outcome::Filter { status, reason: reason.to_owned() },
        _ => Outcome::Unexpected(format!("{status}: {body}")),
    })
}

/// Sends every path through the gateway on `port`, `CONCURRENCY` at a time, in order.
async fn send_all(port: u16, paths: &Arc<Vec<String>>) -> Vec<Outcome> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, paths) = (Arc::clone(&next), Arc::clone(paths));
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { return done };
                done.push((i, through_gateway(port, path).await));
            }
        }));
    }
    let mut outcomes = vec![Outcome::Unexpected("not sent".into()); paths.len()];
    for task in tasks {
        for (i, outcome) in task.await.unwrap_or_else(|e| panic!("{e}")) {
            outcomes[i] = outcome;
        }
    }
    outcomes
}

/// The differential check over one run; returns every failure, described.
fn differential_failures(paths: &[String], outcomes: &[Outcome]) -> Vec<String> {
    let mut failures = Vec::new();
    for (sent, outcome) in paths.iter().zip(outcomes) {
        match outcome {
            Outcome::Upstream { rule: None, path } => {
                failures.push(format!("{sent:?} reached the upstream as {path:?} without X-Rule"));
            }
            Outcome::Upstream { rule: Some(rule), path } => {
                let received = path.split('?').next().unwrap_or("");
                for (how, read) in interpretations(received) {
                    if rule_of(&read) != Some(rule.as_str()) {
                        failures.push(format!(
                            "{sent:?} was judged by {rule:?}; the upstream received {received:?}, which read \
                             {how} is {read:?}, served under {:?}",
                            rule_of(&read)
                        ));
                    }
                }
            }
            Outcome::Unexpected(what) => failures.push(format!("{sent:?}: {what}")),
            Outcome::Filter { .. } | Outcome::Envoy { .. } => {}
        }
    }
    failures
}

/// Sends every path through the gateway on `port` and asserts the differential promise;
/// returns the outcomes, how many reached the upstream, how many the filter refused as
/// ambiguous, and those counts in words.
async fn run(what: &str, port: u16, paths: &Arc<Vec<String>>) -> (Vec<Outcome>, usize, usize, String) {
    let outcomes = send_all(port, paths).await;
    let through = outcomes.iter().filter(|o| matches!(o, Outcome::Upstream { .. })).count();
    let ambiguous =
        outcomes.iter().filter(|o| matches!(o, Outcome::Filter { reason, .. } if reason == "ambiguous_path")).count();
    let by_envoy = outcomes.iter().filter(|o| matches!(o, Outcome::Envoy { .. })).count();
    let counts = format!(
        "{what}: of {} paths, {through} reached the upstream, {ambiguous} were refused by the filter as \
         ambiguous_path, {by_envoy} by Envoy itself",
        outcomes.len()
    );
    eprintln!("{counts}");
    let failures = differential_failures(paths, &outcomes);
    assert!(failures.is_empty(), "{} failures through the {what}:\n{}", failures.len(), failures.join("\n"));
    (outcomes, through, ambiguous, counts)
}

/// Waits until the gateway on `port` judges with the rules above on every worker.
async fn wait_for_rules(t: &Testbed, port: u16, log: &str) {
    let settled = t
        .wait_settled(&format!("the path rules on :{port}"), log, || async {
            matches!(through_gateway(port, "/admin").await, Outcome::Filter { status: 403, .. })
        })
        .await;
    if let Err(e) = settled {
        panic!("{e}");
    }
}

/// A second Envoy on the same control plane, upstream and mocks, rendered from the testbed's
/// config with path normalisation, slash merging and escaped-slash rejection all off: a
/// gateway whose operator forgot them. Dropping it stops it.
async fn careless_envoy(t: &Testbed) -> (Child, u16) {
    let spare = Ports::free().unwrap_or_else(|e| panic!("{e}"));
    let shipped = std::fs::read_to_string(t.dir.join("envoy.yaml")).unwrap_or_else(|e| panic!("envoy.yaml: {e}"));
    let mut config = shipped.clone();
    for (from, to) in [
        ("normalize_path: true".to_owned(), "normalize_path: false".to_owned()),
        ("merge_slashes: true".to_owned(), "merge_slashes: false".to_owned()),
        (
            "path_with_escaped_slashes_action: REJECT_REQUEST".to_owned(),
            "path_with_escaped_slashes_action: KEEP_UNCHANGED".to_owned(),
        ),
        (format!("port_value: {} }}", t.ports.gateway), format!("port_value: {} }}", spare.gateway)),
        (format!("port_value: {} }}", t.ports.envoy_admin), format!("port_value: {} }}", spare.envoy_admin)),
    ] {
        assert_eq!(config.matches(&from).count(), 1, "the testbed's envoy.yaml has one {from:?}");
        config = config.replace(&from, &to);
    }
    std::fs::write(t.dir.join("envoy-careless.yaml"), config).unwrap_or_else(|e| panic!("{e}"));
    let envoy =
        std::env::var_os("ENVOY_BIN").map(Into::into).unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"));
    let log = std::fs::File::create(t.dir.join("envoy-careless.log")).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(envoy)
        .args(["-c", "envoy-careless.yaml", "--concurrency", "2", "--disable-hot-restart", "-l", "info"])
        .current_dir(&t.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the second Envoy: {e}"));
    (child, spare.gateway)
}

#[tokio::test]
async fn no_path_is_judged_by_a_rule_other_than_the_one_the_upstream_serves_it_under() {
    let t = testbed().await;
    put_rules(&t, rules(&t)).await;
    wait_for_rules(&t, t.ports.gateway, "envoy.log").await;
    let (_careless, careless) = careless_envoy(&t).await;
    wait_for_rules(&t, careless, "envoy-careless.log").await;
    let paths = Arc::new(paths());
    let started = std::time::Instant::now();

    // The shipped gateway: Envoy normalises or refuses first, the filter refuses the rest.
    let (shipped, through, ambiguous, counts) = run("shipped Envoy config", t.ports.gateway, &paths).await;
    let at = |path: &str| &shipped[paths.iter().position(|p| p == path).unwrap_or_else(|| panic!("{path} not sent"))];
    // Where the attacks end, with the shipped config.
    assert_eq!(at("/ratings/..%2Fpublic/x"), &Outcome::Envoy { status: 400 }, "REJECT_REQUEST refuses %2F");
    assert_eq!(at("/public/..%5Cadmin"), &Outcome::Envoy { status: 400 }, "and %5C");
    assert!(matches!(at("/public/%2e%2e/admin"), Outcome::Filter { status: 403, .. }), "resolved to /admin first");
    assert!(matches!(at("/admin;x=1"), Outcome::Filter { status: 400, reason } if reason == "ambiguous_path"));
    assert!(
        matches!(at("/public/%252e%252e/admin"), Outcome::Filter { status: 400, reason } if reason == "ambiguous_path")
    );
    assert!(matches!(at("/public/%EF%BC%8E%EF%BC%8E/admin"), Outcome::Filter { status: 400, .. }));
    assert_eq!(at("/public/hello"), &Outcome::Upstream { rule: Some("public".into()), path: "/public/hello".into() });
    assert_eq!(at("/ratings/1"), &Outcome::Upstream { rule: Some("ratings".into()), path: "/ratings/1".into() });

    // The decisions API judges what Envoy forwarded as the filter did.
    let mut compared = 0;
    for outcome in shipped.iter().filter(|o| matches!(o, Outcome::Upstream { .. })).step_by(3) {
        let Outcome::Upstream { rule, path } = outcome else { continue };
        let decided = decision(&t, t.ports.gateway, path).await;
        assert_eq!(decided, Some(outcome.clone()), "/decisions on {path:?} (the filter chose {rule:?})");
        compared += 1;
    }
    assert!(compared >= 100, "only {compared} decisions compared");

    // A gateway without normalize_path, merge_slashes and REJECT_REQUEST: the filter sees the
    // raw path and must refuse whatever an upstream could read another way.
    let (raw, raw_through, raw_ambiguous, raw_counts) = run("Envoy without normalisation", careless, &paths).await;
    let at = |path: &str| &raw[paths.iter().position(|p| p == path).unwrap_or_else(|| panic!("{path} not sent"))];
    for attack in
        ["/ratings/..%2Fpublic/x", "/public/..%5Cadmin", "/public/%2e%2e/admin", "/public/../admin", "//admin"]
    {
        assert!(
            matches!(at(attack), Outcome::Filter { status: 400, reason } if reason == "ambiguous_path"),
            "{attack}: {:?}",
            at(attack)
        );
    }

    // Where the filter saw the path as sent, the decisions API must judge it the same way.
    let (mut compared, mut disagreements) = (0, Vec::new());
    for (path, outcome) in paths.iter().zip(&raw).step_by(7) {
        if matches!(outcome, Outcome::Envoy { .. }) || !path.is_ascii() {
            continue;
        }
        let Some(decided) = decision(&t, careless, path).await else { continue };
        let agrees = match (outcome, &decided) {
            (Outcome::Upstream { rule, .. }, Outcome::Upstream { rule: decided, .. }) => rule == decided,
            (a, b) => a == b,
        };
        if !agrees {
            disagreements.push(format!("{path:?}: filter {outcome:?}, /decisions {decided:?}"));
        }
        compared += 1;
    }
    assert!(disagreements.is_empty(), "the decisions API disagrees with the filter:\n{}", disagreements.join("\n"));
    assert!(compared >= 200, "only {compared} decisions compared");

    // The run says something: many paths reach the upstream, many are refused as ambiguous.
    assert!(through >= 400 && raw_through >= 150, "too few paths reached the upstream:\n{counts}\n{raw_counts}");
    assert!(ambiguous >= 400 && raw_ambiguous >= 1500, "too few ambiguous refusals:\n{counts}\n{raw_counts}");
    eprintln!("{} paths through two gateways in {:.1} s", paths.len(), started.elapsed().as_secs_f64());
}
