//! HTTPS proxy configuration (HTTP CONNECT), read from the environment like curl does.

use std::fmt;

use base64::Engine as _;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{BuildError, FetchError};

/// An HTTP proxy reached with `CONNECT host:port` (the tunnel then carries TLS end to end).
///
/// Parsed from a URL such as `http://user:secret@proxy.example:3128`; the scheme may be
/// omitted (as curl allows), the port defaults to 1080 (as curl's does), userinfo is
/// percent-decoded and sent as `Proxy-Authorization: Basic …`.
///
/// ```
/// use mtasts_fetch::Proxy;
/// let proxy: Proxy = "http://alice:s%40cret@127.0.0.1:3128".parse()?;
/// assert_eq!(proxy.host(), "127.0.0.1");
/// assert_eq!(proxy.port(), 3128);
/// assert!(proxy.has_credentials());
/// # Ok::<(), mtasts_fetch::BuildError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    authorization: Option<String>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.authorization.is_some())
            .finish()
    }
}

impl fmt::Display for Proxy {
    /// `host:port`, never the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Proxy {
    type Err = BuildError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| BuildError::InvalidProxy {
            url: redact(text),
            reason,
        };
        // http::Uri rather than url::Url: the WHATWG parser drops a port equal to the scheme's default, so
        // `http://proxy:80` could not be told from `http://proxy`, whose port is curl's 1080.
        let uri = if text.contains("://") {
            text.parse::<http::Uri>()
        } else {
            // curl lets the scheme be left out.
            format!("http://{text}").parse()
        }
        .map_err(|_| invalid("not a valid URL"))?;
        if !uri
            .scheme_str()
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http"))
        {
            return Err(invalid("only http:// proxies (HTTP CONNECT) are supported"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|v6| v6.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        // http::Uri reads no port from `h:notaport` rather than refusing it: what follows the host must be
        // nothing, `:` or `:<u16>`.
        let (userinfo, host_port) = match authority.as_str().rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority.as_str()),
        };
        let port = match host_port[authority.host().len()..].strip_prefix(':') {
            None | Some("") => 1080,
            Some(port) => port.parse().map_err(|_| invalid("invalid port"))?,
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
            authorization: userinfo.map(basic_authorization),
        })
    }
}

/// `Basic …` for percent-encoded `user[:password]` (RFC 7617).
fn basic_authorization(userinfo: &str) -> String {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user = percent_decode_str(user).decode_utf8_lossy();
    let password = percent_decode_str(password).decode_utf8_lossy();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// A proxy URL for an error message: scheme, host and port, never the userinfo (a text that does not parse
/// shows its scheme only).
fn redact(text: &str) -> String {
    let scheme = text.split_once("://").map_or("http", |(scheme, _)| scheme);
    let parsed = text.parse::<http::Uri>().ok();
    match parsed.as_ref().and_then(http::Uri::authority) {
        Some(authority) => {
            let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host_port}")
        }
        None => format!("{scheme}://…"),
    }
}

impl Proxy {
    /// The proxy host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether credentials are sent (`Proxy-Authorization`).
    pub fn has_credentials(&self) -> bool {
        self.authorization.is_some()
    }

    /// The proxy from `https_proxy`, `HTTPS_PROXY`, `all_proxy` or `ALL_PROXY` (the first one
    /// set and non-empty, lowercase first, as curl does), if any.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidProxy`] when the variable is set but not a usable URL.
    pub fn from_env() -> Result<Option<Self>, BuildError> {
        ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
            .map(|url| url.trim().parse())
            .transpose()
    }

    /// Opens a tunnel to `host:port` through this proxy (HTTP CONNECT).
    pub(crate) async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, FetchError> {
        let proxy = self.to_string();
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                FetchError::socket("proxy_connect", e, |source| FetchError::ProxyConnect {
                    proxy: proxy.clone(),
                    source,
                })
            })?;
        let mut request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
        if let Some(authorization) = &self.authorization {
            request.push_str("Proxy-Authorization: ");
            request.push_str(authorization);
            request.push_str("\r\n");
        }
        request.push_str("User-Agent: ");
        request.push_str(crate::USER_AGENT);
        request.push_str("\r\n\r\n");
        let protocol = || FetchError::ProxyProtocol {
            proxy: proxy.clone(),
        };
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|_| protocol())?;
        // Read the answer head byte by byte so no tunnelled byte is consumed; 8 KiB at most.
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= 8192 {
                return Err(protocol());
            }
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return Err(protocol()),
            }
        }
        let status_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        let status = std::str::from_utf8(status_line)
            .ok()
            .and_then(|line| {
                let mut parts = line.split_ascii_whitespace();
                parts
                    .next()
                    .filter(|v| v.starts_with("HTTP/1."))
                    .and_then(|_| parts.next())
                    .and_then(|code| code.parse::<u16>().ok())
            })
            .ok_or_else(protocol)?;
        tracing::debug!(%proxy, status, "proxy answered CONNECT");
        if (200..300).contains(&status) {
            Ok(stream)
        } else {
            Err(FetchError::ProxyRefused { proxy, status })
        }
    }
}

/// Hosts that bypass the proxy, with curl's `no_proxy` rules.
///
/// A comma-separated list; `*` alone matches every host; otherwise an entry matches a host
/// equal to it or ending with `.<entry>` (a leading dot in the entry is ignored), case
/// insensitively.
///
/// ```
/// use mtasts_fetch::NoProxy;
/// let no_proxy = NoProxy::parse("localhost, .example.com");
/// assert!(no_proxy.matches("mta-sts.example.com"));
/// assert!(no_proxy.matches("example.com"));
/// assert!(!no_proxy.matches("mta-sts.example.org"));
/// assert!(NoProxy::parse("*").matches("anything.test"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<String>,
}

impl NoProxy {
    /// Parses a curl-style `no_proxy` list.
    pub fn parse(list: &str) -> Self {
        let list = list.trim();
        if list == "*" {
            return Self {
                all: true,
                entries: Vec::new(),
            };
        }
        let entries = list
            .split([',', ' '])
            .map(|e| e.trim().trim_start_matches('.').trim_end_matches('.'))
            .filter(|e| !e.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        Self {
            all: false,
            entries,
        }
    }

    /// `no_proxy` or `NO_PROXY` from the environment (lowercase first), if set.
    pub fn from_env() -> Option<Self> {
        ["no_proxy", "NO_PROXY"]
            .iter()
            .find_map(|var| std::env::var(var).ok())
            .map(|list| Self::parse(&list))
    }

    /// Whether `host` bypasses the proxy.
    pub fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|entry| {
            host == *entry
                || (host.len() > entry.len()
                    && host.ends_with(entry.as_str())
                    && host.as_bytes()[host.len() - entry.len() - 1] == b'.')
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p: Proxy = "http://proxy.example:3128/".parse().unwrap();
        assert_eq!(
            (p.host(), p.port(), p.has_credentials()),
            ("proxy.example", 3128, false)
        );
        let p: Proxy = "proxy.example".parse().unwrap();
        assert_eq!(p.port(), 1080);
        let p: Proxy = "http://[::1]:8080".parse().unwrap();
        assert_eq!((p.host(), p.port()), ("::1", 8080));
        assert_eq!(p.to_string(), "[::1]:8080");
        let p: Proxy = "http://al%20ice:pa%3Ass@h:1".parse().unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode("al ice:pa:ss");
        assert_eq!(
            p.authorization.as_deref(),
            Some(format!("Basic {expected}").as_str())
        );
    }

    #[test]
    fn explicit_default_ports_are_kept() {
        for (text, port) in [
            ("http://proxy.example:80", 80),
            ("http://proxy.example", 1080),
            ("proxy.example:80", 80),
            ("HTTP://u@proxy.example:8080/", 8080),
        ] {
            let p: Proxy = text.parse().unwrap();
            assert_eq!((p.host(), p.port()), ("proxy.example", port), "{text}");
        }
    }

    #[test]
    fn rejects_bad_proxy_urls_without_leaking_credentials() {
        for (text, shown) in [
            ("socks5://u:secret@h:1", "socks5://h:1"),
            ("http://u:secret@h:notaport", "http://h:notaport"),
            ("http://u:secret@[::1:80", "http://…"),
            ("http://u:secret@:80", "http://:80"),
            ("u:secret@", "http://…"),
        ] {
            let err = text.parse::<Proxy>().unwrap_err();
            assert_eq!(err.kind(), "invalid_proxy");
            let message = err.to_string();
            assert!(!message.contains("secret"), "{message}");
            assert!(message.contains(shown), "{text}: {message}");
        }
    }

    #[test]
    fn no_proxy_rules_like_curl() {
        let np = NoProxy::parse("example.com,.example.net , localhost");
        assert!(np.matches("example.com"));
        assert!(np.matches("mta-sts.example.com"));
        assert!(np.matches("MTA-STS.EXAMPLE.NET."));
        assert!(!np.matches("badexample.com"));
        assert!(!np.matches("example.org"));
        assert!(NoProxy::parse("*").matches("x.y"));
        assert!(!NoProxy::parse("").matches("x.y"));
    }
}
