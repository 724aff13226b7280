//! Integration tests of mtasts-core's public API: serde compatibility with the Python
//! `postfix-mta-sts-resolver` cache format, and property tests.

mod properties;
mod serde_shape;

/// Reads a fixture from `tests/data`.
fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
