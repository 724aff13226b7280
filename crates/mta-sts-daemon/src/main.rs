//! `mta-sts-daemon` binary: parses flags and hands over to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::SUCCESS
}
