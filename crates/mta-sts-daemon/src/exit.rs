//! Process exit codes (sysexits.h names where one fits).

/// Success.
pub const EX_OK: u8 = 0;
/// `show` or `purge` of a domain that is not in the cache.
pub const EX_NOT_FOUND: u8 = 1;
/// Bad command line (clap's code), also for a DOMAIN that is not a valid policy domain.
pub const EX_USAGE: u8 = 2;
/// Corrupt entries were found (and reported on standard error); `EX_DATAERR` from sysexits.h.
pub const EX_DATAERR: u8 = 65;
/// The store cannot be reached or answered with an error, or there is no store (`cache.type: internal`);
/// `EX_UNAVAILABLE` from sysexits.h.
pub const EX_UNAVAILABLE: u8 = 69;
/// The command could not be run (no async runtime); `EX_SOFTWARE` from sysexits.h.
pub const EX_SOFTWARE: u8 = 70;
/// The log file could not be created; `EX_CANTCREAT` from sysexits.h.
pub const EX_CANTCREAT: u8 = 73;
/// Standard output could not be written; `EX_IOERR` from sysexits.h.
pub const EX_IOERR: u8 = 74;
/// The configuration is invalid; `EX_CONFIG` from sysexits.h.
pub const EX_CONFIG: u8 = 78;
