//! The worker's life: connect, register in `pgtrickle.pgt_worker_registry`, heartbeat on a connection
//! of its own (every job it runs is heartbeated with it), claim and run refresh jobs on the working
//! connection (jobs.rs) — woken by `NOTIFY pgtrickle_jobs`, and looking every few seconds anyway —
//! and on SIGTERM (or SIGINT) finish the job it is running, mark itself stopped and return. A lost
//! connection or a restarting server is retried with backoff; only what retrying cannot fix (no
//! extension, refused login, missing rights) ends the worker with an error.

use crate::health::Health;
use crate::log::{json_string, Logger};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config};
use uuid::Uuid;

/// Why a session ended without being asked to.
#[derive(Debug)]
pub enum Failure {
    /// Retrying will not help: the message says what to fix.
    Fatal(String),
    /// The connection or the server went away: try again after a pause.
    Retry(String),
    /// The server is up but takes no writes (a standby in recovery, or
    /// `default_transaction_read_only`): try again after a pause, as for `Retry` — a standby may be
    /// promoted — saying so.
    ReadOnly(String),
}

/// SIGTERM and SIGINT, as one stream.
pub struct Shutdown {
    term: Signal,
    int: Signal,
}

impl Shutdown {
    pub fn install() -> Result<Shutdown, String> {
        let term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let int =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        Ok(Shutdown { term, int })
    }

    async fn requested(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Pauses between reconnection attempts: 1 s, doubling, at most 30 s; back to 1 s once registered.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

pub struct Settings {
    pub config: Config,
    pub tls: crate::tls::MakeRustlsConnect,
    pub target: String,
    pub heartbeat_every: Duration,
    pub log: Logger,
    pub health: Arc<Health>,
    /// Reduce batches here when the server hands out a local plan (`--offload`).
    pub offload: bool,
}

/// Runs until shut down (Ok) or until something retrying cannot fix (Err, with what to do).
pub async fn serve(settings: &Settings) -> Result<(), String> {
    let log = settings.log;
    let mut shutdown = Shutdown::install()?;
    let mut backoff = Backoff::new();
    loop {
        match session(settings, &mut shutdown, &mut backoff).await {
            Ok(()) => return Ok(()),
            Err(failure) => {
                let (summary, message) = match failure {
                    Failure::Fatal(message) => return Err(message),
                    Failure::Retry(message) => ("connection to the server lost; retrying", message),
                    Failure::ReadOnly(message) => (
                        "the server does not accept writes (a standby?); retrying — to follow a failover, list every server in --dsn with target_session_attrs=read-write",
                        message,
                    ),
                };
                settings.health.unregistered(&message);
                let wait = backoff.next_wait();
                log.warn(
                    summary,
                    &[("error", &message), ("retry_in_s", &wait.as_secs())],
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.requested() => {
                        log.info("stopping (signal received while disconnected)", &[]);
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The channel `NOTIFY` wakes idle workers on when the coordinator queues jobs.
const JOBS_CHANNEL: &str = "pgtrickle_jobs";
/// An idle worker looks for jobs this often even without a notification.
const POLL_EVERY: Duration = Duration::from_secs(5);

/// A connection whose driver runs in its own task; the task ends when the connection does. Each
/// notification the connection receives is one message on `notified`.
struct Connection {
    client: Arc<Client>,
    driver: JoinHandle<()>,
    notified: mpsc::UnboundedReceiver<()>,
}

async fn connect(settings: &Settings) -> Result<Connection, Failure> {
    let (client, mut connection) = settings
        .config
        .connect(settings.tls.clone())
        .await
        .map_err(|e| classify(&e, &settings.target))?;
    let (tx, notified) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    // The role's or database's search_path must not decide what `text` or `uuid` in the worker's
    // statements mean (a type of that name in a schema listed first would).
    client
        .batch_execute("SET search_path = pg_catalog, pg_temp")
        .await
        .map_err(|e| classify(&e, &settings.target))?;
    Ok(Connection {
        client: Arc::new(client),
        driver,
        notified,
    })
}

/// Errors a retry cannot fix: refused logins (class 28), a database that does not exist (3D000),
/// missing rights (42501) or functions (42883). Everything else — refused or broken connections, a
/// server shutting down or starting up — is worth retrying.
pub fn classify(e: &tokio_postgres::Error, target: &str) -> Failure {
    let text = crate::error_text(e);
    if crate::tls::is_certificate_error(e) {
        return Failure::Fatal(format!("the server at {target} presented a certificate that sslmode and sslrootcert refuse: {text}"));
    }
    match e.as_db_error().map(|db| db.code().code()) {
        Some(code)
            if code.starts_with("28") || code == "3D000" || code == "42501" || code == "42883" =>
        {
            Failure::Fatal(format!("the server at {target} refused: {text}"))
        }
        // A standby (LISTEN and every write are refused during recovery) or a read-only default.
        Some("25006") => Failure::ReadOnly(format!("{target}: {text}")),
        _ => Failure::Retry(format!("{target}: {text}")),
    }
}

/// A serialization failure or a deadlock: the statement met a concurrent one (the coordinator
/// reclaiming or collecting jobs) and may simply run again. Not a reason to end the session, which
/// would register the worker anew under another id.
pub fn transient(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| matches!(db.code().code(), "40001" | "40P01"))
}

/// The extension must be installed, at a version that has the worker registry.
async fn check_server(client: &Client, target: &str) -> Result<String, Failure> {
    let row = client
        .query_opt(
            "SELECT e.extversion, pg_catalog.to_regprocedure('pgtrickle.worker_register(uuid,text,integer,jsonb)') IS NOT NULL
               FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_trickle'",
            &[],
        )
        .await
        .map_err(|e| classify(&e, target))?;
    let Some(row) = row else {
        return Err(Failure::Fatal(crate::no_extension_message(target)));
    };
    let (version, has_registry): (String, bool) = (row.get(0), row.get(1));
    if !has_registry {
        return Err(Failure::Fatal(format!(
            "pg_trickle {version} in the database at {target} has no worker registry\n\
             hint: run ALTER EXTENSION pg_trickle UPDATE; in that database"
        )));
    }
    Ok(version)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// What a worker evaluates itself when it offloads (`pg_trickle::dvm::offload`).
const LOCAL_OPERATORS: &[&str] = &["filter", "project", "count", "sum", "avg"];

/// What this worker can do: its version, and the operators it evaluates locally (none with
/// offloading turned off: every refresh then runs on the server).
pub fn capabilities(offload: bool) -> String {
    let operators: Vec<String> = if offload {
        LOCAL_OPERATORS.iter().map(|o| json_string(o)).collect()
    } else {
        Vec::new()
    };
    format!(
        "{{\"version\":{},\"local_operators\":[{}]}}",
        json_string(env!("CARGO_PKG_VERSION")),
        operators.join(",")
    )
}

async fn session(
    settings: &Settings,
    shutdown: &mut Shutdown,
    backoff: &mut Backoff,
) -> Result<(), Failure> {
    let log = settings.log;
    let target = settings.target.as_str();
    let mut work = connect(settings).await?;
    let version = check_server(&work.client, target).await?;
    work.client
        .batch_execute(&format!("LISTEN {JOBS_CHANNEL}"))
        .await
        .map_err(|e| classify(&e, target))?;
    // Heartbeats have a connection of their own: the working one will be inside long transactions.
    let mut beat = connect(settings).await?;
    let id = Uuid::new_v4().to_string();
    let host = hostname();
    let pid = std::process::id() as i32;
    beat.client
        .execute(
            "SELECT pgtrickle.worker_register($1::text::uuid, $2, $3, $4::text::jsonb)",
            &[&id, &host, &pid, &capabilities(settings.offload)],
        )
        .await
        .map_err(|e| classify(&e, target))?;
    backoff.reset();
    settings.health.registered(&id);
    log.info(
        "registered",
        &[
            ("worker_id", &id),
            ("server", &target),
            ("pg_trickle", &version),
            ("hostname", &host),
            ("pid", &pid),
        ],
    );
    let mut heart = tokio::spawn(heartbeats(
        beat.client.clone(),
        id.clone(),
        settings.heartbeat_every,
        settings.health.clone(),
        log,
        target.to_string(),
    ));
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        match drain_jobs(&work.client, &id, log, target, settings.offload, shutdown).await {
            Ok(Drained::Stopping) => break Ok(()),
            Ok(Drained::Empty) => {}
            Err(failure) => break Err(failure),
        }
        tokio::select! {
            _ = work.notified.recv() => {}
            _ = poll.tick() => {}
            _ = shutdown.requested() => break Ok(()),
            ended = &mut heart => {
                break Err(ended.unwrap_or_else(|e| Failure::Retry(format!("heartbeats stopped: {e}"))));
            }
            _ = &mut work.driver => break Err(Failure::Retry("the working connection closed".into())),
            _ = &mut beat.driver => break Err(Failure::Retry("the heartbeat connection closed".into())),
        }
    };
    heart.abort();
    if outcome.is_ok() {
        settings.health.unregistered("stopping");
        match beat
            .client
            .execute("SELECT pgtrickle.worker_stop($1::text::uuid)", &[&id])
            .await
        {
            Ok(_) => log.info("stopped", &[("worker_id", &id)]),
            Err(e) => log.warn(
                "stopping without deregistering",
                &[("worker_id", &id), ("error", &crate::error_text(&e))],
            ),
        }
    }
    outcome
}

enum Drained {
    /// No job is queued for this worker now.
    Empty,
    /// Asked to stop (between two jobs).
    Stopping,
}

/// Claims and runs queued jobs one after the other until none is left or a stop is asked for.
async fn drain_jobs(
    client: &Client,
    id: &str,
    log: Logger,
    target: &str,
    offload: bool,
    shutdown: &mut Shutdown,
) -> Result<Drained, Failure> {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.requested() => return Ok(Drained::Stopping),
            _ = std::future::ready(()) => {}
        }
        match crate::jobs::claim(client, id, target).await? {
            Some(job) => crate::jobs::run(client, id, &job, log, target, offload).await?,
            None => return Ok(Drained::Empty),
        }
    }
}

/// Heartbeats every `every` until the worker is marked gone or the connection fails: why it ended.
async fn heartbeats(
    client: Arc<Client>,
    id: String,
    every: Duration,
    health: Arc<Health>,
    log: Logger,
    target: String,
) -> Failure {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate: registering was the first heartbeat
    loop {
        ticker.tick().await;
        let alive = match client
            .query_one("SELECT pgtrickle.worker_heartbeat($1::text::uuid)", &[&id])
            .await
        {
            Ok(row) => row.get::<_, bool>(0),
            // This beat met a concurrent update; the next one comes within `every`.
            Err(e) if transient(&e) => {
                log.debug(
                    "heartbeat skipped",
                    &[("worker_id", &id), ("error", &crate::error_text(&e))],
                );
                continue;
            }
            Err(e) => return classify(&e, &target),
        };
        if !alive {
            return Failure::Retry(format!(
                "worker {id} was marked gone (no heartbeat within pg_trickle.worker_reclaim_timeout); registering as a new worker"
            ));
        }
        health.beat();
        log.debug("heartbeat", &[("worker_id", &id)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..7).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_wait().as_secs(), 1);
    }

    #[test]
    fn capabilities_are_json_with_the_version() {
        let c = capabilities(false);
        assert!(c.starts_with("{\"version\":\""), "{c}");
        assert!(c.ends_with(",\"local_operators\":[]}"), "{c}");
        let c = capabilities(true);
        assert!(
            c.ends_with(",\"local_operators\":[\"filter\",\"project\",\"count\",\"sum\",\"avg\"]}"),
            "{c}"
        );
    }
}
