//! The DNS server, queried with raw hickory-proto messages over UDP and TCP.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use mtasts_test_support::DnsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut message = Message::query();
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    message.metadata.recursion_desired = true;
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        message.set_edns(e);
    }
    message
}

async fn udp(addr: SocketAddr, message: &Message) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket
        .send_to(&message.to_vec().expect("encode"), addr)
        .await
        .expect("send");
    let mut buf = vec![0u8; 65535];
    let len = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf))
        .await
        .ok()?
        .expect("recv");
    let reply = Message::from_vec(&buf[..len]).expect("decode");
    assert_eq!(reply.metadata.id, message.metadata.id);
    Some(reply)
}

pub(crate) async fn tcp(addr: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let bytes = message.to_vec().expect("encode");
    let len = u16::try_from(bytes.len()).expect("small");
    stream.write_all(&len.to_be_bytes()).await.expect("write");
    stream.write_all(&bytes).await.expect("write");
    let len = stream.read_u16().await.expect("length");
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.expect("read");
    Message::from_vec(&buf).expect("decode")
}

fn txt_strings(message: &Message) -> Vec<Vec<String>> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn txt_records_keep_their_strings_and_count() {
    let dns = DnsServer::start().await;
    dns.set_txt("_mta-sts.example.com.", ["v=STSv1; ", "id=1;"]);
    dns.add_txt("_MTA-STS.example.com", ["other"]);
    let reply = udp(
        dns.addr(),
        &query("_mta-sts.example.com.", RecordType::TXT, true),
    )
    .await
    .expect("answer");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        txt_strings(&reply),
        [
            vec!["v=STSv1; ".to_owned(), "id=1;".to_owned()],
            vec!["other".to_owned()]
        ]
    );
    assert_eq!(dns.query_count("_mta-sts.example.com"), 1);
    assert_eq!(dns.total_queries(), 1);
}

#[tokio::test]
async fn cname_chain_is_in_the_answer() {
    let dns = DnsServer::start().await;
    dns.set_cname("a.test", "b.test");
    dns.set_cname("b.test", "c.test");
    dns.set_txt("c.test", ["hello"]);
    let reply = tcp(dns.addr(), &query("a.test.", RecordType::TXT, false)).await;
    let types: Vec<RecordType> = reply.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(
        types,
        [RecordType::CNAME, RecordType::CNAME, RecordType::TXT]
    );
    assert_eq!(txt_strings(&reply), [vec!["hello".to_owned()]]);
}

#[tokio::test]
async fn negative_answers_carry_an_soa() {
    let dns = DnsServer::start().await;
    dns.set_negative_ttl(42);
    dns.set_nodata("exists.test");
    let nx = udp(dns.addr(), &query("missing.test.", RecordType::TXT, false))
        .await
        .expect("answer");
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let nodata = udp(dns.addr(), &query("exists.test.", RecordType::TXT, false))
        .await
        .expect("answer");
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    for reply in [nx, nodata] {
        assert!(reply.answers.is_empty());
        let soa = reply
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some((r.ttl, soa.minimum)),
                _ => None,
            })
            .expect("SOA in authority");
        assert_eq!(soa, (42, 42));
    }
}

#[tokio::test]
async fn a_servfail_nxdomain_and_clear() {
    let dns = DnsServer::start().await;
    dns.set_a("host.test", Ipv4Addr::new(127, 0, 0, 1));
    let reply = udp(dns.addr(), &query("host.test.", RecordType::A, false))
        .await
        .expect("answer");
    assert!(matches!(reply.answers[0].data, RData::A(a) if a.0 == Ipv4Addr::LOCALHOST));
    dns.set_servfail("host.test");
    let reply = udp(dns.addr(), &query("host.test.", RecordType::A, false))
        .await
        .expect("answer");
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    dns.set_nxdomain("host.test");
    let reply = udp(dns.addr(), &query("host.test.", RecordType::A, false))
        .await
        .expect("answer");
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    dns.clear("host.test");
    let reply = udp(dns.addr(), &query("host.test.", RecordType::A, false))
        .await
        .expect("answer");
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(dns.query_count("host.test"), 4);
}

#[tokio::test]
async fn silent_names_get_no_answer_but_are_counted() {
    let dns = DnsServer::start().await;
    dns.set_silent("quiet.test");
    assert!(
        udp(dns.addr(), &query("quiet.test.", RecordType::TXT, false))
            .await
            .is_none()
    );
    assert_eq!(dns.query_count("quiet.test"), 1);
}

#[tokio::test]
async fn big_udp_answers_are_truncated_and_complete_over_tcp() {
    let dns = DnsServer::start().await;
    for n in 0..10 {
        dns.add_txt("big.test", [format!("{n}-{}", "x".repeat(200))]);
    }
    let reply = udp(dns.addr(), &query("big.test.", RecordType::TXT, false))
        .await
        .expect("answer");
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());
    let reply = tcp(dns.addr(), &query("big.test.", RecordType::TXT, false)).await;
    assert_eq!(txt_strings(&reply).len(), 10);
}

#[tokio::test]
async fn dropping_the_server_closes_its_port() {
    let dns = DnsServer::start().await;
    let addr = dns.addr();
    drop(dns);
    let mut refused = false;
    for _ in 0..1000 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "TCP port still open after drop");
}

/// A query with the AD bit and/or the EDNS DO bit, as a DANE client sends.
pub(crate) fn dnssec_query(name: &str, qtype: RecordType, ad: bool, dnssec_ok: bool) -> Message {
    let mut message = query(name, qtype, true);
    message.metadata.authentic_data = ad;
    if let Some(edns) = message.edns.as_mut() {
        edns.set_dnssec_ok(dnssec_ok);
    }
    message
}

/// Sends [`dnssec_query`] over UDP and expects an answer.
async fn ask(dns: &DnsServer, name: &str, qtype: RecordType, ad: bool, dnssec_ok: bool) -> Message {
    udp(dns.addr(), &dnssec_query(name, qtype, ad, dnssec_ok))
        .await
        .expect("answer")
}

#[tokio::test]
async fn mx_aaaa_and_tlsa_records_are_served() {
    let dns = DnsServer::start().await;
    dns.set_mx("example.test", 10, "mx1.example.test.");
    dns.add_mx("example.test", 20, "MX2.example.test");
    dns.set_aaaa("mx1.example.test", Ipv6Addr::LOCALHOST);
    dns.add_aaaa("mx1.example.test", "2001:db8::1".parse().expect("ipv6"));
    dns.set_a("mx1.example.test", Ipv4Addr::LOCALHOST);
    dns.set_tlsa("_25._tcp.mx1.example.test", 3, 1, 1, &[0xab; 32]);
    dns.add_tlsa("_25._tcp.mx1.example.test", 0, 0, 2, &[0xcd; 64]);

    let reply = udp(dns.addr(), &query("example.test.", RecordType::MX, true))
        .await
        .expect("answer");
    let mx: Vec<(u16, String)> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
            _ => None,
        })
        .collect();
    assert_eq!(
        mx,
        [
            (10, "mx1.example.test.".to_owned()),
            (20, "mx2.example.test.".to_owned())
        ]
    );

    let reply = udp(
        dns.addr(),
        &query("mx1.example.test.", RecordType::AAAA, true),
    )
    .await
    .expect("answer");
    let v6: Vec<Ipv6Addr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(aaaa) => Some(aaaa.0),
            _ => None,
        })
        .collect();
    assert_eq!(
        v6,
        [Ipv6Addr::LOCALHOST, "2001:db8::1".parse().expect("ipv6")]
    );
    // The A record set next to the AAAA ones is only in A answers.
    let reply = udp(dns.addr(), &query("mx1.example.test.", RecordType::A, true))
        .await
        .expect("answer");
    assert_eq!(reply.answers.len(), 1);

    let reply = tcp(
        dns.addr(),
        &query("_25._tcp.mx1.example.test.", RecordType::TLSA, true),
    )
    .await;
    let tlsa: Vec<(u8, u8, u8, usize)> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TLSA(t) => Some((
                t.cert_usage.into(),
                t.selector.into(),
                t.matching.into(),
                t.cert_data.len(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(tlsa, [(3, 1, 1, 32), (0, 0, 2, 64)]);

    // set_* replaces only the records of its own type.
    dns.set_tlsa("_25._tcp.mx1.example.test", 2, 0, 0, b"cert");
    dns.set_mx("example.test", 0, ".");
    let reply = udp(
        dns.addr(),
        &query("_25._tcp.mx1.example.test.", RecordType::TLSA, true),
    )
    .await
    .expect("answer");
    assert_eq!(reply.answers.len(), 1);
    let reply = udp(dns.addr(), &query("example.test.", RecordType::MX, true))
        .await
        .expect("answer");
    assert!(
        matches!(&reply.answers[..], [r] if matches!(&r.data, RData::MX(mx) if mx.exchange.is_root()))
    );
}

#[tokio::test]
async fn ad_is_set_only_for_secure_names_and_only_when_asked() {
    let dns = DnsServer::start().await;
    dns.set_mx("signed.test", 10, "mx.signed.test");
    dns.set_secure("signed.test", true);
    dns.set_mx("unsigned.test", 10, "mx.unsigned.test");

    let ad = |reply: Message| reply.metadata.authentic_data;
    let ask = |name: &'static str, ad: bool, dnssec_ok: bool| {
        ask(&dns, name, RecordType::MX, ad, dnssec_ok)
    };
    // Neither AD nor DO in the query: no AD in the answer (RFC 6840 §5.7-5.8).
    assert!(!ad(ask("signed.test.", false, false).await));
    assert!(ad(ask("signed.test.", true, false).await));
    let reply = ask("signed.test.", false, true).await;
    assert!(reply.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
    assert!(ad(reply));
    assert!(!ad(ask("unsigned.test.", true, true).await));

    // Without EDNS at all, the AD bit of the header still asks.
    let mut plain = query("signed.test.", RecordType::MX, false);
    plain.metadata.authentic_data = true;
    assert!(ad(udp(dns.addr(), &plain).await.expect("answer")));

    // The default covers unmarked names, negative answers included; a mark overrides it.
    dns.set_secure_by_default(true);
    let nx = ask("missing.test.", true, true).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(ad(nx));
    assert!(ad(ask("unsigned.test.", true, true).await));
    dns.set_secure("unsigned.test", false);
    assert!(!ad(ask("unsigned.test.", true, true).await));
    // A mark survives record changes and NODATA, and is forgotten by clear().
    dns.set_secure_by_default(false);
    dns.set_nodata("signed.test");
    let nodata = ask("signed.test.", true, true).await;
    assert!(nodata.answers.is_empty());
    assert!(ad(nodata));
    dns.clear("signed.test");
    assert!(!ad(ask("signed.test.", true, true).await));
}

#[tokio::test]
async fn ad_covers_the_whole_cname_chain_and_never_servfail() {
    let dns = DnsServer::start().await;
    dns.set_cname("mx.signed.test", "host.unsigned.test");
    dns.set_a("host.unsigned.test", Ipv4Addr::LOCALHOST);
    dns.set_secure("mx.signed.test", true);
    let reply = ask(&dns, "mx.signed.test.", RecordType::A, true, true).await;
    assert_eq!(reply.answers.len(), 2);
    assert!(!reply.metadata.authentic_data, "insecure link in the chain");
    // The CNAME itself is secure.
    let reply = ask(&dns, "mx.signed.test.", RecordType::CNAME, true, true).await;
    assert_eq!(reply.answers.len(), 1);
    assert!(reply.metadata.authentic_data);
    dns.set_secure("host.unsigned.test", true);
    let reply = ask(&dns, "mx.signed.test.", RecordType::A, true, true).await;
    assert!(reply.metadata.authentic_data);

    dns.set_servfail("_25._tcp.mx.signed.test");
    dns.set_secure("_25._tcp.mx.signed.test", true);
    let reply = ask(
        &dns,
        "_25._tcp.mx.signed.test.",
        RecordType::TLSA,
        true,
        true,
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(!reply.metadata.authentic_data);
}
