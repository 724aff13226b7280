//! Domain-name syntax shared by MX patterns and policy domains.

/// The longest domain name in text form, without a trailing dot (RFC 1035 §2.3.4).
pub(crate) const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035 §2.3.4).
pub(crate) const MAX_LABEL_LEN: usize = 63;

/// Checks an ASCII domain name without a trailing dot: the `Domain` rule of RFC 5321 §4.1.2
/// (which RFC 8461 §3.2 uses for `mx`), i.e. letter/digit/hyphen labels that neither start nor
/// end with a hyphen, plus the DNS limits of 63 characters per label and 253 in total.
/// A-labels (`xn--…`) are ordinary LDH labels and pass.
pub(crate) fn check_domain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if !name.is_ascii() {
        return Err("non-ASCII character (write internationalized labels as A-labels, xn--…)");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        check_label(label)?;
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    if label.len() > MAX_LABEL_LEN {
        return Err("label longer than 63 characters");
    }
    if label.contains('*') {
        return Err("'*' is only allowed as the whole leftmost label, as in \"*.example.com\"");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("label contains a character other than a letter, digit or hyphen");
    }
    if label.starts_with('-') {
        return Err("label starts with a hyphen");
    }
    if label.ends_with('-') {
        return Err("label ends with a hyphen");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ldh_names_and_a_labels() {
        for ok in [
            "example.com",
            "a",
            "mx1.example.com",
            "xn--mnchen-3ya.de",
            "1.example",
            "a-b.c",
            &format!("{}.com", "a".repeat(63)),
        ] {
            assert_eq!(check_domain(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names_with_reason() {
        let long = ["a".repeat(63).as_str(); 4].join(".") + ".ab";
        for (bad, reason) in [
            ("", "empty name"),
            ("example..com", "empty label"),
            (".example.com", "empty label"),
            ("example.com.", "empty label"),
            ("-a.example.com", "label starts with a hyphen"),
            ("a-.example.com", "label ends with a hyphen"),
            (
                "a_b.example.com",
                "label contains a character other than a letter, digit or hyphen",
            ),
            (
                "a b.example.com",
                "label contains a character other than a letter, digit or hyphen",
            ),
            (
                "münchen.de",
                "non-ASCII character (write internationalized labels as A-labels, xn--…)",
            ),
            (
                &format!("{}.com", "a".repeat(64)),
                "label longer than 63 characters",
            ),
            (&long, "longer than 253 characters"),
            (
                "a.*.com",
                "'*' is only allowed as the whole leftmost label, as in \"*.example.com\"",
            ),
        ] {
            assert_eq!(check_domain(bad), Err(reason), "{bad:?}");
        }
    }
}
