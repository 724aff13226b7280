//! MTA-STS (RFC 8461) policy model and parsers: TXT records, policy files, MX patterns. No I/O.
