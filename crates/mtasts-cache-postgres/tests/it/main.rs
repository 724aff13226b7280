//! Integration tests of mtasts-cache-postgres against a real PostgreSQL (env `MTASTS_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): the conformance suite, compatibility with the Python daemon's
//! tables, and outages. Each test works in its own fresh schema. Without a server the tests are skipped with a
//! printed reason, or fail when `CI=true`.

mod compat;
mod conformance;
mod failures;
mod util;
