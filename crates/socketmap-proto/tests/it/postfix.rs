//! Wire compatibility with real Postfix: `postmap -q KEY socketmap:...` (Postfix's own socketmap client,
//! `dict_sockmap.c`) against a `ServerCodec` server, over TCP and a UNIX socket.
//!
//! Needs Postfix's `postmap` (Debian: `apt-get install postfix`; the mail system is never started). Without
//! it the tests are skipped with a message, or fail under CI (`mtasts_test_support::tool_or_skip`).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use futures_util::{SinkExt, StreamExt};
use socketmap_proto::{Reply, ServerCodec};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    process::Command,
};
use tokio_util::codec::Framed;

/// The request payloads a server received, as raw bytes.
type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// Answers by key: `ok.test` → `OK result for <name>`, `temp.test`/`timeout.test`/`perm.test` → that
/// error, `big.test` → `OK` with the largest payload Postfix accepts, anything else `NOTFOUND `.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, seen: Seen) {
    let mut framed = Framed::new(stream, ServerCodec::new());
    while let Some(Ok(request)) = framed.next().await {
        if let Ok(mut seen) = seen.lock() {
            seen.push(request.as_bytes().to_vec());
        }
        let name = String::from_utf8_lossy(request.raw_name()).into_owned();
        let reply = match request.key() {
            Ok("ok.test") => Reply::ok(format!("result for {name}")),
            Ok("temp.test") => Reply::temp("dns down"),
            Ok("timeout.test") => Reply::timeout("too slow"),
            Ok("perm.test") => Reply::perm("misconfigured"),
            // 100 000 bytes of netstring payload: "OK " + 99 997.
            Ok("big.test") => Reply::ok(vec![b'x'; 99_997]),
            _ => Reply::NotFound,
        };
        if framed.send(reply).await.is_err() {
            return;
        }
    }
}

/// `postmap`, or `None` (after failing under CI) with the skip reason printed.
fn postmap_or_skip(test: &str) -> Option<PathBuf> {
    mtasts_test_support::tool_or_skip(test, "postmap", "postfix")
}

/// Exit code, stdout and stderr of `postmap -c <config_dir> -q <key> <map>`.
async fn postmap_query(
    postmap: &Path,
    config_dir: &Path,
    key: &str,
    map: &str,
) -> (Option<i32>, String, String) {
    match Command::new(postmap)
        .arg("-c")
        .arg(config_dir)
        .arg("-q")
        .arg(key)
        .arg(map)
        .output()
        .await
    {
        Ok(out) => (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(err) => (None, String::new(), format!("cannot run postmap: {err}")),
    }
}

/// Runs the reply table against `map` and checks what the server received.
async fn check_replies(postmap: &Path, map: &str, seen: &Seen) {
    // postmap needs a main.cf; an empty one in a private config directory is enough.
    let config = tempfile::tempdir().ok();
    let Some(config) = config else {
        panic!("cannot create a temporary directory")
    };
    assert!(std::fs::write(config.path().join("main.cf"), "").is_ok());

    // (key, exit code, stdout, a word stderr must contain or "" for a clean run)
    let cases = [
        ("ok.test", Some(0), "result for mymap\n", ""),
        ("b\u{fc}cher.test", Some(1), "", ""),
        ("two words", Some(1), "", ""),
        ("absent.test", Some(1), "", ""),
        ("big.test", Some(0), "", ""),
        ("temp.test", Some(1), "", "temporary error: dns down"),
        ("timeout.test", Some(1), "", "timeout error: too slow"),
        ("perm.test", Some(1), "", "permanent error: misconfigured"),
    ];
    for (key, code, stdout, stderr_has) in cases {
        let (got_code, got_stdout, got_stderr) =
            postmap_query(postmap, config.path(), key, map).await;
        assert_eq!(
            got_code, code,
            "postmap -q {key}: {got_stdout} {got_stderr}"
        );
        if key == "big.test" {
            assert_eq!(
                got_stdout.trim_end().len(),
                99_997,
                "postmap -q {key}: {got_stderr}"
            );
        } else {
            assert_eq!(got_stdout, stdout, "postmap -q {key}: {got_stderr}");
        }
        if stderr_has.is_empty() {
            assert!(
                !got_stderr.contains("error"),
                "postmap -q {key}: {got_stderr}"
            );
        } else {
            assert!(
                got_stderr.contains(stderr_has),
                "postmap -q {key}: {got_stderr}"
            );
        }
    }
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    // Postfix sends `name SP key`, the key as its bytes (UTF-8 stays UTF-8, spaces stay).
    for want in ["mymap ok.test", "mymap b\u{fc}cher.test", "mymap two words"] {
        assert!(
            seen.iter().any(|r| r == want.as_bytes()),
            "{want:?} not in {seen:?}"
        );
    }
}

#[tokio::test]
async fn postmap_over_tcp_understands_every_reply() {
    let Some(postmap) = postmap_or_skip("postmap_over_tcp_understands_every_reply") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.ok();
    let Some((listener, addr)) = listener.and_then(|l| l.local_addr().ok().map(|a| (l, a))) else {
        panic!("cannot listen on 127.0.0.1")
    };
    let seen = Seen::default();
    let server_seen = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&server_seen)));
        }
    });
    check_replies(
        &postmap,
        &format!("socketmap:inet:127.0.0.1:{}:mymap", addr.port()),
        &seen,
    )
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn postmap_over_unix_socket_understands_every_reply() {
    let Some(postmap) = postmap_or_skip("postmap_over_unix_socket_understands_every_reply") else {
        return;
    };
    let dir = tempfile::tempdir().ok();
    let Some(dir) = dir else {
        panic!("cannot create a temporary directory")
    };
    let path = dir.path().join("sockmap");
    let listener = tokio::net::UnixListener::bind(&path).ok();
    let Some(listener) = listener else {
        panic!("cannot bind {}", path.display())
    };
    let seen = Seen::default();
    let server_seen = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&server_seen)));
        }
    });
    check_replies(
        &postmap,
        &format!("socketmap:unix:{}:mymap", path.display()),
        &seen,
    )
    .await;
}
