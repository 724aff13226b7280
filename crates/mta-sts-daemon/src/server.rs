//! The socketmap server: accepts connections, reads pipelined requests, answers them in order.
//!
//! Per connection one task reads netstrings (socketmap_table(5)), starts each request's lookup at once and
//! keeps at most `max_pipeline` of them in flight ([`FuturesOrdered`]: they run concurrently, replies leave in
//! request order). A framing error (malformed or over-long netstring) ends that connection after the replies
//! already due are written; other connections are not affected. A connection that has no request pending and
//! receives no whole request for `limits.idle_timeout` is closed (a half-sent netstring does not keep it open).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use mtasts_engine::Engine;
use prometheus_client::registry::Registry;
use socketmap_proto::{Connection, ProtoError, Reply, Request, ServerCodec};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::answer::{AnswerKind, Key, dane_reply, normalize_key, reply_for};
use crate::config::{Config, LimitsConfig, ZoneConfig};
use crate::listen::Listener;
use crate::metrics::Metrics;
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

    /// The reply to one request. Never an error reply for a discovery problem (RFC 8461 §3.3).
    pub(crate) async fn answer(&self, request: &Request) -> Reply {
        let zone = self.zone(request.raw_name());
        let zone_id = self.metrics.zone(request.raw_name());
        let key = match request.key() {
            Ok(key) => key,
            Err(e) => {
                self.protocol_error(&e, false);
                self.metrics.answered(zone_id, AnswerKind::Invalid);
                return Reply::NotFound;
            }
        };
        let domain = match normalize_key(key) {
            Key::Domain(domain) => domain,
            Key::Skip(reason) => {
                debug!(key, reason = reason.as_str(), "no lookup");
                self.metrics.answered(zone_id, reason.into());
                return Reply::NotFound;
            }
        };
        let (reply, kind) = if zone.dane {
            // RFC 8461 §2: MTA-STS must not override DANE; `dane-only` / `dane` win where they apply.
            let found = self.engine.resolve_with_dane(&domain, zone.timeout).await;
            let answer = dane_reply(found.dane)
                .unwrap_or_else(|| reply_for(zone, &domain, found.mta_sts.policy.as_deref()));
            debug!(
                domain = domain.as_str(),
                source = %found.mta_sts.source,
                dane = found.dane.kind(),
                dane_source = %found.dane_source,
                reply = %answer.0,
                "answered"
            );
            answer
        } else {
            let resolution = self.engine.resolve(&domain, zone.timeout).await;
            let answer = reply_for(zone, &domain, resolution.policy.as_deref());
            debug!(domain = domain.as_str(), source = %resolution.source, reply = %answer.0, "answered");
            answer
        };
        self.metrics.answered(zone_id, kind);
        reply
    }
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

async fn answer(handler: Arc<Handler>, request: Option<Request>) -> Reply {
    match request {
        Some(request) => handler.answer(&request).await,
        None => {
            // A request that is not `name key` (socketmap_table(5)): no zone to count it under.
            let metrics = handler.metrics();
            metrics.answered(metrics.zone(b""), AnswerKind::Invalid);
            Reply::NotFound
        }
    }
}

/// Serves one client connection until it closes, sends a bad netstring, or `stop` is cancelled.
pub(crate) async fn serve_connection(
    stream: Connection,
    handler: Arc<Handler>,
    limits: &LimitsConfig,
    stop: CancellationToken,
) {
    let _open = handler.metrics().connection();
    let (read, write) = stream.into_split();
    let codec = ServerCodec::new().with_max_request_len(limits.max_request_size);
    let mut requests = FramedRead::new(read, codec.clone());
    let mut replies = FramedWrite::new(write, codec);
    let mut pending = FuturesOrdered::new();
    let mut reading = true;
    let started = Instant::now();
    let mut served: u64 = 0;
    // Runs only while no request is pending; restarted by the last reply of a batch.
    let idle_limit = (!limits.idle_timeout.is_zero()).then_some(limits.idle_timeout);
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = &mut idle, if idle_limit.is_some() && pending.is_empty() => {
                debug!(served, "idle connection closed (limits.idle_timeout)");
                break;
            }
            Some(reply) = pending.next(), if !pending.is_empty() => {
                served += 1;
                if let (true, Some(limit)) = (pending.is_empty(), idle_limit) {
                    idle.as_mut().reset(tokio::time::Instant::now() + limit);
                }
                // Flush when nothing else is ready to go, so pipelined replies share a write.
                let result = if pending.is_empty() { replies.send(reply).await } else { replies.feed(reply).await };
                if let Err(e) = result {
                    debug!(error = %e, "client went away while being answered");
                    return;
                }
            }
            frame = requests.next(), if reading && pending.len() < limits.max_pipeline => match frame {
                Some(Ok(request)) => pending.push_back(answer(Arc::clone(&handler), Some(request))),
                Some(Err(e)) if !e.is_fatal() => {
                    handler.protocol_error(&e, false);
                    pending.push_back(answer(Arc::clone(&handler), None));
                }
                Some(Err(e)) => {
                    handler.protocol_error(&e, true);
                    reading = false;
                }
                None => reading = false,
            },
            else => break,
        }
        if !reading && pending.is_empty() {
            break;
        }
    }
    let _ = SinkExt::<Reply>::flush(&mut replies).await;
    let _ = SinkExt::<Reply>::close(&mut replies).await;
    debug!(
        served,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection closed"
    );
}
