//! A small async socketmap client with pipelining, for tests, the query CLI and benchmarks.

use std::{
    future::poll_fn,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpStream, ToSocketAddrs},
};
use tokio_util::codec::{Decoder, Encoder};

use crate::{ClientCodec, Connection, ProtoError, Reply, Request};

/// An async socketmap client: sends requests, reads replies in order.
///
/// [`query`](Self::query) does one round trip; [`query_many`](Self::query_many) pipelines: it writes
/// all requests and reads the replies as they come (writing and reading at the same time, so a large
/// batch cannot deadlock against a server that answers while the client is still sending).
///
/// The client sets no timeouts; wrap calls in `tokio::time::timeout`. After an error (other than a
/// refused request, which sends nothing) the connection may be out of step: drop the client and
/// reconnect.
///
/// ```
/// use futures_util::{SinkExt, StreamExt};
/// use socketmap_proto::{Reply, ServerCodec, SocketmapClient};
/// use tokio_util::codec::Framed;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A tiny server: answers "OK <key>" for map "echo", NOTFOUND otherwise.
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move {
///     let (stream, _) = listener.accept().await?;
///     let mut framed = Framed::new(stream, ServerCodec::new());
///     while let Some(req) = framed.next().await {
///         let req = req?;
///         let reply = match (req.name(), req.key()) {
///             (Ok("echo"), Ok(key)) => Reply::ok(key.to_owned()),
///             _ => Reply::NotFound,
///         };
///         framed.send(reply).await?;
///     }
///     Ok::<_, socketmap_proto::ProtoError>(())
/// });
///
/// let mut client = SocketmapClient::connect_tcp(addr).await?;
/// assert_eq!(client.query("echo", "example.com").await?, Reply::ok("example.com"));
/// let replies = client.query_many(&[("echo", "a"), ("other", "b"), ("echo", "c")]).await?;
/// assert_eq!(replies, [Reply::ok("a"), Reply::NotFound, Reply::ok("c")]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SocketmapClient<S = Connection> {
    stream: S,
    codec: ClientCodec,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

impl SocketmapClient<Connection> {
    /// Connects over TCP.
    ///
    /// # Errors
    ///
    /// [`ProtoError::Io`] if the connection fails.
    pub async fn connect_tcp(addr: impl ToSocketAddrs) -> Result<Self, ProtoError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self::new(Connection::Tcp(stream)))
    }

    /// Connects to a UNIX stream socket.
    ///
    /// ```
    /// use futures_util::{SinkExt, StreamExt};
    /// use socketmap_proto::{Reply, ServerCodec, SocketmapClient};
    /// use tokio_util::codec::Framed;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("socketmap.sock");
    /// let listener = tokio::net::UnixListener::bind(&path)?;
    /// tokio::spawn(async move {
    ///     let (stream, _) = listener.accept().await?;
    ///     let mut framed = Framed::new(stream, ServerCodec::new());
    ///     while let Some(_request) = framed.next().await.transpose()? {
    ///         framed.send(Reply::NotFound).await?;
    ///     }
    ///     Ok::<_, socketmap_proto::ProtoError>(())
    /// });
    ///
    /// let mut client = SocketmapClient::connect_unix(&path).await?;
    /// assert_eq!(client.query("mta-sts", "example.com").await?, Reply::NotFound);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProtoError::Io`] if the connection fails.
    #[cfg(unix)]
    pub async fn connect_unix(path: impl AsRef<std::path::Path>) -> Result<Self, ProtoError> {
        let stream = tokio::net::UnixStream::connect(path).await?;
        Ok(Self::new(Connection::Unix(stream)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SocketmapClient<S> {
    /// A client over an established stream, with [`ClientCodec`]'s default limits.
    ///
    /// ```
    /// use socketmap_proto::{Reply, Request, SocketmapClient};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A scripted peer: reads two requests, answers both at once.
    /// let (stream, mut peer) = tokio::io::duplex(256);
    /// tokio::spawn(async move {
    ///     let mut requests = [0u8; 29];
    ///     peer.read_exact(&mut requests).await?;
    ///     assert_eq!(&requests, b"10:map a.test,11:map \xffb.test,");
    ///     peer.write_all(b"6:OK yes,6:PERM x,").await
    /// });
    ///
    /// let mut client = SocketmapClient::new(stream);
    /// let requests = [Request::new("map", "a.test")?, Request::new("map", b"\xffb.test")?];
    /// let replies = client.query_requests(&requests).await?;
    /// assert_eq!(replies, [Reply::ok("yes"), Reply::perm("x")]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(stream: S) -> Self {
        Self::with_codec(stream, ClientCodec::new())
    }

    /// A client over an established stream with a configured codec (e.g. other size limits).
    pub fn with_codec(stream: S, codec: ClientCodec) -> Self {
        Self {
            stream,
            codec,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Gives back the underlying stream.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Sends one `name key` request and waits for its reply.
    ///
    /// # Errors
    ///
    /// [`ProtoError::InvalidMapName`] or [`ProtoError::PayloadTooLong`] before anything is sent; framing,
    /// [`ProtoError::UnknownStatus`], [`ProtoError::ConnectionClosed`] and I/O errors from the exchange.
    pub async fn query(
        &mut self,
        name: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> Result<Reply, ProtoError> {
        self.query_request(&Request::new(name, key)?).await
    }

    /// Sends one prepared request (which may be malformed on purpose) and waits for its reply.
    ///
    /// # Errors
    ///
    /// As for [`query`](Self::query).
    pub async fn query_request(&mut self, request: &Request) -> Result<Reply, ProtoError> {
        let mut replies = self.exchange(std::slice::from_ref(request)).await?;
        replies
            .pop()
            .ok_or(ProtoError::ConnectionClosed { pending: 1 })
    }

    /// Pipelines `(name, key)` requests and returns the replies in request order.
    ///
    /// # Errors
    ///
    /// As for [`query`](Self::query); all requests are validated before any is sent.
    pub async fn query_many<N, K>(&mut self, queries: &[(N, K)]) -> Result<Vec<Reply>, ProtoError>
    where
        N: AsRef<[u8]>,
        K: AsRef<[u8]>,
    {
        let requests = queries
            .iter()
            .map(|(name, key)| Request::new(name, key))
            .collect::<Result<Vec<_>, _>>()?;
        self.exchange(&requests).await
    }

    /// Pipelines prepared requests and returns the replies in request order.
    ///
    /// # Errors
    ///
    /// As for [`query`](Self::query); all requests are encoded before any is sent.
    pub async fn query_requests(&mut self, requests: &[Request]) -> Result<Vec<Reply>, ProtoError> {
        self.exchange(requests).await
    }

    async fn exchange(&mut self, requests: &[Request]) -> Result<Vec<Reply>, ProtoError> {
        self.write_buf.clear();
        for request in requests {
            if let Err(err) = self.codec.encode(request, &mut self.write_buf) {
                self.write_buf.clear();
                return Err(err);
            }
        }
        let mut replies = Vec::with_capacity(requests.len());
        let mut written = 0;
        let mut flushed = false;
        poll_fn(|cx| {
            self.poll_exchange(cx, &mut written, &mut flushed, &mut replies, requests.len())
        })
        .await?;
        Ok(replies)
    }

    /// Writes what the socket accepts, then reads and decodes what has arrived, until `expected`
    /// replies are in. Writing and reading in one poll keeps a large pipeline from deadlocking.
    fn poll_exchange(
        &mut self,
        cx: &mut Context<'_>,
        written: &mut usize,
        flushed: &mut bool,
        replies: &mut Vec<Reply>,
        expected: usize,
    ) -> Poll<Result<(), ProtoError>> {
        while *written < self.write_buf.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.write_buf[*written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                Poll::Pending => break,
            }
        }
        if *written == self.write_buf.len()
            && !*flushed
            && let Poll::Ready(result) = Pin::new(&mut self.stream).poll_flush(cx)
        {
            result?;
            *flushed = true;
        }
        loop {
            while replies.len() < expected {
                match self.codec.decode(&mut self.read_buf)? {
                    Some(reply) => replies.push(reply),
                    None => break,
                }
            }
            if replies.len() == expected {
                return Poll::Ready(Ok(()));
            }
            if self.read_buf.capacity() - self.read_buf.len() < 1024 {
                self.read_buf.reserve(4096);
            }
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.stream),
                cx,
                &mut self.read_buf
            ))?;
            if n == 0 {
                if let Some(reply) = self.codec.decode_eof(&mut self.read_buf)? {
                    replies.push(reply);
                    continue;
                }
                return Poll::Ready(Err(ProtoError::ConnectionClosed {
                    pending: expected - replies.len(),
                }));
            }
        }
    }
}
