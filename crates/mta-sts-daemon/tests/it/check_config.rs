//! `mta-sts-daemon --check-config` / `-t` through the built binary: the verdict, the warnings, the cause of a
//! refusal, and that nothing is bound or created.

use std::net::TcpListener;

use crate::support::*;

/// Runs `mta-sts-daemon -c FILE ARGS…` on `text`, written in a directory of its own (returned, to look into).
async fn check(text: &str, args: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), text);
    let mut all = vec!["-c", config.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    (run_bin(all).await, dir)
}

/// A valid configuration passes with its warnings printed, while another socket holds its port (check-config
/// binds nothing: binding would fail with EADDRINUSE), and no socket file or SQLite file is created.
#[tokio::test]
async fn a_valid_config_passes_with_its_warnings_and_binds_nothing() {
    let fixture = standard_fixture().await;
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let text = format!(
        "host: 127.0.0.1\nport: {port}\nreuse_port: false\nhots: 1\n{}\
         cache:\n  type: sqlite\n  options:\n    filename: /nonexistent-dir/cache.db\n",
        resolver_yaml(&fixture)
    );
    for flag in ["--check-config", "-t"] {
        let (out, _dir) = check(&text, &[flag]).await;
        assert_eq!(out.code, Some(0), "{flag}: {}", out.stderr);
        assert!(
            out.stdout.contains("configuration OK (2 warnings)"),
            "{flag}: {}",
            out.stdout
        );
        assert!(
            out.stderr
                .contains("warning: unknown configuration key `hots` ignored"),
            "{flag}: {}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("directory /nonexistent-dir: No such file or directory (os error 2)"),
            "{flag}: the SQLite directory's path and errno: {}",
            out.stderr
        );
    }
    // The port is still ours alone: nothing else listened on it meanwhile.
    assert_eq!(held.local_addr().expect("addr").port(), port);

    let (dir, sock) = socket_path("check.sock");
    let text = format!(
        "path: {}\nmode: 0660\n{}cache:\n  type: sqlite\n  options:\n    filename: {}\n",
        sock.display(),
        resolver_yaml(&fixture),
        dir.path().join("cache.db").display()
    );
    let (out, _config_dir) = check(&text, &["-t"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("configuration OK (0 warnings)"),
        "{}",
        out.stdout
    );
    assert!(!sock.exists(), "check-config created the UNIX socket");
    assert!(
        !dir.path().join("cache.db").exists(),
        "check-config created the SQLite file"
    );
}

/// Each refusal exits 78 and names its cause; what the reader accepts but the start would refuse (the CA file,
/// the proxy URL, the store options, the user) is refused too.
#[tokio::test]
async fn an_invalid_config_exits_78_with_the_cause() {
    let cases = [
        ("cache_grace: soon\n", "`cache_grace` (line 1)", &[][..]),
        (
            "resolver:\n  extra_ca_file: /nonexistent/ca.pem\n",
            "/nonexistent/ca.pem",
            &[],
        ),
        ("resolver:\n  proxy: \"http://[::1\"\n", "proxy", &[]),
        (
            "cache:\n  type: redis\n  options:\n    url: \"redis://:secret@[::1\"\n",
            "cannot open the redis cache",
            &[],
        ),
        (
            "cache:\n  type: postgres\n  options:\n    dsn: \"postgres://me:secret@[::1/x\"\n",
            "cannot open the postgres cache",
            &[],
        ),
        ("", "no-such-user-mtasts", &["-u", "no-such-user-mtasts"]),
    ];
    for (text, cause, args) in cases {
        let mut all = vec!["--check-config"];
        all.extend_from_slice(args);
        let (out, _dir) = check(text, &all).await;
        assert_eq!(out.code, Some(78), "{text:?}: {}", out.stderr);
        assert!(out.stderr.contains(cause), "{text:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("secret"),
            "a password in the output: {}",
            out.stderr
        );
        assert_eq!(out.stdout, "", "{text:?}");
    }
    let out = run_bin(["-t", "-c", "/nonexistent/missing.yml"]).await;
    assert_eq!(out.code, Some(78), "{}", out.stderr);
    assert!(out.stderr.contains("missing.yml"), "{}", out.stderr);
}
