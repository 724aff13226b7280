//! Integration tests of `mtasts-cache-redis` against real Redis servers.
//!
//! - The shared Redis at `MTASTS_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/`): each test leases one of
//!   databases 1–15 and flushes it; database 0 is never touched.
//! - Servers the tests start themselves with `redis-server` on spare loopback ports: restarts, passwords,
//!   and Redis Sentinel (a master, a replica and `redis-server --sentinel`).
//!
//! A missing Redis or redis-server fails the tests under CI and skips them (with a message) otherwise
//! (`mtasts_test_support::skip_or_fail`).

mod compat;
mod conformance;
mod sentinel;
mod server;
mod support;
mod tls;
