//! Starting and owning the throwaway cluster.

use std::ffi::CString;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    /// The postmaster's pid (it changes when a test restarts the server).
    postmaster: std::sync::Mutex<u32>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

static SERVER_RUST_BACKTRACE: AtomicBool = AtomicBool::new(false);

/// Starts this test binary's server with `RUST_BACKTRACE=1` in its environment, as an operator
/// debugging a crash might (call it before the cluster's first use). Otherwise the variable is
/// removed from the server's environment.
pub fn with_rust_backtrace_in_server() {
    SERVER_RUST_BACKTRACE.store(true, Ordering::SeqCst);
}

/// The cluster for this test binary, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(start)
}

fn os_user() -> (String, u32, u32) {
    let name = std::env::var("PGTRICKLE_OS_USER").unwrap_or_else(|_| "pgtrickle".to_string());
    let cname = CString::new(name.clone()).unwrap();
    // SAFETY: getpwnam returns a pointer to static storage or NULL; we copy the ids out at once.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    assert!(
        !pw.is_null(),
        "OS user {name} does not exist: run scripts/setup (PostgreSQL cannot run as root)"
    );
    // SAFETY: non-null result of getpwnam.
    unsafe { (name, (*pw).pw_uid, (*pw).pw_gid) }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_as(uid: u32, gid: u32, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.uid(uid).gid(gid).env_remove("RUST_LIB_BACKTRACE");
    if SERVER_RUST_BACKTRACE.load(Ordering::SeqCst) {
        cmd.env("RUST_BACKTRACE", "1");
    } else {
        cmd.env_remove("RUST_BACKTRACE");
    }
    cmd
}

/// Removes directories left by earlier runs whose process is gone.
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let pid = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
        // SAFETY: kill with signal 0 only checks whether the process exists.
        if let Some(pid) = pid {
            if unsafe { libc::kill(pid, 0) } != 0 {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn start() -> Cluster {
    let (user, uid, gid) = os_user();
    let root = std::env::temp_dir().join("pg_trickle_e2e");
    std::fs::create_dir_all(&root).unwrap();
    remove_stale(&root);
    let exe = std::env::current_exe().unwrap();
    let binary = exe.file_stem().unwrap().to_string_lossy().to_string();
    let dir = root.join(format!("{binary}-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    chown(&dir, Some(uid), Some(gid)).unwrap();

    let status = run_as(uid, gid, &format!("{PG_BIN}/initdb"))
        .args([
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("initdb");
    assert!(status.success(), "initdb failed (as OS user {user})");

    let port = free_port();
    let log = std::fs::File::create(dir.join("postgres.log")).unwrap();
    chown(dir.join("postgres.log"), Some(uid), Some(gid)).unwrap();
    drop(log);
    let pid = spawn_postgres(&dir, port);
    let cluster = Cluster {
        port,
        dir,
        postmaster: std::sync::Mutex::new(pid),
    };
    cluster.wait_ready();
    cluster
}

/// Starts postgres on the cluster's data directory, as a direct child of a thread that lives as long
/// as the test process (so that the server dies with it), and returns its pid.
fn spawn_postgres(dir: &Path, port: u16) -> u32 {
    let (_, uid, gid) = os_user();
    let data = dir.join("data");
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("postgres.log"))
        .unwrap();
    let settings = [
        format!("port={port}"),
        "listen_addresses=127.0.0.1".into(),
        format!("unix_socket_directories={}", dir.display()),
        "shared_preload_libraries=pg_trickle".into(),
        "max_worker_processes=64".into(),
        "max_connections=200".into(),
        // Prepared transactions' changes must be captured and signalled (tests/scheduler.rs).
        "max_prepared_transactions=10".into(),
        "fsync=off".into(),
        // Logical replication into a source must be captured too (tests/capture.rs).
        "wal_level=logical".into(),
        "synchronous_commit=off".into(),
        "full_page_writes=off".into(),
        "pg_trickle.scheduler_interval_ms=100".into(),
    ];
    let mut cmd = run_as(uid, gid, &format!("{PG_BIN}/postgres"));
    cmd.arg("-D").arg(&data);
    for s in &settings {
        cmd.arg("-c").arg(s);
    }
    cmd.stdout(log.try_clone().unwrap()).stderr(log);
    // SAFETY: prctl in the child between fork and exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // Immediate shutdown when the test process (the keeper thread) goes away.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }

    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("pg-cluster-keeper".into())
        .spawn(move || {
            let mut child = cmd.spawn().expect("spawn postgres");
            tx.send(child.id()).unwrap();
            let status = child.wait();
            eprintln!("pg_test: postgres exited: {status:?}");
            // Keep living: PR_SET_PDEATHSIG fires when this thread ends, and a restarted server is
            // the child of another keeper.
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    rx.recv().unwrap()
}

impl Cluster {
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    pub fn try_connect(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(&self.conninfo(db), postgres::NoTls)
    }

    /// An empty directory beside the cluster, owned by the server's OS user (for CREATE TABLESPACE).
    pub fn server_owned_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let (_, uid, gid) = os_user();
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        path
    }

    fn wait_ready(&self) {
        let ready = crate::wait_until(Duration::from_secs(60), || {
            self.try_connect("postgres").is_ok()
        });
        if !ready {
            panic!(
                "test cluster did not start on port {}; log:\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// `pg_ctl stop -m immediate`, then a start: no shutdown checkpoint, every process killed at once
    /// (SIGQUIT to the postmaster), crash recovery at the next start. Connections are gone afterwards.
    pub fn restart_immediate(&self) {
        let mut pid = self.postmaster.lock().unwrap();
        // SAFETY: signalling the test's own postmaster.
        unsafe { libc::kill(*pid as i32, libc::SIGQUIT) };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = crate::wait_until(
            Duration::from_secs(60),
            || unsafe { libc::kill(*pid as i32, 0) } != 0,
        );
        assert!(gone, "postmaster {pid} did not stop");
        // Its children may outlive it for a moment; the data directory's lock file goes with the last.
        let data = self.dir.join("data");
        crate::wait_until(Duration::from_secs(30), || {
            !data.join("postmaster.pid").exists()
        });
        *pid = spawn_postgres(&self.dir, self.port);
        self.wait_ready();
    }

    /// Runs ALTER SYSTEM statements (`;`-separated; ALTER SYSTEM refuses a multi-statement batch, so
    /// one at a time) and reloads the configuration.
    pub fn alter_system(&self, sql: &str) {
        let mut admin = self.try_connect("postgres").unwrap();
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            admin.batch_execute(statement).unwrap();
        }
        admin.batch_execute("SELECT pg_reload_conf()").unwrap();
        // Background workers read the file when their SIGHUP is handled, at their next wake-up.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Makes `role` log in over TCP with a password (scram-sha-256) instead of the cluster's trust:
    /// a line ahead of the others in pg_hba.conf, then a reload.
    pub fn require_password(&self, role: &str) {
        let hba = self.dir.join("data/pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        let line = format!("host all {role} 127.0.0.1/32 scram-sha-256\n");
        if !old.contains(&line) {
            std::fs::write(&hba, format!("{line}{old}")).unwrap();
        }
        self.alter_system("");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// A hot standby of this cluster (`pg_basebackup -R`, streaming), with the same settings and
    /// pg_trickle preloaded, as an operator's replica runs; stopped when dropped.
    pub fn start_standby(&self, name: &str) -> Standby {
        let (user, uid, gid) = os_user();
        let dir = self.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        chown(&dir, Some(uid), Some(gid)).unwrap();
        let status = run_as(uid, gid, &format!("{PG_BIN}/pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-D",
                dir.join("data").to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ])
            .status()
            .expect("pg_basebackup");
        assert!(status.success(), "pg_basebackup failed (as OS user {user})");
        std::fs::File::create(dir.join("postgres.log")).unwrap();
        chown(dir.join("postgres.log"), Some(uid), Some(gid)).unwrap();
        let port = free_port();
        let pid = spawn_postgres(&dir, port);
        let standby = Standby { port, dir, pid };
        let ready = crate::wait_until(Duration::from_secs(60), || {
            standby.try_connect("postgres").is_ok()
        });
        assert!(ready, "standby did not start; log:\n{}", standby.log());
        standby
    }
}

/// A hot standby started by [`Cluster::start_standby`].
pub struct Standby {
    pub port: u16,
    pub dir: PathBuf,
    pid: u32,
}

impl Standby {
    pub fn try_connect(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={db}",
                self.port
            ),
            postgres::NoTls,
        )
    }

    /// Ends recovery (`pg_promote()`, waiting for it): the standby becomes a primary.
    pub fn promote(&self) {
        let mut c = self.try_connect("postgres").unwrap();
        let promoted: bool = c
            .query_one("SELECT pg_promote(true, 60)", &[])
            .unwrap()
            .get(0);
        assert!(promoted, "promotion failed; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        // SAFETY: signalling the standby's own postmaster (fast shutdown).
        unsafe { libc::kill(self.pid as i32, libc::SIGINT) };
    }
}
