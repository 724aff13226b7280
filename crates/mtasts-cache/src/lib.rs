//! MTA-STS policy cache: the PolicyCache trait and a bounded in-memory LRU store.
