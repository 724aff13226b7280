//! Tests of the fixtures themselves, with raw clients (loopback only).

mod dns;
mod https;
mod proxy;
