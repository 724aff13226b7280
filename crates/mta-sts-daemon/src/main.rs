//! `mta-sts-daemon` binary: everything is in the library ([`mta_sts_daemon::main`]).

fn main() -> std::process::ExitCode {
    mta_sts_daemon::main()
}
