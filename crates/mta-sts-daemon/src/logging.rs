//! The daemon's log: where lines go (standard error, the journal, `-l FILE`), how they look (`--log-format`),
//! which targets are shown at which level, and fatal errors printed once.
//!
//! A text line is `time LEVEL message key=value…`, with logfmt's quoting: a value holding a space, a quote, a
//! backslash, `=` or a control character, or an empty one, is written in double quotes with `"`, `\` and
//! control characters escaped, so `error="connection refused (os error 111)"` stays one field for a log parser.

use std::fmt;
use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::cli::{Cli, LogFormat};

/// The crates whose events `-v` applies to: ours (target prefixes). Every other crate's (the DNS resolver, TLS,
/// HTTP, the SQL and Redis drivers) show only from `warn` up, so `-v debug` shows our discovery steps, not
/// their multi-line protocol traces.
const OURS: [&str; 3] = ["mta_sts_daemon", "mtasts", "socketmap_proto"];

/// The log, once set up: says where a fatal error must also go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Log {
    /// Lines go to a file (`-l`), not to standard error.
    to_file: bool,
}

impl Log {
    /// Sets up the global subscriber from the flags (a second call, as in tests running several daemons in one
    /// process, keeps the first).
    ///
    /// # Errors
    ///
    /// The log file cannot be opened.
    pub(crate) fn init(cli: &Cli) -> std::io::Result<Self> {
        use std::io::IsTerminal;
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;

        let style = LogStyle::new(
            cli.log_format,
            cli.logfile.is_some(),
            std::env::var_os("JOURNAL_STREAM").is_some(),
            std::io::stderr().is_terminal(),
        );
        let writer = match &cli.logfile {
            Some(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                BoxMakeWriter::new(Mutex::new(file))
            }
            None => BoxMakeWriter::new(std::io::stderr),
        };
        let fmt = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(style.ansi)
            .with_writer(writer);
        let layer = match (style.format, style.timestamps) {
            (LogFormat::Json, _) => fmt.json().flatten_event(true).boxed(),
            (LogFormat::Text, true) => fmt.fmt_fields(Logfmt).boxed(),
            (LogFormat::Text, false) => fmt.fmt_fields(Logfmt).without_time().boxed(),
        };
        let _ = tracing_subscriber::registry()
            .with(layer.with_filter(filter(cli.verbosity.level())))
            .try_init();
        Ok(Self {
            to_file: cli.logfile.is_some(),
        })
    }

    /// Reports an error that ends the program: logged, and also written to standard error when the log goes to
    /// a file (whoever started the daemon sees why it stopped), so that each destination gets it once.
    pub(crate) fn fatal(self, message: &dyn fmt::Display) {
        tracing::error!("{message}");
        if self.to_file {
            eprintln!("mta-sts-daemon: {message}");
        }
    }
}

/// Our targets at `level`, every other crate's at `warn` at most.
fn filter(level: tracing::Level) -> Targets {
    let level = LevelFilter::from_level(level);
    OURS.iter().fold(
        Targets::new().with_default(level.min(LevelFilter::WARN)),
        |targets, ours| targets.with_target(*ours, level),
    )
}

/// How log lines look, from the flags and where they go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogStyle {
    format: LogFormat,
    /// Off when stderr goes to the systemd journal, which stamps every line itself.
    timestamps: bool,
    /// Colours only for a person at a terminal.
    ansi: bool,
}

impl LogStyle {
    fn new(format: LogFormat, to_file: bool, journal: bool, stderr_is_terminal: bool) -> Self {
        let to_journal = journal && !to_file;
        Self {
            format,
            timestamps: format == LogFormat::Json || !to_journal,
            ansi: format == LogFormat::Text && !to_file && stderr_is_terminal,
        }
    }
}

/// The fields of a text line: the message as it is, then `key=value` with logfmt's quoting (module docs).
#[derive(Debug, Clone, Copy, Default)]
struct Logfmt;

impl<'writer> FormatFields<'writer> for Logfmt {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = LogfmtVisitor {
            writer: &mut writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct LogfmtVisitor<'a, 'writer> {
    writer: &'a mut Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl LogfmtVisitor<'_, '_> {
    fn field(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if field.name() == "message" {
            write!(self.writer, "{separator}{value}")
        } else {
            write!(self.writer, "{separator}{}=", field.name())
                .and_then(|()| write_value(self.writer, value))
        };
    }
}

impl Visit for LogfmtVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, &format!("{value:?}"));
    }
}

/// `value`, in double quotes when logfmt needs them.
fn write_value(out: &mut dyn fmt::Write, value: &str) -> fmt::Result {
    let quote = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '='));
    if !quote {
        return out.write_str(value);
    }
    out.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn journal_lines_carry_no_timestamp_of_ours() {
        let style = LogStyle::new(LogFormat::Text, false, true, false);
        assert!(!style.timestamps && !style.ansi);
    }

    #[test]
    fn a_log_file_keeps_timestamps_even_under_systemd() {
        let style = LogStyle::new(LogFormat::Text, true, true, true);
        assert!(style.timestamps && !style.ansi);
    }

    #[test]
    fn a_terminal_gets_colours_and_timestamps() {
        let style = LogStyle::new(LogFormat::Text, false, false, true);
        assert!(style.timestamps && style.ansi);
    }

    #[test]
    fn json_lines_always_carry_a_timestamp_and_no_colours() {
        for journal in [false, true] {
            let style = LogStyle::new(LogFormat::Json, false, journal, true);
            assert!(style.timestamps && !style.ansi, "journal={journal}");
        }
    }

    #[test]
    fn values_are_quoted_only_when_logfmt_needs_it() {
        for (value, written) in [
            ("example.com", "example.com"),
            (
                "connection refused (os error 111)",
                "\"connection refused (os error 111)\"",
            ),
            ("", "\"\""),
            ("a=b", "\"a=b\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("C:\\x", "\"C:\\\\x\""),
            ("two\nlines", "\"two\\nlines\""),
            ("bell\u{7}", "\"bell\\u{7}\""),
        ] {
            let mut out = String::new();
            write_value(&mut out, value).expect("write");
            assert_eq!(out, written, "{value:?}");
        }
    }

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// What one text line looks like with `level`'s filter, for events from `target`.
    fn line_of(level: tracing::Level, emit: impl FnOnce()) -> String {
        use tracing_subscriber::Layer as _;
        let out = Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .without_time()
            .fmt_fields(Logfmt)
            .with_writer(out.clone());
        let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter(level)));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn a_text_line_keeps_each_field_one_token() {
        let error = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let line = line_of(tracing::Level::INFO, || {
            tracing::warn!(domain = "a.example", error = %error, n = 3, "store down");
        });
        assert_eq!(
            line,
            " WARN store down domain=a.example error=\"connection refused\" n=3\n"
        );
    }

    #[test]
    fn debug_shows_our_targets_and_only_warnings_of_the_others() {
        let line = line_of(tracing::Level::DEBUG, || {
            tracing::debug!(target: "mtasts_fetch::txt", "our step");
            tracing::debug!(target: "mta_sts_daemon::server", "our answer");
            tracing::debug!(target: "hickory_proto::udp", "a packet dump");
            tracing::info!(target: "sqlx::query", "a statement");
            tracing::warn!(target: "sqlx::query", "a slow statement");
        });
        assert_eq!(
            line,
            "DEBUG our step\nDEBUG our answer\n WARN a slow statement\n"
        );
    }
}
