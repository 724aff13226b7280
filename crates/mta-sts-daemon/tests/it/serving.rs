//! Serving behaviour: pipelining, framing errors, limits, UNIX sockets, reuse_port, shutdown.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};

use mta_sts_daemon::Config;
use mta_sts_daemon::LocalAddr;
use mta_sts_daemon::Running;
use mtasts_test_support::Fixture;
use socketmap_proto::{Reply, SocketmapClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Reads until EOF (the server closed the connection) and returns what came.
async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("server did not close the connection")
        .expect("read");
    buf
}

#[tokio::test]
async fn many_requests_per_connection() {
    let fixture = Fixture::start().await;
    publish_standard(&fixture);
    let daemon = start(&fixture, "").await;
    let mut client = SocketmapClient::connect_tcp(tcp_addr(&daemon))
        .await
        .expect("connect");
    for _ in 0..3 {
        assert_eq!(
            client
                .query("postfix", "enforce.test")
                .await
                .expect("query")
                .to_string(),
            ENFORCE_REPLY
        );
        assert_eq!(
            client.query("postfix", "none.test").await.expect("query"),
            Reply::NotFound
        );
    }
    // An open connection would hold the shutdown for `shutdown_timeout`.
    drop(client);
    daemon.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_run_concurrently_and_answer_in_order() {
    let fixture = Fixture::start().await;
    publish_standard(&fixture);
    // The first request's DNS never answers: it completes (NOTFOUND) only at its 2 s zone timeout.
    fixture.dns().set_silent("_mta-sts.slow.test");
    let daemon = start(&fixture, "zones:\n  slow:\n    timeout: 2\n").await;
    let mut stream = TcpStream::connect(tcp_addr(&daemon))
        .await
        .expect("connect");
    stream
        .write_all(b"14:slow slow.test,20:postfix enforce.test,17:postfix none.test,")
        .await
        .expect("write");
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.expect("read");
    assert_eq!(&first, b"9:NOTFOUND ,");
    // The later request was processed while the first was still waiting: its policy was fetched already.
    assert_eq!(fixture.https().request_count("mta-sts.enforce.test"), 1);
    let want = format!("{}:{ENFORCE_REPLY},9:NOTFOUND ,", ENFORCE_REPLY.len()).into_bytes();
    let mut rest = vec![0u8; want.len()];
    stream.read_exact(&mut rest).await.expect("read");
    assert_eq!(rest, want);
    // An open connection would hold the shutdown for `shutdown_timeout`.
    drop(stream);
    daemon.shutdown().await;
}

#[tokio::test]
async fn corrupt_netstring_closes_only_that_connection() {
    let fixture = Fixture::start().await;
    publish_standard(&fixture);
    let daemon = start(&fixture, "").await;
    let addr = tcp_addr(&daemon);
    let mut other = SocketmapClient::connect_tcp(addr).await.expect("connect");
    for garbage in [&b"abc:def,"[..], b"5:none.test,", b"3:abcX", b"-1:x,"] {
        let mut bad = TcpStream::connect(addr).await.expect("connect");
        // A good request first: it is still answered before the connection closes.
        bad.write_all(b"17:postfix none.test,")
            .await
            .expect("write");
        bad.write_all(garbage).await.expect("write");
        let got = read_to_eof(&mut bad).await;
        assert_eq!(got, b"9:NOTFOUND ,", "after {garbage:?}");
    }
    // Everyone else keeps being served.
    assert_eq!(
        other
            .query("postfix", "enforce.test")
            .await
            .expect("query")
            .to_string(),
        ENFORCE_REPLY
    );
    // An open connection would hold the shutdown for `shutdown_timeout`.
    drop(other);
    daemon.shutdown().await;
}

#[tokio::test]
async fn requests_up_to_the_postfix_limit_are_accepted_longer_ones_close() {
    let fixture = Fixture::start().await;
    let daemon = start(&fixture, "").await;
    let addr = tcp_addr(&daemon);
    // Exactly 10 000 bytes: accepted (an invalid domain: NOTFOUND without lookup).
    let key = "a".repeat(10_000 - "postfix ".len());
    let mut client = SocketmapClient::connect_tcp(addr).await.expect("connect");
    assert_eq!(
        client.query("postfix", &key).await.expect("query"),
        Reply::NotFound
    );
    // 10 001 bytes: the connection is closed as soon as the length is read.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"10001:postfix ").await.expect("write");
    assert!(read_to_eof(&mut stream).await.is_empty());
    // A length that never ends is cut too, without buffering it.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(&[b'9'; 64]).await.expect("write");
    assert!(read_to_eof(&mut stream).await.is_empty());
    assert!(client.query("postfix", "x.test").await.is_ok());
    // An open connection would hold the shutdown for `shutdown_timeout`.
    drop((client, stream));
    daemon.shutdown().await;
}

#[tokio::test]
async fn unix_socket_with_mode_replaces_stale_file_and_is_removed_at_stop() {
    let fixture = Fixture::start().await;
    publish_standard(&fixture);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mta-sts.sock");
    // A stale socket file from a previous run.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale bind"));
    assert!(path.exists());
    let text = format!(
        "path: \"{}\"\nmode: 0600\n{}",
        path.display(),
        resolver_yaml(&fixture)
    );
    let daemon = Running::start(Config::parse(&text).expect("config").0)
        .await
        .expect("start");
    assert_eq!(daemon.local_addr(), &LocalAddr::Unix(path.clone()));
    let meta = std::fs::metadata(&path).expect("socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let mut client = SocketmapClient::connect_unix(&path).await.expect("connect");
    assert_eq!(
        client
            .query("postfix", "enforce.test")
            .await
            .expect("query")
            .to_string(),
        ENFORCE_REPLY
    );
    drop(client);
    daemon.shutdown().await;
    assert!(!path.exists(), "socket file left behind");
}

#[tokio::test]
async fn two_instances_share_a_port_with_reuse_port() {
    let fixture = Fixture::start().await;
    publish_standard(&fixture);
    let first = start(&fixture, "reuse_port: true\n").await;
    let port = tcp_addr(&first).port();
    let text = format!(
        "host: 127.0.0.1\nport: {port}\nreuse_port: true\n{}",
        resolver_yaml(&fixture)
    );
    let second = Running::start(Config::parse(&text).expect("config").0)
        .await
        .expect("second instance binds");
    let addr = tcp_addr(&second);
    assert_eq!(addr.port(), port);
    // The first stops: the second keeps answering on the same port.
    first.shutdown().await;
    for _ in 0..5 {
        assert_eq!(query(addr, "postfix", "enforce.test").await, ENFORCE_REPLY);
    }
    second.shutdown().await;
}

#[tokio::test]
async fn without_reuse_port_a_second_bind_fails() {
    let fixture = Fixture::start().await;
    let first = start(&fixture, "reuse_port: false\n").await;
    let port = tcp_addr(&first).port();
    let text = format!(
        "host: 127.0.0.1\nport: {port}\nreuse_port: false\n{}",
        resolver_yaml(&fixture)
    );
    let second = Running::start(Config::parse(&text).expect("config").0).await;
    assert!(
        matches!(second, Err(mta_sts_daemon::StartError::Bind { .. })),
        "{second:?}"
    );
    first.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes_requests_in_flight() {
    let fixture = Fixture::start().await;
    fixture.dns().set_silent("_mta-sts.slow.test");
    let daemon = start(
        &fixture,
        "shutdown_timeout: 20\nzones:\n  slow:\n    timeout: 1\n",
    )
    .await;
    let addr = tcp_addr(&daemon);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"14:slow slow.test,")
        .await
        .expect("write");
    // Make sure the request is being processed before stopping.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fixture.dns().query_count("_mta-sts.slow.test") == 0 {
        assert!(Instant::now() < deadline, "request never reached DNS");
        tokio::task::yield_now().await;
    }
    daemon.stop();
    // New connections are refused at once (nobody else listens on this port).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "still accepting after stop");
        tokio::task::yield_now().await;
    }
    // The request in flight is still answered, and the connection still takes requests.
    let mut reply = [0u8; 12];
    stream.read_exact(&mut reply).await.expect("reply");
    assert_eq!(&reply, b"9:NOTFOUND ,");
    stream
        .write_all(b"17:postfix none.test,")
        .await
        .expect("write");
    // none.test is not published: NXDOMAIN-ish answer or failure, NOTFOUND either way.
    stream.read_exact(&mut reply).await.expect("reply");
    assert_eq!(&reply, b"9:NOTFOUND ,");
    // The client closes: the daemon is done.
    drop(stream);
    tokio::time::timeout(Duration::from_secs(5), daemon.wait())
        .await
        .expect("daemon did not stop");
}

#[tokio::test]
async fn shutdown_timeout_cuts_idle_connections() {
    let fixture = Fixture::start().await;
    let daemon = start(&fixture, "shutdown_timeout: 0.5\n").await;
    let mut idle = TcpStream::connect(tcp_addr(&daemon))
        .await
        .expect("connect");
    idle.write_all(b"17:postfix none.test,")
        .await
        .expect("write");
    let mut reply = [0u8; 12];
    idle.read_exact(&mut reply).await.expect("reply");
    let started = Instant::now();
    daemon.stop();
    tokio::time::timeout(Duration::from_secs(5), daemon.wait())
        .await
        .expect("daemon did not stop");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "did not wait for the open connection"
    );
    assert!(read_to_eof(&mut idle).await.is_empty());
}

#[tokio::test]
async fn connection_limit_queues_excess_clients() {
    let fixture = Fixture::start().await;
    publish_standard(&fixture);
    let daemon = start(&fixture, "limits:\n  max_connections: 1\n").await;
    let addr = tcp_addr(&daemon);
    let mut first = SocketmapClient::connect_tcp(addr).await.expect("connect");
    assert_eq!(
        first.query("postfix", "none.test").await.expect("query"),
        Reply::NotFound
    );
    // The second client waits in the backlog until the first leaves.
    let second = tokio::spawn(async move { query(addr, "postfix", "enforce.test").await });
    drop(first);
    let reply = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("second never served");
    assert_eq!(reply.expect("task"), ENFORCE_REPLY);
    daemon.shutdown().await;
}
