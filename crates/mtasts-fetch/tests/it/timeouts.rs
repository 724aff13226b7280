//! One timeout bounds the whole discovery; it is honoured within ~10 %.

use std::time::{Duration, Instant};

use mtasts_core::Mode;
use mtasts_fetch::{Discovery, Fetcher};
use mtasts_test_support::PolicyResponse;

use crate::{DOMAIN, ENFORCE, build, discover_with, expect_failed, expect_fetched, fixture};

const TIMEOUT: Duration = Duration::from_millis(1500);

/// Discovers `DOMAIN` with `fetcher`, checking that it took the timeout, give or take 10 %.
async fn discover_until_timeout(fetcher: &Fetcher) -> Discovery {
    let start = Instant::now();
    let discovery = discover_with(fetcher).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= TIMEOUT,
        "returned before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed <= TIMEOUT + TIMEOUT / 10,
        "took more than the timeout + 10 %: {elapsed:?}"
    );
    discovery
}

#[tokio::test]
async fn server_stalling_mid_body_times_out() {
    let f = fixture().await;
    f.publish_txt(DOMAIN, "1");
    f.serve(DOMAIN, PolicyResponse::policy(ENFORCE).stall_after(20));
    let fetcher = build(f.fetcher_builder().timeout(TIMEOUT));
    expect_failed(discover_until_timeout(&fetcher).await, "timeout");
    assert_eq!(f.https().request_count("mta-sts.example.com"), 1);
}

#[tokio::test]
async fn silent_dns_server_times_out() {
    let f = fixture().await;
    f.dns().set_silent("_mta-sts.example.com");
    let fetcher = build(f.fetcher_builder().timeout(TIMEOUT));
    expect_failed(discover_until_timeout(&fetcher).await, "dns_timeout");
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
    expect_failed(discover_until_timeout(&short).await, "timeout");
    // The same fetcher works once the server behaves.
    f.serve(DOMAIN, PolicyResponse::policy(ENFORCE));
    expect_fetched(discover_with(&short).await, "1", Mode::Enforce);
}
