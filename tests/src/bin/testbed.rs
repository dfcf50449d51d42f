//! `just run`: the control plane, Envoy with the Portcullis filter, the echo upstream and the
//! mock external services (session, permission check, hydrator) on the well-known ports, with
//! state kept in `.run/` between runs. Ctrl-C stops everything. The control plane runs with
//! `--dev` (its admin API needs no key), so the README's curl examples work as they are.

use portcullis_e2e::{FILTER_TOKEN, Options, Ports, Testbed, workspace_root};

#[tokio::main]
async fn main() {
    let dir = workspace_root().join(".run");
    // Listen for the stop signal from the first moment: a signal during start-up drops the
    // unfinished start, and with it the children it spawned (`kill_on_drop`).
    let stop = stop_signal();
    tokio::pin!(stop);
    let started = tokio::select! {
        started = Testbed::start(Options { ports: Ports::WELL_KNOWN, dir: Some(dir), dev: true }) => started,
        () = &mut stop => {
            eprintln!("stopping");
            return;
        }
    };
    let testbed = match started {
        Ok(t) => t,
        Err(e) => {
            eprintln!("portcullis testbed: {e}");
            std::process::exit(1);
        }
    };
    let p = testbed.ports;
    eprintln!(
        r#"
Portcullis is running (portcullis serve --dev: the admin API takes no API key; never in production).
  gateway (Envoy + filter)   http://127.0.0.1:{gateway}
  control plane, public      http://127.0.0.1:{public}
  control plane, admin       http://127.0.0.1:{admin}
  echo upstream              http://127.0.0.1:{upstream}
  mock services              http://127.0.0.1:{mock}  (/sessions/whoami, /check, /relation-tuples/check, /hydrate)
  logs and data              {dir}
  filter token               {FILTER_TOKEN}

Try it:
  curl -X POST localhost:{admin}/admin/clients -H 'Content-Type: application/json' \
    -d '{{"client_id":"my-client","client_secret":"secret","grant_types":["client_credentials"],"scope":"read write"}}'
  TOKEN=$(curl -s -X POST localhost:{public}/oauth2/token -u my-client:secret \
    -d grant_type=client_credentials -d scope=read | jq -r .access_token)
  curl -i localhost:{gateway}/ratings/1                                   # 401
  curl -i localhost:{gateway}/ratings/1 -H "Authorization: Bearer $TOKEN" # 200, X-User: my-client
  curl -i localhost:{gateway}/public/hello                                # 200, anonymous

Ctrl-C to stop."#,
        gateway = p.gateway,
        public = p.public,
        admin = p.admin,
        upstream = p.upstream,
        mock = p.mock,
        dir = testbed.dir.display(),
    );
    stop.await;
    eprintln!("stopping");
    // Dropping the testbed stops Envoy and the control plane (`kill_on_drop`).
    drop(testbed);
}

/// Ctrl-C, or SIGTERM (`kill`, a supervisor): either way the children are stopped on the way
/// out instead of being left running.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
