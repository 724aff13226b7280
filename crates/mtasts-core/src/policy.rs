//! The policy file (RFC 8461 §3.2).

use std::fmt;
use std::str::FromStr;

use crate::leniency::Leniencies;
use crate::{Error, Leniency, MaxAge, Mode, MxPattern, syntax};

/// A parsed MTA-STS policy (RFC 8461 §3.2).
///
/// # Parsing rules
///
/// [`Policy::parse`] and [`FromStr`] follow the ABNF of RFC 8461 §3.2:
/// - The body must be UTF-8 ([`Error::NotUtf8`]); non-ASCII characters are allowed only in
///   extension values (`sts-policy-vchar` includes UTF-8), anywhere else they are a syntax error.
/// - Lines end in LF or CRLF (`sts-policy-term`; erratum 6253), the last one optionally. Each line
///   is `key:` followed by optional spaces/tabs and a value; spaces/tabs after the value are
///   allowed. Whitespace before the key or before the `:` is not. Keys are case-sensitive
///   (`Mode: enforce` is an unknown field, not the mode).
/// - Leniencies (reported by [`Policy::leniencies`]): empty lines are skipped (the ABNF has no
///   place for them, but they carry no field and deployed policies and the Python resolver have
///   them), and an `mx` pattern may end in a dot, which is dropped. There are no others.
/// - `version` must be `STSv1`, `mode` one of `enforce`, `testing`, `none`, `max_age` 1 to 10
///   digits not above 31 557 600, each `mx` a valid [`MxPattern`].
/// - **Missing fields are an error** ([`Error::MissingField`], [`Error::MissingMx`]): the ABNF
///   marks `version`, `mode` and `max_age` "required once" and `mx` "required at least once,
///   except when mode is \"none\"".
/// - **Duplicates of `version`, `mode` or `max_age`: the first wins**, later ones are ignored
///   without being validated, as §3.2 prescribes: "If any non-repeated field -- i.e., all fields
///   excepting "mx" -- is duplicated, all entries except for the first SHALL be ignored."
/// - Unknown fields must follow `sts-policy-extension` and are kept in order
///   ([`Policy::extensions`]), as §3.2 requires: "Parsers MUST accept TXT records and policy
///   files that are syntactically valid [...] but containing additional key-value pairs not
///   specified in this document, in which case unknown fields SHALL be ignored."
///
/// Errors say which line and field failed ([`Error::line`]).
///
/// # Canonical form
///
/// `Display` prints `version`, `mode`, `max_age`, the `mx` lines and then the extensions, one
/// `key: value` per line with LF endings; parsing that text gives back an equal policy.
/// serde uses the JSON shape the Python `postfix-mta-sts-resolver` stores:
/// `{"version":"STSv1","mode":"enforce","max_age":86400,"mx":["mail.example.com"]}` plus one
/// string member per extension.
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
///
/// Equality and hashing compare the policy's meaning (mode, max_age, mx, extensions), not how its
/// text was spelled ([`Policy::leniencies`]).
#[derive(Debug, Clone)]
pub struct Policy {
    mode: Mode,
    max_age: MaxAge,
    mx: Vec<MxPattern>,
    extensions: Vec<(String, String)>,
    leniencies: Leniencies,
}

impl Policy {
    /// The fields that make up the policy's meaning, for equality and hashing.
    fn meaning(&self) -> (Mode, MaxAge, &[MxPattern], &[(String, String)]) {
        (self.mode, self.max_age, &self.mx, &self.extensions)
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.meaning() == other.meaning()
    }
}

impl Eq for Policy {}

impl std::hash::Hash for Policy {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.meaning().hash(state);
    }
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
    pub fn new(mode: Mode, max_age: MaxAge, mut mx: Vec<MxPattern>) -> Result<Self, Error> {
        if mx.is_empty() && mode != Mode::None {
            return Err(Error::MissingMx { mode });
        }
        // Policies are kept for long (in caches): no spare capacity.
        mx.shrink_to_fit();
        Ok(Self {
            mode,
            max_age,
            mx,
            extensions: Vec::new(),
            leniencies: Leniencies::default(),
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

    /// The deviations from the RFC 8461 ABNF this policy was accepted through (sorted, each
    /// once): those of its policy file and, for a policy a discovery returns, those of the TXT
    /// record that announced it (see [`Policy::with_leniencies`]). Empty for a policy whose text
    /// follows the ABNF, and for one built with [`Policy::new`] or read back from JSON.
    ///
    /// ```
    /// use mtasts_core::{Leniency, Policy};
    ///
    /// let policy: Policy = "version: STSv1\nmode: enforce\nmx: mail.example.com.\nmax_age: 60\n\n".parse()?;
    /// assert_eq!(policy.leniencies(), &[Leniency::PolicyEmptyLine, Leniency::MxTrailingDot]);
    /// assert_eq!(policy.mx()[0].as_str(), "mail.example.com");
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn leniencies(&self) -> &[Leniency] {
        self.leniencies.as_slice()
    }

    /// The same policy, with `leniencies` added to [`Policy::leniencies`]: a discovery notes those
    /// of the TXT record ([`TxtRecord::leniencies`](crate::TxtRecord::leniencies)) that led to it,
    /// so one list tells whether the domain's policy was accepted only through a leniency.
    ///
    /// ```
    /// use mtasts_core::{Policy, TxtRecord};
    ///
    /// let record: TxtRecord = "v=STSv1; id=1;;".parse()?;
    /// let policy: Policy = "version: STSv1\nmode: none\nmax_age: 60\n".parse()?;
    /// let policy = policy.with_leniencies(record.leniencies().iter().copied());
    /// assert_eq!(policy.leniencies(), record.leniencies());
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn with_leniencies(mut self, leniencies: impl IntoIterator<Item = Leniency>) -> Self {
        for leniency in leniencies {
            self.leniencies.add(leniency);
        }
        self
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

    /// Parses a policy file's text; see the [type docs](Policy) for the rules.
    fn from_str(text: &str) -> Result<Self, Error> {
        let mut version = false;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        let mut extensions = Vec::new();
        let mut leniencies = Leniencies::default();
        for field in syntax::policy_fields(text, &mut leniencies) {
            let syntax::PolicyField { line, key, value } = field?;
            let at_line = |e: Error| e.at_line(line);
            // RFC 8461 §3.2: "If any non-repeated field -- i.e., all fields excepting "mx" --
            // is duplicated, all entries except for the first SHALL be ignored."
            match key {
                "version" if !version => {
                    if value != "STSv1" {
                        return Err(at_line(Error::InvalidVersion {
                            value: value.to_owned(),
                        }));
                    }
                    version = true;
                }
                "mode" if mode.is_none() => mode = Some(value.parse::<Mode>().map_err(at_line)?),
                "max_age" if max_age.is_none() => {
                    max_age = Some(value.parse::<MaxAge>().map_err(at_line)?);
                }
                "version" | "mode" | "max_age" => {}
                "mx" => {
                    if value.ends_with('.') {
                        leniencies.add(Leniency::MxTrailingDot);
                    }
                    mx.push(value.parse::<MxPattern>().map_err(at_line)?);
                }
                _ => extensions.push((key.to_owned(), value.to_owned())),
            }
        }
        if !version {
            return Err(Error::MissingField { field: "version" });
        }
        let mode = mode.ok_or(Error::MissingField { field: "mode" })?;
        let max_age = max_age.ok_or(Error::MissingField { field: "max_age" })?;
        let mut policy = Self::new(mode, max_age, mx)?;
        extensions.shrink_to_fit();
        policy.extensions = extensions;
        policy.leniencies = leniencies;
        Ok(policy)
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
        extensions.shrink_to_fit();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, Error> {
        Policy::parse(text.as_bytes())
    }

    fn mx_of(policy: &Policy) -> Vec<&str> {
        policy.mx().iter().map(MxPattern::as_str).collect()
    }

    #[test]
    fn leniencies_are_noted_and_do_not_change_the_meaning() {
        use Leniency::{MxTrailingDot as Dot, PolicyEmptyLine as Empty};
        let strict = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 60\n";
        let cases: &[(&str, &[Leniency])] = &[
            (strict, &[]),
            (
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 60",
                &[],
            ),
            (
                "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 60\r\n",
                &[],
            ),
            (
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 60\n\n",
                &[Empty],
            ),
            (
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 60\r\n\r\n",
                &[Empty],
            ),
            (
                "\nversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 60\n",
                &[Empty],
            ),
            (
                "version: STSv1\n \t\nmode: enforce\nmx: mx.example.com\nmax_age: 60\n",
                &[Empty],
            ),
            (
                "version: STSv1\nmode: enforce\nmx: mx.example.com.\nmax_age: 60\n",
                &[Dot],
            ),
            (
                "version: STSv1\nmode: enforce\nmx: MX.example.com.\n\nmax_age: 60\n",
                &[Empty, Dot],
            ),
        ];
        let reference = parse(strict).unwrap();
        for (text, leniencies) in cases {
            let policy = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(policy.leniencies(), *leniencies, "{text:?}");
            assert_eq!(policy, reference, "{text:?}");
        }
        // Serde and the canonical text carry the meaning only.
        let lenient =
            parse("version: STSv1\nmode: enforce\nmx: mx.example.com.\nmax_age: 60\n\n").unwrap();
        assert!(
            lenient
                .to_string()
                .parse::<Policy>()
                .unwrap()
                .leniencies()
                .is_empty()
        );
        let json = serde_json::to_string(&lenient).unwrap();
        assert!(!json.contains("lenienc"), "{json}");
    }

    /// The examples of RFC 8461 §3.2, with both line ends.
    #[test]
    fn rfc_examples() {
        let policy = parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(policy.mode(), Mode::Enforce);
        assert_eq!(policy.max_age().as_secs(), 604_800);
        assert_eq!(
            mx_of(&policy),
            ["mail.example.com", "*.example.net", "backupmx.example.com"]
        );
        assert!(policy.extensions().is_empty());

        let lf = parse(
            "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800",
        )
        .unwrap();
        assert_eq!(lf, policy);
    }

    #[test]
    fn valid_policies() {
        /// Name, text, then the expected mode, max_age, mx patterns and extensions.
        type Case<'a> = (
            &'a str,
            &'a str,
            Mode,
            u32,
            &'a [&'a str],
            &'a [(&'a str, &'a str)],
        );
        let cases: &[Case<'_>] = &[
            (
                "minimal enforce",
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "testing mode",
                "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 1\n",
                Mode::Testing,
                1,
                &["mx.example.com"],
                &[],
            ),
            (
                "none needs no mx",
                "version: STSv1\nmode: none\nmax_age: 0\n",
                Mode::None,
                0,
                &[],
                &[],
            ),
            (
                "none may keep mx",
                "version: STSv1\nmode: none\nmax_age: 0\nmx: mx.example.com\n",
                Mode::None,
                0,
                &["mx.example.com"],
                &[],
            ),
            (
                "CRLF line ends",
                "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "mixed LF and CRLF",
                "version: STSv1\nmode: enforce\r\nmx: mx.example.com\nmax_age: 86400\r\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "no final line end",
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "fields in any order",
                "max_age: 5\nmx: b.example\nmode: testing\nmx: a.example\nversion: STSv1\n",
                Mode::Testing,
                5,
                &["b.example", "a.example"],
                &[],
            ),
            (
                "no space after the colon",
                "version:STSv1\nmode:enforce\nmx:mx.example.com\nmax_age:86400\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "spaces and tabs after the colon and at line end",
                "version: \tSTSv1 \t\nmode:  enforce  \nmx:\tmx.example.com\t\nmax_age: 86400 \r\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "wildcard mx",
                "version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n",
                Mode::Enforce,
                86_400,
                &["*.example.com"],
                &[],
            ),
            (
                "mx canonicalized",
                "version: STSv1\nmode: enforce\nmx: MX.Example.COM.\nmax_age: 86400\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "extension fields kept in order",
                "version: STSv1\nmode: enforce\nfoo: bar\nmx: mx.example.com\nx-y.z_1: a b  c!\nmax_age: 86400\nfoo: second\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[("foo", "bar"), ("x-y.z_1", "a b  c!"), ("foo", "second")],
            ),
            (
                "UTF-8 in an extension value",
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\ncontact: Jürgen Ø\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[("contact", "Jürgen Ø")],
            ),
            (
                "keys are case-sensitive: Mode is an extension",
                "version: STSv1\nmode: testing\nMode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                Mode::Testing,
                86_400,
                &["mx.example.com"],
                &[("Mode", "enforce")],
            ),
            (
                "duplicate mode: the first wins",
                "version: STSv1\nmode: enforce\nmode: none\nmx: mx.example.com\nmax_age: 86400\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "duplicate max_age: the first wins, the ignored one is not validated",
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\nmax_age: 99999999999\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "duplicate version: the first wins",
                "version: STSv1\nversion: STSv2\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "repeated mx kept",
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmx: mx.example.com\nmax_age: 86400\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com", "mx.example.com"],
                &[],
            ),
            (
                "empty lines are skipped, also leading and trailing",
                "\nversion: STSv1\n\nmode: enforce\r\n\r\nmx: mx.example.com\n \t\nmax_age: 86400\n\n\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "max_age with leading zeros",
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 0000086400\n",
                Mode::Enforce,
                86_400,
                &["mx.example.com"],
                &[],
            ),
            (
                "max_age at the maximum",
                "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 31557600\n",
                Mode::Enforce,
                31_557_600,
                &["mx.example.com"],
                &[],
            ),
        ];
        for (name, text, mode, max_age, mx, extensions) in cases {
            let policy = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(policy.mode(), *mode, "{name}");
            assert_eq!(policy.max_age().as_secs(), *max_age, "{name}");
            assert_eq!(mx_of(&policy), *mx, "{name}");
            let ext: Vec<(&str, &str)> = policy
                .extensions()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(ext, *extensions, "{name}");
            let printed = policy.to_string();
            assert_eq!(parse(&printed).as_ref(), Ok(&policy), "{name}: {printed}");
        }
    }

    /// The classic bad policies and every rule of §3.2, each with the error it must give.
    #[test]
    fn invalid_policies() {
        let cases: &[(&str, &[u8], &str, Option<usize>)] = &[
            ("empty body", b"", "missing_field", None),
            ("only blank lines", b"\n\r\n \n", "missing_field", None),
            ("garbage body", b"<html><body>Not Found</body></html>", "policy_syntax", Some(1)),
            ("JSON body", b"{\"version\": \"STSv1\"}", "policy_syntax", Some(1)),
            (
                "missing version",
                b"mode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "missing_field",
                None,
            ),
            (
                "wrong version",
                b"version: STSv2\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "invalid_version",
                Some(1),
            ),
            (
                "lowercase version value",
                b"version: stsv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "invalid_version",
                Some(1),
            ),
            (
                "missing mode",
                b"version: STSv1\nmx: mx.example.com\nmax_age: 86400\n",
                "missing_field",
                None,
            ),
            (
                "unknown mode",
                b"version: STSv1\nmode: report\nmx: mx.example.com\nmax_age: 86400\n",
                "invalid_mode",
                Some(2),
            ),
            (
                "mode in capitals",
                b"version: STSv1\nmode: ENFORCE\nmx: mx.example.com\nmax_age: 86400\n",
                "invalid_mode",
                Some(2),
            ),
            (
                "missing max_age",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\n",
                "missing_field",
                None,
            ),
            (
                "non-numeric max_age",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: one week\n",
                "invalid_max_age",
                Some(4),
            ),
            (
                "negative max_age",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: -1\n",
                "invalid_max_age",
                Some(4),
            ),
            (
                "max_age 31557601",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 31557601\n",
                "invalid_max_age",
                Some(4),
            ),
            (
                "max_age with 11 digits",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 00000086400\n",
                "invalid_max_age",
                Some(4),
            ),
            (
                "missing mx in enforce",
                b"version: STSv1\nmode: enforce\nmax_age: 86400\n",
                "missing_mx",
                None,
            ),
            (
                "missing mx in testing",
                b"version: STSv1\nmode: testing\nmax_age: 86400\n",
                "missing_mx",
                None,
            ),
            (
                "empty mx value",
                b"version: STSv1\nmode: enforce\nmx:\nmax_age: 86400\n",
                "policy_syntax",
                Some(3),
            ),
            (
                "bad wildcard mx",
                b"version: STSv1\nmode: enforce\nmx: mx.*.example.com\nmax_age: 86400\n",
                "invalid_mx_pattern",
                Some(3),
            ),
            (
                "mx with a port",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com:25\nmax_age: 86400\n",
                "invalid_mx_pattern",
                Some(3),
            ),
            (
                "two mx on one line",
                b"version: STSv1\nmode: enforce\nmx: a.example.com b.example.com\nmax_age: 86400\n",
                "invalid_mx_pattern",
                Some(3),
            ),
            (
                "U-label mx",
                "version: STSv1\nmode: enforce\nmx: mx.bücher.example\nmax_age: 86400\n".as_bytes(),
                "invalid_mx_pattern",
                Some(3),
            ),
            (
                "leading whitespace on a line",
                b"version: STSv1\n mode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "policy_syntax",
                Some(2),
            ),
            (
                "leading whitespace before the body",
                b"  version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "policy_syntax",
                Some(1),
            ),
            (
                "space before the colon",
                b"version: STSv1\nmode : enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "policy_syntax",
                Some(2),
            ),
            (
                "no colon",
                b"version: STSv1\nmode enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "policy_syntax",
                Some(2),
            ),
            (
                "key=value line",
                b"version=STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "policy_syntax",
                Some(1),
            ),
            (
                "comment line",
                b"# policy\nversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "policy_syntax",
                Some(1),
            ),
            (
                "bare CR line ends",
                b"version: STSv1\rmode: enforce\rmx: mx.example.com\rmax_age: 86400\r",
                "policy_syntax",
                Some(1),
            ),
            (
                "tab inside an extension value",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\nfoo: a\tb\n",
                "policy_syntax",
                Some(5),
            ),
            (
                "empty extension value",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\nfoo:\n",
                "policy_syntax",
                Some(5),
            ),
            (
                "extension name too long",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: x\n",
                "policy_syntax",
                Some(5),
            ),
            (
                "extension name starting with an underscore",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n_x: y\n",
                "policy_syntax",
                Some(5),
            ),
            (
                "NUL byte",
                b"version: STSv1\nmode: enforce\0\nmx: mx.example.com\nmax_age: 86400\n",
                "policy_syntax",
                Some(2),
            ),
            (
                "invalid UTF-8",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\nfoo: \xff\n",
                "not_utf8",
                None,
            ),
            (
                "Latin-1 text",
                b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\nfoo: J\xfcrgen\n",
                "not_utf8",
                None,
            ),
            (
                "UTF-16 body",
                b"\xff\xfev\0e\0r\0",
                "not_utf8",
                None,
            ),
            (
                "byte order mark",
                "\u{feff}version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n".as_bytes(),
                "policy_syntax",
                Some(1),
            ),
            (
                "non-ASCII key",
                "version: STSv1\nmöde: enforce\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n".as_bytes(),
                "policy_syntax",
                Some(2),
            ),
        ];
        for (name, body, kind, line) in cases {
            let err = Policy::parse(body).expect_err(name);
            assert_eq!(err.kind(), *kind, "{name}: {err}");
            assert_eq!(err.line(), *line, "{name}: {err}");
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = parse("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 31557601\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy line 4: invalid max_age \"31557601\": greater than 31557600 (RFC 8461 §3.2)"
        );
        let err = Policy::parse(b"version: STSv1\nfoo: \xff").unwrap_err();
        assert_eq!(err, Error::NotUtf8 { offset: 20 });
        let err = parse("version: STSv1\nmode: enforce\nmax_age: 1\n").unwrap_err();
        assert_eq!(
            err,
            Error::MissingMx {
                mode: Mode::Enforce
            }
        );
        assert!(err.to_string().contains("no \"mx\" field"), "{err}");
        let err = parse("version: STSv1\nmode : enforce\n").unwrap_err();
        assert_eq!(
            err,
            Error::PolicySyntax {
                line: 2,
                reason: "no whitespace allowed between the field name and \":\""
            }
        );
    }

    #[test]
    fn new_and_with_extension() {
        let max_age = MaxAge::new(60).unwrap();
        assert_eq!(
            Policy::new(Mode::Testing, max_age, vec![]),
            Err(Error::MissingMx {
                mode: Mode::Testing
            })
        );
        let policy = Policy::new(Mode::None, max_age, vec![]).unwrap();
        assert_eq!(
            policy.to_string(),
            "version: STSv1\nmode: none\nmax_age: 60\n"
        );
        for (name, value) in [
            ("mode", "enforce"),
            ("mx", "a.example"),
            ("", "x"),
            ("_a", "x"),
            ("a:b", "x"),
            ("a", ""),
            ("a", " x"),
            ("a", "x "),
            ("a", "x\ty"),
            ("a", "x\ny"),
        ] {
            let err = policy.clone().with_extension(name, value).unwrap_err();
            assert_eq!(err.kind(), "invalid_extension", "{name:?}: {value:?}");
        }
        let policy = policy.with_extension("Mode", "any thing ✓").unwrap();
        assert_eq!(
            policy.to_string(),
            "version: STSv1\nmode: none\nmax_age: 60\nMode: any thing ✓\n"
        );
        assert_eq!(parse(&policy.to_string()), Ok(policy));
    }

    #[test]
    fn matches_mx_uses_every_pattern() {
        let policy = parse(
            "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 1\n",
        )
        .unwrap();
        assert!(policy.matches_mx("mail.example.com"));
        assert!(policy.matches_mx("MX1.example.NET."));
        assert!(!policy.matches_mx("example.net"));
        assert!(!policy.matches_mx("a.b.example.net"));
        assert!(!policy.matches_mx("other.example.com"));
        let none = parse("version: STSv1\nmode: none\nmax_age: 1\n").unwrap();
        assert!(!none.matches_mx("mail.example.com"));
    }
}
