//! The repository's one rule for "is this CI?", and the skip-or-fail rule built on it.
//!
//! Any non-empty `CI` other than `false` or `0` means CI (`CI=true`, `CI=1`, `CI=yes`, …). Under CI a test
//! whose service or tool is missing fails and says what to start; elsewhere it is skipped with a printed
//! reason.
//!
//! This file depends on `std` only: `xtask` (which must not pull in the fixtures) includes this very file
//! with `#[path]`, so the rule has a single definition.

use std::ffi::OsStr;

/// Whether this process runs under CI: `CI` is set, non-empty, and neither `false` nor `0`.
///
/// ```
/// // The rule is read from the environment each time it is asked.
/// let _ = mtasts_test_support::is_ci();
/// ```
#[must_use]
pub fn is_ci() -> bool {
    ci_value_means_ci(std::env::var_os("CI").as_deref())
}

/// The rule itself, on the value of `CI` (`None` when unset).
fn ci_value_means_ci(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A test's prerequisite is missing: under CI ([`is_ci`]) this panics with `missing` and `fix` (what to
/// start or install); elsewhere it prints why the test is skipped, and the caller returns.
///
/// ```
/// # if !mtasts_test_support::is_ci() {
/// if std::env::var_os("MTASTS_EXAMPLE_SERVICE").is_none() {
///     mtasts_test_support::skip_or_fail(
///         "the example service is not configured",
///         "set MTASTS_EXAMPLE_SERVICE",
///     );
/// }
/// # }
/// ```
///
/// # Panics
///
/// Under CI, always: that is the point.
pub fn skip_or_fail(missing: &str, fix: &str) {
    assert!(!is_ci(), "{missing}; required under CI: {fix}");
    eprintln!("skipped: {missing} ({fix})");
}

#[cfg(test)]
mod tests {
    use super::ci_value_means_ci;
    use std::ffi::OsStr;

    #[test]
    fn ci_means_any_non_empty_value_but_false_and_0() {
        for (value, ci) in [
            (None, false),
            (Some(""), false),
            (Some("false"), false),
            (Some("0"), false),
            (Some("true"), true),
            (Some("1"), true),
            (Some("yes"), true),
            (Some("TRUE"), true),
            (Some("woodpecker"), true),
        ] {
            assert_eq!(ci_value_means_ci(value.map(OsStr::new)), ci, "CI={value:?}");
        }
    }
}
