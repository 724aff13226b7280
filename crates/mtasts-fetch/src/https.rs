//! The HTTPS leg: connect (directly or through a CONNECT proxy), TLS for the exact policy
//! host, one `GET /.well-known/mta-sts.txt`, and the RFC 8461 §3.3 checks on the answer.

use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::error::FetchError;
use crate::{Inner, USER_AGENT};

/// The largest policy body accepted (RFC 8461 §3.3 suggests bounding it; 64 KiB).
pub const MAX_POLICY_SIZE: usize = 64 * 1024;

/// The well-known path of the policy file (RFC 8461 §3.3).
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// Connects to the policy host, through the proxy unless `no_proxy` says otherwise.
async fn connect(inner: &Inner, host: &str) -> Result<TcpStream, FetchError> {
    let port = inner.policy_port;
    if let Some(proxy) = inner
        .proxy
        .as_ref()
        .filter(|_| !inner.no_proxy.matches(host))
    {
        tracing::debug!(%proxy, host, port, "connecting through proxy");
        return proxy.connect(host, port).await;
    }
    let addrs = resolve(inner, host).await?;
    let mut last_error = None;
    for ip in addrs {
        let addr = SocketAddr::new(ip, port);
        tracing::debug!(%addr, host, "connecting");
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            // No socket for this address means none for the next one either.
            Err(error) if crate::error::is_local_resource(&error) => {
                tracing::debug!(%addr, %error, "no socket for the connection");
                return Err(FetchError::LocalResource {
                    during: "connect",
                    source: std::sync::Arc::new(error),
                });
            }
            Err(error) => {
                tracing::debug!(%addr, %error, "connect failed");
                last_error = Some((addr, error));
            }
        }
    }
    match last_error {
        Some((addr, error)) => Err(FetchError::Connect {
            addr: addr.to_string(),
            source: error.into(),
        }),
        None => Err(FetchError::NoAddress {
            host: host.to_owned(),
        }),
    }
}

/// Resolves the policy host through the same resolver as the TXT lookup.
async fn resolve(inner: &Inner, host: &str) -> Result<Vec<IpAddr>, FetchError> {
    let fqdn = format!("{host}.");
    match inner.resolver.lookup_ip(fqdn.as_str()).await {
        Ok(lookup) => {
            let addrs: Vec<IpAddr> = lookup.iter().collect();
            tracing::debug!(host, ?addrs, "policy host resolved");
            Ok(addrs)
        }
        Err(error) => Err(crate::dns_error(host, error, |_| {
            // An A query whose socket could not be opened ends as "no records" when the AAAA query answers.
            match crate::error::socket_shortage() {
                Some(io) => FetchError::LocalResource {
                    during: "dns",
                    source: std::sync::Arc::new(io),
                },
                None => FetchError::NoAddress {
                    host: host.to_owned(),
                },
            }
        })),
    }
}

/// Fetches and returns the policy body (not yet parsed).
pub(crate) async fn fetch(inner: &Inner, host: &str) -> Result<Bytes, FetchError> {
    let tcp = connect(inner, host).await?;
    let invalid_host = || FetchError::InvalidHost {
        host: host.to_owned(),
    };
    let server_name = ServerName::try_from(host.to_owned()).map_err(|_| invalid_host())?;
    let tls = inner.tls.connect(server_name, tcp).await.map_err(|error| {
        tracing::debug!(host, %error, "TLS handshake failed");
        FetchError::Tls {
            host: host.to_owned(),
            source: error.into(),
        }
    })?;
    tracing::debug!(host, "TLS established");
    let http_error = |error: hyper::Error| FetchError::Http {
        host: host.to_owned(),
        source: error.into(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(http_error)?;
    let authority = if inner.policy_port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{}", inner.policy_port)
    };
    let request = Request::get(POLICY_PATH)
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "text/plain")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| invalid_host())?;
    tracing::debug!(url = %format!("https://{authority}{POLICY_PATH}"), "fetching policy");

    // The connection is driven in this task (no spawned task to leak); it is dropped, with
    // its socket, as soon as the exchange is over or the caller's deadline fires.
    let exchange = async {
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        tracing::debug!(host, status = status.as_u16(), headers = ?response.headers(), "policy response");
        check_head(status, response.headers())?;
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(http_error)?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > MAX_POLICY_SIZE {
                    return Err(FetchError::TooLarge {
                        limit: MAX_POLICY_SIZE,
                        content_length: None,
                    });
                }
                buf.extend_from_slice(&data);
            }
        }
        tracing::debug!(host, bytes = buf.len(), "policy body received");
        Ok(buf.freeze())
    };
    tokio::pin!(conn);
    tokio::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        conn_result = &mut conn => {
            if let Err(error) = conn_result {
                tracing::debug!(host, %error, "connection ended");
            }
            // Whatever the connection delivered before ending is still readable.
            exchange.await
        }
    }
}

/// RFC 8461 §3.3: status 200 only, no redirects; §3.2: `text/plain`; bounded size.
fn check_head(status: StatusCode, headers: &http::HeaderMap) -> Result<(), FetchError> {
    if status.is_redirection() {
        return Err(FetchError::Redirect {
            status: status.as_u16(),
            location: headers
                .get(header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        });
    }
    if status != StatusCode::OK {
        return Err(FetchError::HttpStatus {
            status: status.as_u16(),
        });
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if !content_type.as_deref().is_some_and(is_text_plain) {
        return Err(FetchError::MediaType { content_type });
    }
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        && length > MAX_POLICY_SIZE as u64
    {
        return Err(FetchError::TooLarge {
            limit: MAX_POLICY_SIZE,
            content_length: Some(length),
        });
    }
    Ok(())
}

/// `text/plain`, case-insensitively, with any parameters (`; charset=utf-8`).
fn is_text_plain(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/plain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_allows_parameters_only_on_text_plain() {
        assert!(is_text_plain("text/plain"));
        assert!(is_text_plain("Text/Plain; charset=utf-8"));
        assert!(is_text_plain("text/plain ;format=flowed"));
        assert!(!is_text_plain("text/html"));
        assert!(!is_text_plain("text/plainx"));
        assert!(!is_text_plain(""));
    }

    #[test]
    fn head_checks_follow_rfc_8461() {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(check_head(StatusCode::OK, &headers).is_ok());
        let err = check_head(StatusCode::NOT_FOUND, &headers).unwrap_err();
        assert_eq!(err.kind(), "http_status");
        let err = check_head(StatusCode::MOVED_PERMANENTLY, &headers).unwrap_err();
        assert_eq!(err.kind(), "redirect");
        headers.insert(header::CONTENT_LENGTH, "65537".parse().unwrap());
        let err = check_head(StatusCode::OK, &headers).unwrap_err();
        assert_eq!(err.kind(), "too_large");
        headers.insert(header::CONTENT_LENGTH, "65536".parse().unwrap());
        assert!(check_head(StatusCode::OK, &headers).is_ok());
    }
}
