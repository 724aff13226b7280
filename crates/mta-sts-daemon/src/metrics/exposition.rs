//! The Prometheus text exposition format, version 0.0.4, written by hand (it is a few lines of text).
//!
//! ```text
//! # HELP mtasts_answers_total Socketmap answers sent, by zone and kind.
//! # TYPE mtasts_answers_total counter
//! mtasts_answers_total{zone="default",kind="secure"} 3
//! ```
//!
//! Rules kept here: one `# HELP` and one `# TYPE` line per family, before its samples; label values escape
//! `\`, `"` and line feeds; help text escapes `\` and line feeds; histogram buckets are cumulative, end with
//! `le="+Inf"` equal to `_count`.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Builds one exposition document.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: String,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self {
            out: String::with_capacity(8 * 1024),
        }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// One sample line: `name{l1="v1",l2="v2"} value`.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                push_label_value(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single unlabelled sample.
    pub(crate) fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A duration histogram with fixed bucket bounds (seconds), lock-free.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts; one more than `bounds` (the `+Inf` bucket).
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let index = self
            .bounds
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the family: cumulative `_bucket` lines, `_sum`, `_count`. `_count` is the `+Inf` bucket, so the
    /// two agree even while observations arrive.
    pub(crate) fn write(&self, w: &mut Writer, name: &str, help: &str) {
        w.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0_u64;
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(bound) => w.sample(&bucket, &[("le", &bound.to_string())], cumulative),
                None => w.sample(&bucket, &[("le", "+Inf")], cumulative),
            }
        }
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        w.sample(&format!("{name}_sum"), &[], sum);
        w.sample(&format!("{name}_count"), &[], cumulative);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_and_samples_follow_the_text_format() {
        let mut w = Writer::new();
        w.family("x_total", Kind::Counter, "Things.");
        w.sample("x_total", &[("a", "1"), ("b", "two")], 3_u64);
        w.single("y", Kind::Gauge, "A gauge.", 0.5_f64);
        assert_eq!(
            w.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"two\"} 3\n\
             # HELP y A gauge.\n# TYPE y gauge\ny 0.5\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut w = Writer::new();
        w.family("x", Kind::Gauge, "back\\slash\nnewline \"quotes\" stay");
        w.sample("x", &[("zone", "a\"b\\c\nd")], 1_u64);
        assert_eq!(
            w.finish(),
            "# HELP x back\\\\slash\\nnewline \"quotes\" stay\n# TYPE x gauge\n\
             x{zone=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_count() {
        static BOUNDS: [f64; 3] = [0.1, 1.0, 2.5];
        let h = Histogram::new(&BOUNDS);
        for ms in [50, 100, 700, 3000, 4000] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 5);
        let mut w = Writer::new();
        h.write(&mut w, "d_seconds", "Durations.");
        assert_eq!(
            w.finish(),
            "# HELP d_seconds Durations.\n# TYPE d_seconds histogram\n\
             d_seconds_bucket{le=\"0.1\"} 2\nd_seconds_bucket{le=\"1\"} 3\nd_seconds_bucket{le=\"2.5\"} 3\n\
             d_seconds_bucket{le=\"+Inf\"} 5\nd_seconds_sum 7.85\nd_seconds_count 5\n"
        );
    }

    #[test]
    fn empty_histogram_has_zero_buckets() {
        static BOUNDS: [f64; 1] = [1.0];
        let mut w = Writer::new();
        Histogram::new(&BOUNDS).write(&mut w, "d", "D.");
        assert!(
            w.finish()
                .ends_with("d_bucket{le=\"1\"} 0\nd_bucket{le=\"+Inf\"} 0\nd_sum 0\nd_count 0\n")
        );
    }
}
