//! Command-line pieces shared by the two binaries, `mta-sts-daemon` and `mta-sts-query`, so that they
//! accept the same words and print the same things:
//!
//! - [`Verbosity`]: `-v {debug,info,warn,error,fatal}` (and `crit`, the same as `fatal`), the Python tools' log
//!   levels, as a [`tracing::Level`];
//! - [`Generate`]: `--generate {man,complete-bash,complete-zsh,complete-fish}` (release packaging).
//!
//! Only the binaries use this crate (it is not published); libraries never parse command lines.
//!
//! ```
//! use clap::Parser;
//! use mtasts_cli::{Generate, Verbosity};
//!
//! /// A tool.
//! #[derive(Parser)]
//! #[command(name = "tool")]
//! struct Args {
//!     /// Log verbosity.
//!     #[arg(short = 'v', long, value_enum, default_value = "warn")]
//!     verbosity: Verbosity,
//!     /// Print a man page or shell completions and exit.
//!     #[arg(long, value_enum)]
//!     generate: Option<Generate>,
//! }
//!
//! let args = Args::parse_from(["tool", "-v", "fatal", "--generate", "complete-bash"]);
//! assert_eq!(args.verbosity.level(), tracing::Level::ERROR);
//! let mut script = Vec::new();
//! args.generate.unwrap().write(<Args as clap::CommandFactory>::command(), "1", &mut script)?;
//! assert!(String::from_utf8_lossy(&script).contains("complete -F"));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, Write};

use clap::ValueEnum;

/// Log verbosity (`-v`), named as the Python daemon and query tool name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Verbosity {
    /// Everything, including each request or discovery step.
    Debug,
    /// Discoveries, start and stop.
    Info,
    /// Problems only.
    Warn,
    /// Errors only.
    Error,
    /// Only what stops the program (tracing has no level above error: the same as `error`). `crit` is the
    /// same level: the Python tools accept both names (`logging.FATAL` is `logging.CRITICAL`).
    #[value(alias = "crit")]
    Fatal,
}

impl Verbosity {
    /// The most detailed tracing level shown.
    #[must_use]
    pub const fn level(self) -> tracing::Level {
        match self {
            Self::Debug => tracing::Level::DEBUG,
            Self::Info => tracing::Level::INFO,
            Self::Warn => tracing::Level::WARN,
            Self::Error | Self::Fatal => tracing::Level::ERROR,
        }
    }
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The man page, in roff.
    Man,
    /// bash completions.
    CompleteBash,
    /// zsh completions.
    CompleteZsh,
    /// fish completions.
    CompleteFish,
}

impl Generate {
    /// Writes what `self` names for `command` to `out`; a man page goes in manual `section` (`"8"` for a
    /// daemon, `"1"` for a user command).
    ///
    /// # Errors
    ///
    /// Writing to `out` failed.
    pub fn write(
        self,
        mut command: clap::Command,
        section: &str,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        use clap_complete::Shell;

        let shell = match self {
            Self::Man => {
                let mut man = clap_mangen::Man::new(command).section(section.to_owned());
                if section == "8" {
                    man = man.manual("System Manager's Manual");
                }
                man.render(out)?;
                return out.flush();
            }
            Self::CompleteBash => Shell::Bash,
            Self::CompleteZsh => Shell::Zsh,
            Self::CompleteFish => Shell::Fish,
        };
        let name = command.get_name().to_owned();
        clap_complete::generate(shell, &mut command, name, out);
        out.flush()
    }

    /// [`Generate::write`] to standard output. A closed pipe (`… | head`) is not an error.
    ///
    /// # Errors
    ///
    /// Standard output could not be written.
    pub fn print(self, command: clap::Command, section: &str) -> io::Result<()> {
        match self.write(command, section, &mut io::stdout().lock()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("tool").arg(clap::Arg::new("disable-uvloop").long("disable-uvloop"))
    }

    #[test]
    fn man_pages_carry_their_section() {
        for (section, heading) in [("8", ".TH tool 8"), ("1", ".TH tool 1")] {
            let mut page = Vec::new();
            Generate::Man
                .write(command(), section, &mut page)
                .expect("write");
            let page = String::from_utf8(page).expect("utf-8");
            assert!(page.contains(heading), "{page}");
            assert!(page.contains("disable\\-uvloop"), "{page}");
            assert_eq!(page.contains("System Manager"), section == "8", "{page}");
        }
    }

    #[test]
    fn completions_name_the_command() {
        for (kind, needle) in [
            (Generate::CompleteBash, "complete -F _tool"),
            (Generate::CompleteZsh, "#compdef tool"),
            (Generate::CompleteFish, "complete -c tool"),
        ] {
            let mut script = Vec::new();
            kind.write(command(), "1", &mut script).expect("write");
            let script = String::from_utf8(script).expect("utf-8");
            assert!(script.contains(needle), "{kind:?}: {script}");
        }
    }

    #[test]
    fn the_python_levels() {
        let names: Vec<_> = Verbosity::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_owned())
            .collect();
        assert_eq!(names, ["debug", "info", "warn", "error", "fatal"]);
        assert_eq!(Verbosity::Fatal.level(), tracing::Level::ERROR);
        // The Python tools take `crit` too (an alias of `fatal` in their LogLevel enum).
        assert_eq!(Verbosity::from_str("crit", false), Ok(Verbosity::Fatal));
        assert_eq!(Verbosity::Debug.level(), tracing::Level::DEBUG);
    }
}
