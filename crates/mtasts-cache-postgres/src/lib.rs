//! PostgreSQL store for the MTA-STS policy cache (compatible with postfix-mta-sts-resolver).
