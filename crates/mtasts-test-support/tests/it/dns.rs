//! The DNS server, queried with raw hickory-proto messages over UDP and TCP.

use std::net::{Ipv4Addr, SocketAddr};
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

async fn tcp(addr: SocketAddr, message: &Message) -> Message {
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
