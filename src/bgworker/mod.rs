//! Background workers: a static launcher (started from shared_preload_libraries) and one dynamic
//! scheduler per database that has the extension. The scheduler finds due stream tables and refreshes
//! them; a later stage hands that work to a refresh worker pool.

pub mod adaptive;
pub mod cpu;
pub mod policy;

// PostgreSQL 13's ProcessUtility hook has another signature; there DROP DATABASE needs WITH (FORCE).
#[cfg(all(feature = "pg", not(feature = "pg13")))]
mod database_ddl;
#[cfg(feature = "pg")]
mod databases;
#[cfg(feature = "pg")]
mod launcher;
#[cfg(feature = "pg")]
mod scheduler;
#[cfg(feature = "pg")]
mod shmem;
#[cfg(feature = "pg")]
mod xact;

#[cfg(feature = "pg")]
pub use shmem::request_scheduler;

/// Called from `_PG_init` while preloading.
#[cfg(feature = "pg")]
pub fn init() {
    shmem::init();
    launcher::register();
    #[cfg(not(feature = "pg13"))]
    database_ddl::install();
}
