//! The control socket through the built binary with the internal cache: `query` answers what a socketmap lookup
//! does and why, `cache show|list|purge` reach the daemon's memory, an unreachable daemon is exit status 69, and
//! the socket is bounded like any other input.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use crate::binary::{spawn_daemon, spawn_logging};
use crate::support::*;

/// `mta-sts-daemon -c CONFIG query ARGS…`.
async fn query_cmd(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["-c", config.to_str().expect("UTF-8 path"), "query"];
    all.extend_from_slice(args);
    run_bin(all).await
}

/// `query DOMAIN --json`: the exit status and the parsed object.
async fn query_json(config: &Path, domain: &str) -> (Option<i32>, Value) {
    let out = query_cmd(config, &[domain, "--json"]).await;
    let value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("query {domain}: {e}: {} {}", out.stdout, out.stderr));
    (out.code, value)
}

fn control_socket(config: &Path) -> std::path::PathBuf {
    config.with_file_name("control.sock")
}

#[tokio::test]
async fn query_show_list_and_purge_reach_the_daemon_with_the_internal_cache() {
    let fixture = enforcing("ctl.test").await;
    let daemon = spawn_daemon(&fixture, "", &[]).await;
    let config = daemon.config.clone();
    let fetches = || fixture.https().request_count("mta-sts.ctl.test");

    let socket = control_socket(&config);
    let mode = std::fs::metadata(&socket)
        .expect("control socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");

    // The first query discovers, like a lookup would; the second answers from memory.
    let (code, first) = query_json(&config, "ctl.test").await;
    assert_eq!(code, Some(0), "{first}");
    assert_eq!(first["reply"], ENFORCE_REPLY);
    assert_eq!(first["source"], "discovered");
    assert_eq!(first["kind"], "secure");
    assert_eq!(first["domain"], "ctl.test");
    assert_eq!(first["zone"], "postfix");
    assert_eq!(first["status"], "policy", "mta-sts-query's field");
    assert_eq!(first["id"], "id1", "mta-sts-query's field");
    assert_eq!(first["policy"]["mode"], "enforce", "mta-sts-query's field");
    assert!(first["cached"]["fetched_at"].is_u64(), "{first}");
    assert!(first["cached"]["expires_at"].as_u64() > first["cached"]["fetched_at"].as_u64());
    assert_eq!(fetches(), 1);
    let (code, second) = query_json(&config, "CTL.test.").await;
    assert_eq!(code, Some(0));
    assert_eq!(second["source"], "memory");
    assert_eq!(second["domain"], "ctl.test");
    // The socketmap server answers the same from the memory the query filled.
    let mut client = daemon.client().await;
    assert_eq!(ask(&mut client, "postfix", "ctl.test").await, ENFORCE_REPLY);
    assert_eq!(fetches(), 1, "the query's discovery is the lookup's");

    let out = query_cmd(&config, &["ctl.test"]).await;
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout.contains("source:       memory"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("reply:        {ENFORCE_REPLY}")),
        "{}",
        out.stdout
    );

    // No policy, and a key that is not a domain: NOTFOUND, exit 1.
    let (code, none) = query_json(&config, "nopolicy.test").await;
    assert_eq!(code, Some(1), "{none}");
    assert_eq!(none["reply"], "NOTFOUND ");
    assert_eq!(none["status"], "no_policy");
    let (code, ip) = query_json(&config, "[192.0.2.1]:25").await;
    assert_eq!(code, Some(1), "{ip}");
    assert!(ip["skipped"].is_string(), "{ip}");

    // The internal cache is seen through the daemon.
    let out = cache(&config, &["show", "ctl.test"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("domain:     ctl.test") && out.stdout.contains("policy id:  id1"),
        "{}",
        out.stdout
    );
    let out = cache(&config, &["list"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("ctl.test\tid1\tenforce")),
        "{}",
        out.stdout
    );
    let out = cache(&config, &["export"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("\"domain\":\"ctl.test\""),
        "{}",
        out.stdout
    );

    // A purge empties the daemon's memory at once: the next lookup discovers again.
    let out = cache(&config, &["purge", "ctl.test"]).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "purged ctl.test\n"),
        "{}",
        out.stderr
    );
    let out = cache(&config, &["show", "ctl.test"]).await;
    assert_eq!(out.code, Some(1), "not cached any more: {}", out.stdout);
    assert_eq!(ask(&mut client, "postfix", "ctl.test").await, ENFORCE_REPLY);
    assert_eq!(fetches(), 2);
    let out = cache(&config, &["purge", "--all"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "purged 1 cached policy\n");
    let (_, after) = query_json(&config, "ctl.test").await;
    assert_eq!(after["source"], "discovered");
    assert_eq!(fetches(), 3);
    drop(client);
    daemon.stop().await;
    assert!(!socket.exists(), "the control socket is removed at stop");
}

/// No daemon: `query` exits 69 whether the socket is absent or refuses; the `cache` commands then work on the
/// store directly (none with the internal cache: 69 too, saying so).
#[tokio::test]
async fn an_unreachable_daemon_is_exit_status_69() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let config = write_config(
        dir.path(),
        &format!("control:\n  socket: \"{}\"\n", socket.display()),
    );
    let absent = query_cmd(&config, &["example.com"]).await;
    assert_eq!(absent.code, Some(69), "{}", absent.stderr);
    assert!(
        absent.stderr.contains("cannot reach the running daemon")
            && absent.stderr.contains("control.sock"),
        "{}",
        absent.stderr
    );
    // A socket file nobody listens on any more: connect is refused.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists());
    let refused = query_cmd(&config, &["example.com", "--json"]).await;
    assert_eq!(refused.code, Some(69), "{}", refused.stderr);
    assert_eq!(refused.stdout, "");
    let list = cache(&config, &["list"]).await;
    assert_eq!(list.code, Some(69), "{}", list.stderr);
    assert!(
        list.stderr
            .contains("cache.type is internal and no daemon runs"),
        "{}",
        list.stderr
    );
}

/// One request on a raw connection: the response's JSON.
async fn exchange(stream: &mut UnixStream, request: &[u8]) -> Value {
    stream.write_all(request).await.expect("write");
    let mut head = Vec::new();
    loop {
        let byte = stream.read_u8().await.expect("read the length");
        if byte == b':' {
            break;
        }
        head.push(byte);
    }
    let len: usize = String::from_utf8(head)
        .expect("digits")
        .parse()
        .expect("length");
    let mut body = vec![0; len + 1];
    stream.read_exact(&mut body).await.expect("read the body");
    assert_eq!(body.pop(), Some(b','));
    serde_json::from_slice(&body).expect("JSON")
}

/// The control socket is an input like any other: a request that is not JSON gets an error and the connection
/// stays usable; one over the size limit gets an error and the connection is closed; the daemon answers on.
/// A directory that cannot be created costs only the control socket, with a warning.
#[tokio::test]
async fn bad_requests_are_refused_and_a_missing_directory_only_warns() {
    let fixture = enforcing("raw.test").await;
    let daemon = spawn_daemon(&fixture, "", &[]).await;
    let socket = control_socket(&daemon.config);
    let mut stream = UnixStream::connect(&socket).await.expect("connect");
    let response = exchange(&mut stream, b"5:hello,").await;
    assert_eq!(response["error"]["kind"], "request", "{response}");
    let response = exchange(&mut stream, br#"14:{"op":"clear"},"#).await;
    assert_eq!(
        response["ok"], 0,
        "the same connection answers on: {response}"
    );
    let oversized = format!("5000:{},", "x".repeat(5000));
    let response = exchange(&mut stream, oversized.as_bytes()).await;
    assert_eq!(response["error"]["kind"], "request", "{response}");
    let mut rest = Vec::new();
    let n = stream.read_to_end(&mut rest).await.expect("read");
    assert_eq!(n, 0, "the connection is closed after an oversized request");
    let (code, answer) = query_json(&daemon.config, "raw.test").await;
    assert_eq!(
        (code, answer["reply"].as_str()),
        (Some(0), Some(ENFORCE_REPLY))
    );
    daemon.stop().await;

    let (daemon, log) = spawn_logging(
        &fixture,
        "control:\n  socket: /proc/mtasts-no-such-dir/control.sock\n",
        &[],
    )
    .await;
    let mut client = daemon.client().await;
    assert_eq!(ask(&mut client, "postfix", "raw.test").await, ENFORCE_REPLY);
    assert_eq!(
        log.count("control socket unavailable; running without it"),
        1,
        "{}",
        log.read()
    );
    let out = query_cmd(&daemon.config, &["raw.test"]).await;
    assert_eq!(out.code, Some(69), "{}", out.stderr);
    drop(client);
    daemon.stop().await;
}

/// A query in a `dane: true` zone shows the DANE view and gives the DANE answer, and it is counted in the
/// metrics like a socketmap lookup (`mtasts_answers_total`).
#[tokio::test]
async fn a_query_shows_the_dane_view_and_counts_like_a_lookup() {
    let fixture = mtasts_test_support::Fixture::start().await;
    fixture.dns().set_secure_by_default(true);
    fixture.publish("danectl.test", "id1", ENFORCE);
    fixture.dns().set_mx("danectl.test", 10, "mx.danectl.test");
    fixture
        .dns()
        .set_a("mx.danectl.test", std::net::Ipv4Addr::LOCALHOST);
    fixture
        .dns()
        .set_tlsa("_25._tcp.mx.danectl.test", 3, 1, 1, &[0x5a; 32]);
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = dir.path().join("metrics.sock");
    let extra = format!(
        "zones:\n  dane:\n    dane: true\nmetrics:\n  listen: \"unix:{}\"\n",
        metrics.display()
    );
    let daemon = spawn_daemon(&fixture, &extra, &[]).await;
    let out = query_cmd(
        &daemon.config,
        &["danectl.test", "--zone", "dane", "--json"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let answer: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(answer["reply"], "OK dane-only", "{answer}");
    assert_eq!(answer["kind"], "dane_only");
    assert_eq!(answer["dane"]["answer"], "dane_only");
    assert_eq!(answer["dane"]["reply"], "OK dane-only");
    assert_eq!(answer["dane"]["source"], "discovered");
    assert_eq!(
        answer["status"], "policy",
        "the MTA-STS policy is shown too"
    );
    let text = query_cmd(&daemon.config, &["danectl.test", "--zone", "dane"]).await;
    assert!(
        text.stdout
            .contains("dane:         dane_only (reply OK dane-only, from memory)"),
        "{}",
        text.stdout
    );

    let mut stream = UnixStream::connect(&metrics).await.expect("metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("read");
    let series = "mtasts_answers_total{zone=\"dane\",kind=\"dane_only\"} 2";
    assert!(body.lines().any(|l| l == series), "{series} in\n{body}");
    daemon.stop().await;
}

/// Only an absent or refusing socket sends the `cache` commands to the store: one they may not open (EACCES, a
/// user outside the daemon's group) is reported, exit 69. Needs root (to run the command as `nobody`).
#[tokio::test]
async fn a_socket_the_user_may_not_open_is_reported_not_bypassed() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: a_socket_the_user_may_not_open_is_reported_not_bypassed needs root");
        return;
    }
    let Some(setpriv) = mtasts_test_support::tool_or_skip(
        "a_socket_the_user_may_not_open_is_reported_not_bypassed",
        "setpriv",
        "util-linux",
    ) else {
        return;
    };
    let fixture = enforcing("perm.test").await;
    let daemon = spawn_daemon(&fixture, "", &[]).await;
    let config = daemon.config.to_str().expect("UTF-8 path");
    for args in [&["cache", "list"][..], &["query", "perm.test"]] {
        let out = tokio::process::Command::new(&setpriv)
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
                "-c",
                config,
            ])
            .args(args)
            .output()
            .await
            .expect("run as nobody");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(69), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach the running daemon")
                && stderr.contains("ermission denied"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("cache.type is internal"),
            "no fallback to the store: {stderr}"
        );
    }
    daemon.stop().await;
}

/// A second daemon that cannot start (its port is taken) leaves the running daemon's control socket alone.
#[tokio::test]
async fn a_daemon_that_fails_to_start_keeps_the_running_ones_control_socket() {
    let fixture = enforcing("second.test").await;
    let daemon = spawn_daemon(&fixture, "", &[]).await;
    let socket = control_socket(&daemon.config);
    let dir = tempfile::tempdir().expect("tempdir");
    let second = write_config(
        dir.path(),
        &format!(
            "host: 127.0.0.1\nport: {}\nreuse_port: false\ncontrol:\n  socket: \"{}\"\n",
            daemon.port,
            socket.display()
        ),
    );
    let out = run_bin(["-c", second.to_str().expect("UTF-8 path")]).await;
    assert_eq!(out.code, Some(1), "the port is taken: {}", out.stderr);
    assert!(out.stderr.contains("cannot listen"), "{}", out.stderr);
    let (code, answer) = query_json(&daemon.config, "second.test").await;
    assert_eq!(code, Some(0), "the first daemon still answers: {answer}");
    daemon.stop().await;
}
