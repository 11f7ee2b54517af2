//! Real `pg_trickle_worker` processes for the end-to-end tests.

use crate::{wait_until, worker_binary, TestDb};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A worker process whose stderr goes to a file (read it with `log`); killed if still running at the end.
pub struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    /// A worker for `db`, logging in as `role`.
    pub fn start(db: &TestDb, role: &str, extra: &[&str]) -> Worker {
        Worker::spawn(&format!("{} user={role}", db.conninfo()), role, extra)
    }

    /// A worker for any connection string; `tag` names its log file.
    pub fn spawn(dsn: &str, tag: &str, extra: &[&str]) -> Worker {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!(
            "pg_trickle_worker_{}_{tag}_{n}.log",
            std::process::id()
        ));
        let child = Command::new(worker_binary())
            .args(["--dsn", dsn, "--heartbeat-interval", "1"])
            .args(extra)
            .env_remove("PGTRICKLE_DSN")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start pg_trickle_worker");
        Worker { child, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its newest active registration (one whose connection it lost stays active until the
    /// coordinator marks it gone).
    pub fn active_id(&self, db: &mut TestDb) -> Option<String> {
        db.rows(
            "SELECT worker_id::text FROM pgtrickle.pgt_worker_registry WHERE pid = $1 AND status = 'active'
              ORDER BY started_at DESC, worker_id DESC LIMIT 1",
            &[&self.pid()],
        )
        .first()
        .map(|r| r.get(0))
    }

    /// Waits up to 10 s for it to register; its `worker_id`.
    pub fn registered_id(&self, db: &mut TestDb) -> String {
        let mut id = None;
        wait_until(Duration::from_secs(10), || {
            id = self.active_id(db);
            id.is_some()
        });
        id.unwrap_or_else(|| panic!("not registered; log:\n{}", self.log()))
    }

    pub fn signal(&self, sig: &str) {
        assert!(Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut code = None;
        let exited = wait_until(timeout, || match self.child.try_wait().unwrap() {
            Some(status) => {
                code = status.code();
                true
            }
            None => false,
        });
        assert!(
            exited,
            "the worker did not exit within {timeout:?}; its log:\n{}",
            self.log()
        );
        code
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

/// Creates login role `role` holding nothing but `pgtrickle_worker`, as an operator would for workers.
pub fn login_role(db: &mut TestDb, role: &str) {
    db.exec(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; GRANT pgtrickle_worker TO {role};"
    ));
}
