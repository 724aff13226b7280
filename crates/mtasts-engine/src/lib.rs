//! MTA-STS policy resolution engine: memory front, store read-through, coalesced discovery, RFC 8461 freshness.
