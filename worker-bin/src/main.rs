//! `pg_trickle_worker`: the external refresh worker for pg_trickle.
//!
//! This release connects, verifies that the server has pg_trickle, and reports; claiming and running
//! refresh jobs arrives with the external-worker stage. It links the pure DVM engine only (no pgrx).

mod conninfo;

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "pg_trickle_worker",
    version,
    about = "External refresh worker for pg_trickle stream tables",
    long_about = "External refresh worker for pg_trickle stream tables.\n\n\
        Connection settings come from --dsn (a libpq-style connection string: \"host=... port=... dbname=...\" \
        or a postgresql:// URI); anything it leaves out is taken from PGHOST, PGPORT, PGUSER, PGPASSWORD, \
        PGDATABASE, PGAPPNAME and PGCONNECT_TIMEOUT, then from libpq's defaults.\n\n\
        Exit status: 0 on success, 1 when the server cannot be reached or has no pg_trickle, 2 on bad usage."
)]
struct Cli {
    /// Connection string (key=value pairs or a postgresql:// URI).
    #[arg(long, short = 'd', env = "PGTRICKLE_DSN")]
    dsn: Option<String>,

    /// Verify the connection and the extension, print what was found, and exit.
    #[arg(long)]
    check: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pg_trickle_worker: error: {message}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: &Cli) -> Result<(), String> {
    let config = conninfo::build(cli.dsn.as_deref(), |k| std::env::var(k).ok())?;
    let target = conninfo::describe(&config);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
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
        .query_opt("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_trickle'", &[])
        .await
        .map_err(|e| format!("cannot query {target}: {}", error_text(&e)))?;
    let Some(row) = row else {
        return Err(format!(
            "the pg_trickle extension is not installed in the database at {target}\n\
             hint: run CREATE EXTENSION pg_trickle; in that database (the server needs shared_preload_libraries = 'pg_trickle')"
        ));
    };
    let version: String = row.get(0);
    println!("pg_trickle_worker: connected to {target}: pg_trickle {version}");
    if !cli.check {
        println!("pg_trickle_worker: this release does not run refresh jobs yet; stream tables are refreshed in-process");
    }
    Ok(())
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
