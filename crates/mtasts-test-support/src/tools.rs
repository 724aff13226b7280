//! External programs the tests drive (Postfix's `postmap`, systemd's `systemd-socket-activate`).

use std::path::PathBuf;

use crate::skip_or_fail;

/// The program `name`, looked up in `PATH` and then in `/usr/sbin`, `/sbin` and `/usr/bin` (Postfix installs
/// `postmap` in `/usr/sbin`, which an ordinary user's `PATH` often lacks). When it is not found, this applies
/// [`skip_or_fail`] for `test`, naming the Debian package that provides it, and returns `None`.
///
/// ```
/// # if !mtasts_test_support::is_ci() {
/// if let Some(postmap) = mtasts_test_support::tool_or_skip("example_test", "postmap", "postfix") {
///     assert!(postmap.is_file());
/// }
/// # }
/// ```
#[must_use]
pub fn tool_or_skip(test: &str, name: &str, package: &str) -> Option<PathBuf> {
    let found = find_program(name);
    if found.is_none() {
        skip_or_fail(
            &format!("{test}: {name} is not installed"),
            &format!("apt-get install {package}"),
        );
    }
    found
}

/// The program `name` in `PATH`, `/usr/sbin`, `/sbin` or `/usr/bin`.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}
