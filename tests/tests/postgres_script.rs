//! `tools/postgres.sh`, the throwaway PostgreSQL of `./just test`: two runs side by side (two
//! worktrees, CI next to a developer) get servers of their own, and stopping one leaves the
//! other running. Needs the Debian `postgresql` package, as the store tests do; the test is
//! named `postgres_*`, so `PORTCULLIS_TEST_SKIP_POSTGRES=1 ./just test` leaves it out and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_e2e::workspace_root;

fn script(args: &[&str]) -> Result<String, String> {
    let out = Command::new(workspace_root().join("tools/postgres.sh"))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run tools/postgres.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("tools/postgres.sh {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

/// `SELECT <n>` through the server of `dsn`, with the packages' psql.
fn select(dsn: &str, n: u32) -> Result<String, String> {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|dirs| dirs.filter_map(Result::ok).map(|d| d.path().join("bin/psql")).find(|p| p.is_file()))
        .ok_or("psql not found under /usr/lib/postgresql")?;
    let out =
        Command::new(bin).args([dsn, "-tAc", &format!("SELECT {n}")]).output().map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A directory for one server, stopped and removed when dropped.
struct Server {
    dir: PathBuf,
    dsn: String,
}

impl Server {
    fn start(parent: &Path, name: &str) -> Server {
        let dir = parent.join(name);
        let dsn = script(&["start", &dir.display().to_string()]).unwrap_or_else(|e| {
            panic!("{e}\n(install PostgreSQL with `apt-get install -y postgresql`, or skip with PORTCULLIS_TEST_SKIP_POSTGRES=1)")
        });
        Server { dir, dsn }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = script(&["stop", &self.dir.display().to_string()]);
    }
}

#[test]
fn postgres_servers_of_two_runs_are_separate_and_stop_alone() {
    let parent = tempfile::Builder::new().prefix("portcullis-pg-test-").tempdir().unwrap_or_else(|e| panic!("{e}"));
    // As root the servers run as the postgres user, who must be able to enter this directory.
    std::fs::set_permissions(parent.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    // Started at the same moment, as two runs would.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Server::start(parent.path(), "a"));
        let b = s.spawn(|| Server::start(parent.path(), "b"));
        (a.join().unwrap_or_else(|_| panic!("start a")), b.join().unwrap_or_else(|_| panic!("start b")))
    });
    assert_ne!(a.dsn, b.dsn, "each run has its own port");
    assert_eq!(select(&a.dsn, 1).as_deref(), Ok("1"), "{}", a.dsn);
    assert_eq!(select(&b.dsn, 2).as_deref(), Ok("2"), "{}", b.dsn);

    let (a_dir, a_dsn) = (a.dir.clone(), a.dsn.clone());
    drop(a);
    assert!(!a_dir.exists(), "stop removes the run's directory, and with it its databases");
    assert!(select(&a_dsn, 1).is_err(), "a is stopped");
    assert_eq!(select(&b.dsn, 3).as_deref(), Ok("3"), "stopping a left b running");

    // `stop` refuses a directory `start` did not make.
    let foreign = parent.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap_or_else(|e| panic!("{e}"));
    assert!(script(&["stop", &foreign.display().to_string()]).is_err());
    assert!(foreign.exists(), "a directory it did not make is left alone");
}
