//! `SocketmapClient` against a small `ServerCodec` server over real TCP and UNIX sockets.

use futures_util::{SinkExt, StreamExt};
use socketmap_proto::{ProtoError, Reply, Request, ServerCodec, SocketmapClient};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::codec::Framed;

/// Serves one connection: map `echo` answers `OK <key>`, `temp` answers `TEMP <key>`, `big` answers
/// an `OK` of `<key>` bytes; other maps get `NOTFOUND `; malformed requests get `PERM <error kind>`.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<(), ProtoError> {
    let mut framed = Framed::new(stream, ServerCodec::new());
    while let Some(request) = framed.next().await {
        let request = request?;
        let reply = match (request.name(), request.key()) {
            (Ok("echo"), Ok(key)) => Reply::ok(key.to_owned()),
            (Ok("temp"), Ok(key)) => Reply::temp(key.to_owned()),
            (Ok("big"), Ok(key)) => Reply::ok(vec![b'x'; key.parse().unwrap_or(0)]),
            (Ok(_), Ok(_)) => Reply::NotFound,
            (Err(err), _) | (_, Err(err)) => Reply::perm(err.kind()),
        };
        framed.send(reply).await?;
    }
    Ok(())
}

async fn tcp_server() -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    Ok(addr)
}

/// A server that answers every connection with fixed bytes after reading `read_first` bytes (the
/// whole request, so closing does not reset the connection), then closes it. `"m example"` requests
/// are 12 bytes on the wire.
async fn raw_server(
    reply: &'static [u8],
    read_first: usize,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0; read_first];
            if stream.read_exact(&mut buf).await.is_ok() {
                let _ = stream.write_all(reply).await;
            }
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn tcp_query_round_trips() -> Result<(), ProtoError> {
    let addr = tcp_server().await?;
    let mut client = SocketmapClient::connect_tcp(addr).await?;
    assert_eq!(
        client.query("echo", "example.com").await?,
        Reply::ok("example.com")
    );
    assert_eq!(
        client.query("nothing", "example.com").await?,
        Reply::NotFound
    );
    assert_eq!(client.query("temp", "later").await?, Reply::temp("later"));
    assert_eq!(
        client.query("echo", "a key with spaces").await?,
        Reply::ok("a key with spaces")
    );
    Ok(())
}

#[tokio::test]
async fn tcp_pipelined_replies_arrive_in_order() -> Result<(), ProtoError> {
    let addr = tcp_server().await?;
    let mut client = SocketmapClient::connect_tcp(addr).await?;
    let queries: Vec<(&str, String)> = (0..100)
        .map(|i| {
            (
                if i % 3 == 0 { "nothing" } else { "echo" },
                format!("host{i}.example"),
            )
        })
        .collect();
    let replies = client.query_many(&queries).await?;
    let want: Vec<Reply> = queries
        .iter()
        .map(|(name, key)| {
            if *name == "echo" {
                Reply::ok(key.clone())
            } else {
                Reply::NotFound
            }
        })
        .collect();
    assert_eq!(replies, want);
    // The connection is still usable afterwards.
    assert_eq!(client.query("echo", "after").await?, Reply::ok("after"));
    Ok(())
}

#[tokio::test]
async fn large_pipeline_with_large_replies_does_not_deadlock() -> Result<(), ProtoError> {
    // 2 000 requests each answered with 50 KB: far more than socket buffers hold in either direction,
    // so the client must read while it is still writing.
    let addr = tcp_server().await?;
    let mut client = SocketmapClient::connect_tcp(addr).await?;
    let queries = vec![("big", "50000"); 2_000];
    let replies = client.query_many(&queries).await?;
    assert_eq!(replies.len(), 2_000);
    assert!(
        replies
            .iter()
            .all(|r| matches!(r, Reply::Ok(data) if data.len() == 50_000))
    );
    Ok(())
}

#[tokio::test]
async fn malformed_requests_get_replies_and_the_stream_continues() -> Result<(), ProtoError> {
    let addr = tcp_server().await?;
    let mut client = SocketmapClient::connect_tcp(addr).await?;
    let requests = [
        Request::from_frame("nospace".into()),
        Request::from_frame((&b"echo \xff"[..]).into()),
        Request::new("echo", "fine")?,
    ];
    let replies = client.query_requests(&requests).await?;
    assert_eq!(
        replies,
        [
            Reply::perm("missing_space"),
            Reply::perm("key_not_utf8"),
            Reply::ok("fine")
        ]
    );
    Ok(())
}

#[tokio::test]
async fn refused_requests_send_nothing() -> Result<(), ProtoError> {
    let addr = tcp_server().await?;
    let mut client = SocketmapClient::connect_tcp(addr).await?;
    let err = client.query("two words", "k").await.err().map(|e| e.kind());
    assert_eq!(err, Some("invalid_map_name"));
    let err = client
        .query("echo", "k".repeat(10_000))
        .await
        .err()
        .map(|e| e.kind());
    assert_eq!(err, Some("payload_too_long"));
    assert_eq!(
        client.query("echo", "still in sync").await?,
        Reply::ok("still in sync")
    );
    Ok(())
}

#[tokio::test]
async fn oversized_reply_is_refused_by_the_server_encoder() -> Result<(), ProtoError> {
    // The server's encoder refuses the 100 001-byte reply and its connection task ends with that error;
    // the client sees the connection close instead of an oversized reply.
    let addr = tcp_server().await?;
    let mut client = SocketmapClient::connect_tcp(addr).await?;
    assert!(matches!(client.query("big", "99997").await?, Reply::Ok(d) if d.len() == 99_997));
    let err = client.query("big", "99998").await.err();
    assert!(
        matches!(err, Some(ProtoError::ConnectionClosed { pending: 1 })),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_status_is_a_typed_error() -> Result<(), ProtoError> {
    let addr = raw_server(b"7:MAYBE x,", 12).await?;
    let mut client = SocketmapClient::connect_tcp(addr).await?;
    match client.query("m", "example").await {
        Err(ProtoError::UnknownStatus { status }) => assert_eq!(&status[..], b"MAYBE"),
        other => panic!("expected UnknownStatus, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn server_closing_mid_reply_is_unexpected_eof() -> Result<(), ProtoError> {
    let addr = raw_server(b"10:OK trun", 12).await?;
    let mut client = SocketmapClient::connect_tcp(addr).await?;
    let err = client.query("m", "example").await.err().map(|e| e.kind());
    assert_eq!(err, Some("unexpected_eof"));
    Ok(())
}

#[tokio::test]
async fn server_closing_between_replies_is_connection_closed() -> Result<(), ProtoError> {
    // Answers the first of three pipelined requests, then closes.
    let addr = raw_server(b"9:NOTFOUND ,", 3 * 12).await?;
    let mut client = SocketmapClient::connect_tcp(addr).await?;
    let err = client.query_many(&[("m", "example"); 3]).await.err();
    assert!(
        matches!(err, Some(ProtoError::ConnectionClosed { pending: 2 })),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn connect_to_closed_port_is_io_error() -> Result<(), ProtoError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    let err = SocketmapClient::connect_tcp(addr)
        .await
        .err()
        .map(|e| e.kind());
    assert_eq!(err, Some("io"));
    Ok(())
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_query_and_pipeline() -> Result<(), ProtoError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("socketmap.sock");
    let listener = tokio::net::UnixListener::bind(&path)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });

    let mut client = SocketmapClient::connect_unix(&path).await?;
    assert_eq!(
        client.query("echo", "unix.example").await?,
        Reply::ok("unix.example")
    );
    let replies = client
        .query_many(&[("echo", "a"), ("temp", "b"), ("none", "c")])
        .await?;
    assert_eq!(replies, [Reply::ok("a"), Reply::temp("b"), Reply::NotFound]);
    assert!(matches!(
        client.get_ref(),
        socketmap_proto::Connection::Unix(_)
    ));
    Ok(())
}

#[tokio::test]
async fn client_works_over_any_stream() -> Result<(), ProtoError> {
    let (client_end, server_end) = tokio::io::duplex(64);
    tokio::spawn(serve(server_end));
    let mut client = SocketmapClient::new(client_end);
    let replies = client
        .query_many(&[("echo", "x".repeat(500)), ("echo", "y".to_owned())])
        .await?;
    assert_eq!(replies, [Reply::ok("x".repeat(500)), Reply::ok("y")]);
    Ok(())
}
