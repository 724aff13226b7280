//! Private nom parsers for the two wire formats of RFC 8461: the `_mta-sts` TXT record (§3.1)
//! and the policy file (§3.2). The public face is `FromStr` on the types; these functions only
//! split text into fields, following the ABNF, and say where and why text breaks it.

use nom::bytes::complete::{tag, take_while, take_while_m_n, take_while1};
use nom::character::complete::{char, satisfy, space0};
use nom::combinator::recognize;
use nom::{IResult, Parser};

use crate::Error;
use crate::leniency::{Leniencies, Leniency};

/// `WSP` of RFC 5234: space or horizontal tab.
fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The characters after the first one in `sts-ext-name` / `sts-policy-ext-name`.
fn is_ext_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// `sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")` (§3.1), identical to
/// `sts-policy-ext-name` (§3.2).
fn ext_name(input: &str) -> IResult<&str, &str> {
    recognize((
        satisfy(|c| c.is_ascii_alphanumeric()),
        take_while_m_n(0, 31, is_ext_name_char),
    ))
    .parse(input)
}

// ---------------------------------------------------------------------------------------------
// TXT record, RFC 8461 §3.1:
//
//   sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//   sts-field       = sts-id / sts-extension
//   sts-field-delim = *WSP ";" *WSP
//   sts-version     = %s"v=STSv1"
//   sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
//   sts-extension   = sts-ext-name "=" sts-ext-value
//   sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)
// ---------------------------------------------------------------------------------------------

/// `sts-version`, case-sensitive.
fn sts_version(input: &str) -> IResult<&str, &str> {
    tag("v=STSv1").parse(input)
}

/// `sts-field-delim = *WSP ";" *WSP`.
fn sts_field_delim(input: &str) -> IResult<&str, char> {
    (space0, char(';'), space0)
        .map(|(_, semicolon, _)| semicolon)
        .parse(input)
}

/// `sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)`: visible ASCII except `=` and `;`.
fn sts_ext_value(input: &str) -> IResult<&str, &str> {
    take_while1(|c| matches!(c, '\x21'..='\x7e') && c != '=' && c != ';').parse(input)
}

/// The `=` between an extension's name and value.
fn equals_sign(input: &str) -> IResult<&str, char> {
    char('=').parse(input)
}

/// Whether a TXT record begins with the version field followed by its delimiter, the test of
/// RFC 8461 §3.1 record selection ("records that do not begin with `v=STSv1;` are discarded").
///
/// The delimiter is `sts-field-delim` as published, so `v=STSv1 ;` counts too (erratum 6285
/// points out the mismatch between that prose and the ABNF; we follow the ABNF, which the
/// record must satisfy anyway). `v=STSv12;` and a bare `v=STSv1` do not count.
pub(crate) fn starts_with_version(record: &str) -> bool {
    (sts_version, sts_field_delim).parse(record).is_ok()
}

/// Splits one TXT record into its `name=value` fields (after the version), checking the ABNF.
///
/// Two unambiguous deviations are accepted and noted in `leniencies` (see [`Leniency`]): spaces
/// or tabs at the very end after the last field, and empty fields between separators
/// (`;;`, `; ;`). Nothing else that breaks the ABNF is.
pub(crate) fn txt_fields<'a>(
    text: &'a str,
    leniencies: &mut Leniencies,
) -> Result<Vec<(&'a str, &'a str)>, Error> {
    let at = |rest: &str, reason| Error::TxtSyntax {
        offset: text.len() - rest.len(),
        reason,
    };
    let Ok((mut rest, _)) = sts_version(text) else {
        return Err(at(text, "the record must begin with \"v=STSv1\""));
    };
    let mut fields = Vec::new();
    loop {
        if rest.is_empty() {
            if fields.is_empty() {
                return Err(at(rest, "expected \";\" and a field after \"v=STSv1\""));
            }
            return Ok(fields);
        }
        // Leniency: whitespace after the last field, without the optional final delimiter.
        if !fields.is_empty() && rest.chars().all(is_wsp) {
            leniencies.add(Leniency::TxtTrailingWhitespace);
            return Ok(fields);
        }
        let Ok((after_delim, _)) = sts_field_delim(rest) else {
            return Err(at(
                rest,
                "expected \";\" (spaces or tabs around it allowed) between fields",
            ));
        };
        rest = after_delim;
        // Leniency: empty fields, i.e. more delimiters right after this one.
        while let Ok((after_empty, _)) = sts_field_delim(rest) {
            leniencies.add(Leniency::TxtEmptyField);
            rest = after_empty;
        }
        // A trailing delimiter is allowed: `[sts-field-delim]`.
        if rest.is_empty() && !fields.is_empty() {
            return Ok(fields);
        }
        let Ok((after_name, name)) = ext_name(rest) else {
            return Err(at(
                rest,
                "expected a field name (a letter or digit, then letters, digits, '_', '-' or '.')",
            ));
        };
        if after_name.starts_with(is_ext_name_char) {
            return Err(at(rest, "field name longer than 32 characters"));
        }
        let Ok((after_eq, _)) = equals_sign(after_name) else {
            return Err(at(after_name, "expected \"=\" after the field name"));
        };
        let Ok((after_value, value)) = sts_ext_value(after_eq) else {
            return Err(at(
                after_eq,
                "expected a field value (visible ASCII characters except '=' and ';')",
            ));
        };
        fields.push((name, value));
        rest = after_value;
    }
}

// ---------------------------------------------------------------------------------------------
// Policy file, RFC 8461 §3.2:
//
//   sts-policy-record      = sts-policy-field *WSP
//                            *(sts-policy-term sts-policy-field *WSP)
//                            [sts-policy-term]
//   sts-policy-field-delim = ":" *WSP
//   sts-policy-term        = LF / CRLF
//   sts-policy-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//   sts-policy-ext-value   = sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]
//   sts-policy-vchar       = %x21-7E / UTF8-2 / UTF8-3 / UTF8-4
//
// Every field, standard or not, has the shape `name ":" *WSP value`; the standard fields'
// values are checked by their types (`Mode`, `MaxAge`, `MxPattern`, version).
// ---------------------------------------------------------------------------------------------

/// One `key: value` line of a policy file; `value` has no surrounding whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PolicyField<'a> {
    /// 1-based line number.
    pub(crate) line: usize,
    pub(crate) key: &'a str,
    pub(crate) value: &'a str,
}

/// `sts-policy-field-delim = ":" *WSP`.
fn policy_field_delim(input: &str) -> IResult<&str, &str> {
    recognize((char(':'), space0)).parse(input)
}

/// `sts-policy-vchar`: visible ASCII or any non-ASCII character (the text is UTF-8 already).
fn is_policy_vchar(c: char) -> bool {
    matches!(c, '\x21'..='\x7e') || !c.is_ascii()
}

/// Whether `value` is an `sts-policy-ext-value`: non-empty, policy vchars and inner spaces only.
fn is_policy_ext_value(value: &str) -> bool {
    let inner: IResult<&str, &str> = take_while(|c| c == ' ' || is_policy_vchar(c)).parse(value);
    !value.is_empty()
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && inner.is_ok_and(|(rest, _)| rest.is_empty())
}

/// Checks an extension field given through the API (not parsed from a file).
pub(crate) fn check_policy_extension(name: &str, value: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidExtension {
        name: name.to_owned(),
        reason,
    };
    if !matches!(ext_name(name), Ok(("", _))) {
        return Err(invalid(
            "the name must be a letter or digit followed by up to 31 letters, digits, '_', '-' or '.' (RFC 8461 §3.2)",
        ));
    }
    if matches!(name, "version" | "mode" | "max_age" | "mx") {
        return Err(invalid("the name is a standard policy field"));
    }
    if !is_policy_ext_value(value) {
        return Err(invalid(
            "the value must be visible characters with single spaces inside, no tabs or line breaks (RFC 8461 §3.2)",
        ));
    }
    Ok(())
}

/// Parses one line (without its terminator) into key and value.
fn policy_line(line_no: usize, line: &str) -> Result<PolicyField<'_>, Error> {
    let syntax = |reason| Error::PolicySyntax {
        line: line_no,
        reason,
    };
    let Ok((after_name, key)) = ext_name(line) else {
        return Err(syntax(if line.starts_with(is_wsp) {
            "a line must not start with whitespace"
        } else {
            "expected a field name (a letter or digit, then letters, digits, '_', '-' or '.')"
        }));
    };
    if after_name.starts_with(is_ext_name_char) {
        return Err(syntax("field name longer than 32 characters"));
    }
    let Ok((raw_value, _)) = policy_field_delim(after_name) else {
        return Err(syntax(
            if after_name.trim_start_matches(is_wsp).starts_with(':') {
                "no whitespace allowed between the field name and \":\""
            } else {
                "expected \":\" after the field name"
            },
        ));
    };
    // `*WSP` after the field: trailing spaces and tabs are allowed.
    let value = raw_value.trim_end_matches(is_wsp);
    if value.is_empty() {
        return Err(syntax("empty field value"));
    }
    if !is_policy_ext_value(value) {
        return Err(syntax(
            "the value contains a control character or a tab (only visible characters and spaces are allowed)",
        ));
    }
    Ok(PolicyField {
        line: line_no,
        key,
        value,
    })
}

/// Splits a policy file into fields, checking the line-level ABNF.
///
/// Lines end in LF or CRLF (`sts-policy-term`; a bare CR is an error, it is not a terminator),
/// the last one optionally. One deliberate leniency ([`Leniency::PolicyEmptyLine`], noted in
/// `leniencies`): empty lines (or lines of only spaces and tabs), which the ABNF has no room
/// for, are skipped — they carry no field, deployed policies end in blank lines, and the Python
/// daemon accepts them. Everything else follows the ABNF.
pub(crate) fn policy_fields<'a>(
    text: &'a str,
    leniencies: &mut Leniencies,
) -> impl Iterator<Item = Result<PolicyField<'a>, Error>> + use<'a> {
    // `split_terminator`: the terminator of the last line does not start an (empty) line.
    let lines: Vec<(usize, &str)> = text
        .split_terminator('\n')
        .map(|raw| raw.strip_suffix('\r').unwrap_or(raw))
        .enumerate()
        .collect();
    if lines.iter().any(|(_, line)| line.chars().all(is_wsp)) {
        leniencies.add(Leniency::PolicyEmptyLine);
    }
    lines
        .into_iter()
        .filter(|(_, line)| !line.chars().all(is_wsp))
        .map(|(index, line)| policy_line(index + 1, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_name_bounds() {
        assert_eq!(ext_name("a"), Ok(("", "a")));
        assert_eq!(ext_name("a_b-c.d="), Ok(("=", "a_b-c.d")));
        let long = "a".repeat(33);
        assert_eq!(ext_name(&long), Ok(("a", &long[..32])));
        assert!(ext_name("_a").is_err());
        assert!(ext_name("").is_err());
        assert!(ext_name("é").is_err());
    }

    #[test]
    fn version_prefix_detection() {
        for (record, expected) in [
            ("v=STSv1;", true),
            ("v=STSv1; id=1", true),
            ("v=STSv1 ;id=1", true),
            ("v=STSv1\t; id=1", true),
            ("v=STSv1", false),
            ("v=STSv1 id=1", false),
            ("v=STSv12; id=1", false),
            ("v=STSv1.0; id=1", false),
            (" v=STSv1; id=1", false),
            ("V=STSv1; id=1", false),
            ("v=stsv1; id=1", false),
            ("v=spf1 -all", false),
            ("", false),
        ] {
            assert_eq!(starts_with_version(record), expected, "{record:?}");
        }
    }

    #[test]
    fn policy_line_shapes() {
        assert_eq!(
            policy_line(1, "mode:enforce").map(|f| (f.key, f.value)),
            Ok(("mode", "enforce"))
        );
        assert_eq!(
            policy_line(1, "mode: \t enforce \t").map(|f| (f.key, f.value)),
            Ok(("mode", "enforce"))
        );
        assert_eq!(
            policy_line(1, "note: a b  c").map(|f| (f.key, f.value)),
            Ok(("note", "a b  c"))
        );
        assert_eq!(
            policy_line(1, "note: grüße").map(|f| (f.key, f.value)),
            Ok(("note", "grüße"))
        );
        for (line, reason) in [
            (" mode: enforce", "a line must not start with whitespace"),
            (
                "mode : enforce",
                "no whitespace allowed between the field name and \":\"",
            ),
            ("mode enforce", "expected \":\" after the field name"),
            ("mode=enforce", "expected \":\" after the field name"),
            (
                "# comment",
                "expected a field name (a letter or digit, then letters, digits, '_', '-' or '.')",
            ),
            (
                ": enforce",
                "expected a field name (a letter or digit, then letters, digits, '_', '-' or '.')",
            ),
            ("mode:", "empty field value"),
            ("mode:  ", "empty field value"),
            (
                "note: a\tb",
                "the value contains a control character or a tab (only visible characters and spaces are allowed)",
            ),
            (
                "note: a\rb",
                "the value contains a control character or a tab (only visible characters and spaces are allowed)",
            ),
        ] {
            assert_eq!(
                policy_line(7, line),
                Err(Error::PolicySyntax { line: 7, reason }),
                "{line:?}"
            );
        }
        let long_key = format!("{}: x", "k".repeat(33));
        assert_eq!(
            policy_line(2, &long_key),
            Err(Error::PolicySyntax {
                line: 2,
                reason: "field name longer than 32 characters"
            })
        );
    }
}
