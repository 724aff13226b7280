//! One timeout bounds the whole discovery; it is honoured within ~10 %.

use std::time::{Duration, Instant};

use mtasts_core::Mode;
use mtasts_test_support::PolicyResponse;

use crate::{DOMAIN, ENFORCE, domain, expect_failed, expect_fetched, fixture};

const TIMEOUT: Duration = Duration::from_millis(1500);

#[track_caller]
fn assert_within_timeout(elapsed: Duration) {
    assert!(
        elapsed >= TIMEOUT,
        "returned before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed <= TIMEOUT + TIMEOUT / 10,
        "took more than the timeout + 10 %: {elapsed:?}"
    );
}

#[tokio::test]
async fn server_stalling_mid_body_times_out() {
    let f = fixture().await;
    f.publish_txt(DOMAIN, "1");
    f.serve(DOMAIN, PolicyResponse::policy(ENFORCE).stall_after(20));
    let fetcher = f
        .fetcher_builder()
        .timeout(TIMEOUT)
        .build()
        .expect("fetcher");
    let start = Instant::now();
    let discovery = fetcher.discover(&domain(DOMAIN), None).await;
    let elapsed = start.elapsed();
    expect_failed(discovery, "timeout");
    assert_within_timeout(elapsed);
    assert_eq!(f.https().request_count("mta-sts.example.com"), 1);
}

#[tokio::test]
async fn silent_dns_server_times_out() {
    let f = fixture().await;
    f.dns().set_silent("_mta-sts.example.com");
    let fetcher = f
        .fetcher_builder()
        .timeout(TIMEOUT)
        .build()
        .expect("fetcher");
    let start = Instant::now();
    let discovery = fetcher.discover(&domain(DOMAIN), None).await;
    let elapsed = start.elapsed();
    expect_failed(discovery, "dns_timeout");
    assert_within_timeout(elapsed);
}

#[tokio::test]
async fn with_timeout_shares_configuration() {
    let f = fixture().await;
    f.publish(DOMAIN, "1", ENFORCE);
    f.serve(DOMAIN, PolicyResponse::policy(ENFORCE).stall_after(10));
    let fetcher = f.fetcher();
    let short = fetcher.with_timeout(TIMEOUT);
    assert_eq!(short.timeout(), TIMEOUT);
    assert_eq!(fetcher.timeout(), mtasts_fetch::DEFAULT_TIMEOUT);
    let start = Instant::now();
    expect_failed(short.discover(&domain(DOMAIN), None).await, "timeout");
    assert_within_timeout(start.elapsed());
    // The same fetcher works once the server behaves.
    f.serve(DOMAIN, PolicyResponse::policy(ENFORCE));
    expect_fetched(
        short.discover(&domain(DOMAIN), None).await,
        "1",
        Mode::Enforce,
    );
}
