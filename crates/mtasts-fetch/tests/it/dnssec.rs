//! DANE discovery against real DNSSEC: zones signed at test time, served by NSD, validated by
//! Unbound (mtasts-test-support's DnssecResolver).

use mtasts_fetch::dane::{DaneAnswer, DaneReason, MxStatus, TlsaStatus};
use mtasts_test_support::{DnssecResolver, SignedZone, init_tracing};

use crate::domain;

/// A mail domain whose host has a usable TLSA record.
fn dane_zone(origin: &str) -> SignedZone {
    SignedZone::mail(origin).tlsa("_25._tcp.mx", 3, 1, 1, &[0x5a; 32])
}

#[tokio::test]
async fn unbound_validated_tlsa_gives_dane_only_and_broken_signatures_never_do() {
    init_tracing();
    let zones = [
        dane_zone("good.test"),
        SignedZone::mail("plain.test"),
        dane_zone("badtlsa.test").break_signatures("TLSA"),
        dane_zone("bogus.test").break_signatures("DNSKEY"),
    ];
    let Some(resolver) = DnssecResolver::start(&zones).await else {
        return;
    };
    let fetcher = mtasts_fetch::Fetcher::builder()
        .nameservers(vec![resolver.addr()])
        .without_proxy()
        .build()
        .expect("fetcher");

    let good = fetcher.discover_dane(&domain("good.test")).await;
    assert!(matches!(good.mx(), MxStatus::Secure), "{good:#?}");
    match good.hosts()[0].tlsa() {
        TlsaStatus::Secure { name, records } => {
            assert_eq!(name, "_25._tcp.mx.good.test");
            assert!(records[0].is_usable());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(good.verdict().answer, DaneAnswer::DaneOnly);
    // Unbound keeps the zone's TTL (300 s) on the RRsets.
    assert!(
        good.min_ttl().is_some_and(|ttl| ttl.as_secs() <= 300),
        "{good:#?}"
    );

    let plain = fetcher.discover_dane(&domain("plain.test")).await;
    assert_eq!(
        (plain.verdict().answer, plain.verdict().reason),
        (DaneAnswer::MtaSts, DaneReason::NoTlsa),
        "{plain:#?}"
    );

    // Bogus TLSA signatures: Unbound answers SERVFAIL, the host's TLSA lookup failed.
    let bad = fetcher.discover_dane(&domain("badtlsa.test")).await;
    match bad.hosts()[0].tlsa() {
        TlsaStatus::Failed(error) => assert_eq!(error.kind(), "dns_server_failure"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (bad.verdict().answer, bad.verdict().reason),
        (DaneAnswer::Dane, DaneReason::LookupFailed)
    );

    // A bogus zone: the MX lookup itself fails, DANE does not apply.
    let bogus = fetcher.discover_dane(&domain("bogus.test")).await;
    assert!(
        matches!(bogus.mx(), MxStatus::Failed(e) if e.kind() == "dns_server_failure"),
        "{bogus:#?}"
    );
    assert_eq!(bogus.verdict().answer, DaneAnswer::MtaSts);
}
