//! A small YAML 1.1 loader that reads documents the way PyYAML's `safe_load` does.
//!
//! The Python daemon reads its configuration with PyYAML, which implements YAML 1.1: `0666` is the octal
//! integer 438, `yes`/`no`/`on`/`off` are booleans, `~` and an empty value are null. A YAML 1.2 loader would
//! read `mode: 0666` as decimal 666 — a socket created with the wrong mode is a security bug — so this module
//! takes only *events* from `saphyr-parser` (which keeps each scalar's style) and applies PyYAML's implicit
//! resolvers itself, to plain scalars only: a quoted `"0666"` stays a string.
//!
//! Supported: block and flow collections, anchors and aliases, merge keys (`<<`), the core tags `!!str`,
//! `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`, `!!map`. Duplicate keys: the last one wins (as in PyYAML).

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

/// A resolved YAML value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `~`, `null`, `Null`, `NULL` or nothing at all.
    Null,
    /// `yes`/`no`/`on`/`off`/`true`/`false` in PyYAML's three casings.
    Bool(bool),
    /// Decimal, `0` octal, `0x` hex, `0b` binary or base-60 (`1:30`) integers, `_` allowed.
    Int(i64),
    /// Floats as PyYAML reads them (a dot is required; `.inf`, `.nan`).
    Float(f64),
    /// Everything else, and every quoted or block scalar.
    Str(String),
    /// A YAML 1.1 timestamp (`2002-12-14`); kept as written, no configuration key accepts one.
    Timestamp(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order, duplicate keys already collapsed (last wins).
    Map(Vec<(Node, Node)>),
}

/// A value with the line it starts on (1-based), for error messages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) line: usize,
}

impl Value {
    /// What kind of value this is, for "expected X, found Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) => "an integer",
            Self::Float(_) => "a number",
            Self::Str(_) => "a string",
            Self::Timestamp(_) => "a timestamp",
            Self::Seq(_) => "a list",
            Self::Map(_) => "a mapping",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Timestamp(s) => f.write_str(s),
            Self::Seq(_) => f.write_str("[...]"),
            Self::Map(_) => f.write_str("{...}"),
        }
    }
}

/// Why a YAML document could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum YamlError {
    /// The text is not well-formed YAML.
    #[error("YAML syntax error: {0}")]
    Syntax(#[from] ScanError),
    /// An alias refers to an anchor that was not defined before it.
    #[error("line {line}: alias refers to an unknown anchor")]
    UnknownAnchor {
        /// Line of the alias.
        line: usize,
    },
    /// A tag that `yaml.safe_load` would not construct either.
    #[error("line {line}: unsupported tag {tag}")]
    UnsupportedTag {
        /// Line of the tagged node.
        line: usize,
        /// The tag as written.
        tag: String,
    },
    /// A scalar tagged `!!int`, `!!float`, `!!bool` or `!!null` that does not read as one.
    #[error("line {line}: {text:?} is not a valid {tag}")]
    BadTaggedScalar {
        /// Line of the scalar.
        line: usize,
        /// The tag suffix (`int`, `float`...).
        tag: &'static str,
        /// The scalar text.
        text: String,
    },
    /// A merge key (`<<`) whose value is not a mapping or a list of mappings.
    #[error("line {line}: merge key `<<` needs a mapping or a list of mappings")]
    BadMerge {
        /// Line of the merge value.
        line: usize,
    },
    /// Collections nested deeper than `MAX_DEPTH` (64).
    #[error("line {line}: collections nested more than {MAX_DEPTH} deep")]
    TooDeep {
        /// Line of the collection that is too deep.
        line: usize,
    },
    /// More than `MAX_NODES` (100 000) values once aliases are expanded ("billion laughs").
    #[error("line {line}: the document expands to more than {MAX_NODES} values")]
    TooLarge {
        /// Line where the limit was reached.
        line: usize,
    },
    /// More than one document in the file.
    #[error("line {line}: the configuration file must hold a single YAML document")]
    SeveralDocuments {
        /// Line where the second document starts.
        line: usize,
    },
}

/// How deep collections may nest (a configuration needs 4; the bound keeps recursion off the stack's edge).
pub(super) const MAX_DEPTH: usize = 64;

/// How many values a document may hold once aliases are expanded.
pub(super) const MAX_NODES: usize = 100_000;

/// Loads one YAML document as PyYAML's `safe_load` would. An empty stream gives [`Value::Null`].
pub(crate) fn load(text: &str) -> Result<Node, YamlError> {
    let mut loader = Loader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        depth: 0,
        nodes: 0,
    };
    let mut doc: Option<Node> = None;
    loop {
        let (event, span) = loader.next()?;
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                if doc.is_some() {
                    return Err(YamlError::SeveralDocuments {
                        line: line_of(span),
                    });
                }
                let (ev, sp) = loader.next()?;
                doc = Some(loader.node(ev, sp)?);
            }
            _ => {}
        }
    }
    Ok(doc.unwrap_or(Node {
        value: Value::Null,
        line: 1,
    }))
}

fn line_of(span: Span) -> usize {
    span.start.line()
}

struct Loader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, (Node, usize)>,
    depth: usize,
    nodes: usize,
}

/// Values in `node`, itself included.
fn size(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| size(k) + size(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

impl<'a> Loader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(e.into()),
            None => Ok((Event::StreamEnd, Span::default())),
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size(node)));
        }
    }

    fn count(&mut self, n: usize, line: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError::TooLarge { line });
        }
        Ok(())
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Node, YamlError> {
        let line = line_of(span);
        if matches!(event, Event::SequenceStart(..) | Event::MappingStart(..)) {
            if self.depth >= MAX_DEPTH {
                return Err(YamlError::TooDeep { line });
            }
            self.depth += 1;
            let node = self.build(event, line);
            self.depth -= 1;
            return node;
        }
        self.build(event, line)
    }

    fn build(&mut self, event: Event<'a>, line: usize) -> Result<Node, YamlError> {
        match &event {
            Event::Alias(anchor) => {
                let n = self.anchors.get(anchor).map_or(1, |(_, n)| *n);
                self.count(n, line)?;
            }
            _ => self.count(1, line)?,
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(&text, style, tag.as_deref(), line)?;
                let node = Node { value, line };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::Alias(anchor) => self
                .anchors
                .get(&anchor)
                .map(|(node, _)| node.clone())
                .ok_or(YamlError::UnknownAnchor { line }),
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", line)?;
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = self.next()?;
                    if matches!(ev, Event::SequenceEnd | Event::StreamEnd) {
                        break;
                    }
                    items.push(self.node(ev, sp)?);
                }
                let node = Node {
                    value: Value::Seq(items),
                    line,
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", line)?;
                let mut entries: Vec<(Node, Node)> = Vec::new();
                let mut merged: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (ev, sp) = self.next()?;
                    if matches!(ev, Event::MappingEnd | Event::StreamEnd) {
                        break;
                    }
                    let is_merge =
                        matches!(&ev, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
                    let key = self.node(ev, sp)?;
                    let (ev, sp) = self.next()?;
                    let value = self.node(ev, sp)?;
                    if is_merge {
                        merge_into(&mut merged, value)?;
                    } else {
                        insert(&mut entries, key, value);
                    }
                }
                // Explicit keys win over merged ones (YAML merge key type).
                for (k, v) in merged {
                    if !entries.iter().any(|(ek, _)| ek.value == k.value) {
                        entries.push((k, v));
                    }
                }
                let node = Node {
                    value: Value::Map(entries),
                    line,
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            // Structural events cannot start a node; treat as an empty value.
            _ => Ok(Node {
                value: Value::Null,
                line,
            }),
        }
    }
}

fn insert(entries: &mut Vec<(Node, Node)>, key: Node, value: Node) {
    if let Some(slot) = entries.iter_mut().find(|(k, _)| k.value == key.value) {
        slot.1 = value;
    } else {
        entries.push((key, value));
    }
}

fn merge_into(merged: &mut Vec<(Node, Node)>, value: Node) -> Result<(), YamlError> {
    let line = value.line;
    match value.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                if !merged.iter().any(|(mk, _)| mk.value == k.value) {
                    merged.push((k, v));
                }
            }
            Ok(())
        }
        Value::Seq(items) => {
            for item in items {
                if !matches!(item.value, Value::Map(_)) {
                    return Err(YamlError::BadMerge { line: item.line });
                }
                merge_into(merged, item)?;
            }
            Ok(())
        }
        _ => Err(YamlError::BadMerge { line }),
    }
}

fn check_collection_tag(tag: Option<&Tag>, want: &str, line: usize) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(t) if t.is_yaml_core_schema() && t.suffix == want => Ok(()),
        Some(t) => Err(YamlError::UnsupportedTag {
            line,
            tag: t.to_string(),
        }),
    }
}

fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    line: usize,
) -> Result<Value, YamlError> {
    if let Some(tag) = tag {
        if tag.handle == "!" && tag.suffix.is_empty() {
            // The non-specific tag `!` forces a string.
            return Ok(Value::Str(text.to_string()));
        }
        if !tag.is_yaml_core_schema() {
            return Err(YamlError::UnsupportedTag {
                line,
                tag: tag.to_string(),
            });
        }
        let bad = |tag: &'static str| YamlError::BadTaggedScalar {
            line,
            tag,
            text: text.to_string(),
        };
        return match tag.suffix.as_str() {
            "str" => Ok(Value::Str(text.to_string())),
            "int" => resolve_int(text).map(Value::Int).ok_or_else(|| bad("int")),
            "float" => resolve_float(text)
                .or_else(|| resolve_int(text).map(|i| i as f64))
                .map(Value::Float)
                .ok_or_else(|| bad("float")),
            "bool" => resolve_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| bad("bool")),
            "null" => resolve_null(text)
                .then_some(Value::Null)
                .ok_or_else(|| bad("null")),
            _ => Err(YamlError::UnsupportedTag {
                line,
                tag: tag.to_string(),
            }),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_string()));
    }
    Ok(resolve_plain(text))
}

/// PyYAML's implicit resolvers (`yaml/resolver.py`), applied to a plain scalar.
pub(crate) fn resolve_plain(text: &str) -> Value {
    if resolve_null(text) {
        return Value::Null;
    }
    if let Some(b) = resolve_bool(text) {
        return Value::Bool(b);
    }
    if let Some(i) = resolve_int(text) {
        return Value::Int(i);
    }
    if let Some(f) = resolve_float(text) {
        return Value::Float(f);
    }
    if is_timestamp(text) {
        return Value::Timestamp(text.to_owned());
    }
    Value::Str(text.to_owned())
}

fn resolve_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (true, rest)
    } else {
        (false, text.strip_prefix('+').unwrap_or(text))
    }
}

fn all(s: &str, f: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(f)
}

fn digits_without_underscores(s: &str) -> String {
    s.chars().filter(|&c| c != '_').collect()
}

/// YAML 1.1 `int`: `[-+]?0b[01_]+`, `[-+]?0[0-7_]+`, `[-+]?(0|[1-9][0-9_]*)`, `[-+]?0x[0-9a-fA-F_]+`,
/// `[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+` (base 60).
fn resolve_int(text: &str) -> Option<i64> {
    let (negative, body) = split_sign(text);
    let magnitude = if let Some(bin) = body.strip_prefix("0b") {
        if !all(bin, |c| matches!(c, '0' | '1' | '_')) {
            return None;
        }
        i64::from_str_radix(&digits_without_underscores(bin), 2).ok()?
    } else if let Some(hex) = body.strip_prefix("0x") {
        if !all(hex, |c| c.is_ascii_hexdigit() || c == '_') {
            return None;
        }
        i64::from_str_radix(&digits_without_underscores(hex), 16).ok()?
    } else if body == "0" {
        0
    } else if let Some(oct) = body.strip_prefix('0') {
        if !all(oct, |c| matches!(c, '0'..='7' | '_')) {
            return None;
        }
        let digits = digits_without_underscores(oct);
        if digits.is_empty() {
            0
        } else {
            i64::from_str_radix(&digits, 8).ok()?
        }
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| matches!(c, '1'..='9'))
            || !all(first, |c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        let mut value: i64 = digits_without_underscores(first).parse().ok()?;
        for part in parts {
            if !is_sexagesimal_digit_group(part) {
                return None;
            }
            value = value
                .checked_mul(60)?
                .checked_add(part.parse::<i64>().ok()?)?;
        }
        value
    } else {
        if !body.starts_with(|c: char| matches!(c, '1'..='9'))
            || !all(body, |c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        digits_without_underscores(body).parse().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// `[0-5]?[0-9]`
fn is_sexagesimal_digit_group(part: &str) -> bool {
    let b = part.as_bytes();
    match b {
        [d] => d.is_ascii_digit(),
        [t, d] => (b'0'..=b'5').contains(t) && d.is_ascii_digit(),
        _ => false,
    }
}

/// YAML 1.1 `float` as PyYAML reads it: `[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?`,
/// base 60 with a fraction, `[-+]?\.(inf|Inf|INF)`, `\.(nan|NaN|NAN)`.
fn resolve_float(text: &str) -> Option<f64> {
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    let (negative, body) = split_sign(text);
    let sign = if negative { -1.0 } else { 1.0 };
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return Some(sign * f64::INFINITY);
    }
    if body.contains(':') {
        // base 60 with a fractional last group: 190:20:30.15
        let mut parts: Vec<&str> = body.split(':').collect();
        let last = parts.pop()?;
        let first = parts.first()?;
        if !first.starts_with(|c: char| c.is_ascii_digit())
            || !all(first, |c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        let (int_part, frac) = last.split_once('.')?;
        if !is_sexagesimal_digit_group(int_part)
            || !frac.chars().all(|c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        let mut value: f64 = digits_without_underscores(first).parse().ok()?;
        for part in &parts[1..] {
            if !is_sexagesimal_digit_group(part) {
                return None;
            }
            value = value * 60.0 + part.parse::<f64>().ok()?;
        }
        let last_value: f64 = format!("{int_part}.{}0", digits_without_underscores(frac))
            .parse()
            .ok()?;
        return Some(sign * (value * 60.0 + last_value));
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = mantissa.split_once('.')?;
    let int_ok = if int_part.is_empty() {
        // `\.[0-9][0-9_]*` without a sign or integer part needs a digit after the dot.
        !negative && !text.starts_with('+') && frac.starts_with(|c: char| c.is_ascii_digit())
    } else {
        int_part.starts_with(|c: char| c.is_ascii_digit())
            && int_part.chars().all(|c| c.is_ascii_digit() || c == '_')
    };
    if !int_ok || !frac.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['+', '-'])?;
        if !all(digits, |c| c.is_ascii_digit()) {
            return None;
        }
    }
    let cleaned = digits_without_underscores(&format!("{int_part}.{frac}0"));
    let mut value: f64 = if int_part.is_empty() {
        format!("0{cleaned}")
    } else {
        cleaned
    }
    .parse()
    .ok()?;
    if let Some(exp) = exponent {
        let e: i32 = exp.parse().ok()?;
        value *= 10f64.powi(e);
    }
    Some(sign * value)
}

/// YAML 1.1 timestamp: `YYYY-MM-DD` or `YYYY-M-D[Tt ]...`; recognised so that it is not mistaken for a string.
fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && text[5..]
            .split(['-', 'T', 't', ' '])
            .next()
            .is_some_and(|m| (1..=2).contains(&m.len()) && all(m, |c| c.is_ascii_digit()))
        && text[5..].contains('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(text: &str) -> Value {
        load(text).unwrap().value
    }

    fn first_value(text: &str) -> Value {
        match get(text) {
            Value::Map(entries) => entries.into_iter().next().unwrap().1.value,
            other => panic!("not a mapping: {other:?}"),
        }
    }

    #[test]
    fn plain_scalars_resolve_like_pyyaml() {
        // (yaml text, value PyYAML's safe_load gives)
        let cases: &[(&str, Value)] = &[
            ("0666", Value::Int(438)),
            ("0o666", Value::Str("0o666".into())),
            ("0777", Value::Int(511)),
            ("0", Value::Int(0)),
            ("-0", Value::Int(0)),
            ("08", Value::Str("08".into())),
            ("0_7", Value::Int(7)),
            ("666", Value::Int(666)),
            ("+12", Value::Int(12)),
            ("-12", Value::Int(-12)),
            ("1_000", Value::Int(1000)),
            ("0x1F", Value::Int(31)),
            ("0b101", Value::Int(5)),
            ("1:30", Value::Int(90)),
            ("1:00:00", Value::Int(3600)),
            ("1:60", Value::Str("1:60".into())),
            ("yEs", Value::Str("yEs".into())),
            ("y", Value::Str("y".into())),
            ("n", Value::Str("n".into())),
            ("~", Value::Null),
            ("nULL", Value::Str("nULL".into())),
            ("1.5", Value::Float(1.5)),
            ("4.", Value::Float(4.0)),
            (".5", Value::Float(0.5)),
            ("-1.5", Value::Float(-1.5)),
            ("1.0e+3", Value::Float(1000.0)),
            ("1.0e3", Value::Str("1.0e3".into())),
            ("1e3", Value::Str("1e3".into())),
            ("1_0.5", Value::Float(10.5)),
            (".inf", Value::Float(f64::INFINITY)),
            ("-.inf", Value::Float(f64::NEG_INFINITY)),
            ("1:30.5", Value::Float(90.5)),
            ("2002-12-14", Value::Timestamp("2002-12-14".into())),
            ("127.0.0.1", Value::Str("127.0.0.1".into())),
            (
                "redis://127.0.0.1/0",
                Value::Str("redis://127.0.0.1/0".into()),
            ),
        ];
        // PyYAML's words in its three casings: lower, Capitalized, UPPER.
        let words = [
            ("yes", Value::Bool(true)),
            ("no", Value::Bool(false)),
            ("on", Value::Bool(true)),
            ("off", Value::Bool(false)),
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("null", Value::Null),
        ];
        let cased = words.iter().flat_map(|(word, value)| {
            let capitalized = format!("{}{}", word[..1].to_uppercase(), &word[1..]);
            [word.to_string(), capitalized, word.to_uppercase()].map(|text| (text, value))
        });
        let plain = cases
            .iter()
            .map(|(text, value)| ((*text).to_owned(), value));
        for (text, want) in plain.chain(cased) {
            let got = first_value(&format!("k: {text}\n"));
            assert_eq!(&got, want, "plain scalar {text:?}");
        }
        assert!(matches!(first_value("k: .nan\n"), Value::Float(x) if x.is_nan()));
    }

    #[test]
    fn quoted_and_block_scalars_stay_strings() {
        assert_eq!(first_value("k: \"0666\"\n"), Value::Str("0666".into()));
        assert_eq!(first_value("k: '0666'\n"), Value::Str("0666".into()));
        assert_eq!(first_value("k: 'yes'\n"), Value::Str("yes".into()));
        assert_eq!(first_value("k: \"\"\n"), Value::Str(String::new()));
        assert_eq!(first_value("k: |\n  yes\n"), Value::Str("yes\n".into()));
    }

    #[test]
    fn empty_value_and_empty_document_are_null() {
        assert_eq!(first_value("k:\n"), Value::Null);
        assert_eq!(get(""), Value::Null);
        assert_eq!(get("# only a comment\n"), Value::Null);
        assert_eq!(get("---\n"), Value::Null);
    }

    #[test]
    fn core_tags_force_the_type() {
        assert_eq!(first_value("k: !!str 0666\n"), Value::Str("0666".into()));
        assert_eq!(first_value("k: !!int \"0666\"\n"), Value::Int(438));
        assert_eq!(first_value("k: !!float 4\n"), Value::Float(4.0));
        assert_eq!(first_value("k: !!bool \"yes\"\n"), Value::Bool(true));
        assert!(matches!(
            load("k: !!int abc\n"),
            Err(YamlError::BadTaggedScalar { tag: "int", .. })
        ));
        assert!(matches!(
            load("k: !!python/object foo\n"),
            Err(YamlError::UnsupportedTag { .. })
        ));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let text =
            "base: &b {timeout: 4, strict_testing: yes}\nz: *b\nm:\n  <<: *b\n  timeout: 9\n";
        let Value::Map(entries) = get(text) else {
            panic!("not a map")
        };
        assert_eq!(entries[1].1.value, entries[0].1.value);
        let Value::Map(m) = &entries[2].1.value else {
            panic!("not a map")
        };
        let lookup = |k: &str| {
            m.iter()
                .find(|(key, _)| key.value == Value::Str(k.into()))
                .map(|(_, v)| v.value.clone())
        };
        assert_eq!(lookup("timeout"), Some(Value::Int(9)));
        assert_eq!(lookup("strict_testing"), Some(Value::Bool(true)));
        assert!(matches!(
            load("a: *nope\n"),
            Err(YamlError::UnknownAnchor { .. }) | Err(YamlError::Syntax(_))
        ));
    }

    #[test]
    fn duplicate_keys_last_wins_and_non_string_keys_resolve() {
        let Value::Map(entries) = get("a: 1\na: 2\nyes: 3\n") else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].1.value, Value::Int(2));
        assert_eq!(entries[1].0.value, Value::Bool(true));
    }

    #[test]
    fn flow_sequences_and_lines() {
        let node = load("a: 1\nsentinels:\n  - [\"s1\", 26379]\n  - [s2, 26380]\n").unwrap();
        let Value::Map(entries) = node.value else {
            panic!("not a map")
        };
        assert_eq!(entries[1].0.line, 2);
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(
            items[1].value,
            Value::Seq(vec![
                Node {
                    value: Value::Str("s2".into()),
                    line: 4
                },
                Node {
                    value: Value::Int(26380),
                    line: 4
                },
            ])
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            load(&deep),
            Err(YamlError::TooDeep { .. }) | Err(YamlError::Syntax(_))
        ));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(load(&ok).is_ok());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                [prev.as_str(); 10].join(", ")
            ));
        }
        assert!(matches!(load(&text), Err(YamlError::TooLarge { .. })));
    }

    #[test]
    fn syntax_errors_and_several_documents_are_errors() {
        assert!(matches!(load("a: [1, 2\n"), Err(YamlError::Syntax(_))));
        assert!(matches!(
            load("a: 1\n---\nb: 2\n"),
            Err(YamlError::SeveralDocuments { .. })
        ));
    }
}
