//! The HTTPS policy server, reached with a raw tokio-rustls client.

use std::sync::Arc;

use mtasts_test_support::{PolicyResponse, PolicyServer, TestCa};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn client(ca: &TestCa) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Sends one GET with `Connection: close` and returns the raw response.
async fn get(server: &PolicyServer, ca: &TestCa, host: &str) -> std::io::Result<String> {
    let tcp = TcpStream::connect(server.addr()).await?;
    let name = ServerName::try_from(host.to_owned()).expect("name");
    let mut tls = client(ca).connect(name, tcp).await?;
    tls.write_all(
        format!(
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A server (and its CA) serving each host's response.
async fn serving(responses: Vec<(&str, PolicyResponse)>) -> (TestCa, PolicyServer) {
    let ca = TestCa::new();
    let server = PolicyServer::start(&ca).await;
    for (host, response) in responses {
        server.set(host, response);
    }
    (ca, server)
}

#[tokio::test]
async fn serves_per_host_responses_with_sni_certificates() {
    let redirect =
        PolicyResponse::redirect(301, "https://elsewhere.test/").content_type("text/html");
    let (ca, server) = serving(vec![
        ("mta-sts.a.test", PolicyResponse::policy("hello a\n")),
        ("mta-sts.b.test", redirect),
    ])
    .await;
    let a = get(&server, &ca, "mta-sts.a.test").await.expect("a");
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert!(
        a.to_ascii_lowercase().contains("content-type: text/plain"),
        "{a}"
    );
    assert!(a.ends_with("hello a\n"), "{a}");
    let b = get(&server, &ca, "mta-sts.b.test").await.expect("b");
    assert!(b.starts_with("HTTP/1.1 301"), "{b}");
    assert!(
        b.to_ascii_lowercase()
            .contains("location: https://elsewhere.test/"),
        "{b}"
    );
    let c = get(&server, &ca, "mta-sts.c.test").await.expect("c");
    assert!(c.starts_with("HTTP/1.1 404"), "{c}");
    assert_eq!(server.request_count("mta-sts.a.test"), 1);
    assert_eq!(server.request_count("mta-sts.b.test"), 1);
    let request = server.last_request("mta-sts.a.test").expect("recorded");
    assert_eq!(request.path, "/.well-known/mta-sts.txt");
}

#[tokio::test]
async fn chunked_responses_use_transfer_encoding() {
    let chunked = PolicyResponse::policy("x".repeat(10_000)).chunked();
    let (ca, server) = serving(vec![("h.test", chunked)]).await;
    let raw = get(&server, &ca, "h.test").await.expect("get");
    let lower = raw.to_ascii_lowercase();
    assert!(lower.contains("transfer-encoding: chunked"), "{raw}");
    assert!(!lower.contains("content-length"), "{raw}");
}

#[tokio::test]
async fn bad_certificates_fail_the_handshake() {
    let (ca, server) = serving(vec![
        (
            "untrusted.test",
            PolicyResponse::policy("x").untrusted_cert(),
        ),
        ("wrong.test", PolicyResponse::policy("x").wrong_name_cert()),
    ])
    .await;
    assert!(get(&server, &ca, "untrusted.test").await.is_err());
    assert!(get(&server, &ca, "wrong.test").await.is_err());
    assert_eq!(server.request_count("untrusted.test"), 0);
    assert_eq!(server.request_count("wrong.test"), 0);
}

#[tokio::test]
async fn ca_pem_round_trips() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ca.pem");
    ca.write_pem(&path);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(text, ca.pem());
    let issued = ca.issue(&["leaf.test"]);
    assert_eq!(issued.chain().len(), 1);
}
