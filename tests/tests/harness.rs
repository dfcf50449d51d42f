//! The testbed harness itself: a start whose ports were taken meanwhile (by a neighbouring test,
//! or any outgoing connection) starts again on fresh ones, whichever piece found its port taken.

use std::net::TcpListener;

use portcullis_e2e::{Extras, Ports, send, start_retrying};

#[tokio::test]
async fn a_testbed_whose_ports_are_taken_starts_again_on_fresh_ones() {
    // Attempt 1: Envoy's gateway port is taken; attempt 2: the control plane's admin port;
    // attempt 3: the in-process echo upstream's; attempt 4 gets free ports. Attempts 5 to 8 are
    // spares: the suite runs in parallel, so a port found free can really be taken before the
    // child binds it (the race the retries exist for), and this test must not fail on it.
    let mut held = Vec::new();
    let mut blocked = Vec::new();
    let t = start_retrying(
        8,
        |attempt| {
            let ports = Ports::free()?;
            let taken = match attempt {
                1 => Some(ports.gateway),
                2 => Some(ports.admin),
                3 => Some(ports.upstream),
                _ => None,
            };
            if let Some(port) = taken {
                held.push(TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("port {port}: {e}"))?);
                blocked.push(port);
            }
            Ok(ports)
        },
        false,
        |_| Extras::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("the testbed did not start after its three blocked attempts: {e}"));
    assert_eq!(blocked.len(), 3, "every blocked attempt was retried");
    let ports = [t.ports.gateway, t.ports.admin, t.ports.upstream, t.ports.public, t.ports.mock];
    assert!(blocked.iter().all(|b| !ports.contains(b)), "it runs on none of the taken ports: {ports:?} {blocked:?}");
    let reply = send("GET", &t.gateway("/public/hello"), &[]).await;
    assert_eq!(reply.status, 200, "the testbed works: {}", reply.text);
    assert_eq!(reply.body["path"], "/public/hello", "answered by this testbed's upstream");
}

#[tokio::test]
async fn a_start_that_fails_for_another_reason_is_not_retried() {
    let mut attempts = 0;
    let result = start_retrying(
        4,
        |_| {
            attempts += 1;
            Ports::free()
        },
        false,
        |_| Extras { config: serde_json::json!({"serve": {"admin": {"port": "not-a-port"}}}), ..Extras::default() },
    )
    .await;
    let Err(error) = result else { panic!("a broken config must not start") };
    assert_eq!(attempts, 1, "no retry for: {error}");
}
