//! Integration tests of `mta-sts-daemon` over real sockets, with the in-process DNS/HTTPS fixtures.

mod admin;
mod answers;
mod binary;
mod check_config;
mod control;
mod dane;
mod metrics;
mod serving;
mod store_faults;
mod stores;
mod support;
