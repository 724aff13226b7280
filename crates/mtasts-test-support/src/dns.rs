//! An in-process authoritative DNS server on loopback (UDP and TCP), with records that tests
//! change at run time.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TLSA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// How a name answers, apart from its records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Behaviour {
    #[default]
    Normal,
    NxDomain,
    ServFail,
    Silent,
}

#[derive(Clone, Debug, Default)]
struct Entry {
    behaviour: Behaviour,
    cname: Option<String>,
    /// Every record of the name but its CNAME, in the order they were added.
    records: Vec<RData>,
    /// Whether answers about this name are "validated"; `None` follows the zone default.
    secure: Option<bool>,
}

#[derive(Debug)]
struct Zone {
    names: HashMap<String, Entry>,
    counts: HashMap<String, u64>,
    total: u64,
    ttl: u32,
    negative_ttl: u32,
    secure_by_default: bool,
}

impl Zone {
    fn is_secure(&self, name: &str) -> bool {
        self.names
            .get(name)
            .and_then(|entry| entry.secure)
            .unwrap_or(self.secure_by_default)
    }
}

/// Normalises a name the way the zone stores it: lowercase, no trailing dot.
fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// An in-process DNS server on `127.0.0.1:<random port>`, answering over UDP and TCP (same
/// port) from a zone that tests change at run time.
///
/// Unknown names get NXDOMAIN. Negative answers (NXDOMAIN, NODATA) carry an SOA record in the
/// authority section whose TTL and MINIMUM are the negative TTL ([`DnsServer::set_negative_ttl`],
/// default 300 s), so the client can compute a negative-caching TTL (RFC 2308). CNAMEs are
/// followed inside the zone and the whole chain is returned. UDP answers larger than the
/// client's EDNS payload size (512 bytes without EDNS) are truncated so the client retries
/// over TCP.
///
/// It plays a validating resolver too: names marked secure ([`DnsServer::set_secure`],
/// [`DnsServer::set_secure_by_default`]) get answers with the AD bit, but only when the query
/// asks for it with the AD bit or the EDNS DO bit (RFC 6840 §5.7-5.8), and only when every
/// name of the answer's CNAME chain is secure. No RRSIG is ever sent.
///
/// The server stops (and closes its sockets) when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mtasts_test_support::DnsServer;
/// let dns = DnsServer::start().await;
/// dns.set_txt("_mta-sts.example.com", ["v=STSv1; id=1;"]);
/// assert_eq!(dns.query_count("_mta-sts.example.com"), 0);
/// assert!(dns.addr().ip().is_loopback());
/// # }
/// ```
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    _tasks: JoinSet<()>,
}

impl DnsServer {
    /// Binds UDP and TCP on the same random loopback port and starts serving.
    ///
    /// # Panics
    ///
    /// Panics if no loopback port can be bound (test support only).
    pub async fn start() -> Self {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("udp local addr");
        let zone = Arc::new(Mutex::new(Zone {
            names: HashMap::new(),
            counts: HashMap::new(),
            total: 0,
            ttl: 300,
            negative_ttl: 300,
            secure_by_default: false,
        }));
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(udp, Arc::clone(&zone)));
        let tcp_zone = Arc::clone(&zone);
        tasks.spawn(crate::accept_each(tcp, move |stream| {
            serve_tcp_conn(stream, Arc::clone(&tcp_zone))
        }));
        tracing::debug!(%addr, "test DNS server started");
        Self {
            addr,
            zone,
            _tasks: tasks,
        }
    }

    /// The server's address (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn zone(&self) -> MutexGuard<'_, Zone> {
        self.zone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn edit(&self, name: &str, f: impl FnOnce(&mut Entry)) {
        let mut zone = self.zone();
        f(zone.names.entry(norm(name)).or_default());
    }

    /// Replaces the records of `name` of `rdata`'s type with `rdata` (nothing else changes).
    fn replace(&self, name: &str, rdata: RData) {
        let record_type = rdata.record_type();
        self.edit(name, |e| {
            e.behaviour = Behaviour::Normal;
            e.records.retain(|r| r.record_type() != record_type);
            e.records.push(rdata);
        });
    }

    /// Adds `rdata` to the records of `name`.
    fn push(&self, name: &str, rdata: RData) {
        self.edit(name, |e| {
            e.behaviour = Behaviour::Normal;
            e.records.push(rdata);
        });
    }

    /// Replaces the TXT records of `name` with one record made of the given character-strings
    /// (a client concatenates them). Add more records with [`DnsServer::add_txt`].
    pub fn set_txt<I, S>(&self, name: &str, strings: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<Vec<u8>>,
    {
        self.replace(name, txt(strings));
    }

    /// Adds one more TXT record (made of the given character-strings) to `name`.
    pub fn add_txt<I, S>(&self, name: &str, strings: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<Vec<u8>>,
    {
        self.push(name, txt(strings));
    }

    /// Makes `name` an alias of `target` (a CNAME; other records of `name` are ignored).
    pub fn set_cname(&self, name: &str, target: &str) {
        self.edit(name, |e| {
            e.behaviour = Behaviour::Normal;
            e.cname = Some(norm(target));
        });
    }

    /// Replaces the A records of `name` with `ip`.
    pub fn set_a(&self, name: &str, ip: Ipv4Addr) {
        self.replace(name, RData::A(A(ip)));
    }

    /// Adds an A record to `name`.
    pub fn add_a(&self, name: &str, ip: Ipv4Addr) {
        self.push(name, RData::A(A(ip)));
    }

    /// Replaces the AAAA records of `name` with `ip`.
    pub fn set_aaaa(&self, name: &str, ip: Ipv6Addr) {
        self.replace(name, RData::AAAA(AAAA(ip)));
    }

    /// Adds an AAAA record to `name`.
    pub fn add_aaaa(&self, name: &str, ip: Ipv6Addr) {
        self.push(name, RData::AAAA(AAAA(ip)));
    }

    /// Replaces the MX records of `name` with one record: `preference` and `exchange` (`"."`
    /// makes a null MX, RFC 7505).
    pub fn set_mx(&self, name: &str, preference: u16, exchange: &str) {
        self.replace(name, mx(preference, exchange));
    }

    /// Adds an MX record to `name`.
    pub fn add_mx(&self, name: &str, preference: u16, exchange: &str) {
        self.push(name, mx(preference, exchange));
    }

    /// Replaces the TLSA records of `name` (e.g. `_25._tcp.mx.example.com`) with one record:
    /// certificate usage, selector, matching type and association data (RFC 6698 §2.1). Any
    /// values are accepted, unusable ones included.
    pub fn set_tlsa(&self, name: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) {
        self.replace(name, tlsa(usage, selector, matching, data));
    }

    /// Adds a TLSA record to `name`.
    pub fn add_tlsa(&self, name: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) {
        self.push(name, tlsa(usage, selector, matching, data));
    }

    /// Marks answers about `name` as validated (`true`) or not (`false`), overriding
    /// [`DnsServer::set_secure_by_default`]. Kept across record changes, forgotten by
    /// [`DnsServer::clear`].
    pub fn set_secure(&self, name: &str, secure: bool) {
        self.zone().names.entry(norm(name)).or_default().secure = Some(secure);
    }

    /// Whether names not marked by [`DnsServer::set_secure`] (unknown names included) are
    /// validated. Default `false`.
    pub fn set_secure_by_default(&self, secure: bool) {
        self.zone().secure_by_default = secure;
    }

    /// `name` exists but has no records: every query gets NODATA (NOERROR, empty answer, SOA).
    /// Its [`DnsServer::set_secure`] mark is kept.
    pub fn set_nodata(&self, name: &str) {
        self.edit(name, |e| {
            *e = Entry {
                secure: e.secure,
                ..Entry::default()
            };
        });
    }

    /// Every query for `name` gets NXDOMAIN (with SOA). Same as an unknown name.
    pub fn set_nxdomain(&self, name: &str) {
        self.edit(name, |e| e.behaviour = Behaviour::NxDomain);
    }

    /// Every query for `name` gets SERVFAIL.
    pub fn set_servfail(&self, name: &str) {
        self.edit(name, |e| e.behaviour = Behaviour::ServFail);
    }

    /// Queries for `name` are never answered (UDP and TCP).
    pub fn set_silent(&self, name: &str) {
        self.edit(name, |e| e.behaviour = Behaviour::Silent);
    }

    /// Forgets everything about `name` (it answers NXDOMAIN again). Counters are kept.
    pub fn clear(&self, name: &str) {
        self.zone().names.remove(&norm(name));
    }

    /// Sets the TTL of positive answers (default 300 s).
    pub fn set_ttl(&self, ttl: u32) {
        self.zone().ttl = ttl;
    }

    /// Sets the negative TTL: the TTL and MINIMUM of the SOA in negative answers (default 300 s).
    pub fn set_negative_ttl(&self, ttl: u32) {
        self.zone().negative_ttl = ttl;
    }

    /// How many queries (any type, UDP or TCP) asked for `name`.
    pub fn query_count(&self, name: &str) -> u64 {
        self.zone().counts.get(&norm(name)).copied().unwrap_or(0)
    }

    /// How many queries the server received in total.
    pub fn total_queries(&self) -> u64 {
        self.zone().total
    }
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind UDP on loopback");
        let port = udp.local_addr().expect("udp local addr").port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            return (udp, tcp);
        }
    }
    panic!("could not bind UDP and TCP on the same loopback port");
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some(reply) = handle(&zone, &buf[..len], Transport::Udp) else {
            continue;
        };
        if let Err(error) = socket.send_to(&reply, peer).await {
            tracing::debug!(%error, "test DNS server: UDP send failed");
        }
    }
}

async fn serve_tcp_conn(mut stream: TcpStream, zone: Arc<Mutex<Zone>>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut buf = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Some(reply) = handle(&zone, &buf, Transport::Tcp) else {
            continue;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&reply_len.to_be_bytes());
        out.extend_from_slice(&reply);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

fn fqdn(name: &str) -> Name {
    Name::from_ascii(format!("{name}.")).expect("valid DNS name in test zone")
}

fn txt<I, S>(strings: I) -> RData
where
    I: IntoIterator<Item = S>,
    S: Into<Vec<u8>>,
{
    let strings: Vec<Vec<u8>> = strings.into_iter().map(Into::into).collect();
    RData::TXT(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
}

fn mx(preference: u16, exchange: &str) -> RData {
    let exchange = if exchange == "." {
        Name::root()
    } else {
        fqdn(&norm(exchange))
    };
    RData::MX(MX::new(preference, exchange))
}

fn tlsa(usage: u8, selector: u8, matching: u8, data: &[u8]) -> RData {
    RData::TLSA(TLSA::new(
        usage.into(),
        selector.into(),
        matching.into(),
        data.to_vec(),
    ))
}

/// The zone apex used for the SOA of a negative answer: the last two labels of `name`.
fn apex(name: &str) -> String {
    let labels: Vec<&str> = name.split('.').collect();
    let start = labels.len().saturating_sub(2);
    labels[start..].join(".")
}

fn soa_record(name: &str, negative_ttl: u32) -> Record {
    let apex = apex(name);
    let soa = SOA::new(
        fqdn(&format!("ns.{apex}")),
        fqdn(&format!("hostmaster.{apex}")),
        1,
        3600,
        600,
        86400,
        negative_ttl,
    );
    Record::from_rdata(fqdn(&apex), negative_ttl, RData::SOA(soa))
}

/// Builds the reply for one request; `None` means "stay silent".
fn handle(zone: &Mutex<Zone>, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    let max_udp = request
        .edns
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload().max(512)));
    let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    // RFC 6840 §5.7-5.8: a validating resolver sets AD only for a query that asked with AD or DO.
    let wants_ad = request.metadata.authentic_data || dnssec_ok;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(dnssec_ok);
        response.set_edns(edns);
    }
    let Some(query) = request.queries.first().cloned() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    response.add_query(query.clone());
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response.to_vec().ok();
    }

    let qname = norm(&query.name.to_ascii());
    let qtype = query.query_type;
    {
        let mut zone = zone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        zone.total += 1;
        *zone.counts.entry(qname.clone()).or_default() += 1;
        let mut current = qname;
        let mut code = ResponseCode::NoError;
        let mut negative = false;
        let mut secure = true;
        for _ in 0..16 {
            secure &= zone.is_secure(&current);
            let Some(entry) = zone.names.get(&current) else {
                code = ResponseCode::NXDomain;
                negative = true;
                break;
            };
            match entry.behaviour {
                Behaviour::Silent => return None,
                Behaviour::ServFail => {
                    code = ResponseCode::ServFail;
                    response.answers.clear();
                    secure = false;
                    break;
                }
                Behaviour::NxDomain => {
                    code = ResponseCode::NXDomain;
                    negative = true;
                    break;
                }
                Behaviour::Normal => {}
            }
            let owner = fqdn(&current);
            if let Some(target) = &entry.cname {
                let record = Record::from_rdata(owner, zone.ttl, RData::CNAME(CNAME(fqdn(target))));
                response.add_answer(record);
                if qtype == RecordType::CNAME {
                    break;
                }
                current.clone_from(target);
                continue;
            }
            let answers: Vec<Record> = entry
                .records
                .iter()
                .filter(|rdata| rdata.record_type() == qtype)
                .map(|rdata| Record::from_rdata(owner.clone(), zone.ttl, rdata.clone()))
                .collect();
            negative = answers.is_empty();
            response.add_answers(answers);
            break;
        }
        response.metadata.response_code = code;
        response.metadata.authentic_data = wants_ad && secure;
        if negative {
            response.add_authority(soa_record(&current, zone.negative_ttl));
        }
    }
    let bytes = response.to_vec().ok()?;
    if transport == Transport::Udp && bytes.len() > max_udp {
        let mut truncated = response.truncate();
        truncated.metadata.response_code = response.metadata.response_code;
        return truncated.to_vec().ok();
    }
    Some(bytes)
}
