//! [`Connection`]: a stream socket that is TCP or UNIX, for either side of the protocol, and its owned halves.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, tcp};
#[cfg(unix)]
use tokio::net::{UnixStream, unix};

/// A TCP or a UNIX stream socket, or one half of one: [`Connection`], [`OwnedReadHalf`], [`OwnedWriteHalf`].
///
/// Reads and writes go to whichever socket it holds ([`AsyncRead`] and [`AsyncWrite`], vectored writes
/// included).
#[derive(Debug)]
#[non_exhaustive]
pub enum Socket<T, U> {
    /// A TCP socket.
    Tcp(T),
    /// A UNIX stream socket (on other platforms, an uninhabited placeholder).
    Unix(U),
}

/// A connected stream socket, TCP or UNIX: what a socketmap server accepts and what [`SocketmapClient`]
/// connects with.
///
/// It implements [`AsyncRead`] and [`AsyncWrite`], so it works with `tokio_util`'s `Framed`. To read and
/// write from two tasks (or two branches of a `select!`) without a lock, [`into_split`](Socket::into_split)
/// it into owned halves (tokio's own `into_split`; `tokio::io::split` would put both behind a mutex).
///
/// [`SocketmapClient`]: crate::SocketmapClient
///
/// ```
/// use socketmap_proto::Connection;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let client = Connection::from(tokio::net::TcpStream::connect(listener.local_addr()?).await?);
/// let (server, _) = listener.accept().await?;
/// let (mut read, mut write) = Connection::from(server).into_split();
/// let (_, mut client_write) = client.into_split();
/// client_write.write_all(b"5:hello,").await?;
/// let mut buf = [0; 8];
/// read.read_exact(&mut buf).await?;
/// write.write_all(&buf).await?;
/// assert_eq!(&buf, b"5:hello,");
/// # Ok(())
/// # }
/// ```
pub type Connection = Socket<TcpStream, UnixSocket>;

/// The reading half of a [`Connection`], from [`Connection::into_split`](Socket::into_split).
pub type OwnedReadHalf = Socket<tcp::OwnedReadHalf, UnixReadHalf>;

/// The writing half of a [`Connection`], from [`Connection::into_split`](Socket::into_split). Dropping it
/// (or [`shutdown`](tokio::io::AsyncWriteExt::shutdown)) shuts the connection down for writing.
pub type OwnedWriteHalf = Socket<tcp::OwnedWriteHalf, UnixWriteHalf>;

#[cfg(unix)]
type UnixSocket = UnixStream;
#[cfg(unix)]
type UnixReadHalf = unix::OwnedReadHalf;
#[cfg(unix)]
type UnixWriteHalf = unix::OwnedWriteHalf;
#[cfg(not(unix))]
type UnixSocket = NoUnix;
#[cfg(not(unix))]
type UnixReadHalf = NoUnix;
#[cfg(not(unix))]
type UnixWriteHalf = NoUnix;

impl Connection {
    /// Splits the connection into a reading and a writing half that can be used from different tasks, with no
    /// lock between them.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (Socket::Tcp(r), Socket::Tcp(w))
            }
            Self::Unix(s) => {
                let (r, w) = s.into_split();
                (Socket::Unix(r), Socket::Unix(w))
            }
        }
    }
}

impl From<TcpStream> for Connection {
    fn from(stream: TcpStream) -> Self {
        Self::Tcp(stream)
    }
}

#[cfg(unix)]
impl From<UnixStream> for Connection {
    fn from(stream: UnixStream) -> Self {
        Self::Unix(stream)
    }
}

impl<T: AsyncRead + Unpin, U: AsyncRead + Unpin> AsyncRead for Socket<T, U> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin, U: AsyncWrite + Unpin> AsyncWrite for Socket<T, U> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Where there are no UNIX sockets: a type with no values in their place.
#[cfg(not(unix))]
#[derive(Debug)]
pub enum NoUnix {}

#[cfg(not(unix))]
impl NoUnix {
    fn into_split(self) -> (Self, Self) {
        match self {}
    }
}

#[cfg(not(unix))]
impl AsyncRead for NoUnix {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match *self {}
    }
}

#[cfg(not(unix))]
impl AsyncWrite for NoUnix {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        match *self {}
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Writes through one connection's halves and reads on the other side, then checks EOF after shutdown.
    async fn exchange(near: Connection, far: Connection) {
        let (mut near_read, mut near_write) = near.into_split();
        let mut far = far;
        let whole = b"2:ab,1:c,";
        let n = near_write
            .write_vectored(&[IoSlice::new(&whole[..5]), IoSlice::new(&whole[5..])])
            .await
            .expect("write");
        assert!(n > 0);
        near_write.write_all(&whole[n..]).await.expect("write");
        let mut got = Vec::new();
        while got.len() < 9 {
            let mut buf = [0; 16];
            let n = far.read(&mut buf).await.expect("read");
            assert!(n > 0, "early EOF");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"2:ab,1:c,");
        far.write_all(b"ok").await.expect("write back");
        let mut back = [0; 2];
        near_read.read_exact(&mut back).await.expect("read back");
        assert_eq!(&back, b"ok");
        // Shutting the write half down ends the far side's reading.
        near_write.shutdown().await.expect("shutdown");
        assert_eq!(far.read(&mut [0; 4]).await.expect("read"), 0);
    }

    #[tokio::test]
    async fn tcp_halves_read_and_write_independently() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let near = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (far, _) = listener.accept().await.expect("accept");
        exchange(near.into(), far.into()).await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn unix_halves_read_and_write_independently() {
        let (near, far) = UnixStream::pair().expect("pair");
        exchange(near.into(), far.into()).await;
    }
}
