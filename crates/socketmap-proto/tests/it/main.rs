//! Integration tests of socketmap-proto: codecs fed through real readers, property tests, and the
//! client against a small server over real TCP and UNIX sockets.

mod client;
mod framing;
mod postfix;
mod props;

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, ReadBuf};

/// An `AsyncRead` over fixed bytes that hands out at most `chunk` bytes per read, like a slow peer.
pub(crate) struct ChunkedReader {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl ChunkedReader {
    pub(crate) fn new(data: impl Into<Vec<u8>>, chunk: usize) -> Self {
        Self {
            data: data.into(),
            pos: 0,
            chunk: chunk.max(1),
        }
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let end = self.data.len().min(self.pos.saturating_add(self.chunk));
        let n = (end - self.pos).min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}
