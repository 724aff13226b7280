//! Tests of the fixtures themselves, with raw clients (loopback only).

mod dns;
mod dnssec;
mod https;
mod proxy;
