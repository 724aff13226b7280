//! A minimal HTTP/1.1 responder for `GET /metrics`: one request per connection, then close.
//!
//! Small on purpose: Prometheus sends one `GET` with a few headers and reads the reply. The responder reads at
//! most [`MAX_REQUEST_HEAD`] bytes of request head within a timeout, answers from the first line only (method
//! and path; headers are not interpreted), writes the response within a timeout and closes the connection
//! (`Connection: close`). At most [`MAX_CONNECTIONS`] scrapes are served at once; further clients wait in the
//! kernel backlog. Nothing a client sends can make it panic or buffer more than the bound.
//!
//! ```text
//! GET /metrics HTTP/1.1       ->  HTTP/1.1 200 OK
//! Host: ...                       Content-Type: text/plain; version=0.0.4; charset=utf-8
//!                                 Content-Length: N
//!                                 Connection: close
//!
//!                                 <exposition>
//! ```

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Format, METRICS_PATH};
use crate::listen::{Listener, Stream};

/// Longest request head (request line and headers) read; a longer one gets `431`.
pub(crate) const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Scrapes served at once.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// Time allowed to receive the request head, and separately to write the response.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `render()`'s document at [`METRICS_PATH`] on `listener` until `stop` is cancelled.
pub(crate) async fn serve<F>(
    listener: Listener,
    render: F,
    io_timeout: Duration,
    stop: CancellationToken,
) where
    F: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "metrics listener: accept failed");
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let render = Arc::clone(&render);
        connections.spawn(async move {
            if let Err(e) = handle(stream, &*render, io_timeout).await {
                debug!(error = %e, "metrics client went away");
            }
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // A scrape is short and bounded by its timeouts; abort the rest rather than wait at shutdown.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn handle<F>(mut stream: Stream, render: &F, io_timeout: Duration) -> io::Result<()>
where
    F: Fn() -> String,
{
    let response = match tokio::time::timeout(io_timeout, read_head(&mut stream)).await {
        Err(_) => Response::error(408, "Request Timeout"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::TooLarge)) => Response::error(431, "Request Header Fields Too Large"),
        Ok(Ok(Head::Complete(head))) => respond(&head, render),
    };
    tokio::time::timeout(io_timeout, async {
        stream.write_all(&response.into_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the metrics response"))?
}

enum Head {
    /// The request line and headers, up to the blank line.
    Complete(Vec<u8>),
    /// More than [`MAX_REQUEST_HEAD`] bytes without a blank line.
    TooLarge,
    /// The client closed before sending a whole head.
    Closed,
}

async fn read_head(stream: &mut Stream) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf, searched_from) {
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() >= MAX_REQUEST_HEAD {
            return Ok(Head::TooLarge);
        }
    }
}

/// Where the head ends (after the blank line: CRLF CRLF, or LF LF as RFC 9112 §2.2 lets a server accept).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        let rest = &buf[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// The response to a complete request head. Only the request line matters.
fn respond<F>(head: &[u8], render: &F) -> Response
where
    F: Fn() -> String,
{
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Response::error(400, "Bad Request");
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::error(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::error(505, "HTTP Version Not Supported");
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    if path != METRICS_PATH {
        return Response::error(404, "Not Found");
    }
    match method {
        "GET" => Response::ok(render(), false),
        "HEAD" => Response::ok(render(), true),
        _ => {
            let mut r = Response::error(405, "Method Not Allowed");
            r.allow = true;
            r
        }
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
    allow: bool,
}

impl Response {
    fn ok(body: String, head_only: bool) -> Self {
        Self {
            status: 200,
            reason: "OK",
            content_type: Format::Text.content_type(),
            body,
            head_only,
            allow: false,
        }
    }

    fn error(status: u16, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: format!("{status} {reason}\n"),
            head_only: false,
            allow: false,
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let allow = if self.allow {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\n\
             Connection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

    const DOC: &str = "# HELP x X.\n# TYPE x gauge\nx 1\n";

    async fn start(io_timeout: Duration) -> (SocketAddr, CancellationToken) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            Listener::Tcp(tcp),
            || DOC.to_owned(),
            io_timeout,
            stop.clone(),
        ));
        (addr, stop)
    }

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8(out).expect("utf-8")
    }

    #[tokio::test]
    async fn get_metrics_returns_the_document() {
        let (addr, stop) = start(IO_TIMEOUT).await;
        let reply = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        )
        .await;
        assert_eq!(
            reply,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                 Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{DOC}",
                DOC.len()
            )
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn head_query_string_and_bare_lf_are_accepted() {
        let (addr, stop) = start(IO_TIMEOUT).await;
        let head = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        let query = exchange(addr, b"GET /metrics?x=1 HTTP/1.1\n\n").await;
        assert!(query.starts_with("HTTP/1.1 200 OK\r\n"), "{query}");
        assert!(query.ends_with(DOC), "{query}");
        stop.cancel();
    }

    #[tokio::test]
    async fn errors_have_their_status() {
        let (addr, stop) = start(IO_TIMEOUT).await;
        let cases: [(&[u8], &str); 6] = [
            (b"GET / HTTP/1.1\r\n\r\n", "404 Not Found"),
            (b"POST /metrics HTTP/1.1\r\n\r\n", "405 Method Not Allowed"),
            (
                b"GET /metrics HTTP/2.0\r\n\r\n",
                "505 HTTP Version Not Supported",
            ),
            (b"GET /metrics\r\n\r\n", "400 Bad Request"),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", "400 Bad Request"),
            (b"\xff\xfe /metrics HTTP/1.1\r\n\r\n", "400 Bad Request"),
        ];
        for (request, status) in cases {
            let reply = exchange(addr, request).await;
            assert!(
                reply.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{request:?}: {reply}"
            );
        }
        let reply = exchange(addr, b"PUT /metrics HTTP/1.1\r\n\r\n").await;
        assert!(reply.contains("\r\nAllow: GET, HEAD\r\n"), "{reply}");
        stop.cancel();
    }

    #[tokio::test]
    async fn oversized_head_gets_431() {
        let (addr, stop) = start(IO_TIMEOUT).await;
        // Exactly the limit, so that the server has read all of it when it answers (unread input would make
        // the kernel reset the connection instead of closing it).
        let mut request = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        request.resize(MAX_REQUEST_HEAD, b'a');
        let reply = exchange(addr, &request).await;
        assert!(
            reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{reply}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn silent_client_gets_408_after_the_timeout() {
        let (addr, stop) = start(Duration::from_millis(100)).await;
        let reply = exchange(addr, b"GET /metr").await;
        assert!(
            reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{reply}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn client_closing_early_does_not_stop_the_server() {
        let (addr, stop) = start(IO_TIMEOUT).await;
        drop(TcpStream::connect(addr).await.expect("connect"));
        let mut half = TcpStream::connect(addr).await.expect("connect");
        half.write_all(b"GET /met").await.expect("write");
        drop(half);
        let reply = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(reply.ends_with(DOC), "{reply}");
        stop.cancel();
    }

    #[tokio::test]
    async fn serves_on_a_unix_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            Listener::Unix {
                listener,
                cleanup: Some(path.clone()),
            },
            || DOC.to_owned(),
            IO_TIMEOUT,
            stop.clone(),
        ));
        let mut s = UnixStream::connect(&path).await.expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert!(
            out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with(DOC),
            "{out}"
        );
        stop.cancel();
        server.await.expect("server task");
        assert!(!path.exists(), "socket file removed at stop");
    }

    #[test]
    fn head_end_finds_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }
}
