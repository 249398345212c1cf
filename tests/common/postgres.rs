//! A real PostgreSQL for the decision archive's tests, started by `hack/postgres` (Debian's
//! package, TLS on): the shared one at the repo's `.postgres`, or one of a test's own that it may
//! stop and start (the database going away) without disturbing the others.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::repo_root;

pub struct Postgres {
    /// HITL_POSTGRES_DIR and HITL_POSTGRES_PORT for a test's own instance; None: the shared one.
    own: Option<(PathBuf, u16)>,
}

impl Postgres {
    /// The shared instance, started if it is not running.
    pub fn shared() -> Self {
        let pg = Postgres { own: None };
        pg.ok(&["up"]);
        pg
    }

    /// An instance of this test's own, on a free port; removed when dropped.
    pub fn own(name: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = repo_root().join("target/postgres").join(super::unique_name(name));
        let pg = Postgres { own: Some((dir, port)) };
        pg.ok(&["up"]);
        pg
    }

    /// The connection URL (TLS, the server verified against the instance's CA).
    pub fn url(&self) -> String {
        String::from_utf8_lossy(&self.ok(&["url"]).stdout).trim().to_string()
    }

    /// SQL run as the superuser; its output (`-At`: unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        String::from_utf8_lossy(&self.ok(&["psql", "-At", "-c", sql]).stdout).trim().to_string()
    }

    /// The database goes away (its data kept), as when its host restarts.
    pub fn stop(&self) {
        self.ok(&["stop"]);
    }

    pub fn start(&self) {
        self.ok(&["start"]);
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(repo_root().join("hack/postgres"));
        if let Some((dir, port)) = &self.own {
            cmd.env("HITL_POSTGRES_DIR", dir).env("HITL_POSTGRES_PORT", port.to_string());
        }
        cmd.args(args).output().expect("run hack/postgres")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hack/postgres {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        out
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.own.is_some() {
            let _ = self.run(&["down"]);
        }
    }
}
