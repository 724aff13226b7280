//! MTA-STS socketmap daemon for Postfix, a drop-in replacement for postfix-mta-sts-resolver.

fn main() {}
