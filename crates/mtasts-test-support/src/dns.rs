//! An in-process authoritative DNS server on loopback (UDP and TCP), with records that tests
//! change at run time.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA, TXT};
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
    txt: Vec<Vec<Vec<u8>>>,
    cname: Option<String>,
    a: Vec<Ipv4Addr>,
}

#[derive(Debug)]
struct Zone {
    names: HashMap<String, Entry>,
    counts: HashMap<String, u64>,
    total: u64,
    ttl: u32,
    negative_ttl: u32,
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
        }));
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(udp, Arc::clone(&zone)));
        tasks.spawn(serve_tcp(tcp, Arc::clone(&zone)));
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

    /// Replaces the TXT records of `name` with one record made of the given character-strings
    /// (a client concatenates them). Add more records with [`DnsServer::add_txt`].
    pub fn set_txt<I, S>(&self, name: &str, strings: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<Vec<u8>>,
    {
        let record: Vec<Vec<u8>> = strings.into_iter().map(Into::into).collect();
        self.edit(name, |e| {
            e.behaviour = Behaviour::Normal;
            e.txt = vec![record];
        });
    }

    /// Adds one more TXT record (made of the given character-strings) to `name`.
    pub fn add_txt<I, S>(&self, name: &str, strings: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<Vec<u8>>,
    {
        let record: Vec<Vec<u8>> = strings.into_iter().map(Into::into).collect();
        self.edit(name, |e| {
            e.behaviour = Behaviour::Normal;
            e.txt.push(record);
        });
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
        self.edit(name, |e| {
            e.behaviour = Behaviour::Normal;
            e.a = vec![ip];
        });
    }

    /// Adds an A record to `name`.
    pub fn add_a(&self, name: &str, ip: Ipv4Addr) {
        self.edit(name, |e| {
            e.behaviour = Behaviour::Normal;
            e.a.push(ip);
        });
    }

    /// `name` exists but has no records: every query gets NODATA (NOERROR, empty answer, SOA).
    pub fn set_nodata(&self, name: &str) {
        self.zone().names.insert(norm(name), Entry::default());
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

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        conns.spawn(serve_tcp_conn(stream, Arc::clone(&zone)));
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
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
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
        for _ in 0..16 {
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
                    break;
                }
                Behaviour::NxDomain => {
                    code = ResponseCode::NXDomain;
                    negative = true;
                    break;
                }
                Behaviour::Normal => {}
            }
            if let Some(target) = entry.cname.clone()
                && qtype != RecordType::CNAME
            {
                response.add_answer(Record::from_rdata(
                    fqdn(&current),
                    zone.ttl,
                    RData::CNAME(CNAME(fqdn(&target))),
                ));
                current = target;
                continue;
            }
            let before = response.answers.len();
            let owner = fqdn(&current);
            match qtype {
                RecordType::TXT => {
                    for record in &entry.txt {
                        let strings: Vec<&[u8]> = record.iter().map(Vec::as_slice).collect();
                        response.add_answer(Record::from_rdata(
                            owner.clone(),
                            zone.ttl,
                            RData::TXT(TXT::from_bytes(strings)),
                        ));
                    }
                }
                RecordType::A => {
                    for ip in &entry.a {
                        response.add_answer(Record::from_rdata(
                            owner.clone(),
                            zone.ttl,
                            RData::A(A(*ip)),
                        ));
                    }
                }
                RecordType::CNAME => {
                    if let Some(target) = &entry.cname {
                        response.add_answer(Record::from_rdata(
                            owner,
                            zone.ttl,
                            RData::CNAME(CNAME(fqdn(target))),
                        ));
                    }
                }
                _ => {}
            }
            negative = response.answers.len() == before;
            break;
        }
        response.metadata.response_code = code;
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
