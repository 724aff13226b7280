//! Debug CLI: what MTA-STS policy does a domain publish, and why (or why not).

fn main() {}
