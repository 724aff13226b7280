//! The policy file (RFC 8461 §3.2).

use std::fmt;
use std::str::FromStr;

use crate::{Error, MaxAge, Mode, MxPattern, syntax};

/// A parsed MTA-STS policy (RFC 8461 §3.2).
///
/// ```
/// use mtasts_core::{Mode, Policy};
///
/// let policy: Policy = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n".parse()?;
/// assert_eq!(policy.mode(), Mode::Enforce);
/// assert_eq!(policy.max_age().as_secs(), 86_400);
/// assert!(policy.matches_mx("mail.example.com"));
/// assert_eq!(
///     policy.to_string(),
///     "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n"
/// );
/// # Ok::<(), mtasts_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    mode: Mode,
    max_age: MaxAge,
    mx: Vec<MxPattern>,
    extensions: Vec<(String, String)>,
}

impl Policy {
    /// A policy from its parts; `mx` may be empty only for [`Mode::None`] (RFC 8461 §3.2).
    ///
    /// ```
    /// use mtasts_core::{MaxAge, Mode, Policy};
    ///
    /// let policy = Policy::new(Mode::Testing, MaxAge::new(604_800)?, vec!["*.example.com".parse()?])?;
    /// assert!(policy.matches_mx("mx1.example.com"));
    /// assert!(Policy::new(Mode::Enforce, MaxAge::new(1)?, vec![]).is_err());
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    pub fn new(mode: Mode, max_age: MaxAge, mx: Vec<MxPattern>) -> Result<Self, Error> {
        if mx.is_empty() && mode != Mode::None {
            return Err(Error::MissingMx { mode });
        }
        Ok(Self {
            mode,
            max_age,
            mx,
            extensions: Vec::new(),
        })
    }

    /// Adds an extension field (printed after the standard fields). `name` must follow
    /// `sts-policy-ext-name` and must not be a standard key; `value` must follow
    /// `sts-policy-ext-value` (RFC 8461 §3.2).
    ///
    /// ```
    /// use mtasts_core::{MaxAge, Mode, Policy};
    ///
    /// let policy = Policy::new(Mode::None, MaxAge::new(86_400)?, vec![])?
    ///     .with_extension("contact", "postmaster@example.com")?;
    /// assert_eq!(policy.extensions(), &[("contact".to_owned(), "postmaster@example.com".to_owned())]);
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    pub fn with_extension(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, Error> {
        let (name, value) = (name.into(), value.into());
        syntax::check_policy_extension(&name, &value)?;
        self.extensions.push((name, value));
        Ok(self)
    }

    /// Parses a policy body as fetched (RFC 8461 §3.2); the body must be UTF-8.
    ///
    /// ```
    /// let policy = mtasts_core::Policy::parse(b"version: STSv1\r\nmode: none\r\nmax_age: 0\r\n")?;
    /// assert!(policy.mx().is_empty());
    /// assert!(mtasts_core::Policy::parse(b"\xff").is_err());
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(body).map_err(|e| Error::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        text.parse()
    }

    /// The policy mode.
    ///
    /// ```
    /// let policy: mtasts_core::Policy = "version: STSv1\nmode: none\nmax_age: 0\n".parse()?;
    /// assert_eq!(policy.mode(), mtasts_core::Mode::None);
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The policy lifetime.
    ///
    /// ```
    /// let policy: mtasts_core::Policy = "version: STSv1\nmode: none\nmax_age: 60\n".parse()?;
    /// assert_eq!(policy.max_age().as_secs(), 60);
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn max_age(&self) -> MaxAge {
        self.max_age
    }

    /// The `mx` patterns, in file order.
    ///
    /// ```
    /// let policy: mtasts_core::Policy =
    ///     "version: STSv1\nmode: testing\nmax_age: 60\nmx: a.example\nmx: *.b.example\n".parse()?;
    /// let mx: Vec<&str> = policy.mx().iter().map(|p| p.as_str()).collect();
    /// assert_eq!(mx, ["a.example", "*.b.example"]);
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn mx(&self) -> &[MxPattern] {
        &self.mx
    }

    /// Unknown fields, in file order (RFC 8461 §3.2: kept, but a sender ignores them).
    ///
    /// ```
    /// let policy: mtasts_core::Policy =
    ///     "version: STSv1\nmode: none\nmax_age: 60\nfoo: bar baz\n".parse()?;
    /// assert_eq!(policy.extensions(), &[("foo".to_owned(), "bar baz".to_owned())]);
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn extensions(&self) -> &[(String, String)] {
        &self.extensions
    }

    /// Whether MX host `host` matches one of the policy's patterns (RFC 8461 §4.1).
    ///
    /// ```
    /// let policy: mtasts_core::Policy =
    ///     "version: STSv1\nmode: enforce\nmax_age: 60\nmx: *.example.com\n".parse()?;
    /// assert!(policy.matches_mx("mx1.example.com"));
    /// assert!(!policy.matches_mx("mx1.example.net"));
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn matches_mx(&self, host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }
}

impl FromStr for Policy {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let mut version_line = None;
        let mut mode: Option<(Mode, usize)> = None;
        let mut max_age: Option<(MaxAge, usize)> = None;
        let mut mx = Vec::new();
        let mut extensions = Vec::new();
        for field in syntax::policy_fields(text) {
            let syntax::PolicyField { line, key, value } = field?;
            match key {
                "version" => {
                    if let Some(first_line) = version_line {
                        return Err(duplicate("version", line, first_line));
                    }
                    if value != "STSv1" {
                        return Err(Error::InvalidVersion {
                            value: value.to_owned(),
                        }
                        .at_line(line));
                    }
                    version_line = Some(line);
                }
                "mode" => {
                    if let Some((_, first_line)) = mode {
                        return Err(duplicate("mode", line, first_line));
                    }
                    mode = Some((value.parse().map_err(|e: Error| e.at_line(line))?, line));
                }
                "max_age" => {
                    if let Some((_, first_line)) = max_age {
                        return Err(duplicate("max_age", line, first_line));
                    }
                    max_age = Some((value.parse().map_err(|e: Error| e.at_line(line))?, line));
                }
                "mx" => mx.push(value.parse().map_err(|e: Error| e.at_line(line))?),
                _ => extensions.push((key.to_owned(), value.to_owned())),
            }
        }
        if version_line.is_none() {
            return Err(Error::MissingField { field: "version" });
        }
        let Some((mode, _)) = mode else {
            return Err(Error::MissingField { field: "mode" });
        };
        let Some((max_age, _)) = max_age else {
            return Err(Error::MissingField { field: "max_age" });
        };
        let mut policy = Self::new(mode, max_age, mx)?;
        policy.extensions = extensions;
        Ok(policy)
    }
}

fn duplicate(field: &'static str, line: usize, first_line: usize) -> Error {
    Error::DuplicateField {
        field,
        line,
        first_line,
    }
}

impl fmt::Display for Policy {
    /// The canonical policy text: LF line ends, `version`, `mode`, `max_age`, the `mx` lines,
    /// then the extensions, each as `key: value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "version: STSv1")?;
        writeln!(f, "mode: {}", self.mode)?;
        writeln!(f, "max_age: {}", self.max_age)?;
        for mx in &self.mx {
            writeln!(f, "mx: {mx}")?;
        }
        for (key, value) in &self.extensions {
            writeln!(f, "{key}: {value}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Policy {
    /// The Python daemon's shape: `{"version":"STSv1","mode":"enforce","max_age":86400,
    /// "mx":["mail.example.com"]}` plus one string member per extension field.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(4 + self.extensions.len()))?;
        map.serialize_entry("version", "STSv1")?;
        map.serialize_entry("mode", &self.mode)?;
        map.serialize_entry("max_age", &self.max_age)?;
        map.serialize_entry("mx", &self.mx)?;
        for (key, value) in &self.extensions {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Policy {
    /// Accepts the shape [`Serialize`](serde::Serialize) writes and what the Python daemon
    /// stored, validating every standard field:
    /// - `version` must be `"STSv1"`; `mode` a mode string; `max_age` a number or a digit
    ///   string in range; `mx` a list of valid patterns (may be absent or empty for `none`).
    /// - Other members whose key is a valid extension name and whose value is a valid extension
    ///   value string become extensions. Anything else is dropped: the Python daemon stores
    ///   every line of the policy file as a key, including ones our parser never turns into
    ///   fields (for instance `""` for an empty line).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PolicyVisitor)
    }
}

struct PolicyVisitor;

impl<'de> serde::de::Visitor<'de> for PolicyVisitor {
    type Value = Policy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an MTA-STS policy object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Policy, A::Error> {
        use serde::de::Error as _;
        let mut version: Option<String> = None;
        let mut mode: Option<Mode> = None;
        let mut max_age: Option<MaxAge> = None;
        let mut mx: Option<Vec<MxPattern>> = None;
        let mut extensions = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => set_once(&mut version, "version", map.next_value()?)?,
                "mode" => set_once(&mut mode, "mode", map.next_value()?)?,
                "max_age" => set_once(&mut max_age, "max_age", map.next_value()?)?,
                "mx" => set_once(&mut mx, "mx", map.next_value()?)?,
                _ => {
                    let value: ExtValue = map.next_value()?;
                    if let ExtValue::Text(value) = value
                        && syntax::check_policy_extension(&key, &value).is_ok()
                    {
                        extensions.push((key, value));
                    }
                }
            }
        }
        match version {
            Some(v) if v == "STSv1" => {}
            Some(v) => return Err(A::Error::custom(Error::InvalidVersion { value: v })),
            None => return Err(A::Error::missing_field("version")),
        }
        let mode = mode.ok_or_else(|| A::Error::missing_field("mode"))?;
        let max_age = max_age.ok_or_else(|| A::Error::missing_field("max_age"))?;
        let mut policy =
            Policy::new(mode, max_age, mx.unwrap_or_default()).map_err(A::Error::custom)?;
        policy.extensions = extensions;
        Ok(policy)
    }
}

fn set_once<T, E: serde::de::Error>(
    slot: &mut Option<T>,
    field: &'static str,
    value: T,
) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(field));
    }
    *slot = Some(value);
    Ok(())
}

/// An unknown member's value: kept when it is a string, skipped otherwise.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ExtValue {
    Text(String),
    Other(serde::de::IgnoredAny),
}
