//! The shared conformance suite against the shared Redis, one database per test.

use crate::support::SharedDb;

mtasts_cache::conformance_tests!(
    SharedDb: basic,
    corrupt_entries,
    unreachable,
    outage_and_recovery
);
