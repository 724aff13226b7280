//! Results: one row per scenario and server, the median of its runs with the spread, and ratios to the bare
//! server and to the baseline daemon measured in the same run, printed as a Markdown table.

use std::fmt::Write as _;
use std::time::Duration;

/// Which server a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The bare netstring server (the limit).
    Bare,
    /// The daemon under test.
    Current,
    /// The daemon it is compared to.
    Baseline,
}

/// What a row's main figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Answers per second (higher is better).
    PerSecond,
    /// Milliseconds (lower is better).
    Millis,
}

/// One scenario measured on one server.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) server: String,
    pub(crate) role: Role,
    pub(crate) unit: Unit,
    /// The figure of each run.
    pub(crate) runs: Vec<f64>,
    /// Median latency of each run.
    pub(crate) p50: Vec<Duration>,
    /// 99th percentile latency of each run.
    pub(crate) p99: Vec<Duration>,
    pub(crate) errors: u64,
    /// Peak resident memory (`VmHWM`), KiB.
    pub(crate) rss_kib: Option<u64>,
    /// 1-minute load average at the start and at the end of the scenario.
    pub(crate) load: (f64, f64),
    /// Anything else worth saying (e.g. the HTTPS fetch count of the thundering herd).
    pub(crate) note: String,
}

impl Row {
    pub(crate) fn median(&self) -> f64 {
        median(&self.runs)
    }
}

/// The median (mean of the middle two for an even count); 0 when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

fn median_duration(values: &[Duration]) -> Option<Duration> {
    let secs: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    (!secs.is_empty()).then(|| Duration::from_secs_f64(median(&secs)))
}

fn figure(value: f64, unit: Unit) -> String {
    match unit {
        Unit::PerSecond if value >= 1e6 => format!("{:.2}M", value / 1e6),
        Unit::PerSecond if value >= 1e4 => format!("{:.1}k", value / 1e3),
        Unit::PerSecond => format!("{value:.0}"),
        Unit::Millis => format!("{value:.1} ms"),
    }
}

fn spread(row: &Row) -> String {
    let min = row.runs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = row.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let median = figure(row.median(), row.unit);
    if row.runs.len() < 2 {
        return median;
    }
    let unit = |v: f64| figure(v, row.unit).trim_end_matches(" ms").to_owned();
    format!("{median} ({}–{})", unit(min), unit(max))
}

fn latency(value: Option<Duration>) -> String {
    match value {
        None => "—".to_owned(),
        Some(d) if d < Duration::from_millis(10) => format!("{} µs", d.as_micros()),
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
    }
}

/// A latency, with its ratio to the bare server's when there is one.
fn latency_vs(row: &Row, bare: Option<&Row>, of: fn(&Row) -> &[Duration]) -> String {
    let value = median_duration(of(row));
    match (
        value,
        bare.filter(|b| b.role != row.role)
            .and_then(|b| median_duration(of(b))),
    ) {
        (Some(v), Some(b)) if !b.is_zero() => {
            format!(
                "{} ({:.1}×)",
                latency(Some(v)),
                v.as_secs_f64() / b.as_secs_f64()
            )
        }
        _ => latency(value),
    }
}

fn ratio(row: &Row, reference: Option<&Row>) -> String {
    match reference {
        Some(reference) if reference.median() > 0.0 && !std::ptr::eq(row, reference) => {
            format!("{:.2}", row.median() / reference.median())
        }
        _ => "—".to_owned(),
    }
}

fn rss_ratio(row: &Row, reference: Option<&Row>) -> String {
    match (row.rss_kib, reference.and_then(|r| r.rss_kib)) {
        (Some(rss), Some(reference_rss)) if reference_rss > 0 && row.role != Role::Bare => {
            format!("{:.1}", rss as f64 / reference_rss as f64)
        }
        _ => "—".to_owned(),
    }
}

/// The Markdown table of `rows` (grouped by scenario, in order).
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | server | result: median (min–max) | p50 (× bare) | p99 (× bare) | errors | peak RSS | × bare | RSS × bare | × baseline | load avg | note |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let of_role = |role| {
            rows.iter()
                .find(|r| r.scenario == row.scenario && r.role == role)
        };
        let bare = of_role(Role::Bare);
        let baseline = if row.role == Role::Current {
            of_role(Role::Baseline)
        } else {
            None
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2}→{:.2} | {} |",
            row.scenario,
            row.server,
            spread(row),
            latency_vs(row, bare, |r| &r.p50),
            latency_vs(row, bare, |r| &r.p99),
            row.errors,
            row.rss_kib.map_or_else(
                || "—".to_owned(),
                |kib| format!("{:.1} MiB", kib as f64 / 1024.0)
            ),
            ratio(row, bare),
            rss_ratio(row, bare),
            ratio(row, baseline),
            row.load.0,
            row.load.1,
            row.note,
        );
    }
    out
}

/// The 1-minute load average, from `/proc/loadavg` (0 when unreadable).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(role: Role, runs: &[f64]) -> Row {
        Row {
            scenario: "s".into(),
            server: format!("{role:?}"),
            role,
            unit: Unit::PerSecond,
            runs: runs.to_vec(),
            p50: vec![Duration::from_micros(80)],
            p99: vec![Duration::from_micros(300)],
            errors: 0,
            rss_kib: Some(4096),
            load: (1.0, 2.0),
            note: String::new(),
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn table_gives_ratios_to_bare_and_baseline() {
        let rows = [
            row(Role::Bare, &[200_000.0, 180_000.0, 190_000.0]),
            row(Role::Current, &[150_000.0, 95_000.0, 140_000.0]),
            row(Role::Baseline, &[100_000.0]),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[2].starts_with(
                "| s | Bare | 190.0k (180.0k–200.0k) | 80 µs | 300 µs | 0 | 4.0 MiB | — | — | — |"
            ),
            "{text}"
        );
        assert!(
            lines[3].contains("| 140.0k (95.0k–150.0k) | 80 µs (1.0×) | 300 µs (1.0×) |"),
            "{text}"
        );
        assert!(
            lines[3].contains("| 0.74 | 1.0 | 1.40 | 1.00→2.00 |"),
            "{text}"
        );
        assert!(lines[4].contains("| 100.0k | 80 µs (1.0×) |"), "{text}");
    }
}
