//! Interop with a client library not written here: Python authlib (`tests/interop/authlib_client.py`)
//! runs discovery, client_credentials, authorization_code + PKCE, ID token verification against
//! the JWKS, userinfo, refresh and revocation, and signs the JWTs Portcullis reads (a
//! `private_key_jwt` assertion, RS256; a jwt-bearer grant assertion, ES256), against the real
//! `portcullis` binary. This test only starts the testbed and runs the script; it must not skip
//! when Python or authlib is missing.

use portcullis_e2e::{Extras, testbed_with, workspace_root};
use serde_json::json;

// The script's one line per step is this test's report: shown with --no-capture and on failure.
#[expect(clippy::print_stdout, reason = "the script's step lines are this test's report")]
#[tokio::test]
async fn authlib_completes_every_grant_against_portcullis() {
    let python = workspace_root().join(".venv/bin/python");
    let script = workspace_root().join("tests/interop/authlib_client.py");
    // Fail, not skip: `./just test` installs authlib, so its absence is a broken setup.
    let probe = std::process::Command::new(&python).args(["-c", "import authlib, requests"]).output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "authlib or requests is missing from {}: run `./just setup`\n{}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run {}: {e}; run `./just setup`", python.display()),
    }

    // Hydra's behaviour outside the rotation grace period (a replayed refresh token is refused and
    // revokes the family) is what the script checks; the grace period would hide it.
    let t = testbed_with(|_| Extras {
        config: json!({"oauth2": {"grant": {"refresh_token": {"rotation_grace_period": "0s"}}}}),
        ..Extras::default()
    })
    .await;

    let mut command = tokio::process::Command::new(&python);
    command.arg(&script).arg(t.public("")).arg(t.admin(""));
    if let Some(key) = &t.admin_key {
        command.arg(key);
    }
    let out = command.output().await.unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if !out.status.success() {
        let log = std::fs::read_to_string(t.dir.join("portcullis.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        panic!(
            "the authlib client failed ({}):\n{stdout}\n{stderr}\nportcullis.log (tail):\n{}",
            out.status,
            tail.join("\n")
        );
    }
    assert!(stdout.contains("interop: all steps passed"), "the script did not finish: {stdout}");
}
