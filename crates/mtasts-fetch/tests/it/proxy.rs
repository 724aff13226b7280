//! HTTPS through an HTTP CONNECT proxy.

use mtasts_core::Mode;
use mtasts_fetch::{FetchError, Fetcher, NoProxy};
use mtasts_test_support::{ConnectProxy, Fixture};

use crate::{
    DOMAIN, ENFORCE, build, closed_addr, discover_with, expect_failed, expect_fetched, fixture,
};

/// The fixture's fetcher, through the proxy at `url`, bypassing it for `no_proxy`.
fn via(f: &Fixture, url: &str, no_proxy: NoProxy) -> Fetcher {
    let proxy = url.parse().expect("proxy url");
    build(f.fetcher_builder().proxy(proxy).no_proxy(no_proxy))
}

#[tokio::test]
async fn fetches_through_connect_proxy() {
    let f = fixture().await;
    f.publish(DOMAIN, "proxied", ENFORCE);
    let proxy = ConnectProxy::start().await;
    let fetcher = via(&f, &proxy.url(), NoProxy::default());
    expect_fetched(discover_with(&fetcher).await, "proxied", Mode::Enforce);
    assert_eq!(proxy.connect_count(), 1);
    assert_eq!(
        proxy.targets(),
        [format!("mta-sts.example.com:{}", f.https().port())]
    );
    // The policy host was not resolved by us: the proxy connects to it.
    assert_eq!(f.dns().query_count("mta-sts.example.com"), 0);
}

/// The proxy wants `alice` / `s3cr:t`: the URL's percent-encoded password is decoded and sent; a wrong one gets
/// a 407 and no tunnel.
#[tokio::test]
async fn proxy_credentials_are_sent_and_checked() {
    let f = fixture().await;
    f.publish(DOMAIN, "auth", ENFORCE);
    for (password, accepted) in [("s3cr%3At", true), ("wrong", false)] {
        let proxy = ConnectProxy::start_with_basic_auth("alice", "s3cr:t").await;
        let url = format!("http://alice:{password}@{}", proxy.addr());
        let discovery = discover_with(&via(&f, &url, NoProxy::default())).await;
        if accepted {
            expect_fetched(discovery, "auth", Mode::Enforce);
        } else {
            match expect_failed(discovery, "proxy_refused") {
                FetchError::ProxyRefused { status, .. } => assert_eq!(status, 407),
                other => panic!("{other:?}"),
            }
        }
        let counts = (proxy.connect_count(), proxy.rejected_count());
        assert_eq!(counts, if accepted { (1, 0) } else { (0, 1) }, "{password}");
    }
}

#[tokio::test]
async fn unreachable_proxy_is_a_failure() {
    let f = fixture().await;
    f.publish(DOMAIN, "1", ENFORCE);
    let fetcher = via(&f, &format!("http://{}", closed_addr()), NoProxy::default());
    expect_failed(discover_with(&fetcher).await, "proxy_connect");
    assert_eq!(f.https().request_count("mta-sts.example.com"), 0);
}

#[tokio::test]
async fn no_proxy_bypasses_the_proxy() {
    let f = fixture().await;
    f.publish(DOMAIN, "direct", ENFORCE);
    let proxy = ConnectProxy::start().await;
    let fetcher = via(&f, &proxy.url(), NoProxy::parse(".example.com"));
    expect_fetched(discover_with(&fetcher).await, "direct", Mode::Enforce);
    assert_eq!(proxy.connect_count(), 0);
}
