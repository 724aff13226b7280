//! The control socket (`control.socket`): the running daemon answers `mta-sts-daemon query` and the `cache`
//! commands (the protocol is in [`crate::control_client`]).
//!
//! It is an input like any other under the fault model: a request is at most
//! [`MAX_REQUEST`](crate::control_client::MAX_REQUEST) bytes, a connection that sends no whole request within
//! [`IDLE_TIMEOUT`] is closed, each request gets [`REQUEST_TIMEOUT`], at most [`MAX_CONNECTIONS`] connections are
//! served at once (more wait in the kernel's backlog), and a scan page holds at most
//! [`MAX_PAGE`](crate::control_client::MAX_PAGE) entries. The socket is mode 0660, the daemon's owner and group;
//! when its directory is missing and cannot be created, or it cannot be bound, the daemon warns and runs
//! without it.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use mtasts_cache::{CacheError, ScanToken};
use mtasts_core::PolicyDomain;
use mtasts_engine::{Engine, ResolvedPolicy};
use serde_json::{Value, json};
use socketmap_proto::{NetstringCodec, Reply};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::answer::{AnswerKind, Key, dane_reply, normalize_key, reply_for};
use crate::config::{Config, ZoneConfig};
use crate::control_client::{
    MAX_PAGE, MAX_REQUEST, Request, Response, WireEntry, WireError, WirePage, netstring,
};
use crate::daemon::Running;
use crate::metrics::Metrics;
use crate::privileges::SocketOwner;
use crate::ratelimit::LogLimiter;

/// The most connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 8;
/// How long a connection may take to send a whole request.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take (a query's discovery is bounded by its zone's timeout already).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The socket file's mode.
const MODE: u32 = 0o660;
/// The mode of the directory the daemon creates for it.
const DIR_MODE: u32 = 0o750;

/// Failed accepts are warned about at most once a second.
static ACCEPT_WARNINGS: LogLimiter = LogLimiter::new(Duration::from_secs(1));

/// The bound control socket, not serving yet; its file is removed when dropped, if it is still ours.
#[derive(Debug)]
pub(crate) struct ControlSocket {
    listener: Option<UnixListener>,
    file: SocketFile,
    zones: Zones,
}

/// The zone settings a query needs (the socketmap server's).
#[derive(Debug, Clone)]
struct Zones {
    default: ZoneConfig,
    named: BTreeMap<String, ZoneConfig>,
}

impl Zones {
    fn get(&self, name: &str) -> &ZoneConfig {
        self.named.get(name).unwrap_or(&self.default)
    }
}

/// The socket file we created (its inode), removed when dropped unless another daemon has replaced it since.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    inode: Option<(u64, u64)>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && Some((meta.dev(), meta.ino())) == self.inode
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What binding the control socket needs from the configuration, taken before the configuration moves on.
#[derive(Debug)]
pub(crate) struct PreparedControl {
    path: PathBuf,
    zones: Zones,
}

impl PreparedControl {
    /// Binds the socket for `owner` (creating its directory if missing), or warns and returns `None`. A socket
    /// file left by an earlier run is replaced, as is one a daemon still running answers on (the newest daemon
    /// answers; the older one leaves our file alone when it stops). Needs a tokio runtime.
    pub(crate) fn bind(self, owner: SocketOwner) -> Option<ControlSocket> {
        let Self { path, zones } = self;
        match bind(&path, owner) {
            Ok((listener, inode)) => {
                debug!(path = %path.display(), "control socket bound");
                Some(ControlSocket {
                    listener: Some(listener),
                    file: SocketFile {
                        path,
                        inode: Some(inode),
                    },
                    zones,
                })
            }
            Err(e) => {
                warn!(
                    path = %path.display(),
                    error = %e,
                    "control socket unavailable; running without it (mta-sts-daemon query and the cache commands cannot reach this daemon)"
                );
                None
            }
        }
    }
}

impl ControlSocket {
    /// The socket `config.control.socket` names, with the zones its queries use; bound by
    /// [`PreparedControl::bind`].
    pub(crate) fn prepare(config: &Config) -> PreparedControl {
        PreparedControl {
            path: config.control.socket.clone(),
            zones: Zones {
                default: config.default_zone.clone(),
                named: config.zones.clone(),
            },
        }
    }

    /// Serves requests about `running` until [`ControlServer::stop`].
    pub(crate) fn serve(mut self, running: &Running) -> ControlServer {
        let state = Arc::new(State {
            engine: running.engine().clone(),
            metrics: Arc::clone(running.metrics()),
            zones: self.zones.clone(),
        });
        let stop = CancellationToken::new();
        let listener = self.listener.take();
        let task =
            listener.map(|listener| tokio::spawn(accept_loop(listener, state, stop.clone())));
        info!(path = %self.file.path.display(), "control socket serving");
        ControlServer {
            stop,
            task,
            _socket: self,
        }
    }
}

/// A serving control socket.
#[derive(Debug)]
pub(crate) struct ControlServer {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    _socket: ControlSocket,
}

impl ControlServer {
    /// Stops accepting, and ends the open connections.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn bind(path: &Path, owner: SocketOwner) -> io::Result<(UnixListener, (u64, u64))> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
            })?;
        owner.apply(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt as _;
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    let set_up = || -> io::Result<(u64, u64)> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE))?;
        owner.apply(path)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok((meta.dev(), meta.ino()))
    };
    match set_up() {
        Ok(inode) => Ok((listener, inode)),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

/// What the requests need.
struct State {
    engine: Engine,
    metrics: Arc<Metrics>,
    zones: Zones,
}

async fn accept_loop(listener: UnixListener, state: Arc<State>, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if let Some(suppressed) = ACCEPT_WARNINGS.check() {
                        warn!(error = %e, suppressed, "control socket: accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            connection(stream, &state).await;
            drop(permit);
        });
        // Reap the finished ones, so that the set stays as small as the connections open.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// Serves one connection: requests one after the other until the client closes, is idle for
/// [`IDLE_TIMEOUT`], or sends something that is not a netstring of at most `MAX_REQUEST` bytes.
async fn connection(stream: UnixStream, state: &State) {
    let (read, mut write) = stream.into_split();
    let mut requests = FramedRead::new(read, NetstringCodec::new(MAX_REQUEST));
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, requests.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                debug!(error = %e, "control socket: unreadable request, closing");
                let response = error_response("request", &e.to_string());
                let _ = tokio::time::timeout(IDLE_TIMEOUT, write.write_all(&response)).await;
                return;
            }
            Ok(None) | Err(_) => return,
        };
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, state.handle(&frame)).await {
            Ok(response) => response,
            Err(_) => Response::Error(WireError {
                kind: "timeout".into(),
                message: format!("no answer within {REQUEST_TIMEOUT:?}"),
            }),
        };
        let body = serde_json::to_vec(&response).unwrap_or_else(|e| {
            serde_json::to_vec(&Response::Error(WireError {
                kind: "internal".into(),
                message: e.to_string(),
            }))
            .unwrap_or_default()
        });
        match tokio::time::timeout(IDLE_TIMEOUT, write.write_all(&netstring(&body))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

fn error_response(kind: &str, message: &str) -> Vec<u8> {
    let response = Response::Error(WireError {
        kind: kind.to_owned(),
        message: message.to_owned(),
    });
    netstring(&serde_json::to_vec(&response).unwrap_or_default())
}

fn cache_error(e: &CacheError) -> Response {
    Response::Error(WireError {
        kind: e.kind().to_owned(),
        message: e.with_causes(),
    })
}

fn ok(value: impl serde::Serialize) -> Response {
    match serde_json::to_value(value) {
        Ok(value) => Response::Ok(value),
        Err(e) => Response::Error(WireError {
            kind: "internal".into(),
            message: e.to_string(),
        }),
    }
}

/// A normalised policy domain, or the request error.
fn policy_domain(domain: &str) -> Result<PolicyDomain, Response> {
    PolicyDomain::parse(domain).map_err(|e| {
        Response::Error(WireError {
            kind: "request".into(),
            message: format!("{domain:?} is not a valid policy domain: {e}"),
        })
    })
}

impl State {
    async fn handle(&self, frame: &[u8]) -> Response {
        let request: Request = match serde_json::from_slice(frame) {
            Ok(request) => request,
            Err(e) => {
                return Response::Error(WireError {
                    kind: "request".into(),
                    message: format!("not a request: {e}"),
                });
            }
        };
        debug!(?request, "control request");
        match request {
            Request::Query { domain, zone } => Response::Ok(self.query(&zone, &domain).await),
            Request::Get { domain } => match policy_domain(&domain) {
                Ok(domain) => self.get(&domain).await,
                Err(response) => response,
            },
            Request::Scan { after, limit } => self.scan(after, limit.clamp(1, MAX_PAGE)).await,
            Request::Remove { domain } => match policy_domain(&domain) {
                Ok(domain) => match self.engine.purge(domain.as_str()).await {
                    Ok(removed) => ok(removed),
                    Err(e) => cache_error(&e),
                },
                Err(response) => response,
            },
            Request::Clear => match self.engine.purge_all().await {
                Ok(removed) => ok(removed),
                Err(e) => cache_error(&e),
            },
        }
    }

    /// The store's entry when there is a store, else what memory holds.
    async fn get(&self, domain: &PolicyDomain) -> Response {
        if let Some(store) = self.engine.store() {
            return match store.get(domain.as_str()).await {
                Ok(entry) => ok(entry.map(|e| WireEntry::new(domain.as_str(), &e))),
                Err(e) => cache_error(&e),
            };
        }
        let entry = self.engine.memory_entry(domain.as_str()).and_then(|m| {
            let policy = m.policy?;
            Some(memory_wire_entry(domain.as_str(), &policy, m.checked_at))
        });
        ok(entry)
    }

    /// A page of the store's entries when there is a store, else of the policies in memory.
    async fn scan(&self, after: Option<String>, limit: usize) -> Response {
        if let Some(store) = self.engine.store() {
            let token = after.map(ScanToken::new);
            return match store.scan(token.as_ref(), limit).await {
                Ok(page) => ok(WirePage {
                    entries: page
                        .entries
                        .iter()
                        .map(|(domain, entry)| WireEntry::new(domain, entry))
                        .collect(),
                    corrupt: page
                        .corrupt
                        .iter()
                        .map(|c| (c.domain.clone(), c.error.to_string()))
                        .collect(),
                    next: page.next.map(|t| t.as_str().to_owned()),
                }),
                Err(e) => cache_error(&e),
            };
        }
        let found = self.engine.memory_policies(after.as_deref(), limit);
        let next = (found.len() == limit)
            .then(|| found.last().map(|(domain, _)| domain.clone()))
            .flatten();
        let entries = found
            .iter()
            .filter_map(|(domain, m)| {
                let policy = m.policy.as_ref()?;
                Some(memory_wire_entry(domain, policy, m.checked_at))
            })
            .collect();
        ok(WirePage {
            entries,
            corrupt: Vec::new(),
            next,
        })
    }

    /// What a socketmap lookup of `key` in `zone` answers, with why: the same steps as the socketmap server's
    /// (zone, key normalisation, the engine's lookup with discovery, the reply), counted like one.
    async fn query(&self, zone_name: &str, key: &str) -> Value {
        let zone = self.zones.get(zone_name);
        let zone_id = self.metrics.zone(zone_name.as_bytes());
        let domain = match normalize_key(key) {
            Key::Domain(domain) => domain,
            Key::Skip(reason) => {
                let kind = AnswerKind::from(reason);
                self.metrics.answered(zone_id, kind);
                return json!({
                    "key": key, "zone": zone_name, "domain": null,
                    "reply": Reply::NotFound.to_string(), "kind": kind.as_str(),
                    "status": "no_policy", "source": null, "skipped": reason.as_str(),
                    "id": null, "policy": null, "cached": null, "dane": null,
                });
            }
        };
        let (reply, kind, resolution, dane) = if zone.dane {
            let found = self.engine.resolve_with_dane(&domain, zone.timeout).await;
            let (reply, kind) = dane_reply(found.dane)
                .unwrap_or_else(|| reply_for(zone, &domain, found.mta_sts.policy.as_deref()));
            let dane = json!({
                "answer": found.dane.kind(),
                "reply": found.dane.postfix_level().map(|level| format!("OK {level}")),
                "source": found.dane_source.as_str(),
            });
            (reply, kind, found.mta_sts, dane)
        } else {
            let resolution = self.engine.resolve(&domain, zone.timeout).await;
            let (reply, kind) = reply_for(zone, &domain, resolution.policy.as_deref());
            (reply, kind, resolution, Value::Null)
        };
        self.metrics.answered(zone_id, kind);
        let cached = self.engine.memory_entry(domain.as_str()).map(|m| {
            let policy = m.policy.as_deref();
            json!({
                "id": policy.map(|p| p.id().to_string()),
                "fetched_at": policy.map(ResolvedPolicy::fetched_at),
                "checked_at": m.checked_at,
                "expires_at": policy.map(ResolvedPolicy::expires_at),
                "fresh_until": m.fresh_until,
                "retry_after": m.retry_after,
            })
        });
        let policy = resolution.policy.as_deref();
        json!({
            "key": key,
            "zone": zone_name,
            "domain": domain.as_str(),
            "reply": reply.to_string(),
            "kind": kind.as_str(),
            "status": if policy.is_some() { "policy" } else { "no_policy" },
            "source": resolution.source.as_str(),
            "id": policy.map(|p| p.id().to_string()),
            "policy": policy.map(ResolvedPolicy::policy),
            "cached": cached,
            "dane": dane,
        })
    }
}

fn memory_wire_entry(domain: &str, policy: &ResolvedPolicy, checked_at: Option<u64>) -> WireEntry {
    WireEntry {
        domain: domain.to_owned(),
        policy_id: policy.id().to_string(),
        checked_at: checked_at.unwrap_or_else(|| policy.fetched_at()),
        fetched_at: policy.fetched_at(),
        policy: policy.policy().clone(),
    }
}
