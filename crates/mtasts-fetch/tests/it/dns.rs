//! The DNS leg: TXT selection (RFC 8461 §3.1), negative answers, failures.

use std::time::Duration;

use mtasts_core::Mode;
use mtasts_fetch::Discovery;
use mtasts_test_support::Fixture;

use crate::{
    DOMAIN, ENFORCE, discover, domain, expect_failed, expect_fetched, expect_no_policy, fixture, id,
};

const TXT: &str = "_mta-sts.example.com";
const HOST: &str = "mta-sts.example.com";

#[tokio::test]
async fn fetches_enforce_policy() {
    let f = fixture().await;
    f.publish(DOMAIN, "20240101T000000", ENFORCE);
    match discover(&f).await {
        Discovery::Fetched { id, policy } => {
            assert_eq!(id.as_str(), "20240101T000000");
            assert_eq!(policy.mode(), Mode::Enforce);
            assert_eq!(policy.max_age().as_secs(), 86400);
            let mx: Vec<&str> = policy.mx().iter().map(|m| m.as_str()).collect();
            assert_eq!(mx, ["mail.example.com", "*.example.net"]);
        }
        other => panic!("expected fetched, got {other:?}"),
    }
    assert_eq!(f.https().request_count(HOST), 1);
}

#[tokio::test]
async fn fetches_testing_policy() {
    let f = fixture().await;
    f.publish(
        DOMAIN,
        "t1",
        "version: STSv1\nmode: testing\nmx: mail.example.com\nmax_age: 600\n",
    );
    expect_fetched(discover(&f).await, "t1", Mode::Testing);
}

#[tokio::test]
async fn fetches_none_policy_without_mx() {
    let f = fixture().await;
    f.publish(DOMAIN, "n1", "version: STSv1\nmode: none\nmax_age: 600\n");
    expect_fetched(discover(&f).await, "n1", Mode::None);
}

#[tokio::test]
async fn unchanged_id_makes_no_https_request() {
    let f = fixture().await;
    f.publish(DOMAIN, "abc123", ENFORCE);
    let fetcher = f.fetcher();
    match fetcher.discover(&domain(DOMAIN), Some(&id("abc123"))).await {
        Discovery::Unchanged { id } => assert_eq!(id.as_str(), "abc123"),
        other => panic!("expected unchanged, got {other:?}"),
    }
    assert_eq!(f.https().request_count(HOST), 0);
    // Another known id: the policy is fetched.
    expect_fetched(
        fetcher.discover(&domain(DOMAIN), Some(&id("older"))).await,
        "abc123",
        Mode::Enforce,
    );
    assert_eq!(f.https().request_count(HOST), 1);
}

#[tokio::test]
async fn nxdomain_is_no_policy_with_negative_ttl() {
    let f = fixture().await;
    f.dns().set_negative_ttl(123);
    let ttl = expect_no_policy(discover(&f).await, "nxdomain");
    assert_eq!(ttl, Some(Duration::from_secs(123)));
    assert_eq!(f.dns().query_count(TXT), 1);
    assert_eq!(f.https().request_count(HOST), 0);
}

#[tokio::test]
async fn nodata_is_no_policy_with_negative_ttl() {
    let f = fixture().await;
    f.dns().set_nodata(TXT);
    f.dns().set_negative_ttl(77);
    let ttl = expect_no_policy(discover(&f).await, "nodata");
    assert_eq!(ttl, Some(Duration::from_secs(77)));
}

#[tokio::test]
async fn no_txt_record_but_a_record_is_nodata() {
    let f = fixture().await;
    f.dns().set_a(TXT, std::net::Ipv4Addr::LOCALHOST);
    expect_no_policy(discover(&f).await, "nodata");
}

#[tokio::test]
async fn non_sts_txt_is_no_policy() {
    let f = fixture().await;
    f.dns().set_txt(TXT, ["v=spf1 -all"]);
    f.serve(DOMAIN, mtasts_test_support::PolicyResponse::policy(ENFORCE));
    expect_no_policy(discover(&f).await, "no_valid_record");
    assert_eq!(f.https().request_count(HOST), 0);
}

#[tokio::test]
async fn stsv12_is_not_stsv1() {
    let f = fixture().await;
    f.dns().set_txt(TXT, ["v=STSv12; id=1;"]);
    expect_no_policy(discover(&f).await, "no_valid_record");
}

#[tokio::test]
async fn two_valid_records_are_no_policy() {
    let f = fixture().await;
    f.publish(DOMAIN, "one", ENFORCE);
    f.dns().add_txt(TXT, ["v=STSv1; id=two;"]);
    expect_no_policy(discover(&f).await, "no_valid_record");
    assert_eq!(f.https().request_count(HOST), 0);
}

#[tokio::test]
async fn one_valid_record_among_others_is_used() {
    let f = fixture().await;
    f.publish(DOMAIN, "one", ENFORCE);
    f.dns().add_txt(TXT, ["v=spf1 -all"]);
    expect_fetched(discover(&f).await, "one", Mode::Enforce);
}

#[tokio::test]
async fn split_strings_are_concatenated() {
    let f = fixture().await;
    f.publish(DOMAIN, "unused", ENFORCE);
    f.dns().set_txt(TXT, ["v=STSv1; id=spl", "it42;"]);
    expect_fetched(discover(&f).await, "split42", Mode::Enforce);
}

#[tokio::test]
async fn cname_to_txt_is_followed() {
    let f = fixture().await;
    f.publish(DOMAIN, "unused", ENFORCE);
    f.dns().set_cname(TXT, "_mta-sts.provider.test");
    f.dns()
        .set_txt("_mta-sts.provider.test", ["v=STSv1; id=viacname;"]);
    expect_fetched(discover(&f).await, "viacname", Mode::Enforce);
    assert_eq!(
        f.dns().query_count("_mta-sts.provider.test"),
        0,
        "chain answered in one go"
    );
}

#[tokio::test]
async fn large_txt_answer_falls_back_to_tcp() {
    let f = fixture().await;
    f.publish(DOMAIN, "big", ENFORCE);
    for n in 0..12 {
        f.dns()
            .add_txt(TXT, [format!("unrelated-{n}-{}", "x".repeat(200))]);
    }
    expect_fetched(discover(&f).await, "big", Mode::Enforce);
}

#[tokio::test]
async fn servfail_is_a_failure_not_no_policy() {
    let f = fixture().await;
    f.dns().set_servfail(TXT);
    expect_failed(discover(&f).await, "dns_server_failure");
}

#[tokio::test]
async fn policy_host_without_address_is_a_failure() {
    let f = fixture().await;
    f.publish_txt(DOMAIN, "1");
    expect_failed(discover(&f).await, "no_address");
}

#[tokio::test]
async fn invalid_domains_make_no_query() {
    let f = fixture().await;
    let fetcher = f.fetcher();
    for name in [".example.com", "192.0.2.1", "[192.0.2.1]", "exa mple.com"] {
        let discovery = fetcher.discover_name(name, None).await;
        expect_no_policy(discovery, "invalid_domain");
    }
    assert_eq!(f.dns().total_queries(), 0);
}

#[tokio::test]
async fn domain_input_is_normalised() {
    let f = fixture().await;
    f.publish(DOMAIN, "norm", ENFORCE);
    let discovery = f.fetcher().discover_name("Example.COM.", None).await;
    expect_fetched(discovery, "norm", Mode::Enforce);
}

#[tokio::test]
async fn unicode_domain_is_looked_up_as_a_label() {
    let f = fixture().await;
    f.publish("xn--bcher-kva.example", "idn", ENFORCE);
    let discovery = f.fetcher().discover_name("bücher.example", None).await;
    expect_fetched(discovery, "idn", Mode::Enforce);
    assert_eq!(
        Fixture::txt_name("xn--bcher-kva.example"),
        "_mta-sts.xn--bcher-kva.example"
    );
}

#[tokio::test]
async fn record_changes_are_seen_at_once_no_dns_cache() {
    let f = fixture().await;
    let fetcher = f.fetcher();
    expect_no_policy(fetcher.discover(&domain(DOMAIN), None).await, "nxdomain");
    f.publish(DOMAIN, "first", ENFORCE);
    expect_fetched(
        fetcher.discover(&domain(DOMAIN), None).await,
        "first",
        Mode::Enforce,
    );
    f.publish_txt(DOMAIN, "second");
    expect_fetched(
        fetcher.discover(&domain(DOMAIN), None).await,
        "second",
        Mode::Enforce,
    );
    assert_eq!(f.dns().query_count(TXT), 3);
}
