//! The control socket's protocol, and its client: how `mta-sts-daemon query` and the `cache` commands ask the
//! running daemon.
//!
//! A UNIX stream socket (`control.socket`); each message is one netstring whose data is one JSON object. The
//! client sends a request and reads its response, and may send another on the same connection:
//!
//! ```text
//! client → daemon   39:{"op":"query","domain":"example.com","zone":"postfix"},
//! daemon → client   NN:{"ok":{"reply":"OK secure match=…","source":"discovered",…}},
//! client → daemon   40:{"op":"scan","after":"example.com","limit":256},
//! daemon → client   NN:{"ok":{"entries":[…],"corrupt":[],"next":null}},
//! ```
//!
//! Requests (`op`): `query` (a socketmap lookup, explained), `get` (one domain's cached entry), `scan` (a page
//! of entries after a domain), `remove` (purge one domain), `clear` (purge all). A response is `{"ok": …}` or
//! `{"error": {"kind", "message"}}`. The daemon reads requests of at most [`MAX_REQUEST`] bytes; responses are at
//! most [`MAX_RESPONSE`] bytes (a scan page holds at most [`MAX_PAGE`] entries).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;
use mtasts_cache::{CacheEntry, CacheError, CorruptEntry, PolicyCache, ScanPage, ScanToken};
use mtasts_core::Policy;
use socketmap_proto::NetstringCodec;
use tokio::io::{AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio_util::codec::FramedRead;

/// The longest request the daemon reads, in bytes.
pub(crate) const MAX_REQUEST: usize = 4096;
/// The longest response the client reads, in bytes (a page of large policies).
pub(crate) const MAX_RESPONSE: usize = 32 << 20;
/// The most entries one `scan` response holds.
pub(crate) const MAX_PAGE: usize = 256;
/// How long the client waits for one response (a query runs a discovery: the zone's timeout at most, plus a
/// store that is slow).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// What a socketmap lookup of `domain` (any socketmap key) in `zone` answers, and why.
    Query {
        /// The key, as Postfix would send it.
        domain: String,
        /// The socketmap name.
        zone: String,
    },
    /// One domain's cached entry.
    Get {
        /// A normalised policy domain.
        domain: String,
    },
    /// A page of cached entries, after `after` in domain order (or the store's own token).
    Scan {
        /// Where the previous page ended.
        after: Option<String>,
        /// At most this many (and at most [`MAX_PAGE`]).
        limit: usize,
    },
    /// Purge one domain (memory and store).
    Remove {
        /// A normalised policy domain.
        domain: String,
    },
    /// Purge every domain (memory and store).
    Clear,
}

/// A response from the daemon.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Response {
    /// The result.
    Ok(serde_json::Value),
    /// Why there is none.
    Error(WireError),
}

/// An error, as it crosses the socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{message}")]
pub(crate) struct WireError {
    /// A stable label: a [`CacheError::kind`], or `request` (a request the daemon could not read), `timeout`.
    pub(crate) kind: String,
    /// What happened.
    pub(crate) message: String,
}

/// A cache entry, as it crosses the socket.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct WireEntry {
    /// The domain.
    pub(crate) domain: String,
    /// The policy id.
    pub(crate) policy_id: String,
    /// Last confirmed current (Unix seconds).
    pub(crate) checked_at: u64,
    /// Last fetched over HTTPS (Unix seconds).
    pub(crate) fetched_at: u64,
    /// The policy.
    pub(crate) policy: Policy,
}

impl WireEntry {
    /// `entry` of `domain`.
    pub(crate) fn new(domain: &str, entry: &CacheEntry) -> Self {
        Self {
            domain: domain.to_owned(),
            policy_id: entry.policy_id.to_string(),
            checked_at: entry.checked_at,
            fetched_at: entry.fetched_at,
            policy: entry.policy.clone(),
        }
    }

    fn into_entry(self) -> Result<(String, CacheEntry), CacheError> {
        let id = self
            .policy_id
            .parse()
            .map_err(|e| CacheError::corrupt(&self.domain, format!("policy id: {e}")))?;
        let mut entry = CacheEntry::new(self.checked_at, id, self.policy);
        entry.fetched_at = self.fetched_at;
        Ok((self.domain, entry))
    }
}

/// A page of entries, as it crosses the socket.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct WirePage {
    /// The entries.
    pub(crate) entries: Vec<WireEntry>,
    /// Entries that could not be read: domain and why.
    pub(crate) corrupt: Vec<(String, String)>,
    /// Where the next page starts; `None` at the end.
    pub(crate) next: Option<String>,
}

/// The netstring of `data`.
pub(crate) fn netstring(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(data);
    out.push(b',');
    out
}

/// Whether a failed connect means "no daemon runs" (the socket file is absent, or nothing listens on it), after
/// which the `cache` commands work on the store directly; any other error (`EACCES`…) is reported.
pub(crate) fn no_daemon(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// A connection to the running daemon's control socket.
#[derive(Debug)]
pub(crate) struct ControlClient {
    path: PathBuf,
    conn: Mutex<Conn>,
}

#[derive(Debug)]
struct Conn {
    read: FramedRead<ReadHalf<UnixStream>, NetstringCodec>,
    write: WriteHalf<UnixStream>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The connection failed, or the daemon sent something unreadable or nothing in time.
    #[error("control socket {path}: {reason}")]
    Transport {
        /// The socket.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// The daemon answered with an error.
    #[error("the daemon: {0}")]
    Daemon(WireError),
}

impl ControlClient {
    /// Connects to the socket at `path`.
    ///
    /// # Errors
    ///
    /// The connect's error ([`no_daemon`] tells which mean no daemon runs).
    pub(crate) async fn connect(path: &Path) -> io::Result<Self> {
        let stream = UnixStream::connect(path).await?;
        let (read, write) = tokio::io::split(stream);
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(Conn {
                read: FramedRead::new(read, NetstringCodec::new(MAX_RESPONSE)),
                write,
            }),
        })
    }

    /// Sends `request` and returns the result, within a minute.
    ///
    /// # Errors
    ///
    /// The daemon's error, or a failed, unreadable or late exchange.
    pub(crate) async fn call(&self, request: &Request) -> Result<serde_json::Value, CallError> {
        let transport = |reason: String| CallError::Transport {
            path: self.path.clone(),
            reason,
        };
        let body = serde_json::to_vec(request).map_err(|e| transport(e.to_string()))?;
        let mut conn = self.conn.lock().await;
        let exchange = async {
            conn.write.write_all(&netstring(&body)).await?;
            conn.write.flush().await?;
            match conn.read.next().await {
                Some(frame) => frame.map_err(io::Error::other),
                None => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the daemon closed the connection",
                )),
            }
        };
        let frame = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| transport(format!("no response within {CALL_TIMEOUT:?}")))?
            .map_err(|e| transport(e.to_string()))?;
        match serde_json::from_slice::<Response>(&frame) {
            Ok(Response::Ok(value)) => Ok(value),
            Ok(Response::Error(error)) => Err(CallError::Daemon(error)),
            Err(e) => Err(transport(format!("unreadable response: {e}"))),
        }
    }

    async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        request: &Request,
    ) -> Result<T, CacheError> {
        let value = self.call(request).await.map_err(|e| match e {
            CallError::Daemon(WireError { kind, message }) if kind == "corrupt" => {
                CacheError::corrupt(request_domain(request), message)
            }
            other => CacheError::unavailable("daemon", other),
        })?;
        serde_json::from_value(value).map_err(|e| CacheError::unavailable("daemon", e))
    }
}

fn request_domain(request: &Request) -> &str {
    match request {
        Request::Query { domain, .. } | Request::Get { domain } | Request::Remove { domain } => {
            domain
        }
        Request::Scan { .. } | Request::Clear => "",
    }
}

/// The `cache` commands through the daemon: what it reads and purges is its store when it has one, else its
/// memory, and a purge reaches its memory front at once. Writes are not offered.
#[mtasts_cache::async_trait]
impl PolicyCache for ControlClient {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        let found: Option<WireEntry> = self
            .call_as(&Request::Get {
                domain: domain.to_owned(),
            })
            .await?;
        found
            .map(|e| e.into_entry().map(|(_, entry)| entry))
            .transpose()
    }

    async fn set(&self, _: &str, _: &CacheEntry) -> Result<bool, CacheError> {
        Err(not_offered())
    }

    async fn scan(&self, token: Option<&ScanToken>, limit: usize) -> Result<ScanPage, CacheError> {
        let page: WirePage = self
            .call_as(&Request::Scan {
                after: token.map(|t| t.as_str().to_owned()),
                limit: limit.min(MAX_PAGE),
            })
            .await?;
        let mut corrupt: Vec<CorruptEntry> = page
            .corrupt
            .into_iter()
            .map(|(domain, reason)| CorruptEntry {
                error: CacheError::corrupt(&domain, reason),
                domain,
            })
            .collect();
        let mut entries = Vec::with_capacity(page.entries.len());
        for wire in page.entries {
            let domain = wire.domain.clone();
            match wire.into_entry() {
                Ok(entry) => entries.push(entry),
                Err(error) => corrupt.push(CorruptEntry { domain, error }),
            }
        }
        Ok(ScanPage {
            entries,
            corrupt,
            next: page.next.map(ScanToken::new),
        })
    }

    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        self.call_as(&Request::Remove {
            domain: domain.to_owned(),
        })
        .await
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        self.call_as(&Request::Clear).await
    }

    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        Err(not_offered())
    }

    async fn set_proactive_fetch_ts(&self, _: u64) -> Result<(), CacheError> {
        Err(not_offered())
    }

    async fn close(&self) {}
}

fn not_offered() -> CacheError {
    CacheError::Config {
        store: "daemon",
        reason: "not offered over the control socket".into(),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_keep_their_wire_form() {
        let request = Request::Query {
            domain: "example.com".into(),
            zone: "postfix".into(),
        };
        let text = serde_json::to_string(&request).expect("json");
        assert_eq!(
            text,
            r#"{"op":"query","domain":"example.com","zone":"postfix"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(&text).expect("back"),
            request
        );
        assert_eq!(
            serde_json::to_string(&Request::Clear).expect("json"),
            r#"{"op":"clear"}"#
        );
        let error = Response::Error(WireError {
            kind: "request".into(),
            message: "bad".into(),
        });
        assert_eq!(
            serde_json::to_string(&error).expect("json"),
            r#"{"error":{"kind":"request","message":"bad"}}"#
        );
        assert_eq!(netstring(b"hello"), b"5:hello,");
    }

    #[test]
    fn only_an_absent_or_refusing_socket_means_no_daemon() {
        assert!(no_daemon(&io::Error::from(io::ErrorKind::NotFound)));
        assert!(no_daemon(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
        assert!(!no_daemon(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }
}
