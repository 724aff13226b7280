//! HTTPS through an HTTP CONNECT proxy.

use mtasts_core::Mode;
use mtasts_fetch::{FetchError, NoProxy, Proxy};
use mtasts_test_support::ConnectProxy;

use crate::{DOMAIN, ENFORCE, domain, expect_failed, expect_fetched, fixture};

#[tokio::test]
async fn fetches_through_connect_proxy() {
    let f = fixture().await;
    f.publish(DOMAIN, "proxied", ENFORCE);
    let proxy = ConnectProxy::start().await;
    let fetcher = f
        .fetcher_builder()
        .proxy(proxy.url().parse::<Proxy>().expect("proxy url"))
        .no_proxy(NoProxy::default())
        .build()
        .expect("fetcher");
    expect_fetched(
        fetcher.discover(&domain(DOMAIN), None).await,
        "proxied",
        Mode::Enforce,
    );
    assert_eq!(proxy.connect_count(), 1);
    assert_eq!(
        proxy.targets(),
        [format!("mta-sts.example.com:{}", f.https().port())]
    );
    // The policy host was not resolved by us: the proxy connects to it.
    assert_eq!(f.dns().query_count("mta-sts.example.com"), 0);
}

#[tokio::test]
async fn proxy_credentials_are_sent() {
    let f = fixture().await;
    f.publish(DOMAIN, "auth", ENFORCE);
    let proxy = ConnectProxy::start_with_basic_auth("alice", "s3cr:t").await;
    let url = format!("http://alice:s3cr%3At@{}", proxy.addr());
    let fetcher = f
        .fetcher_builder()
        .proxy(url.parse().expect("proxy url"))
        .no_proxy(NoProxy::default())
        .build()
        .expect("fetcher");
    expect_fetched(
        fetcher.discover(&domain(DOMAIN), None).await,
        "auth",
        Mode::Enforce,
    );
    assert_eq!((proxy.connect_count(), proxy.rejected_count()), (1, 0));
}

#[tokio::test]
async fn wrong_proxy_credentials_are_refused() {
    let f = fixture().await;
    f.publish(DOMAIN, "auth", ENFORCE);
    let proxy = ConnectProxy::start_with_basic_auth("alice", "right").await;
    let url = format!("http://alice:wrong@{}", proxy.addr());
    let fetcher = f
        .fetcher_builder()
        .proxy(url.parse().expect("proxy url"))
        .no_proxy(NoProxy::default())
        .build()
        .expect("fetcher");
    match expect_failed(
        fetcher.discover(&domain(DOMAIN), None).await,
        "proxy_refused",
    ) {
        FetchError::ProxyRefused { status, .. } => assert_eq!(status, 407),
        other => panic!("{other:?}"),
    }
    assert_eq!((proxy.connect_count(), proxy.rejected_count()), (0, 1));
}

#[tokio::test]
async fn unreachable_proxy_is_a_failure() {
    let f = fixture().await;
    f.publish(DOMAIN, "1", ENFORCE);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let fetcher = f
        .fetcher_builder()
        .proxy(format!("http://{closed}").parse().expect("proxy url"))
        .no_proxy(NoProxy::default())
        .build()
        .expect("fetcher");
    expect_failed(
        fetcher.discover(&domain(DOMAIN), None).await,
        "proxy_connect",
    );
    assert_eq!(f.https().request_count("mta-sts.example.com"), 0);
}

#[tokio::test]
async fn no_proxy_bypasses_the_proxy() {
    let f = fixture().await;
    f.publish(DOMAIN, "direct", ENFORCE);
    let proxy = ConnectProxy::start().await;
    let fetcher = f
        .fetcher_builder()
        .proxy(proxy.url().parse().expect("proxy url"))
        .no_proxy(NoProxy::parse(".example.com"))
        .build()
        .expect("fetcher");
    expect_fetched(
        fetcher.discover(&domain(DOMAIN), None).await,
        "direct",
        Mode::Enforce,
    );
    assert_eq!(proxy.connect_count(), 0);
}
