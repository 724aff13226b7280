//! The load generator: closed-loop socketmap clients over TCP, as Postfix's `socketmap:` client asks (one
//! request in flight per connection) or pipelined (`depth` requests written at once).
//!
//! Requests are encoded once before the run. The keys are taken in one cycle shared by all connections, so a
//! run over more domains than the daemon's memory front holds is a true cyclic scan. Each reply is checked
//! (`OK …` expected); anything else, a closed connection or a reply later than [`REPLY_TIMEOUT`] is an error.
//! Latency is from writing a request to decoding its reply, in a histogram with three significant digits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use socketmap_proto::{BytesMut, ClientCodec, Decoder, Encoder, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// A reply later than this is an error (and the connection is opened again).
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Pre-encoded requests, one per key.
#[derive(Debug, Clone)]
pub(crate) struct Keys(Arc<[Vec<u8>]>);

impl Keys {
    /// `name key` requests for each key, netstring-encoded.
    pub(crate) fn new(name: &str, keys: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut codec = ClientCodec::new();
        let encoded = keys
            .into_iter()
            .map(|key| {
                let mut buf = BytesMut::new();
                codec.encode(Request::new(name, &key)?, &mut buf)?;
                Ok(buf.to_vec())
            })
            .collect::<Result<Vec<_>, socketmap_proto::ProtoError>>()
            .context("encode request")?;
        Ok(Self(encoded.into()))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The shape of a closed-loop run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Connections, each with its own task.
    pub(crate) connections: usize,
    /// Requests written at once on a connection (1: wait for each reply, as Postfix does).
    pub(crate) depth: usize,
}

/// What a run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// `OK` replies.
    pub(crate) good: u64,
    /// Other replies, and requests not answered (closed connection, timeout).
    pub(crate) errors: u64,
    /// From the first write to the last reply.
    pub(crate) elapsed: Duration,
    /// Latency per request, nanoseconds.
    pub(crate) latency: Histogram<u64>,
}

impl Outcome {
    fn empty() -> Self {
        Self {
            good: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: new_histogram(),
        }
    }

    /// Good replies per second.
    pub(crate) fn per_second(&self) -> f64 {
        self.good as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// A latency quantile.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.latency.value_at_quantile(q))
    }

    fn merge(&mut self, other: &Self) {
        self.good += other.good;
        self.errors += other.errors;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at three significant digits; anything outside saturates.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Until {
    /// Write no new request after this long (replies in flight are still awaited).
    Elapsed(Duration),
    /// After this many requests in all (each key once when it is the number of keys).
    Requests(usize),
}

/// Runs `shape` against `addr` over `keys` until `until`.
pub(crate) async fn run(
    addr: SocketAddr,
    keys: &Keys,
    shape: Shape,
    until: Until,
) -> Result<Outcome> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::with_capacity(shape.connections);
    for _ in 0..shape.connections {
        streams.push(connect(addr).await?);
    }
    let began = Instant::now();
    let stop = match until {
        Until::Elapsed(duration) => Stop::At(began + duration),
        Until::Requests(count) => Stop::After(count),
    };
    let mut tasks = JoinSet::new();
    for stream in streams {
        let keys = keys.clone();
        let next = Arc::clone(&next);
        tasks.spawn(connection(addr, stream, keys, next, shape.depth, stop));
    }
    let mut total = Outcome::empty();
    while let Some(outcome) = tasks.join_next().await {
        total.merge(&outcome.context("load task")?);
    }
    total.elapsed = began.elapsed();
    Ok(total)
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    At(Instant),
    After(usize),
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One connection's loop: take the next `depth` keys of the shared cycle, write them at once, read their
/// replies, until `stop`.
async fn connection(
    addr: SocketAddr,
    mut stream: TcpStream,
    keys: Keys,
    next: Arc<AtomicUsize>,
    depth: usize,
    stop: Stop,
) -> Outcome {
    let mut outcome = Outcome::empty();
    let mut codec = ClientCodec::new();
    let mut output = Vec::with_capacity(depth * 64);
    let mut input = BytesMut::with_capacity(64 * 1024);
    loop {
        if let Stop::At(deadline) = stop
            && Instant::now() >= deadline
        {
            break;
        }
        let first = next.fetch_add(depth, Ordering::Relaxed);
        let batch = match stop {
            Stop::At(_) => depth,
            Stop::After(count) if first >= count => break,
            Stop::After(count) => depth.min(count - first),
        };
        output.clear();
        for i in first..first + batch {
            output.extend_from_slice(&keys.0[i % keys.len()]);
        }
        let mut received = 0;
        let sent = Instant::now();
        let exchanged = tokio::time::timeout(REPLY_TIMEOUT, async {
            stream.write_all(&output).await?;
            while received < batch {
                while received < batch
                    && let Some(reply) = codec.decode(&mut input)?
                {
                    received += 1;
                    let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    outcome.latency.saturating_record(nanos);
                    if matches!(reply, Reply::Ok(_)) {
                        outcome.good += 1;
                    } else {
                        outcome.errors += 1;
                    }
                }
                if received < batch && stream.read_buf(&mut input).await? == 0 {
                    anyhow::bail!("connection closed");
                }
            }
            Ok(())
        })
        .await;
        if !matches!(exchanged, Ok(Ok(()))) {
            // The replies still missing from this batch are errors; go on over a new connection.
            outcome.errors += (batch - received) as u64;
            input.clear();
            codec = ClientCodec::new();
            match connect(addr).await {
                Ok(fresh) => stream = fresh,
                Err(_) => break,
            }
        }
    }
    outcome
}
