//! Zones with `dane: true` (issue 13): every row of the answer table over the in-process DNS server (playing a
//! validating resolver) and the HTTPS fixture, through the socketmap and through Postfix's `postmap -q`; the
//! DNS queries DANE costs (none from other zones, none again within the TTL); and one run against real DNSSEC
//! (zones signed at test time, NSD, Unbound).

use std::net::Ipv4Addr;

use mtasts_test_support::{DnssecResolver, Fixture, PolicyResponse, SignedZone, init_tracing};

use crate::binary::spawn_daemon;
use crate::support::*;

/// A zone with DANE next to the default zone without it.
const DANE_ZONE: &str = "zones:\n  dane:\n    dane: true\n";

fn tlsa_name(host: &str) -> String {
    format!("_25._tcp.{host}")
}

/// A usable TLSA record (DANE-EE, SPKI, SHA2-256) for `host`.
fn usable_tlsa(fixture: &Fixture, host: &str) {
    fixture
        .dns()
        .set_tlsa(&tlsa_name(host), 3, 1, 1, &[0x5a; 32]);
}

/// `domain` publishes the enforce policy, and MX records for `hosts` (each with an address); no TLSA.
fn mail_domain(fixture: &Fixture, domain: &str, hosts: &[&str]) {
    fixture.publish(domain, "id1", ENFORCE);
    let dns = fixture.dns();
    for (i, host) in hosts.iter().enumerate() {
        let preference = 10 * (u16::try_from(i).expect("few hosts") + 1);
        if i == 0 {
            dns.set_mx(domain, preference, host);
        } else {
            dns.add_mx(domain, preference, host);
        }
        dns.set_a(host, Ipv4Addr::LOCALHOST);
    }
}

/// The fixture of the table: one domain per row, all with the enforce MTA-STS policy, in a DNS that validates
/// everything unless marked otherwise. Returns `(domain, answer in a dane zone)` per row.
async fn table_fixture() -> (Fixture, Vec<(&'static str, &'static str)>) {
    init_tracing();
    let f = Fixture::start().await;
    f.dns().set_secure_by_default(true);

    // Row 1: MX validated, every host has usable TLSA.
    mail_domain(&f, "all.test", &["mx1.all.test", "mx2.all.test"]);
    usable_tlsa(&f, "mx1.all.test");
    usable_tlsa(&f, "mx2.all.test");
    // Row 2: some hosts have TLSA (one usable, one host without).
    mail_domain(&f, "some.test", &["mx1.some.test", "mx2.some.test"]);
    usable_tlsa(&f, "mx1.some.test");
    //   ... or only unusable records (PKIX-EE): still `dane`, Postfix insists on TLS.
    mail_domain(&f, "unusable.test", &["mx.unusable.test"]);
    f.dns()
        .set_tlsa(&tlsa_name("mx.unusable.test"), 1, 1, 1, &[0x5a; 32]);
    // Row 3: a host's TLSA lookup fails.
    mail_domain(&f, "fail.test", &["mx1.fail.test", "mx2.fail.test"]);
    usable_tlsa(&f, "mx1.fail.test");
    f.dns().set_servfail(&tlsa_name("mx2.fail.test"));
    // Row 4: MX validated, no host has TLSA (NXDOMAIN for one, NODATA for the other).
    mail_domain(&f, "notlsa.test", &["mx1.notlsa.test", "mx2.notlsa.test"]);
    f.dns().set_nodata(&tlsa_name("mx2.notlsa.test"));
    // Row 5: MX not validated (TLSA in an unsigned zone counts for nothing) ...
    mail_domain(&f, "unsigned.test", &["mx.unsigned.test"]);
    usable_tlsa(&f, "mx.unsigned.test");
    f.dns().set_secure("unsigned.test", false);
    //   ... or the MX lookup fails.
    f.publish("mxfail.test", "id1", ENFORCE);
    f.dns().set_servfail("mxfail.test");
    // Row 6: no MX, the domain is its own host.
    f.publish("implicit.test", "id1", ENFORCE);
    f.dns().set_a("implicit.test", Ipv4Addr::LOCALHOST);
    usable_tlsa(&f, "implicit.test");

    let mta_sts = &ENFORCE_REPLY[3..];
    let rows = vec![
        ("all.test", "dane-only"),
        ("some.test", "dane"),
        ("unusable.test", "dane"),
        ("fail.test", "dane"),
        ("notlsa.test", mta_sts),
        ("unsigned.test", mta_sts),
        ("mxfail.test", mta_sts),
        ("implicit.test", "dane-only"),
    ];
    (f, rows)
}

/// Every row through the socketmap: `dane: true` answers by the table, the zone without it gives the MTA-STS
/// answer everywhere and costs no DANE query at all.
#[tokio::test]
async fn every_row_of_the_table_through_the_socketmap() {
    let (f, rows) = table_fixture().await;
    let daemon = start(&f, DANE_ZONE).await;
    let addr = tcp_addr(&daemon);
    for (domain, _) in &rows {
        assert_eq!(
            query(addr, "postfix", domain).await,
            ENFORCE_REPLY,
            "{domain}"
        );
    }
    assert_eq!(
        f.dns().query_count("all.test") + f.dns().query_count(&tlsa_name("mx1.all.test")),
        0,
        "a zone without `dane` looked up MX or TLSA records"
    );
    for (domain, answer) in &rows {
        assert_eq!(
            query(addr, "dane", domain).await,
            format!("OK {answer}"),
            "{domain}"
        );
    }
    // Answers are counted under their kinds.
    let metrics = daemon.metrics();
    let dane_zone = metrics.zone(b"dane");
    assert_eq!(
        metrics.answers(dane_zone, mta_sts_daemon::AnswerKind::DaneOnly),
        2
    );
    assert_eq!(
        metrics.answers(dane_zone, mta_sts_daemon::AnswerKind::Dane),
        3
    );
    assert_eq!(
        metrics.answers(dane_zone, mta_sts_daemon::AnswerKind::Secure),
        3
    );
    daemon.shutdown().await;
}

/// The built binary logs one info line per DANE discovery, and the note that `dane` replaces an enforce policy
/// while some hosts lack TLSA once per domain, however often it is asked.
#[tokio::test]
async fn each_discovery_is_logged_once_and_the_enforce_note_once_per_domain() {
    let (f, _) = table_fixture().await;
    let spawned = spawn_daemon(&f, DANE_ZONE, &[]).await;
    for _ in 0..3 {
        assert_eq!(
            query(localhost(spawned.port), "dane", "some.test").await,
            "OK dane"
        );
    }
    let stderr = spawned.stop().await;
    let lines = |text: &str| {
        stderr
            .lines()
            .filter(|line| line.contains(text) && line.contains("some.test"))
            .count()
    };
    assert_eq!(lines("DANE discovery"), 1, "{stderr}");
    assert_eq!(
        lines("some MX hosts have no usable TLSA records"),
        1,
        "{stderr}"
    );
}

/// Every row through Postfix's own client.
#[tokio::test]
async fn every_row_of_the_table_through_postmap() {
    let Some(postmap) = Postmap::find("every_row_of_the_table_through_postmap") else {
        return;
    };
    let (f, rows) = table_fixture().await;
    let daemon = start(&f, DANE_ZONE).await;
    let port = tcp_addr(&daemon).port();
    for (domain, answer) in &rows {
        assert_eq!(
            postmap.query(port, "dane", domain).await.as_deref(),
            Some(*answer),
            "{domain}"
        );
    }
    daemon.shutdown().await;
}

/// Repeated lookups within the TTL of the DNS data cause no further MX or TLSA queries; the MTA-STS state of
/// the domain does not matter (here: no policy at all).
#[tokio::test]
async fn repeated_lookups_within_the_ttl_cause_no_further_tlsa_queries() {
    init_tracing();
    let f = Fixture::start().await;
    let dns = f.dns();
    dns.set_secure_by_default(true);
    dns.set_ttl(3600);
    dns.set_nxdomain("_mta-sts.cached.test");
    dns.set_mx("cached.test", 10, "mx.cached.test");
    dns.set_a("mx.cached.test", Ipv4Addr::LOCALHOST);
    usable_tlsa(&f, "mx.cached.test");
    let daemon = start(&f, DANE_ZONE).await;
    let addr = tcp_addr(&daemon);
    assert_eq!(query(addr, "dane", "cached.test").await, "OK dane-only");
    let (mx, tlsa) = (
        dns.query_count("cached.test"),
        dns.query_count(&tlsa_name("mx.cached.test")),
    );
    assert!(mx > 0 && tlsa > 0, "mx {mx}, tlsa {tlsa}");
    for _ in 0..5 {
        assert_eq!(query(addr, "dane", "cached.test").await, "OK dane-only");
    }
    assert_eq!(dns.query_count("cached.test"), mx);
    assert_eq!(dns.query_count(&tlsa_name("mx.cached.test")), tlsa);
    daemon.shutdown().await;
}

/// Real DNSSEC: the daemon pointed at Unbound answers `dane-only` for a domain with TLSA, the MTA-STS answer
/// for one without, and never `dane-only` from zones whose signatures are broken.
#[tokio::test]
async fn real_dnssec_through_unbound() {
    init_tracing();
    // Each domain publishes the enforce policy: a TXT record in its signed zone, the policy host at 127.0.0.1.
    let mail = |origin: &str| {
        SignedZone::mail(origin)
            .record("_mta-sts TXT \"v=STSv1; id=1\"")
            .record("mta-sts A 127.0.0.1")
    };
    let with_tlsa = |origin: &str| mail(origin).tlsa("_25._tcp.mx", 3, 1, 1, &[0x5a; 32]);
    let zones = [
        with_tlsa("good.test"),
        mail("plain.test"),
        with_tlsa("badtlsa.test").break_signatures("TLSA"),
        with_tlsa("bogus.test").break_signatures("DNSKEY"),
    ];
    let Some(resolver) = DnssecResolver::start(&zones).await else {
        return;
    };
    let f = Fixture::start().await;
    for zone in &zones {
        f.serve(zone.origin(), PolicyResponse::policy(ENFORCE));
    }
    let config = format!(
        "host: 127.0.0.1\nport: 0\nresolver:\n  nameservers: [\"{}\"]\n  extra_ca_file: \"{}\"\n  \
         policy_port: {}\n  proxy: none\n{DANE_ZONE}",
        resolver.addr(),
        f.ca_pem_path().display(),
        f.https().port()
    );
    let daemon = start_config(&config).await;
    let addr = tcp_addr(&daemon);
    assert_replies(
        addr,
        &[
            ("dane", "good.test", "OK dane-only"),
            ("postfix", "good.test", ENFORCE_REPLY),
            ("dane", "plain.test", ENFORCE_REPLY),
            // Bogus TLSA signatures: Unbound answers SERVFAIL for the TLSA lookup; Postfix looks up again.
            ("dane", "badtlsa.test", "OK dane"),
            // A bogus zone: every lookup fails, the MX lookup too: no DANE, and no MTA-STS policy either.
            ("dane", "bogus.test", "NOTFOUND "),
        ],
    )
    .await;
    daemon.shutdown().await;
}
