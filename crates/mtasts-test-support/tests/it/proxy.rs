//! The CONNECT proxy, driven with raw requests.

use mtasts_test_support::ConnectProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.expect("read") == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("utf8")
}

#[tokio::test]
async fn tunnels_to_loopback_port() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = upstream.local_addr().expect("addr").port();
    let proxy = ConnectProxy::start().await;
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    client
        .write_all(format!("CONNECT anything.test:{port} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (mut server_side, _) = upstream.accept().await.expect("accept");
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    client.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    server_side.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"ping");
    assert_eq!(proxy.connect_count(), 1);
    assert_eq!(proxy.targets(), [format!("anything.test:{port}")]);
}

#[tokio::test]
async fn basic_auth_is_required_when_configured() {
    let proxy = ConnectProxy::start_with_basic_auth("u", "p").await;
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    client
        .write_all(b"CONNECT a.test:443 HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 407"), "{head}");
    assert_eq!((proxy.connect_count(), proxy.rejected_count()), (0, 1));
}
