//! pg_trickle: stream tables for PostgreSQL — tables defined by a query, refreshed on a schedule.
//!
//! Without the `pg` feature this crate is only the pure differential engine ([`dvm`]) and the pure
//! policies of the other subsystems; that is what `pg_trickle_worker` links.

/// `PG_FUNCTION_INFO_V1(name)`: the record PostgreSQL looks up, as `pg_finfo_<name>`, to call a C
/// function of this library by the version-1 convention. (Before the modules: macros are in scope
/// from their definition on.)
#[allow(unused_macros)]
macro_rules! function_info_v1 {
    ($finfo:ident) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pgrx::pg_sys::Pg_finfo_record {
            const V1: &pgrx::pg_sys::Pg_finfo_record =
                &pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            V1
        }
    };
}

pub mod bgworker;
pub mod catalog;
pub mod dvm;
pub mod error;
pub mod stats;

#[cfg(feature = "pg")]
mod api;
#[cfg(feature = "pg")]
mod cdc;
#[cfg(feature = "pg")]
mod gucs;
#[cfg(feature = "pg")]
mod locks;
#[cfg(feature = "pg")]
mod refresh;
#[cfg(feature = "pg")]
mod result_relation;
#[cfg(feature = "pg")]
mod spi;
#[cfg(all(feature = "pg", not(feature = "pg13")))]
mod utility_hook;

#[cfg(feature = "pg")]
pgrx::pg_module_magic!(name, version);

#[cfg(feature = "pg")]
pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
#[cfg(feature = "pg")]
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Loaded from `shared_preload_libraries`: registers GUCs, shared memory and the launcher.
/// Refuses any other way of loading, because stream tables are refreshed by background workers.
#[cfg(feature = "pg")]
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a plain read of a postmaster-set global during library load.
    if !unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        error::PgtError::new(
            error::SqlState::ObjectNotInPrerequisiteState,
            "pg_trickle must be loaded via shared_preload_libraries",
        )
        .hint(
            "Add pg_trickle to shared_preload_libraries in postgresql.conf and restart the server.",
        )
        .raise();
    }
    keep_rust_backtraces_out_of_postgres_errors();
    gucs::init();
    bgworker::init();
    cdc::signal::init();
    #[cfg(not(feature = "pg13"))]
    utility_hook::install();
}

/// Leaves PostgreSQL's own errors as PostgreSQL raised them when they cross pg_trickle's Rust frames.
///
/// pgrx carries such an error (a `CREATE TABLE` that fails under our ProcessUtility hook, in any
/// database; a user's query failing under SPI) through Rust as a panic, and its panic hook captures a
/// Rust backtrace for every panic, which pgrx appends to the error's DETAIL when `RUST_BACKTRACE` is
/// set in the server's environment: fifty lines of our internals sent to the client. The error has its
/// own location; a Rust backtrace belongs to a panic of our own code, which keeps it.
///
/// pgrx's hook keeps what it captured until a PostgreSQL error takes it, and only a genuine panic (a
/// `&str` or `String` payload) takes its own. So it must not run for the errors that report
/// themselves either — an error pg_trickle raises (an `ErrorReport`), or one caught and raised again
/// (a `CaughtError`) — or the next PostgreSQL error in the session carries their backtrace.
#[cfg(feature = "pg")]
fn keep_rust_backtraces_out_of_postgres_errors() {
    use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
    let pgrx_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        if payload.is::<CaughtError>()
            || payload.is::<ErrorReportWithLevel>()
            || payload.is::<ErrorReport>()
        {
            return;
        }
        pgrx_hook(info)
    }));
}

#[cfg(feature = "pg_test")]
mod pg_tests;

/// Hooks for `cargo pgrx test`: the extension must be preloaded for its background workers.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pg_trickle'",
            "pg_trickle.scheduler_interval_ms = 200",
        ]
    }
}
