//! DANE discovery (RFC 7672 §2.2) against the in-process DNS server playing a validating
//! resolver: one test per row of the answer table, CNAMEs, failures, deadline, nameservers.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use mtasts_fetch::Fetcher;
use mtasts_fetch::dane::{
    Addresses, DaneAnswer, DaneReason, DaneView, HostView, MxStatus, TlsaStatus,
};
use mtasts_test_support::{DnsServer, Fixture};

use crate::{DOMAIN, domain, fixture};

const MX1: &str = "mx1.example.com";
const MX2: &str = "mx2.example.com";

fn tlsa_name(host: &str) -> String {
    format!("_25._tcp.{host}")
}

/// A fixture whose DNS validates everything, with `example.com` MX 10 mx1, MX 20 mx2, each
/// host with an A record and no TLSA.
async fn signed_zone() -> Fixture {
    let f = fixture().await;
    let dns = f.dns();
    dns.set_secure_by_default(true);
    dns.set_mx(DOMAIN, 20, MX2);
    dns.add_mx(DOMAIN, 10, MX1);
    for host in [MX1, MX2] {
        dns.set_a(host, Ipv4Addr::LOCALHOST);
    }
    f
}

/// Publishes one usable TLSA record (DANE-EE, SPKI, SHA2-256) for `host`.
fn usable_tlsa(dns: &DnsServer, host: &str) {
    dns.set_tlsa(&tlsa_name(host), 3, 1, 1, &[0x5a; 32]);
}

async fn discover_dane(f: &Fixture) -> DaneView {
    f.fetcher().discover_dane(&domain(DOMAIN)).await
}

#[track_caller]
fn assert_verdict(view: &DaneView, answer: DaneAnswer, reason: DaneReason) {
    let verdict = view.verdict();
    assert_eq!(
        (verdict.answer, verdict.reason),
        (answer, reason),
        "{view:#?}"
    );
}

#[track_caller]
fn host<'v>(view: &'v DaneView, name: &str) -> &'v HostView {
    view.hosts()
        .iter()
        .find(|h| h.name() == name)
        .unwrap_or_else(|| panic!("no host {name} in {view:#?}"))
}

#[track_caller]
fn tlsa_found_at(host: &HostView) -> &str {
    match host.tlsa() {
        TlsaStatus::Secure { name, .. } => name,
        other => panic!("expected validated TLSA for {}, got {other:?}", host.name()),
    }
}

// Table row 1: MX validated, every host has usable TLSA → dane-only.
#[tokio::test]
async fn every_host_with_usable_tlsa_is_dane_only() {
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    usable_tlsa(f.dns(), MX2);
    f.dns().add_tlsa(&tlsa_name(MX2), 0, 0, 1, &[1; 32]);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::DaneOnly, DaneReason::AllUsable);
    assert!(matches!(view.mx(), MxStatus::Secure));
    let names: Vec<(&str, u16)> = view
        .hosts()
        .iter()
        .map(|h| (h.name(), h.preference()))
        .collect();
    assert_eq!(names, [(MX1, 10), (MX2, 20)]);
    let mx2 = host(&view, MX2);
    assert!(matches!(
        mx2.addresses(),
        Addresses::Secure { expanded: None }
    ));
    match mx2.tlsa() {
        TlsaStatus::Secure { name, records } => {
            assert_eq!(name, "_25._tcp.mx2.example.com");
            let shown: Vec<(String, bool)> = records
                .iter()
                .map(|r| (r.to_string()[..6].to_owned(), r.is_usable()))
                .collect();
            assert_eq!(
                shown,
                [("3 1 1 ".to_owned(), true), ("0 0 1 ".to_owned(), false)]
            );
        }
        other => panic!("{other:?}"),
    }
}

// Table row 2: some host has TLSA (usable or not), not all usable → dane.
#[tokio::test]
async fn hosts_without_usable_tlsa_make_it_dane() {
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    f.dns().set_nodata(&tlsa_name(MX2));
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::Dane, DaneReason::SomeTlsa);
    assert!(matches!(host(&view, MX2).tlsa(), TlsaStatus::Absent));

    // Only unusable records (PKIX-EE, a short digest): still dane.
    f.dns().set_tlsa(&tlsa_name(MX1), 1, 1, 1, &[0x5a; 32]);
    f.dns().set_tlsa(&tlsa_name(MX2), 3, 1, 1, &[0x5a; 31]);
    assert_verdict(
        &discover_dane(&f).await,
        DaneAnswer::Dane,
        DaneReason::SomeTlsa,
    );
}

// Table row 3: a host's TLSA lookup fails (SERVFAIL) → dane, a failure.
#[tokio::test]
async fn a_failed_tlsa_lookup_is_dane() {
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    f.dns().set_servfail(&tlsa_name(MX2));
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::Dane, DaneReason::LookupFailed);
    match host(&view, MX2).tlsa() {
        TlsaStatus::Failed(error) => assert_eq!(error.kind(), "dns_server_failure"),
        other => panic!("{other:?}"),
    }
    // The engine keeps it for cache_grace only and backs off.
    assert!(view.discovery().failed);
}

// Table row 4: MX validated, no host has TLSA (validated NXDOMAIN / NODATA) → MTA-STS.
#[tokio::test]
async fn no_tlsa_anywhere_is_the_mta_sts_answer() {
    let f = signed_zone().await;
    f.dns().set_nodata(&tlsa_name(MX2));
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::MtaSts, DaneReason::NoTlsa);
    assert!(
        view.hosts()
            .iter()
            .all(|h| matches!(h.tlsa(), TlsaStatus::Absent))
    );
}

// Table row 5: MX not validated → MTA-STS, and nothing else is looked up.
#[tokio::test]
async fn an_unvalidated_mx_is_the_mta_sts_answer_and_ends_the_lookup() {
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    usable_tlsa(f.dns(), MX2);
    f.dns().set_secure(DOMAIN, false);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::MtaSts, DaneReason::MxInsecure);
    assert!(view.hosts().is_empty());
    for name in [MX1, MX2, &tlsa_name(MX1), &tlsa_name(MX2)] {
        assert_eq!(f.dns().query_count(name), 0, "{name}");
    }
}

// Table row 5: the MX lookup fails → MTA-STS, a failure.
#[tokio::test]
async fn a_failed_mx_lookup_is_the_mta_sts_answer() {
    let f = signed_zone().await;
    f.dns().set_servfail(DOMAIN);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::MtaSts, DaneReason::MxFailed);
    assert!(matches!(view.mx(), MxStatus::Failed(e) if e.kind() == "dns_server_failure"));
    assert!(view.verdict().reason.is_failure());
}

// Table row 6: no MX, the domain itself is the host; null MX and NXDOMAIN have no host.
#[tokio::test]
async fn without_mx_the_domain_is_its_own_host() {
    let f = fixture().await;
    let dns = f.dns();
    dns.set_secure_by_default(true);
    dns.set_a(DOMAIN, Ipv4Addr::LOCALHOST);
    usable_tlsa(dns, DOMAIN);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::DaneOnly, DaneReason::AllUsable);
    assert!(matches!(view.mx(), MxStatus::SecureImplicit));
    assert_eq!(host(&view, DOMAIN).preference(), 0);
    dns.set_nodata(&tlsa_name(DOMAIN));
    assert_verdict(
        &discover_dane(&f).await,
        DaneAnswer::MtaSts,
        DaneReason::NoTlsa,
    );

    dns.set_mx(DOMAIN, 0, ".");
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::MtaSts, DaneReason::NoHosts);
    assert!(view.hosts().is_empty());

    dns.clear(DOMAIN);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::MtaSts, DaneReason::NoDomain);
    assert!(matches!(view.mx(), MxStatus::SecureNxDomain));
}

#[tokio::test]
async fn hosts_with_unvalidated_addresses_get_no_tlsa_lookup() {
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    usable_tlsa(f.dns(), MX2);
    f.dns().set_secure(MX2, false);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::Dane, DaneReason::SomeTlsa);
    let mx2 = host(&view, MX2);
    assert!(matches!(mx2.addresses(), Addresses::Insecure));
    assert!(matches!(mx2.tlsa(), TlsaStatus::NotLooked));
    assert_eq!(f.dns().query_count(&tlsa_name(MX2)), 0);
}

#[tokio::test]
async fn unvalidated_tlsa_records_count_for_nothing() {
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    usable_tlsa(f.dns(), MX2);
    f.dns().set_secure(&tlsa_name(MX1), false);
    f.dns().set_secure(&tlsa_name(MX2), false);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::MtaSts, DaneReason::NoTlsa);
    assert!(matches!(host(&view, MX1).tlsa(), TlsaStatus::Insecure));
}

#[tokio::test]
async fn hosts_without_addresses_do_not_count() {
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    f.dns().clear(MX2);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::DaneOnly, DaneReason::AllUsable);
    assert!(matches!(host(&view, MX2).addresses(), Addresses::None));
}

// RFC 7672 §2.2.3: TLSA at the expanded name of a secure alias first, then at the host name.
#[tokio::test]
async fn alias_hosts_look_up_tlsa_at_the_expanded_name_then_the_host_name() {
    const TARGET: &str = "smtp.provider.net";
    let f = signed_zone().await;
    let dns = f.dns();
    usable_tlsa(dns, MX1);
    dns.set_cname(MX2, TARGET);
    dns.set_a(TARGET, Ipv4Addr::LOCALHOST);
    usable_tlsa(dns, TARGET);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::DaneOnly, DaneReason::AllUsable);
    let mx2 = host(&view, MX2);
    assert!(
        matches!(mx2.addresses(), Addresses::Secure { expanded: Some(e) } if e == TARGET),
        "{mx2:?}"
    );
    assert_eq!(tlsa_found_at(mx2), "_25._tcp.smtp.provider.net");
    assert_eq!(dns.query_count(&tlsa_name(MX2)), 0);

    // Nothing at the expanded name: the host name is tried next.
    dns.set_nodata(&tlsa_name(TARGET));
    usable_tlsa(dns, MX2);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::DaneOnly, DaneReason::AllUsable);
    assert_eq!(tlsa_found_at(host(&view, MX2)), "_25._tcp.mx2.example.com");
}

// RFC 7672 §2.2.3: a validated CNAME into an unsigned zone keeps DANE at the host name only.
#[tokio::test]
async fn a_secure_alias_to_an_unsigned_target_looks_up_tlsa_at_the_host_name_only() {
    const TARGET: &str = "smtp.unsigned.net";
    let f = signed_zone().await;
    let dns = f.dns();
    usable_tlsa(dns, MX1);
    dns.set_cname(MX2, TARGET);
    dns.set_a(TARGET, Ipv4Addr::LOCALHOST);
    dns.set_secure(TARGET, false);
    usable_tlsa(dns, TARGET);
    usable_tlsa(dns, MX2);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::DaneOnly, DaneReason::AllUsable);
    let mx2 = host(&view, MX2);
    assert!(
        matches!(mx2.addresses(), Addresses::SecureAlias { target } if target == TARGET),
        "{mx2:?}"
    );
    assert_eq!(tlsa_found_at(mx2), "_25._tcp.mx2.example.com");
    assert_eq!(dns.query_count(&tlsa_name(TARGET)), 0);

    // An alias that does not validate itself: no DANE for that host.
    dns.set_secure(MX2, false);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::Dane, DaneReason::SomeTlsa);
    assert!(matches!(host(&view, MX2).addresses(), Addresses::Insecure));
}

#[tokio::test]
async fn the_view_keeps_the_smallest_ttl_of_the_rrsets_used() {
    let f = signed_zone().await;
    f.dns().set_ttl(900);
    f.dns().set_negative_ttl(600);
    usable_tlsa(f.dns(), MX1);
    f.dns().set_nodata(&tlsa_name(MX2));
    let view = discover_dane(&f).await;
    // The TLSA denial of mx2 carries the negative TTL, the smallest here.
    assert_eq!(view.min_ttl(), Some(Duration::from_secs(600)));
    let secs = Duration::from_secs;
    assert_eq!(view.discovery().ttl, Some(secs(600)));
    f.dns().set_ttl(120);
    assert_eq!(discover_dane(&f).await.min_ttl(), Some(secs(120)));
}

#[tokio::test]
async fn large_tlsa_rrsets_come_over_tcp() {
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    for n in 0..30u8 {
        f.dns().add_tlsa(&tlsa_name(MX1), 2, 0, 2, &[n; 64]);
    }
    usable_tlsa(f.dns(), MX2);
    let view = discover_dane(&f).await;
    assert_verdict(&view, DaneAnswer::DaneOnly, DaneReason::AllUsable);
    match host(&view, MX1).tlsa() {
        TlsaStatus::Secure { records, .. } => assert_eq!(records.len(), 31),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn more_hosts_than_the_limit_are_never_dane_only() {
    let f = fixture().await;
    let dns = f.dns();
    dns.set_secure_by_default(true);
    for n in 0..=mtasts_fetch::dane::MAX_HOSTS {
        let host = format!("mx{n:02}.example.com");
        dns.add_mx(DOMAIN, 10, &host);
        dns.set_a(&host, Ipv4Addr::LOCALHOST);
        usable_tlsa(dns, &host);
    }
    let view = discover_dane(&f).await;
    assert!(view.truncated());
    assert_eq!(view.hosts().len(), mtasts_fetch::dane::MAX_HOSTS);
    assert_verdict(&view, DaneAnswer::Dane, DaneReason::SomeTlsa);
    let last = format!("mx{:02}.example.com", mtasts_fetch::dane::MAX_HOSTS);
    assert_eq!(dns.query_count(&last), 0);
}

#[tokio::test]
async fn a_silent_tlsa_lookup_fails_by_the_deadline_and_the_others_complete() {
    const TIMEOUT: Duration = Duration::from_millis(1200);
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    f.dns().set_silent(&tlsa_name(MX2));
    let fetcher = f
        .fetcher_builder()
        .timeout(TIMEOUT)
        .build()
        .expect("fetcher");
    let start = Instant::now();
    let view = fetcher.discover_dane(&domain(DOMAIN)).await;
    let elapsed = start.elapsed();
    assert_verdict(&view, DaneAnswer::Dane, DaneReason::LookupFailed);
    assert!(matches!(host(&view, MX2).tlsa(), TlsaStatus::Failed(e) if e.kind() == "dns_timeout"));
    assert_eq!(tlsa_found_at(host(&view, MX1)), "_25._tcp.mx1.example.com");
    assert!(elapsed < TIMEOUT * 2, "took {elapsed:?}");
}

#[tokio::test]
async fn a_failing_first_nameserver_leaves_the_answer_to_the_next() {
    let f = signed_zone().await;
    usable_tlsa(f.dns(), MX1);
    usable_tlsa(f.dns(), MX2);
    let broken = DnsServer::start().await;
    for name in [DOMAIN, MX1, MX2, &tlsa_name(MX1), &tlsa_name(MX2)] {
        broken.set_servfail(name);
    }
    let fetcher: Fetcher = f
        .fetcher_builder()
        .nameservers(vec![broken.addr(), f.dns().addr()])
        .build()
        .expect("fetcher");
    assert_eq!(fetcher.nameservers(), [broken.addr(), f.dns().addr()]);
    let view = fetcher.discover_dane(&domain(DOMAIN)).await;
    assert_verdict(&view, DaneAnswer::DaneOnly, DaneReason::AllUsable);
    assert!(broken.query_count(DOMAIN) >= 1);
}
