//! An in-process HTTPS server for policy files, with per-host responses and certificates.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::ca::TestCa;

/// Which certificate the server presents for a host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertKind {
    /// Issued by the server's [`TestCa`] for the requested name (the default).
    #[default]
    Valid,
    /// Issued for the requested name by another CA that no client trusts.
    UntrustedCa,
    /// Issued by the server's [`TestCa`], but for `wrong-name.invalid` only.
    WrongName,
}

/// What the server answers for one host. Built with [`PolicyResponse::policy`] or
/// [`PolicyResponse::status`] and adjusted with the other methods.
///
/// ```
/// use mtasts_test_support::PolicyResponse;
/// let _ok = PolicyResponse::policy("version: STSv1\nmode: none\nmax_age: 86400\n");
/// let _html = PolicyResponse::policy("version: STSv1\n").content_type("text/html");
/// let _moved = PolicyResponse::status(301).header("location", "https://elsewhere.test/");
/// let _huge = PolicyResponse::policy("x".repeat(70_000)).chunked();
/// ```
#[derive(Clone, Debug)]
pub struct PolicyResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    chunked: bool,
    stall_after: Option<usize>,
    abort_after: Option<usize>,
    cert: CertKind,
}

type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl PolicyResponse {
    /// `200 OK`, `Content-Type: text/plain`, with `text` as the body (sent with Content-Length).
    pub fn policy(text: impl Into<String>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
            body: Bytes::from(text.into()),
            chunked: false,
            stall_after: None,
            abort_after: None,
            cert: CertKind::Valid,
        }
    }

    /// The given status, `Content-Type: text/plain` and an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::policy("")
        }
    }

    /// A redirect (`status`, e.g. 301) to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::status(status).header("location", location)
    }

    /// Replaces the Content-Type header.
    #[must_use]
    pub fn content_type(mut self, value: &str) -> Self {
        self.headers.retain(|(n, _)| n != "content-type");
        self.headers
            .push(("content-type".to_owned(), value.to_owned()));
        self
    }

    /// Removes the Content-Type header.
    #[must_use]
    pub fn no_content_type(mut self) -> Self {
        self.headers.retain(|(n, _)| n != "content-type");
        self
    }

    /// Adds a header (names are lowercased).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Replaces the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the body with chunked transfer encoding (no Content-Length), in 4 KiB chunks.
    #[must_use]
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Sends only the first `bytes` bytes of the body, then stalls forever (the connection
    /// stays open). Unless [`PolicyResponse::chunked`], the Content-Length of the whole body
    /// is announced.
    #[must_use]
    pub fn stall_after(mut self, bytes: usize) -> Self {
        self.stall_after = Some(bytes);
        self
    }

    /// Sends only the first `bytes` bytes of the body, then closes the connection abruptly.
    /// Unless [`PolicyResponse::chunked`], the Content-Length of the whole body is announced.
    #[must_use]
    pub fn abort_after(mut self, bytes: usize) -> Self {
        self.abort_after = Some(bytes);
        self
    }

    /// Presents a certificate from a CA no client trusts.
    #[must_use]
    pub fn untrusted_cert(mut self) -> Self {
        self.cert = CertKind::UntrustedCa;
        self
    }

    /// Presents a certificate (from the trusted CA) for another name.
    #[must_use]
    pub fn wrong_name_cert(mut self) -> Self {
        self.cert = CertKind::WrongName;
        self
    }

    /// Presents the given kind of certificate.
    #[must_use]
    pub fn cert(mut self, kind: CertKind) -> Self {
        self.cert = kind;
        self
    }

    fn into_response(self) -> Response<BoxBody<Bytes, BodyError>> {
        let cut = self.stall_after.or(self.abort_after);
        let streamed = self.chunked || cut.is_some();
        let body: BoxBody<Bytes, BodyError> = if streamed {
            let sent = cut.map_or(self.body.clone(), |n| {
                self.body.slice(..n.min(self.body.len()))
            });
            let chunks: Vec<Bytes> = sent.chunks(4096).map(Bytes::copy_from_slice).collect();
            let frames = stream::iter(
                chunks
                    .into_iter()
                    .map(|c| Ok::<_, BodyError>(Frame::data(c))),
            );
            if self.stall_after.is_some() {
                BodyExt::boxed(StreamBody::new(frames.chain(stream::pending())))
            } else if self.abort_after.is_some() {
                let abort = stream::once(async {
                    Err::<Frame<Bytes>, BodyError>("aborted by test".into())
                });
                BodyExt::boxed(StreamBody::new(frames.chain(abort)))
            } else {
                BodyExt::boxed(StreamBody::new(frames))
            }
        } else {
            BodyExt::boxed(Full::new(self.body.clone()).map_err(|never| match never {}))
        };
        let mut response = Response::new(body);
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        if cut.is_some() && !self.chunked {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        response
    }
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The TLS SNI name (or the Host header without port when there was no SNI).
    pub host: String,
    /// The request method.
    pub method: String,
    /// The request path and query.
    pub path: String,
    /// The request headers.
    pub headers: http::HeaderMap,
}

#[derive(Default)]
struct HttpsState {
    hosts: HashMap<String, PolicyResponse>,
    counts: HashMap<String, u64>,
    last: HashMap<String, RecordedRequest>,
}

struct Shared {
    ca: TestCa,
    rogue_ca: TestCa,
    state: Mutex<HttpsState>,
    certs: Mutex<HashMap<(String, CertKind), Arc<CertifiedKey>>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, HttpsState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct SniResolver(Arc<Shared>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = client_hello
            .server_name()
            .map_or_else(|| "no-sni.invalid".to_owned(), str::to_ascii_lowercase);
        let kind = self
            .0
            .state()
            .hosts
            .get(&host)
            .map_or(CertKind::Valid, |r| r.cert);
        let mut certs = self
            .0
            .certs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = certs
            .entry((host.clone(), kind))
            .or_insert_with(|| match kind {
                CertKind::Valid => self.0.ca.issue(&[&host]).certified_key(),
                CertKind::UntrustedCa => self.0.rogue_ca.issue(&[&host]).certified_key(),
                CertKind::WrongName => self.0.ca.issue(&["wrong-name.invalid"]).certified_key(),
            });
        Some(Arc::clone(key))
    }
}

/// An in-process HTTPS server on `127.0.0.1:<random port>` that serves per-host responses.
///
/// The certificate is chosen by SNI and issued on the fly by the [`TestCa`] given to
/// [`PolicyServer::start`] (or by an untrusted CA / for a wrong name, per host). A host
/// without a configured response gets `404`. The server stops when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mtasts_test_support::{PolicyResponse, PolicyServer, TestCa};
/// let ca = TestCa::new();
/// let https = PolicyServer::start(&ca).await;
/// https.set("mta-sts.example.com", PolicyResponse::status(404));
/// assert_eq!(https.request_count("mta-sts.example.com"), 0);
/// assert_ne!(https.port(), 0);
/// # }
/// ```
pub struct PolicyServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _tasks: JoinSet<()>,
}

impl fmt::Debug for PolicyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl PolicyServer {
    /// Starts the server; certificates are issued by `ca`.
    ///
    /// # Panics
    ///
    /// Panics if no loopback port can be bound (test support only).
    pub async fn start(ca: &TestCa) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind HTTPS on loopback");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            ca: ca.clone(),
            rogue_ca: TestCa::with_name("untrusted rogue CA"),
            state: Mutex::new(HttpsState::default()),
            certs: Mutex::new(HashMap::new()),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver(Arc::clone(&shared))));
        // No resumption: every handshake presents the certificate configured right now.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let mut tasks = JoinSet::new();
        let conn_shared = Arc::clone(&shared);
        tasks.spawn(crate::accept_each(listener, move |stream| {
            serve_conn(stream, acceptor.clone(), Arc::clone(&conn_shared))
        }));
        tracing::debug!(%addr, "test HTTPS server started");
        Self {
            addr,
            shared,
            _tasks: tasks,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's port (give it to the fetcher as the policy port).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sets the response for `host` (e.g. `mta-sts.example.com`).
    pub fn set(&self, host: &str, response: PolicyResponse) {
        self.shared
            .state()
            .hosts
            .insert(host.to_ascii_lowercase(), response);
    }

    /// Removes the response for `host` (it gets 404 again).
    pub fn remove(&self, host: &str) {
        self.shared.state().hosts.remove(&host.to_ascii_lowercase());
    }

    /// How many HTTP requests were made for `host`.
    pub fn request_count(&self, host: &str) -> u64 {
        self.shared
            .state()
            .counts
            .get(&host.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// The last request made for `host`, if any.
    pub fn last_request(&self, host: &str) -> Option<RecordedRequest> {
        self.shared
            .state()
            .last
            .get(&host.to_ascii_lowercase())
            .cloned()
    }
}

async fn serve_conn(stream: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(error) => {
            tracing::debug!(%error, "test HTTPS server: TLS handshake failed");
            return;
        }
    };
    let sni = tls.get_ref().1.server_name().map(str::to_ascii_lowercase);
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&shared, sni.as_deref(), &request);
        async move { Ok::<_, Infallible>(response) }
    });
    if let Err(error) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%error, "test HTTPS server: connection ended with an error");
    }
}

fn respond(
    shared: &Shared,
    sni: Option<&str>,
    request: &Request<Incoming>,
) -> Response<BoxBody<Bytes, BodyError>> {
    let host = sni.map_or_else(
        || {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase())
                .unwrap_or_default()
        },
        str::to_owned,
    );
    let mut state = shared.state();
    *state.counts.entry(host.clone()).or_default() += 1;
    state.last.insert(
        host.clone(),
        RecordedRequest {
            host: host.clone(),
            method: request.method().to_string(),
            path: request
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), ToString::to_string),
            headers: request.headers().clone(),
        },
    );
    let configured = state.hosts.get(&host).cloned();
    drop(state);
    tracing::debug!(%host, path = %request.uri(), "test HTTPS server: request");
    configured
        .unwrap_or_else(|| PolicyResponse::status(404))
        .into_response()
}
