//! Criterion benchmarks of codec throughput (filled in below).

fn main() {}
