//! Password files in libpq's `.pgpass` format, as asyncpg's `passfile` and libpq read them.
//!
//! ```text
//! hostname:port:database:username:password      one entry a line; `*` matches anything;
//! # comment                                      `\:` and `\\` escape within a field
//! ```
//!
//! The first entry matching the connection's host (`localhost` for a socket directory), port, database and
//! user gives the password.

use std::path::{Path, PathBuf};

use sqlx::postgres::PgConnectOptions;

/// The password for `options` from `file`, else `PGPASSFILE`, else `~/.pgpass`; `None` if there is none.
pub(crate) fn lookup(file: Option<&Path>, options: &PgConnectOptions) -> Option<String> {
    let path = file.map(Path::to_path_buf).or_else(default_file)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            // A missing default file is normal; a named one that cannot be read is worth a word.
            if file.is_some() {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the postgres password file");
            }
            return None;
        }
    };
    let host = match options.get_socket() {
        Some(_) => "localhost",
        None => options.get_host(),
    };
    let port = options.get_port().to_string();
    let database = options.get_database().unwrap_or(options.get_username());
    let wanted = [host, port.as_str(), database, options.get_username()];
    text.lines()
        .find_map(|line| password_if_matching(line, &wanted))
}

fn default_file() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("PGPASSFILE") {
        return Some(PathBuf::from(file));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass"))
}

/// The password of `line` if its first four fields match `wanted` (host, port, database, user).
fn password_if_matching(line: &str, wanted: &[&str; 4]) -> Option<String> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let fields = split_fields(line);
    let [host, port, database, user, password] = fields.as_slice() else {
        return None;
    };
    let matches = [host, port, database, user]
        .iter()
        .zip(wanted)
        .all(|(field, want)| field.as_str() == "*" || field == want);
    matches.then(|| password.clone())
}

/// The `:`-separated fields of a line, with `\:` and `\\` unescaped.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_entry_wins() {
        let wanted = ["db.example", "5432", "cache", "mta"];
        let cases = [
            ("db.example:5432:cache:mta:secret", Some("secret")),
            ("*:*:*:*:any", Some("any")),
            ("db.example:*:cache:mta:p\\:w\\\\d", Some("p:w\\d")),
            ("db.example:5433:cache:mta:other-port", None),
            ("other:5432:cache:mta:other-host", None),
            (
                "db.example:5432:cache:mta:pass:with:colons",
                Some("pass:with:colons"),
            ),
            ("# db.example:5432:cache:mta:comment", None),
            ("db.example:5432:cache", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                password_if_matching(line, &wanted).as_deref(),
                want,
                "{line:?}"
            );
        }
    }

    #[test]
    fn lookup_reads_the_named_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(
            &path,
            "# ours\nelsewhere:*:*:*:no\n127.0.0.1:5432:cache:mta:yes\n*:*:*:*:fallback\n",
        )
        .unwrap();
        let options = PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(5432)
            .username("mta")
            .database("cache");
        assert_eq!(lookup(Some(&path), &options).as_deref(), Some("yes"));
        let other = options.clone().database("other");
        assert_eq!(lookup(Some(&path), &other).as_deref(), Some("fallback"));
        assert_eq!(lookup(Some(&dir.path().join("missing")), &options), None);
    }
}
