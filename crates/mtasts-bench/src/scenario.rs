//! The scenarios of issue 12 and how each is measured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use mtasts_test_support::Fixture;
use tempfile::TempDir;

use crate::load::{self, Keys, Outcome, Shape, Until};
use crate::procs::{Counters, Program, Server};
use crate::report::{Role, Row, Unit, load_average};
use crate::store::{self, ZONE};

/// The domains of the small working set.
const SMALL_SET: usize = 1_000;
/// One more domain than the daemon's default memory front (`limits.memory_cache_size`) holds.
const SCAN_SET: usize = 10_001;
/// Connections of the thundering herd, and requests pipelined on each: 1000 lookups at once.
const HERD: Shape = Shape {
    connections: 50,
    depth: 20,
};
/// How Postfix asks: several connections, one request in flight on each.
const POSTFIX: Shape = Shape {
    connections: 16,
    depth: 1,
};

/// A scenario (`--scenarios`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// 16 connections, 1 request in flight each, 1000 cached domains.
    Conn16,
    /// 16 connections × 16 pipelined requests, 1000 cached domains.
    Pipeline16,
    /// 10 001 cached domains cycled over the 10 000-entry memory front, 16 connections.
    Scan16,
    /// 1 connection, 1000 cached domains.
    Conn1,
    /// 10 001 cached domains cycled, 1 connection.
    Scan1,
    /// Discovery (DNS + HTTPS) of distinct uncached domains against the in-process fixture, 16 connections.
    Cold,
    /// 1000 concurrent lookups of one uncached domain: exactly one HTTPS fetch.
    Herd,
    /// From spawning the server to its READY=1, with 10 001 policies in the store.
    Startup,
}

impl Scenario {
    pub(crate) const ALL: [Self; 8] = [
        Self::Conn16,
        Self::Pipeline16,
        Self::Scan16,
        Self::Conn1,
        Self::Scan1,
        Self::Cold,
        Self::Herd,
        Self::Startup,
    ];

    fn title(self) -> &'static str {
        match self {
            Self::Conn16 => "16 conns × 1, 1000 domains",
            Self::Pipeline16 => "16 conns × 16 pipelined, 1000 domains",
            Self::Scan16 => "10 001 domains cycled, 16 conns",
            Self::Conn1 => "1 conn, 1000 domains",
            Self::Scan1 => "10 001 domains cycled, 1 conn",
            Self::Cold => "cold discovery, 16 conns (discoveries/s)",
            Self::Herd => "thundering herd: 1000 lookups of 1 new domain (ms)",
            Self::Startup => "start-up to READY=1, 10 001 stored (ms)",
        }
    }
}

/// How long and how often.
#[derive(Debug, Clone)]
pub(crate) struct Method {
    /// Measured runs per scenario and server (the median is reported).
    pub(crate) runs: usize,
    /// Length of one measured run of a load scenario.
    pub(crate) duration: Duration,
    /// Load before the runs of a load scenario (after one pass over every domain).
    pub(crate) warmup: Duration,
    /// Distinct domains discovered per run of `cold`.
    pub(crate) cold_domains: usize,
    /// YAML appended to every daemon's configuration.
    pub(crate) daemon_config: String,
}

/// A server to measure.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) label: String,
    pub(crate) role: Role,
    pub(crate) binary: PathBuf,
}

/// Everything the scenarios share: the servers, the fixture, the pre-filled store, the CPU to pin servers to.
pub(crate) struct Bench {
    targets: Vec<Target>,
    method: Method,
    server_cpu: Option<usize>,
    fixture: Fixture,
    dir: TempDir,
    template_db: PathBuf,
    started: usize,
}

impl Bench {
    pub(crate) async fn new(
        targets: Vec<Target>,
        method: Method,
        server_cpu: Option<usize>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("mtasts-bench-").tempdir()?;
        let template_db = dir.path().join("template.db");
        eprintln!("mtasts-bench: pre-filling a SQLite store with {SCAN_SET} policies");
        store::prefill(&template_db, SCAN_SET).await?;
        Ok(Self {
            targets,
            method,
            server_cpu,
            fixture: Fixture::start().await,
            dir,
            template_db,
            started: 0,
        })
    }

    /// Runs one scenario on every server it applies to.
    pub(crate) async fn run(&mut self, scenario: Scenario) -> Result<Vec<Row>> {
        eprintln!("mtasts-bench: {}", scenario.title());
        match scenario {
            Scenario::Conn16 => self.cache_hits(scenario, POSTFIX, SMALL_SET).await,
            Scenario::Pipeline16 => {
                let shape = Shape {
                    connections: 16,
                    depth: 16,
                };
                self.cache_hits(scenario, shape, SMALL_SET).await
            }
            Scenario::Scan16 => self.cache_hits(scenario, POSTFIX, SCAN_SET).await,
            Scenario::Conn1 => self.cache_hits(scenario, single(), SMALL_SET).await,
            Scenario::Scan1 => self.cache_hits(scenario, single(), SCAN_SET).await,
            Scenario::Cold => self.cold().await,
            Scenario::Herd => self.herd().await,
            Scenario::Startup => self.startup().await,
        }
    }

    /// A fresh database file for one server: a copy of the pre-filled one, or none (an empty store).
    fn database(&mut self, prefilled: bool) -> Result<PathBuf> {
        self.started += 1;
        let path = self.dir.path().join(format!("store-{}.db", self.started));
        if prefilled {
            store::copy_db(&self.template_db, &path)?;
        }
        Ok(path)
    }

    /// The daemon's configuration after `host`/`port`: a SQLite store, a `cache_grace` longer than any run
    /// (every answer comes from memory once read), and the fixture as DNS server and CA (nothing leaves
    /// loopback; an unexpected discovery gets an answer from the fixture, never from the internet).
    fn daemon_config(&self, db: &Path) -> String {
        format!(
            "cache_grace: 31536000\nshutdown_timeout: 5\n\
             cache:\n  type: sqlite\n  options:\n    filename: \"{}\"\n\
             resolver:\n  nameservers: [\"{}\"]\n  extra_ca_file: \"{}\"\n  policy_port: {}\n  proxy: none\n{}",
            db.display(),
            self.fixture.dns().addr(),
            self.fixture.ca_pem_path().display(),
            self.fixture.https().port(),
            self.method.daemon_config,
        )
    }

    async fn start(&mut self, target: &Target, prefilled: bool) -> Result<Server> {
        let program = match target.role {
            Role::Bare => Program::Bare(target.binary.clone()),
            Role::Current | Role::Baseline => {
                let db = self.database(prefilled)?;
                Program::Daemon {
                    binary: target.binary.clone(),
                    config: self.daemon_config(&db),
                }
            }
        };
        Server::start(&program, self.server_cpu)
            .await
            .with_context(|| format!("start {}", target.label))
    }

    fn daemons(&self) -> Vec<Target> {
        self.targets
            .iter()
            .filter(|t| t.role != Role::Bare)
            .cloned()
            .collect()
    }

    /// Starts every target afresh.
    async fn fleet(&mut self, targets: Vec<Target>, prefilled: bool) -> Result<Fleet> {
        let load_before = load_average();
        let mut servers = Vec::new();
        for target in &targets {
            servers.push(self.start(target, prefilled).await?);
        }
        Ok(Fleet {
            outcomes: targets.iter().map(|_| Vec::new()).collect(),
            targets,
            servers,
            load_before,
        })
    }

    /// Cache hits: every server started fresh, warmed up (one pass over the domains, then `warmup`), then
    /// `runs` rounds of one run per server in turn, so a change in the machine's load hits all alike.
    async fn cache_hits(
        &mut self,
        scenario: Scenario,
        shape: Shape,
        domains: usize,
    ) -> Result<Vec<Row>> {
        let keys = Keys::new(ZONE, (0..domains).map(store::cached_domain))?;
        let mut fleet = self.fleet(self.targets.clone(), true).await?;
        for server in &fleet.servers {
            load::run(server.addr(), &keys, shape, Until::Requests(keys.len())).await?;
            let warmup = Until::Elapsed(self.method.warmup);
            load::run(server.addr(), &keys, shape, warmup).await?;
        }
        let before = fleet.counters().await?;
        for _ in 0..self.method.runs {
            for (server, runs) in fleet.servers.iter().zip(&mut fleet.outcomes) {
                let until = Until::Elapsed(self.method.duration);
                runs.push(load::run(server.addr(), &keys, shape, until).await?);
            }
        }
        let after = fleet.counters().await?;
        let memory = fleet.memory()?;
        let mut rows = fleet.finish(scenario, Unit::PerSecond).await?;
        for (((row, before), after), (anon, file)) in
            rows.iter_mut().zip(before).zip(after).zip(memory)
        {
            let mut note = format!(
                "at the end RssAnon {:.1} MiB, RssFile {:.1} MiB",
                mib(anon),
                mib(file)
            );
            if let (Some(before), Some(after)) = (before, after) {
                // The measured runs only: the first pass and the warm-up read the store.
                let memory = after.memory_hits - before.memory_hits;
                let store = after.store_hits - before.store_hits;
                let misses = after.misses - before.misses;
                let all = (memory + store + misses).max(1);
                note = format!(
                    "{note}; measured runs: {:.2} % memory hits, {store} store reads, {misses} misses",
                    100.0 * memory as f64 / all as f64
                );
            }
            row.note = note;
        }
        Ok(rows)
    }

    /// Cold discovery: each run asks for `cold_domains` domains nobody asked for before, published in the
    /// fixture (TXT, A, HTTPS policy), on a daemon started with an empty store (warmed up by 50 others).
    async fn cold(&mut self) -> Result<Vec<Row>> {
        let mut fleet = self.fleet(self.daemons(), false).await?;
        for run in 0..=self.method.runs {
            for (t, server) in fleet.servers.iter().enumerate() {
                // Round 0 is the warm-up.
                let count = if run == 0 {
                    50
                } else {
                    self.method.cold_domains
                };
                let domains = (0..count).map(|n| format!("d{n}.r{run}.t{t}.cold.test"));
                let keys = Keys::new(ZONE, self.publish(domains))?;
                let outcome =
                    load::run(server.addr(), &keys, POSTFIX, Until::Requests(count)).await?;
                if run > 0 {
                    fleet.outcomes[t].push(outcome);
                }
            }
        }
        fleet.finish(Scenario::Cold, Unit::PerSecond).await
    }

    /// The thundering herd: 1000 lookups of one new domain written at once (50 connections × 20
    /// pipelined); the figure is the time until all are answered, and the fixture must have served exactly
    /// one HTTPS request for that domain (anything else is counted as an error).
    async fn herd(&mut self) -> Result<Vec<Row>> {
        let mut fleet = self.fleet(self.daemons(), false).await?;
        let mut fetches: Vec<Vec<u64>> = fleet.servers.iter().map(|_| Vec::new()).collect();
        for run in 0..self.method.runs {
            for (t, server) in fleet.servers.iter().enumerate() {
                let domain = format!("herd.r{run}.t{t}.bench.test");
                let keys = Keys::new(ZONE, self.publish([domain.clone()]))?;
                let until = Until::Requests(HERD.connections * HERD.depth);
                let mut outcome = load::run(server.addr(), &keys, HERD, until).await?;
                let count = self
                    .fixture
                    .https()
                    .request_count(&Fixture::policy_host(&domain));
                if count != 1 {
                    outcome.errors += 1;
                }
                fetches[t].push(count);
                fleet.outcomes[t].push(outcome);
            }
        }
        let mut rows = fleet.finish(Scenario::Herd, Unit::Millis).await?;
        for (row, fetches) in rows.iter_mut().zip(fetches) {
            row.note = format!("HTTPS fetches per herd: {fetches:?}");
        }
        Ok(rows)
    }

    /// Start-up: each run starts every server afresh (the daemons over a copy of the 10 001-policy store),
    /// times spawn → READY=1, checks that it answers, and keeps the peak RSS of the idle server (the floor).
    async fn startup(&mut self) -> Result<Vec<Row>> {
        let load_before = load_average();
        let targets = self.targets.clone();
        let keys = Keys::new(ZONE, [store::cached_domain(0)])?;
        let mut times: Vec<Vec<f64>> = targets.iter().map(|_| Vec::new()).collect();
        let mut rss: Vec<u64> = targets.iter().map(|_| 0).collect();
        let mut errors: Vec<u64> = targets.iter().map(|_| 0).collect();
        for _ in 0..self.method.runs {
            for (t, target) in targets.iter().enumerate() {
                let server = self.start(target, true).await?;
                times[t].push(server.startup().as_secs_f64() * 1e3);
                let answer = load::run(server.addr(), &keys, single(), Until::Requests(1)).await?;
                errors[t] += answer.errors;
                rss[t] = rss[t].max(server.peak_rss_kib()?);
                server.stop().await?;
            }
        }
        let load = (load_before, load_average());
        Ok(targets
            .iter()
            .enumerate()
            .map(|(t, target)| Row {
                scenario: Scenario::Startup.title().to_owned(),
                server: target.label.clone(),
                role: target.role,
                unit: Unit::Millis,
                runs: times[t].clone(),
                p50: Vec::new(),
                p99: Vec::new(),
                errors: errors[t],
                rss_kib: Some(rss[t]),
                load,
                note: "RSS: idle after one answer".to_owned(),
            })
            .collect())
    }

    /// Publishes an enforce policy for each domain in the fixture; returns the domains.
    fn publish(&self, domains: impl IntoIterator<Item = String>) -> Vec<String> {
        domains
            .into_iter()
            .inspect(|domain| {
                self.fixture
                    .publish(domain, "bench1", &store::policy_text(domain));
            })
            .collect()
    }
}

/// Servers started for one scenario, and what each run measured on each.
struct Fleet {
    targets: Vec<Target>,
    servers: Vec<Server>,
    outcomes: Vec<Vec<Outcome>>,
    load_before: f64,
}

impl Fleet {
    /// Every server's cache counters now (`None` for the bare server).
    async fn counters(&self) -> Result<Vec<Option<Counters>>> {
        let mut all = Vec::new();
        for server in &self.servers {
            all.push(server.counters().await?);
        }
        Ok(all)
    }

    /// Every server's resident memory now: (`RssAnon`, `RssFile`) in KiB.
    fn memory(&self) -> Result<Vec<(u64, u64)>> {
        self.servers.iter().map(Server::rss_kinds_kib).collect()
    }

    /// Reads each server's peak RSS, stops it, and makes its row.
    async fn finish(self, scenario: Scenario, unit: Unit) -> Result<Vec<Row>> {
        let load = (self.load_before, load_average());
        let mut rows = Vec::new();
        for ((target, server), runs) in self.targets.iter().zip(self.servers).zip(self.outcomes) {
            let rss = server.peak_rss_kib()?;
            server.stop().await?;
            rows.push(row(scenario, target, unit, &runs, Some(rss), load));
        }
        Ok(rows)
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

const fn single() -> Shape {
    Shape {
        connections: 1,
        depth: 1,
    }
}

fn row(
    scenario: Scenario,
    target: &Target,
    unit: Unit,
    runs: &[Outcome],
    rss_kib: Option<u64>,
    load: (f64, f64),
) -> Row {
    Row {
        scenario: scenario.title().to_owned(),
        server: target.label.clone(),
        role: target.role,
        unit,
        runs: runs
            .iter()
            .map(|o| match unit {
                Unit::PerSecond => o.per_second(),
                Unit::Millis => o.elapsed.as_secs_f64() * 1e3,
            })
            .collect(),
        p50: runs.iter().map(|o| o.quantile(0.5)).collect(),
        p99: runs.iter().map(|o| o.quantile(0.99)).collect(),
        errors: runs.iter().map(|o| o.errors).sum(),
        rss_kib,
        load,
        note: String::new(),
    }
}
