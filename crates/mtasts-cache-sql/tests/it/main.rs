//! Integration tests of mtasts-cache-sql against real databases: for each database the conformance suite,
//! compatibility with the Python daemon's tables (written once, in `compat`, over [`support::SqlDb`]) and its own
//! failure behaviour.
//!
//! - SQLite (feature `sqlite`): a temporary file per test.
//! - PostgreSQL (feature `postgres`): a fresh schema per test on the server at `MTASTS_TEST_POSTGRES_URL`
//!   (default `postgres://postgres@127.0.0.1:5432/test`). Without a server the tests are skipped with a printed
//!   reason, or fail when `CI` is set.

// Without a database feature there is nothing to test.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod compat;
#[cfg(all(feature = "postgres", feature = "tls"))]
mod pg_tls;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod support;

/// The tests every database runs: the conformance suite and the compatibility tests, on a fresh `$db` each.
macro_rules! sql_tests {
    ($db:ty) => {
        use $crate::compat;
        $crate::support::corrupt_injector!($db);
        mtasts_cache::conformance_tests!($db: basic, shared_storage, corrupt_entries);
        mtasts_cache::harness_tests!($db, compat:
            reads_tables_written_by_python,
            writes_rows_python_can_read,
            reads_the_columns_earlier_versions_added,
            python_updates_keep_fetch_time_only_for_the_same_policy_id
        );
    };
}
pub(crate) use sql_tests;
