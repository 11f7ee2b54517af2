//! `pg_trickle_worker`: the external refresh worker for pg_trickle.
//!
//! It connects, registers in `pgtrickle.pgt_worker_registry`, heartbeats, claims the refresh jobs
//! the coordinator queues and runs them — reducing a batch itself where the server hands out a local
//! plan (offload.rs) — survives lost connections and server restarts, and deregisters on SIGTERM.
//! It links the pure DVM engine only (no pgrx).

mod conninfo;
mod health;
mod jobs;
mod log;
mod offload;
mod serve;
mod tls;

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "pg_trickle_worker",
    version,
    about = "External refresh worker for pg_trickle stream tables",
    long_about = "External refresh worker for pg_trickle stream tables.\n\n\
        Connection settings come from --dsn (a libpq-style connection string: \"host=... port=... dbname=...\" \
        or a postgresql:// URI); anything it leaves out is taken from PGHOST, PGPORT, PGUSER, PGPASSWORD, \
        PGDATABASE, PGAPPNAME, PGCONNECT_TIMEOUT, PGSSLMODE and PGSSLROOTCERT, then from libpq's defaults. \
        TLS (rustls, no OpenSSL) follows libpq: sslmode=disable, allow, prefer (the default: TLS when the \
        server offers it), require (TLS, certificate not checked unless a root certificate is given), \
        verify-ca (signed by sslrootcert) or verify-full (and naming the host); sslrootcert is a PEM file, \
        by default ~/.postgresql/root.crt if it exists. The role it logs in as needs only the \
        pgtrickle_worker role (GRANT pgtrickle_worker TO <role>).\n\n\
        It registers in pgtrickle.pgt_worker_registry, heartbeats every --heartbeat-interval seconds on a \
        connection of its own, claims the refresh jobs the coordinator queues (woken by NOTIFY \
        pgtrickle_jobs, and looking every 5 s) and runs each in one transaction: where the server hands out a local \
        plan (a stream table over one table: its filtered, projected rows, or COUNT, SUM, AVG kept from stored \
        state) it pulls the batch with binary COPY, reduces it here (to one row per touched group, or per distinct \
        changed row) and pushes that back, and the server applies it (--offload off leaves all of it to the server); retries lost \
        connections with backoff (1 s doubling to 30 s), and on SIGTERM or SIGINT finishes the job it runs, \
        marks itself stopped and exits 0. With --health-addr it answers GET /healthz (200 while \
        running) and GET /readyz (200 while registered and heartbeating, else 503).\n\n\
        Exit status: 0 after a clean shutdown (or a successful --check); 1 when retrying cannot help (no \
        pg_trickle in the database, a refused login, missing rights, a server certificate sslmode refuses) or, with --check, the server cannot be \
        reached or takes no writes (a standby); 2 on bad usage."
)]
struct Cli {
    /// Connection string (key=value pairs or a postgresql:// URI).
    #[arg(long, short = 'd', env = "PGTRICKLE_DSN")]
    dsn: Option<String>,

    /// Verify the connection and the extension, print what was found, and exit.
    #[arg(long)]
    check: bool,

    /// Seconds between heartbeats (keep it well below the server's pg_trickle.worker_reclaim_timeout).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_interval: u64,

    /// Serve GET /healthz (alive) and GET /readyz (registered and heartbeating) over HTTP on this
    /// address, e.g. 0.0.0.0:8080, for a container orchestrator's probes.
    #[arg(long, env = "PGTRICKLE_WORKER_HEALTH_ADDR")]
    health_addr: Option<String>,

    /// Least severe events logged.
    #[arg(long, value_enum, default_value_t = log::Level::Info, env = "PGTRICKLE_WORKER_LOG_LEVEL")]
    log_level: log::Level,

    /// Reduce batches here when the server can hand out a local plan (on), or leave every refresh to
    /// the server (off).
    #[arg(long, value_enum, default_value_t = Offload::On, env = "PGTRICKLE_WORKER_OFFLOAD")]
    offload: Offload,

    /// Log lines as text or as JSON objects (one per line, on stderr).
    #[arg(long, value_enum, default_value_t = log::Format::Text, env = "PGTRICKLE_WORKER_LOG_FORMAT")]
    log_format: log::Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Offload {
    On,
    Off,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let logger = log::Logger {
        level: cli.log_level,
        format: cli.log_format,
    };
    let result = if cli.check {
        check(&cli).await
    } else {
        run(&cli, logger).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            if cli.check {
                eprintln!("pg_trickle_worker: error: {message}");
            } else {
                logger.error(&message, &[]);
            }
            ExitCode::from(1)
        }
    }
}

async fn run(cli: &Cli, log: log::Logger) -> Result<(), String> {
    let (config, tls) = conninfo::build(cli.dsn.as_deref(), |k| std::env::var(k).ok())?;
    let target = conninfo::describe(&config);
    let tls = tls::connector(&tls)?;
    let heartbeat_every = Duration::from_secs(cli.heartbeat_interval);
    let health = health::Health::new(heartbeat_every);
    if let Some(addr) = &cli.health_addr {
        health::listen(addr, health.clone()).await?;
        log.info("serving health checks", &[("addr", addr)]);
    }
    let offload = cli.offload == Offload::On;
    let settings = serve::Settings {
        config,
        tls,
        target,
        heartbeat_every,
        log,
        health,
        offload,
    };
    serve::serve(&settings).await
}

async fn check(cli: &Cli) -> Result<(), String> {
    let (config, tls) = conninfo::build(cli.dsn.as_deref(), |k| std::env::var(k).ok())?;
    let target = conninfo::describe(&config);
    let (client, connection) = config.connect(tls::connector(&tls)?).await.map_err(|e| {
        format!(
            "cannot connect to PostgreSQL at {target}: {}\nhint: check --dsn or the PG* environment variables, and that the server is running and accepts connections",
            error_text(&e)
        )
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("pg_trickle_worker: connection lost: {e}");
        }
    });

    let row = client
        .query_opt(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_trickle'",
            &[],
        )
        .await
        .map_err(|e| format!("cannot query {target}: {}", error_text(&e)))?;
    let Some(row) = row else {
        return Err(no_extension_message(&target));
    };
    let version: String = row.get(0);
    let read_only: bool = client
        .query_one(
            "SELECT pg_catalog.current_setting('transaction_read_only')::bool",
            &[],
        )
        .await
        .map_err(|e| format!("cannot query {target}: {}", error_text(&e)))?
        .get(0);
    if read_only {
        return Err(format!(
            "the server at {target} (pg_trickle {version}) does not accept writes: a standby in recovery, or default_transaction_read_only is on; a worker would wait there until it does\n\
             hint: point --dsn at the primary; to follow a failover, list every server with target_session_attrs=read-write"
        ));
    }
    println!("pg_trickle_worker: connected to {target}: pg_trickle {version}");
    Ok(())
}

fn no_extension_message(target: &str) -> String {
    format!(
        "the pg_trickle extension is not installed in the database at {target}\n\
         hint: run CREATE EXTENSION pg_trickle; in that database (the server needs shared_preload_libraries = 'pg_trickle')"
    )
}

/// The server's message when there is one (tokio-postgres' Display for db errors is just "db error").
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}
