//! DNS + HTTPS + CA together.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use mtasts_fetch::{Fetcher, FetcherBuilder};
use tempfile::TempDir;

use crate::ca::TestCa;
use crate::dns::DnsServer;
use crate::https::{PolicyResponse, PolicyServer};

/// A DNS server, an HTTPS policy server and the CA they use, ready for a fetcher.
///
/// [`Fixture::publish`] makes a domain publish a policy: the TXT record
/// `_mta-sts.<domain>`, an A record `mta-sts.<domain>` → 127.0.0.1 and the policy file at
/// `https://mta-sts.<domain>:<port>/.well-known/mta-sts.txt` (the server answers any path).
/// [`Fixture::fetcher_builder`] returns a builder that uses this DNS server, trusts this CA,
/// connects to this HTTPS port and ignores proxy environment variables.
#[derive(Debug)]
pub struct Fixture {
    ca: TestCa,
    dns: DnsServer,
    https: PolicyServer,
    ca_pem: PathBuf,
    _dir: TempDir,
}

impl Fixture {
    /// Starts the DNS and HTTPS servers with a fresh CA (its PEM written to a temp dir).
    ///
    /// # Panics
    ///
    /// Panics if the servers cannot bind or the temp dir cannot be written (test support only).
    pub async fn start() -> Self {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_pem = dir.path().join("test-ca.pem");
        ca.write_pem(&ca_pem);
        let dns = DnsServer::start().await;
        let https = PolicyServer::start(&ca).await;
        Self {
            ca,
            dns,
            https,
            ca_pem,
            _dir: dir,
        }
    }

    /// Publishes a policy for `domain`: TXT `v=STSv1; id=<id>;` at `_mta-sts.<domain>`,
    /// A `mta-sts.<domain>` → 127.0.0.1, and `policy_text` served as `text/plain`.
    pub fn publish(&self, domain: &str, id: &str, policy_text: &str) {
        self.publish_txt(domain, id);
        self.serve(domain, PolicyResponse::policy(policy_text));
    }

    /// Sets only the TXT record `_mta-sts.<domain>` to `v=STSv1; id=<id>;`.
    pub fn publish_txt(&self, domain: &str, id: &str) {
        self.dns
            .set_txt(&Self::txt_name(domain), [format!("v=STSv1; id={id};")]);
    }

    /// Points `mta-sts.<domain>` at 127.0.0.1 and serves `response` for it.
    pub fn serve(&self, domain: &str, response: PolicyResponse) {
        let host = Self::policy_host(domain);
        self.dns.set_a(&host, Ipv4Addr::LOCALHOST);
        self.https.set(&host, response);
    }

    /// `_mta-sts.<domain>`.
    pub fn txt_name(domain: &str) -> String {
        format!("_mta-sts.{domain}")
    }

    /// `mta-sts.<domain>`.
    pub fn policy_host(domain: &str) -> String {
        format!("mta-sts.{domain}")
    }

    /// The DNS server.
    pub fn dns(&self) -> &DnsServer {
        &self.dns
    }

    /// The HTTPS policy server.
    pub fn https(&self) -> &PolicyServer {
        &self.https
    }

    /// The CA that issues the HTTPS server's certificates.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The CA certificate as a PEM file (for `--ca-file` style options).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }

    /// A fetcher builder preconfigured for this fixture: its nameserver, its CA as an extra
    /// root, its HTTPS port as the policy port, and no proxy.
    pub fn fetcher_builder(&self) -> FetcherBuilder {
        Fetcher::builder()
            .nameservers(vec![self.dns.addr()])
            .add_root_certificate(self.ca.cert_der())
            .policy_port(self.https.port())
            .without_proxy()
    }

    /// `fetcher_builder().build()`.
    ///
    /// # Panics
    ///
    /// Panics if the fetcher cannot be built (test support only).
    pub fn fetcher(&self) -> Fetcher {
        self.fetcher_builder().build().expect("build fetcher")
    }
}
