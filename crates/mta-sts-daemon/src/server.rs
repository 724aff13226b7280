//! The socketmap server: accepts connections, reads pipelined requests, answers them in order.
//!
//! Per connection one task reads netstrings (socketmap_table(5)), starts each request's lookup at once and
//! keeps at most `max_pipeline` of them in flight ([`FuturesOrdered`]: they run concurrently, replies leave in
//! request order). A framing error (malformed or over-long netstring) ends that connection after the replies
//! already due are written; other connections are not affected. A connection that has no request pending and
//! receives no whole request for `limits.idle_timeout` is closed (a half-sent netstring does not keep it open).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt as _, StreamExt as _};
use mtasts_core::PolicyDomain;
use mtasts_engine::{Engine, Resolution};
use prometheus_client::registry::Registry;
use socketmap_proto::{Connection, ProtoError, Reply, Request, ServerCodec};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::codec::{Decoder as _, Encoder as _};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::answer::{AnswerKind, Key, dane_reply, normalize_key, reply_for};
use crate::config::{Config, LimitsConfig, ZoneConfig};
use crate::listen::Listener;
use crate::metrics::{Metrics, ZoneId};
use crate::ratelimit::LogLimiter;

/// Protocol errors from clients are logged at most once a second (a client sending garbage in a loop would
/// flood the log); `mtasts_protocol_errors_total` counts them all.
static PROTOCOL_WARNINGS: LogLimiter = LogLimiter::new(Duration::from_secs(1));

/// Answers socketmap requests: zone selection, key normalization, the engine lookup, the reply text.
#[derive(Debug)]
pub(crate) struct Handler {
    engine: Engine,
    default_zone: ZoneConfig,
    zones: std::collections::BTreeMap<String, ZoneConfig>,
    metrics: Arc<Metrics>,
}

impl Handler {
    /// A handler over `engine` with the zones of `config`, counting into its own [`Metrics`].
    pub(crate) fn new(engine: Engine, config: &Config) -> Self {
        Self {
            engine,
            default_zone: config.default_zone.clone(),
            zones: config.zones.clone(),
            metrics: Arc::new(Metrics::new(&mut Registry::default(), config.zones.keys())),
        }
    }

    /// Counts answers and connections into `metrics` (shared with the metrics endpoint).
    #[must_use]
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The counters.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn zone(&self, name: &[u8]) -> &ZoneConfig {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.zones.get(n))
            .unwrap_or(&self.default_zone)
    }

    /// Counts a client's protocol error (socketmap_table(5) framing or request syntax) and logs it, at most one
    /// line a second; `closing`: the connection ends over it.
    fn protocol_error(&self, error: &ProtoError, closing: bool) {
        self.metrics.protocol_error();
        match PROTOCOL_WARNINGS.check() {
            Some(suppressed) => warn!(
                %error,
                kind = error.kind(),
                closing,
                suppressed,
                "socketmap protocol error from a client (one line a second at most; \
                 mtasts_protocol_errors_total counts them all)"
            ),
            None => {
                debug!(%error, kind = error.kind(), closing, "socketmap protocol error from a client");
            }
        }
    }

    /// The zone, key and domain of one request, or its reply when it needs no lookup.
    fn prepare<'a>(&'a self, request: &Request) -> Result<Lookup<'a>, Reply> {
        let zone = self.zone(request.raw_name());
        let zone_id = self.metrics.zone(request.raw_name());
        let key = match request.key() {
            Ok(key) => key,
            Err(e) => {
                self.protocol_error(&e, false);
                self.metrics.answered(zone_id, AnswerKind::Invalid);
                return Err(Reply::NotFound);
            }
        };
        match normalize_key(key) {
            Key::Domain(domain) => Ok(Lookup {
                zone,
                zone_id,
                domain,
            }),
            Key::Skip(reason) => {
                debug!(key, reason = reason.as_str(), "no lookup");
                self.metrics.answered(zone_id, reason.into());
                Err(Reply::NotFound)
            }
        }
    }

    /// The reply to one request when it can be given without waiting: a key that needs no lookup, or a domain
    /// whose answer is in memory (outside `dane` zones, whose DANE answer is looked up apart). `None`: ask
    /// [`Handler::answer`].
    pub(crate) fn answer_now(&self, request: &Request) -> Option<Reply> {
        let lookup = match self.prepare(request) {
            Ok(lookup) => lookup,
            Err(reply) => return Some(reply),
        };
        if lookup.zone.dane {
            return None;
        }
        let resolution = self.engine.cached(&lookup.domain)?;
        Some(self.mta_sts_answer(&lookup, &resolution))
    }

    /// The reply to one request. Never an error reply for a discovery problem (RFC 8461 §3.3).
    pub(crate) async fn answer(&self, request: &Request) -> Reply {
        let lookup = match self.prepare(request) {
            Ok(lookup) => lookup,
            Err(reply) => return reply,
        };
        let Lookup {
            zone,
            zone_id,
            ref domain,
        } = lookup;
        if !zone.dane {
            let resolution = self.engine.resolve(domain, zone.timeout).await;
            return self.mta_sts_answer(&lookup, &resolution);
        }
        // RFC 8461 §2: MTA-STS must not override DANE; `dane-only` / `dane` win where they apply.
        let found = self.engine.resolve_with_dane(domain, zone.timeout).await;
        let (reply, kind) = dane_reply(found.dane)
            .unwrap_or_else(|| reply_for(zone, domain, found.mta_sts.policy.as_deref()));
        debug!(
            domain = domain.as_str(),
            source = %found.mta_sts.source,
            dane = found.dane.kind(),
            dane_source = %found.dane_source,
            reply = %reply,
            "answered"
        );
        self.metrics.answered(zone_id, kind);
        reply
    }

    /// The MTA-STS reply for `resolution`, counted.
    fn mta_sts_answer(&self, lookup: &Lookup<'_>, resolution: &Resolution) -> Reply {
        let (reply, kind) = reply_for(lookup.zone, &lookup.domain, resolution.policy.as_deref());
        debug!(domain = lookup.domain.as_str(), source = %resolution.source, reply = %reply, "answered");
        self.metrics.answered(lookup.zone_id, kind);
        reply
    }
}

/// A request that needs a lookup.
struct Lookup<'a> {
    zone: &'a ZoneConfig,
    zone_id: ZoneId,
    domain: PolicyDomain,
}

/// Serves `listeners` until `stop` is cancelled, then stops accepting at once (the listeners are closed, so
/// another instance sharing the port takes new clients) and lets open connections finish until their clients
/// close them or `shutdown_timeout` passes (then they are cut).
pub(crate) async fn serve(
    listeners: Vec<Listener>,
    handler: Arc<Handler>,
    limits: LimitsConfig,
    shutdown_timeout: Duration,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (accepted_tx, mut accepted) = mpsc::channel::<(Connection, OwnedSemaphorePermit)>(1);
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        acceptors.spawn(accept_loop(
            listener,
            Arc::clone(&permits),
            accepted_tx.clone(),
            stop.clone(),
        ));
    }
    drop(accepted_tx);
    let mut connections = JoinSet::new();
    let conn_stop = CancellationToken::new();
    loop {
        let (stream, permit) = tokio::select! {
            () = stop.cancelled() => break,
            next = accepted.recv() => match next {
                Some(next) => next,
                None => break,
            },
        };
        let handler = Arc::clone(&handler);
        let limits = limits.clone();
        let conn_stop = conn_stop.clone();
        connections.spawn(async move {
            serve_connection(stream, handler, &limits, conn_stop).await;
            drop(permit);
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    // Stop accepting at once: the acceptors drop their listeners (UNIX socket files are removed).
    stop.cancel();
    while acceptors.join_next().await.is_some() {}
    // Clients accepted but not yet handed over are closed.
    drop(accepted);
    // Only the connections still open: those that ended are reaped first (`len` counts them until joined).
    while connections.try_join_next().is_some() {}
    let open = connections.len();
    if open > 0 {
        info!(
            open,
            timeout_s = shutdown_timeout.as_secs_f64(),
            "waiting for open connections to finish"
        );
    }
    let drained = tokio::time::timeout(shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            remaining = connections.len(),
            "shutdown timeout expired, closing remaining connections"
        );
        conn_stop.cancel();
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Accepts clients on one listener; taking a connection permit first leaves excess clients in the kernel
/// backlog.
async fn accept_loop(
    listener: Listener,
    permits: Arc<Semaphore>,
    accepted: mpsc::Sender<(Connection, OwnedSemaphorePermit)>,
    stop: CancellationToken,
) {
    while let Some(client) = listener.accept_permitted(&permits, &stop).await {
        if accepted.send(client).await.is_err() {
            break;
        }
    }
    drop(listener);
}

/// The reply to a request that may not be `name key`, when it needs no waiting ([`Handler::answer_now`]).
fn answer_now(handler: &Handler, request: Option<&Request>) -> Option<Reply> {
    match request {
        Some(request) => handler.answer_now(request),
        None => Some(invalid(handler)),
    }
}

/// The reply to a request that may not be `name key`.
async fn answer(handler: Arc<Handler>, request: Option<Request>) -> Reply {
    match request {
        Some(request) => handler.answer(&request).await,
        None => invalid(&handler),
    }
}

/// A request that is not `name key` (socketmap_table(5)): no zone to count it under.
fn invalid(handler: &Handler) -> Reply {
    let metrics = handler.metrics();
    metrics.answered(metrics.zone(b""), AnswerKind::Invalid);
    Reply::NotFound
}

/// Appends `reply` to `output`. Every reply fits the socketmap limit (`answer::reply_for` sees to it); one that
/// would not is answered `NOTFOUND ` instead, and the connection stays open (closing it would lose the
/// replies pipelined after it, and Postfix would defer the mail).
fn encode(codec: &mut ServerCodec, reply: &Reply, output: &mut BytesMut) {
    if let Err(e) = codec.encode(reply, output) {
        if let Some(suppressed) = ENCODE_ERRORS.check() {
            error!(error = %e, suppressed, "a reply over the socketmap limit, answering NOTFOUND instead");
        }
        let _ = codec.encode(&Reply::NotFound, output);
    }
}

/// Reserved in the read buffer before each read: room for a few hundred pipelined requests.
const READ_CAPACITY: usize = 16 * 1024;

/// Replies gathered before they are written, at most (and one more reply): a client that pipelines many
/// requests for long replies does not make the connection buffer them all.
const WRITE_BATCH: usize = 64 * 1024;

/// Errors for replies the codec refused, at most one a second.
static ENCODE_ERRORS: LogLimiter = LogLimiter::new(Duration::from_secs(1));

/// Serves one client connection until it closes, sends a bad netstring, or `stop` is cancelled.
///
/// Each turn decodes every whole request already read, answers at once those whose answer is in memory (when
/// none is pending before them), gathers every reply that is ready, and writes them all in one call; only then
/// does it wait for more input or a pending lookup.
pub(crate) async fn serve_connection(
    stream: Connection,
    handler: Arc<Handler>,
    limits: &LimitsConfig,
    stop: CancellationToken,
) {
    let _open = handler.metrics().connection();
    // Owned halves: no lock between reading and writing (`tokio::io::split` would take one on every call).
    let (mut read, mut write) = stream.into_split();
    let mut codec = ServerCodec::new().with_max_request_len(limits.max_request_size);
    let mut input = BytesMut::with_capacity(READ_CAPACITY);
    let mut output = BytesMut::new();
    let mut pending = FuturesOrdered::new();
    // `reading`: requests may still come; `eof`: the client closed its side (what is buffered is still read).
    let mut reading = true;
    let mut eof = false;
    let started = Instant::now();
    let mut served: u64 = 0;
    // `served` when the idle timer was last restarted.
    let mut idle_from: u64 = 0;
    let mut batch_full = false;
    // Runs only while no request is pending; restarted by the last reply of a batch.
    let idle_limit = (!limits.idle_timeout.is_zero()).then_some(limits.idle_timeout);
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    loop {
        // Every whole request already read, in order.
        while reading && pending.len() < limits.max_pipeline {
            if output.len() >= WRITE_BATCH {
                batch_full = true;
                break;
            }
            let decoded = if eof {
                codec.decode_eof(&mut input)
            } else {
                codec.decode(&mut input)
            };
            let request = match decoded {
                Ok(Some(request)) => Some(request),
                Ok(None) => {
                    reading = !eof;
                    break;
                }
                Err(e) if !e.is_fatal() => {
                    handler.protocol_error(&e, false);
                    None
                }
                Err(e) => {
                    handler.protocol_error(&e, true);
                    reading = false;
                    break;
                }
            };
            // A reply at once only when no earlier one is still pending: replies leave in request order.
            if pending.is_empty()
                && let Some(reply) = answer_now(&handler, request.as_ref())
            {
                encode(&mut codec, &reply, &mut output);
                served += 1;
                continue;
            }
            pending.push_back(answer(Arc::clone(&handler), request));
        }
        // Every pending reply that is ready, in order.
        while !pending.is_empty() {
            if output.len() >= WRITE_BATCH {
                batch_full = true;
                break;
            }
            match pending.next().now_or_never() {
                Some(Some(reply)) => {
                    encode(&mut codec, &reply, &mut output);
                    served += 1;
                }
                _ => break,
            }
        }
        // All of them in one write.
        if !output.is_empty() {
            if let Err(e) = write.write_all(&output).await {
                debug!(error = %e, "client went away while being answered");
                return;
            }
            output.clear();
        }
        if !reading && pending.is_empty() {
            break;
        }
        // The idle timer restarts once the last pending reply has left.
        if let (true, true, Some(limit)) = (served != idle_from, pending.is_empty(), idle_limit) {
            idle.as_mut().reset(tokio::time::Instant::now() + limit);
            idle_from = served;
        }
        // Stopped by the batch limit: go on without waiting.
        if std::mem::take(&mut batch_full) {
            continue;
        }
        if input.capacity() - input.len() < READ_CAPACITY / 4 {
            input.reserve(READ_CAPACITY);
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = &mut idle, if idle_limit.is_some() && pending.is_empty() => {
                debug!(served, "idle connection closed (limits.idle_timeout)");
                break;
            }
            Some(reply) = pending.next(), if !pending.is_empty() => {
                encode(&mut codec, &reply, &mut output);
                served += 1;
            }
            result = read.read_buf(&mut input), if reading && !eof && pending.len() < limits.max_pipeline => {
                match result {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(e) => {
                        debug!(error = %e, "read failed, closing the connection");
                        reading = false;
                    }
                }
            }
            else => break,
        }
    }
    let _ = write.shutdown().await;
    debug!(
        served,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection closed"
    );
}
