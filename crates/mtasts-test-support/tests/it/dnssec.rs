//! The real DNSSEC resolver: NSD serving zones signed at test time, Unbound validating them.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use mtasts_test_support::{DnssecResolver, SignedZone};

use crate::dns::{dnssec_query, tcp};

/// A mail domain whose host has a usable TLSA record.
fn dane_zone(origin: &str) -> SignedZone {
    SignedZone::mail(origin).tlsa("_25._tcp.mx", 3, 1, 1, &[0x5a; 32])
}

async fn ask(addr: std::net::SocketAddr, name: &str, qtype: RecordType) -> Message {
    tcp(addr, &dnssec_query(name, qtype, true, true)).await
}

fn count(reply: &Message, qtype: RecordType) -> usize {
    reply
        .answers
        .iter()
        .filter(|r| r.record_type() == qtype)
        .count()
}

#[tokio::test]
async fn unbound_validates_good_zones_and_fails_broken_signatures() {
    let zones = [
        dane_zone("good.test"),
        dane_zone("badtlsa.test").break_signatures("TLSA"),
        dane_zone("bogus.test").break_signatures("DNSKEY"),
    ];
    let Some(resolver) = DnssecResolver::start(&zones).await else {
        return;
    };
    let addr = resolver.addr();

    let reply = ask(addr, "_25._tcp.mx.good.test.", RecordType::TLSA).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authentic_data, "{reply:?}");
    assert!(
        matches!(&reply.answers.iter().find(|r| r.record_type() == RecordType::TLSA).map(|r| &r.data),
            Some(RData::TLSA(t)) if t.cert_data == [0x5a; 32]),
        "{reply:?}"
    );
    let reply = ask(addr, "good.test.", RecordType::MX).await;
    assert!(reply.metadata.authentic_data);
    assert_eq!(count(&reply, RecordType::MX), 1);
    // A validated denial of existence.
    let reply = ask(addr, "_25._tcp.nothing.good.test.", RecordType::TLSA).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.metadata.authentic_data);

    // Broken TLSA signatures: SERVFAIL for TLSA, the rest of the zone still validates.
    let reply = ask(addr, "_25._tcp.mx.badtlsa.test.", RecordType::TLSA).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(count(&reply, RecordType::TLSA), 0);
    let reply = ask(addr, "badtlsa.test.", RecordType::MX).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authentic_data);

    // A broken DNSKEY signature: nothing in the zone validates.
    let reply = ask(addr, "bogus.test.", RecordType::MX).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);

    // The authoritative server sends the signatures but never sets AD.
    let reply = ask(
        resolver.authoritative_addr(),
        "_25._tcp.mx.good.test.",
        RecordType::TLSA,
    )
    .await;
    assert!(!reply.metadata.authentic_data);
    assert_eq!(count(&reply, RecordType::RRSIG), 1);
}
