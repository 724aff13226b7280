//! `mtasts-bench`: our own load generator and benchmark driver (issue 12), normally run through
//! `cargo xtask bench`, which builds the release binaries it takes as arguments.
//!
//! It measures `mta-sts-daemon` (and optionally a baseline build of it) against the bare netstring server
//! (`bare-netstring-server`, the limit) in one run: cache hits over a SQLite store pre-filled in the Python
//! daemon's layout with `cache_grace` long enough that every answer comes from memory, pipelining, a cyclic
//! scan over the memory front, cold discovery and a thundering herd against the in-process DNS + HTTPS
//! fixture of `mtasts-test-support`, and start-up time. The servers run pinned to one CPU and the load
//! generator (a single-threaded tokio runtime) to another, when there are two. Everything stays on loopback;
//! every server process is stopped at the end, on an error and on Ctrl-C.
//!
//! The method and the latest figures are in `docs/performance.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

mod load;
mod procs;
mod report;
mod scenario;
mod store;

use report::Role;
use scenario::{Bench, Method, Scenario, Target};

/// Load generator and benchmark driver for mtasts (see docs/performance.md).
#[derive(Debug, Parser)]
#[command(name = "mtasts-bench")]
struct Args {
    /// The daemon under test (a release build).
    #[arg(long, value_name = "PATH")]
    daemon: PathBuf,
    /// Its label in the table (e.g. a git revision).
    #[arg(long, default_value = "current")]
    label: String,
    /// The bare netstring server.
    #[arg(long, value_name = "PATH")]
    bare: PathBuf,
    /// A daemon to compare with (e.g. built from an older revision), measured in the same run.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// The baseline's label in the table.
    #[arg(long, default_value = "baseline")]
    baseline_label: String,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Measured runs per scenario and server; the table gives their median and min–max.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds of one measured run of a load scenario.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measured runs (after one pass over every domain).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Distinct domains discovered in each run of `cold`.
    #[arg(long, default_value_t = 1000)]
    cold_domains: usize,
    /// Shorter: 3 runs of 2 s after 0.5 s of warm-up.
    #[arg(long, conflicts_with = "smoke")]
    quick: bool,
    /// A check that every scenario works (what CI runs, well under a minute): 1 run of 0.5 s, 100 cold
    /// domains. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
    /// YAML appended to every daemon's configuration (e.g. `"limits:\n  memory_cache_size: 20000\n"`), to
    /// see what a setting changes; say so with the figures.
    #[arg(long, value_name = "YAML", default_value = "")]
    daemon_config: String,
    /// Do not pin the servers and the load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
}

impl Args {
    fn method(&self) -> Method {
        let (runs, duration, warmup, cold_domains) = if self.smoke {
            (1, 0.5, 0.2, 100)
        } else if self.quick {
            (3, 2.0, 0.5, self.cold_domains)
        } else {
            (self.runs, self.duration, self.warmup, self.cold_domains)
        };
        Method {
            runs: runs.max(1),
            duration: Duration::from_secs_f64(duration),
            warmup: Duration::from_secs_f64(warmup),
            cold_domains: cold_domains.max(1),
            daemon_config: self.daemon_config.clone(),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("mtasts-bench: some requests failed (see the errors column)");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("mtasts-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the bench; `Ok(false)` when some request failed.
fn run(args: &Args) -> Result<bool> {
    let (server_cpu, load_cpu) = if args.no_pin { (None, None) } else { cpus() };
    if let Some(cpu) = load_cpu {
        // Before the runtime exists, so that every thread of this process inherits it.
        let mut set = CpuSet::new();
        set.set(cpu)?;
        sched_setaffinity(Pid::from_raw(0), &set).context("pin the load generator")?;
    }
    let pinning = match (server_cpu, load_cpu) {
        (Some(server), Some(load)) => {
            format!("servers on CPU {server}, load generator on CPU {load}")
        }
        _ => "not pinned".to_owned(),
    };
    let method = args.method();
    let mut targets = vec![Target {
        label: "bare netstring server".to_owned(),
        role: Role::Bare,
        binary: args.bare.clone(),
    }];
    targets.push(Target {
        label: args.label.clone(),
        role: Role::Current,
        binary: args.daemon.clone(),
    });
    if let Some(baseline) = &args.baseline {
        targets.push(Target {
            label: args.baseline_label.clone(),
            role: Role::Baseline,
            binary: baseline.clone(),
        });
    }
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    eprintln!(
        "mtasts-bench: {} run(s) of {:?} per scenario after {:?} of warm-up; {pinning}; load average {:.2}",
        method.runs,
        method.duration,
        method.warmup,
        report::load_average()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        // On a signal the bench future is dropped, and with it every server (killed on drop).
        tokio::select! {
            rows = measure(targets, method.clone(), server_cpu, &scenarios) => rows,
            _ = term.recv() => anyhow::bail!("stopped by SIGTERM"),
            _ = int.recv() => anyhow::bail!("interrupted"),
        }
    })?;
    println!(
        "\n{pinning}; {} run(s) of {:?} after {:?} of warm-up\n",
        method.runs, method.duration, method.warmup
    );
    print!("{}", report::table(&rows));
    Ok(rows.iter().all(|row| row.errors == 0))
}

async fn measure(
    targets: Vec<Target>,
    method: Method,
    server_cpu: Option<usize>,
    scenarios: &[Scenario],
) -> Result<Vec<report::Row>> {
    let mut bench = Bench::new(targets, method, server_cpu).await?;
    let mut rows = Vec::new();
    for &scenario in scenarios {
        let scenario_rows = bench.run(scenario).await?;
        eprint!("{}", report::table(&scenario_rows));
        rows.extend(scenario_rows);
    }
    Ok(rows)
}

/// The CPU for the servers and the one for the load generator: the first two this process may use, when
/// there are two and `taskset` (util-linux) is there to pin the servers.
fn cpus() -> (Option<usize>, Option<usize>) {
    let Ok(allowed) = sched_getaffinity(Pid::from_raw(0)) else {
        return (None, None);
    };
    let mut cpus = (0..CpuSet::count()).filter(|&cpu| allowed.is_set(cpu).unwrap_or(false));
    let (Some(server), Some(load)) = (cpus.next(), cpus.next()) else {
        eprintln!("mtasts-bench: only one CPU: servers and load generator share it");
        return (None, None);
    };
    let taskset = std::process::Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !taskset {
        eprintln!("mtasts-bench: no taskset (util-linux): not pinning");
        return (None, None);
    }
    (Some(server), Some(load))
}
