//! The daemon's modules depend one way (ARCHITECTURE.md): a test reads the sources and checks each module's
//! `crate::` paths against the layer table.

use std::collections::BTreeMap;
use std::path::Path;

/// The modules, bottom layer first: a module may use only modules of lower layers (and `crate::` re-exports of
/// them). The crate root (`lib.rs`: `main()` and the re-exports) sits on top. A new module goes in the lowest
/// layer its uses allow (and in the table of ARCHITECTURE.md).
const LAYERS: &[&[&str]] = &[
    &["config", "systemd", "ratelimit", "pidfile"],
    &["error", "answer", "descriptors"],
    &["exit", "privileges", "postgres"],
    &["listen", "stores", "cli", "control_client"],
    &["metrics", "admin", "logging"],
    &["server", "ask"],
    &["daemon"],
    &["control"],
    &["run", "check"],
];

/// Names the crate root re-exports, and the module that defines each.
const ROOT_EXPORTS: &[(&str, &str)] = &[
    ("AnswerKind", "answer"),
    ("Config", "config"),
    ("ConfigError", "config"),
    ("Diagnostics", "config"),
    ("YamlError", "config"),
    ("Bound", "daemon"),
    ("Running", "daemon"),
    ("StartError", "error"),
    ("LocalAddr", "listen"),
    ("Metrics", "metrics"),
    ("ZoneId", "metrics"),
    ("PidfileError", "pidfile"),
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of LAYERS"))
}

/// The top-level module each `crate::name` in `source` refers to.
fn dependencies(source: &str) -> Vec<String> {
    assert!(
        !source.contains("crate::{"),
        "write one `use crate::module::…` per module, so that the layers can be checked"
    );
    source
        .match_indices("crate::")
        .map(|(i, _)| {
            source[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .map(|name| {
            ROOT_EXPORTS
                .iter()
                .find(|(export, _)| *export == name)
                .map_or(name, |(_, module)| (*module).to_owned())
        })
        .collect()
}

/// Every source file under `dir`, with the top-level module it belongs to.
fn modules(dir: &Path, top: Option<&str>, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("src directory") {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let module = top.unwrap_or(name).to_owned();
        if path.is_dir() {
            modules(&path, Some(&module), out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && !["lib", "main", "layers"].contains(&name)
        {
            let source = std::fs::read_to_string(&path).expect("source file");
            out.entry(module).or_default().push_str(&source);
        }
    }
}

#[test]
fn every_module_uses_only_lower_layers() {
    let mut sources = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        None,
        &mut sources,
    );
    assert!(sources.len() >= 14, "{:?}", sources.keys());
    for (module, source) in &sources {
        let layer = layer_of(module);
        for dependency in dependencies(source) {
            if dependency == *module {
                continue;
            }
            assert!(
                layer_of(&dependency) < layer,
                "`{module}` (layer {layer}) uses `{dependency}` (layer {}): the layers must run one way",
                layer_of(&dependency)
            );
        }
    }
}

#[test]
fn the_check_sees_a_use_of_a_higher_layer() {
    let deps = dependencies("use crate::daemon::Bound;\nfn f() -> crate::StartError { todo!() }");
    assert_eq!(deps, ["daemon", "error"]);
    assert!(layer_of("daemon") > layer_of("config"));
}
