//! Typed extraction from the YAML value tree, with key paths in every error and unknown keys collected.

use std::time::Duration;

use super::ConfigError;
use super::yaml::{Node, Value};

#[cfg(test)]
thread_local! {
    /// Every key path the reader asked for on this thread (tests: which keys the parser accepts).
    pub(crate) static ASKED: std::cell::RefCell<std::collections::BTreeSet<String>> =
        const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
}

/// One mapping of the configuration being read, e.g. `default_zone` or `cache.options`.
pub(crate) struct Section<'a> {
    path: String,
    line: usize,
    entries: &'a [(Node, Node)],
    used: Vec<bool>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Section<'a> {
    /// Reads `node` as a mapping at `path`; null (an empty section, as PyYAML gives for `key:`) is an empty one.
    pub(crate) fn new(path: &str, node: Option<&'a Node>) -> Result<Self, ConfigError> {
        static EMPTY: [(Node, Node); 0] = [];
        match node {
            None => Ok(Self {
                path: path.to_owned(),
                line: 0,
                entries: &EMPTY,
                used: Vec::new(),
            }),
            Some(Node {
                value: Value::Null,
                line,
            }) => Ok(Self {
                path: path.to_owned(),
                line: *line,
                entries: &EMPTY,
                used: Vec::new(),
            }),
            Some(Node {
                value: Value::Map(entries),
                line,
            }) => Ok(Self {
                path: path.to_owned(),
                line: *line,
                entries,
                used: vec![false; entries.len()],
            }),
            Some(other) => Err(invalid(path, other, "a mapping")),
        }
    }

    /// The line this section starts on (0 when absent).
    pub(crate) fn line(&self) -> usize {
        self.line
    }

    /// The full path of `key` in this section.
    pub(crate) fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw node of `key`, marking it as known. A null value counts as absent, as the Python daemon's
    /// `cfg.get(key, default)` does for most keys.
    pub(crate) fn node(&mut self, key: &str) -> Option<&'a Node> {
        #[cfg(test)]
        ASKED.with(|asked| asked.borrow_mut().insert(self.key_path(key)));
        let entries = self.entries;
        let i = entries
            .iter()
            .position(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))?;
        self.used[i] = true;
        let node = &entries[i].1;
        (!matches!(node.value, Value::Null)).then_some(node)
    }

    /// Whether `key` is present with a non-null value (does not mark it as known).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, v)| matches!(&k.value, Value::Str(s) if s == key) && v.value != Value::Null)
    }

    /// A sub-section.
    pub(crate) fn section(&mut self, key: &str) -> Result<Self, ConfigError> {
        let path = self.key_path(key);
        let node = self.node(key);
        Section::new(&path, node)
    }

    /// A boolean. PyYAML's `yes/no/on/off/true/false`; the integers 0 and 1 are accepted as Python would
    /// treat them. Strings are refused: in Python `"false"` would be *true*, surely not what was meant.
    pub(crate) fn bool(&mut self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.node(key) {
            None => Ok(default),
            Some(Node {
                value: Value::Bool(b),
                ..
            }) => Ok(*b),
            Some(Node {
                value: Value::Int(0),
                ..
            }) => Ok(false),
            Some(Node {
                value: Value::Int(1),
                ..
            }) => Ok(true),
            Some(other) => Err(invalid(
                &self.key_path(key),
                other,
                "a boolean (true/false, yes/no, on/off)",
            )),
        }
    }

    /// A non-negative number of seconds (integer or float).
    pub(crate) fn seconds(
        &mut self,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.node(key) {
            None => Ok(default),
            Some(node) => to_seconds(&self.key_path(key), node),
        }
    }

    /// An optional number of seconds.
    pub(crate) fn opt_seconds(&mut self, key: &str) -> Result<Option<Duration>, ConfigError> {
        match self.node(key) {
            None => Ok(None),
            Some(node) => to_seconds(&self.key_path(key), node).map(Some),
        }
    }

    /// A float in `range`.
    pub(crate) fn float(
        &mut self,
        key: &str,
        default: f64,
        min_exclusive: f64,
    ) -> Result<f64, ConfigError> {
        let value = match self.node(key) {
            None => return Ok(default),
            Some(Node {
                value: Value::Int(i),
                ..
            }) => *i as f64,
            Some(Node {
                value: Value::Float(x),
                ..
            }) => *x,
            Some(other) => return Err(invalid(&self.key_path(key), other, "a number")),
        };
        if !value.is_finite() || value <= min_exclusive {
            let node = self
                .entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key));
            let line = node.map_or(0, |(_, v)| v.line);
            return Err(ConfigError::Invalid {
                key: self.key_path(key),
                line,
                expected: format!("a number greater than {min_exclusive}"),
                found: format!("{value}"),
            });
        }
        Ok(value)
    }

    /// An integer in `min..=max`.
    pub(crate) fn int(
        &mut self,
        key: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        match self.node(key) {
            None => Ok(default),
            Some(node) => to_int(&self.key_path(key), node, min, max),
        }
    }

    /// An optional integer in `min..=max`.
    pub(crate) fn opt_int(
        &mut self,
        key: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, ConfigError> {
        match self.node(key) {
            None => Ok(None),
            Some(node) => to_int(&self.key_path(key), node, min, max).map(Some),
        }
    }

    /// A string. Numbers and booleans are refused (quote them if a string is meant).
    pub(crate) fn opt_string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.node(key) {
            None => Ok(None),
            Some(Node {
                value: Value::Str(s),
                ..
            }) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(&self.key_path(key), other, "a string")),
        }
    }

    /// Keys present in this section that nobody asked for, with their full paths.
    pub(crate) fn unknown_keys(&self) -> Vec<String> {
        self.entries
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|((k, _), _)| match &k.value {
                Value::Str(s) => join(&self.path, s),
                other => join(&self.path, &other.to_string()),
            })
            .collect()
    }
}

/// The error for `node` at `key` not being `expected`.
pub(crate) fn invalid(key: &str, node: &Node, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        line: node.line,
        expected: expected.to_owned(),
        found: format!("{} ({})", node.value.kind(), node.value),
    }
}

pub(crate) fn to_seconds(key: &str, node: &Node) -> Result<Duration, ConfigError> {
    let secs = match node.value {
        Value::Int(i) => i as f64,
        Value::Float(x) => x,
        _ => return Err(invalid(key, node, "a number of seconds")),
    };
    if !(0.0..=1e9).contains(&secs) {
        return Err(invalid(key, node, "a number of seconds between 0 and 1e9"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| invalid(key, node, "a number of seconds"))
}

pub(crate) fn to_int(key: &str, node: &Node, min: i64, max: i64) -> Result<i64, ConfigError> {
    match node.value {
        Value::Int(i) if (min..=max).contains(&i) => Ok(i),
        _ => Err(invalid(
            key,
            node,
            &format!("an integer from {min} to {max}"),
        )),
    }
}
