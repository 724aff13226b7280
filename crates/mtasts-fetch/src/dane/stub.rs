//! A DNS stub that asks for and reports the AD bit.
//!
//! hickory-resolver's `Resolver` neither asks for the AD bit (it sets DO only when it
//! validates itself) nor keeps the response header of negative answers, so these queries go
//! through hickory-net's lower-level client streams: UDP (with retransmission, id and question
//! checks), TCP when the answer is truncated. Each query carries the AD bit (RFC 6840 §5.7)
//! and EDNS DO (RFC 3225), so a validating resolver tells whether the answer validated.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::net::xfer::{DnsHandle, DnsRequestSender, FirstAnswer};
use hickory_resolver::proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Edns, Message, Query, ResponseCode,
};
use hickory_resolver::proto::rr::{Name, Record, RecordType};
use tokio::time::Instant;

use crate::FetchError;

/// The EDNS payload size we announce (the DNS Flag Day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// One answer, as the resolver gave it.
#[derive(Debug)]
pub(super) struct Answer {
    /// NOERROR or NXDOMAIN (other codes are errors).
    pub(super) code: ResponseCode,
    /// The AD bit: the resolver validated every RRset of the answer (or the denial).
    pub(super) authentic: bool,
    /// The answer section (CNAMEs included).
    pub(super) records: Vec<Record>,
    /// The negative TTL of a denial (RFC 2308 §5), from the SOA in the authority section.
    pub(super) negative_ttl: Option<u32>,
}

impl Answer {
    /// The TTL of the RRsets this answer gives (the smallest record TTL, or the negative TTL).
    pub(super) fn ttl(&self) -> Option<Duration> {
        self.records
            .iter()
            .map(|r| r.ttl)
            .min()
            .or(self.negative_ttl)
            .map(|ttl| Duration::from_secs(u64::from(ttl)))
    }
}

/// Sends DANE queries to the configured nameservers, in order.
#[derive(Clone, Debug)]
pub(crate) struct Stub {
    servers: Arc<[SocketAddr]>,
    /// Bounds one attempt at one server, so a silent first server leaves time for the next.
    attempt_timeout: Duration,
}

impl Stub {
    pub(crate) fn new(servers: Vec<SocketAddr>, attempt_timeout: Duration) -> Self {
        Self {
            servers: servers.into(),
            attempt_timeout,
        }
    }

    pub(crate) fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Asks the servers in order for `name`/`record_type` until one answers NOERROR or
    /// NXDOMAIN, or `deadline` passes.
    ///
    /// # Errors
    ///
    /// The last server's problem: [`FetchError::DnsServerFailure`] (SERVFAIL — also what a
    /// validating resolver answers for bogus data —, REFUSED…), [`FetchError::DnsTimeout`],
    /// [`FetchError::Dns`].
    pub(super) async fn query(
        &self,
        name: &Name,
        record_type: RecordType,
        deadline: Instant,
    ) -> Result<Answer, FetchError> {
        let label = || name.to_ascii();
        let mut message = Message::query();
        message.add_query(Query::query(name.clone(), record_type));
        message.metadata.recursion_desired = true;
        message.metadata.authentic_data = true;
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD).set_dnssec_ok(true);
        message.set_edns(edns);

        let mut last = FetchError::DnsTimeout { name: label() };
        for &server in self.servers.iter() {
            let Some(budget) = deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
            else {
                break;
            };
            let budget = budget.min(self.attempt_timeout);
            let response =
                match tokio::time::timeout(budget, exchange(server, &message, budget)).await {
                    Err(_) | Ok(Err(NetError::Timeout)) => {
                        last = FetchError::DnsTimeout { name: label() };
                        continue;
                    }
                    Ok(Err(error)) => {
                        last = FetchError::Dns {
                            name: label(),
                            source: Arc::new(error),
                        };
                        continue;
                    }
                    Ok(Ok(response)) => response,
                };
            let code = response.response_code;
            tracing::trace!(%server, name = %label(), ?record_type, ?code, ad = response.authentic_data, "DANE query answered");
            match code {
                ResponseCode::NoError | ResponseCode::NXDomain => {
                    let negative_ttl = response.negative_ttl();
                    let authentic = response.authentic_data;
                    return Ok(Answer {
                        code,
                        authentic,
                        records: response.into_message().answers,
                        negative_ttl,
                    });
                }
                other => {
                    last = FetchError::DnsServerFailure {
                        name: label(),
                        code: other.to_str(),
                    };
                }
            }
        }
        tracing::debug!(name = %label(), ?record_type, error = %last, kind = last.kind(), "DANE query failed");
        Err(last)
    }
}

/// One exchange with one server: UDP, then TCP if the answer was truncated.
async fn exchange(
    server: SocketAddr,
    message: &Message,
    budget: Duration,
) -> Result<DnsResponse, NetError> {
    let provider = TokioRuntimeProvider::default();
    let request = || DnsRequest::new(message.clone(), DnsRequestOptions::default());
    let mut udp = UdpClientStream::builder(server, provider.clone())
        .with_timeout(Some(budget))
        .build();
    let response = udp.send_message(request()).first_answer().await?;
    if !response.truncation {
        return Ok(response);
    }
    let tcp = TcpClientStream::exchange(server, None, budget, None, provider).await?;
    tcp.send(request()).first_answer().await
}
