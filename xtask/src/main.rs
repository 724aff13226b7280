//! Release and CI tooling for mtasts.

fn main() {}
