//! Netstring and Postfix socketmap codecs (server and client side) for tokio.
//!
//! Postfix's `socketmap:` lookup table (socketmap_table(5), "PROTOCOL") sends each query as a
//! netstring `name SP key` and expects one netstring reply per query, in order, on a connection it
//! reuses:
//!
//! ```text
//! client (Postfix)                                     server (the daemon)
//!   request   netstring(NAME SP KEY)           ───▶
//!             "24:mta-sts mail.example.com,"
//!                                              ◀───  reply  netstring(STATUS SP PAYLOAD)
//!             "OK data"          the lookup result is `data`
//!             "NOTFOUND "        no result (note the trailing space)
//!             "TEMP reason"      temporary failure, retry
//!             "TIMEOUT reason"   timed out, retry
//!             "PERM reason"      permanent failure (a configuration error)
//!             "15:OK secure match,"   "9:NOTFOUND ,"
//! ```
//!
//! Postfix splits a request at the first space (so a map name has none, a key may), splits a reply at
//! the first space and compares the status word exactly. It refuses replies whose netstring payload
//! exceeds `socketmap_max_reply_size` (100 000 bytes) and sends queries of at most 10 000 bytes; the
//! codecs here default to the same limits ([`DEFAULT_MAX_REPLY_LEN`], [`DEFAULT_MAX_REQUEST_LEN`]).
//!
//! The main types:
//!
//! * [`NetstringCodec`] — netstring framing as a `tokio_util` [`Decoder`] / [`Encoder`] (re-exported
//!   here, like [`Bytes`] and [`BytesMut`]), with a mandatory maximum length checked while the length
//!   digits arrive.
//! * [`ServerCodec`] — decodes [`Request`]s, encodes [`Reply`]s (for the daemon).
//! * [`ClientCodec`] — encodes [`Request`]s, decodes [`Reply`]s (for clients and tests).
//! * [`SocketmapClient`] — a small async client over TCP or a UNIX socket, with pipelining.
//! * [`Connection`] — a TCP or UNIX stream socket for either side, splittable into owned halves
//!   ([`OwnedReadHalf`], [`OwnedWriteHalf`]) that need no lock between them; all three are a [`Socket`].
//! * [`ProtoError`] — the one error type; [`ProtoError::is_fatal`] tells framing errors (close the
//!   connection) from per-request ones (answer and read on).
//!
//! This crate knows nothing about MTA-STS.
//!
//! # Example
//!
//! A server loop over any `AsyncRead + AsyncWrite`, here fed from memory:
//!
//! ```
//! use futures_util::{SinkExt, StreamExt};
//! use socketmap_proto::{Reply, ServerCodec};
//! use tokio::io::AsyncReadExt;
//! use tokio_util::codec::Framed;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut postfix, daemon) = tokio::io::duplex(1024);
//! tokio::io::AsyncWriteExt::write_all(&mut postfix, b"15:map example.com,5:map \xff,").await?;
//! drop(tokio::io::AsyncWriteExt::shutdown(&mut postfix).await);
//!
//! let mut framed = Framed::new(daemon, ServerCodec::new());
//! while let Some(request) = framed.next().await {
//!     let request = request?; // framing error: give up on the connection
//!     let reply = match request.key() {
//!         Ok("example.com") => Reply::ok("secure"),
//!         Ok(_) => Reply::NotFound,
//!         Err(err) => Reply::perm(err.to_string()), // this request only
//!     };
//!     framed.send(reply).await?;
//! }
//! drop(framed);
//!
//! let mut replies = Vec::new();
//! postfix.read_to_end(&mut replies).await?;
//! assert_eq!(&replies[..], b"9:OK secure,37:PERM socketmap key is not valid UTF-8,");
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//!
//! None. UNIX socket support in [`Connection`] and [`SocketmapClient`] is available on Unix platforms.

mod client;
mod connection;
mod error;
mod netstring;
mod socketmap;

#[cfg(not(unix))]
pub use crate::connection::NoUnix;
pub use bytes::{Bytes, BytesMut};
pub use tokio_util::codec::{Decoder, Encoder};

pub use crate::{
    client::SocketmapClient,
    connection::{Connection, OwnedReadHalf, OwnedWriteHalf, Socket},
    error::ProtoError,
    netstring::{DEFAULT_MAX_LEN, NetstringCodec},
    socketmap::{
        ClientCodec, DEFAULT_MAX_REPLY_LEN, DEFAULT_MAX_REQUEST_LEN, Reply, Request, ServerCodec,
    },
};
