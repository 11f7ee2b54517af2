//! Background workers: a static launcher (started from shared_preload_libraries), one dynamic
//! coordinator per database that has the extension, and each database's pool of dynamic refresh
//! workers. The coordinator finds due stream tables and queues them for the pool, whose size it
//! adapts to the load.

pub mod adaptive;
pub mod cpu;
pub mod policy;

// PostgreSQL 13's ProcessUtility hook has another signature; there DROP DATABASE needs WITH (FORCE).
#[cfg(feature = "pg")]
mod coordinator;
#[cfg(all(feature = "pg", not(feature = "pg13")))]
pub(crate) mod database_ddl;
#[cfg(feature = "pg")]
mod databases;
#[cfg(feature = "pg")]
mod external;
#[cfg(feature = "pg")]
mod launcher;
#[cfg(feature = "pg")]
pub mod pool;
#[cfg(feature = "pg")]
mod refresh_worker;
#[cfg(feature = "pg")]
pub mod releases;
#[cfg(feature = "pg")]
mod shmem;
#[cfg(feature = "pg")]
mod time_limit;
#[cfg(feature = "pg")]
mod xact;

#[cfg(feature = "pg")]
pub use shmem::request_scheduler;

/// The most refresh workers one database's pool may have (the GUCs' upper bound).
pub const MAX_POOL_WORKERS: usize = 64;

/// Called from `_PG_init` while preloading.
#[cfg(feature = "pg")]
pub fn init() {
    shmem::init();
    pool::init();
    releases::init();
    launcher::register();
}

#[cfg(feature = "pg")]
unsafe extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler (postgres.c); pgrx only exposes a wrapper, not the function itself.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// SIGTERM: PostgreSQL's own handler, so a long refresh is cancelled promptly at shutdown (and a
/// process terminated mid-refresh rolls its transaction back).
#[cfg(feature = "pg")]
fn use_postgres_sigterm() {
    // SAFETY: installing a signal handler during worker start-up, before signals are unblocked.
    unsafe { pgrx::pg_sys::pqsignal(pgrx::pg_sys::SIGTERM as i32, Some(postgres_die)) };
}

/// Starts a dynamic background worker of type `backend_type` in database `db` (named after it), running
/// `function` with the database's OID as argument, never restarted by the postmaster, and telling
/// this process (its launcher or coordinator) when it starts or stops.
#[cfg(feature = "pg")]
fn start_in_database(
    backend_type: &str,
    function: &str,
    db: pgrx::pg_sys::Oid,
    db_name: &str,
) -> Result<
    pgrx::bgworkers::DynamicBackgroundWorker,
    pgrx::bgworkers::DynamicBackgroundWorkerLoadError,
> {
    pgrx::bgworkers::BackgroundWorkerBuilder::new(&format!("{backend_type} {db_name}"))
        .set_type(backend_type)
        .set_library("pg_trickle")
        .set_function(function)
        .set_argument(Some(pgrx::pg_sys::Datum::from(db.to_u32())))
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: reading this process's pid.
        .set_notify_pid(unsafe { pgrx::pg_sys::MyProcPid })
        .load_dynamic()
}
