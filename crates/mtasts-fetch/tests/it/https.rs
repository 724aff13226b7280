//! The HTTPS leg: RFC 8461 §3.2 (policy file) and §3.3 (fetch) rules.

use mtasts_core::Mode;
use mtasts_fetch::{Discovery, FetchError, Fetcher, FetcherBuilder, MAX_POLICY_SIZE, USER_AGENT};
use mtasts_test_support::{Fixture, PolicyResponse};

use crate::{
    DOMAIN, ENFORCE, build, closed_addr, discover, discover_with, expect_failed, expect_fetched,
    expect_invalid_policy, fixture,
};

const HOST: &str = "mta-sts.example.com";

/// Publishes the TXT record and serves `response` for the policy host.
async fn serve(response: PolicyResponse) -> Fixture {
    let f = fixture().await;
    f.publish_txt(DOMAIN, "1");
    f.serve(DOMAIN, response);
    f
}

/// A fetcher on the fixture's DNS and HTTPS port, without proxy, trusting no system root (the caller adds the
/// roots it means).
fn without_roots(f: &Fixture) -> FetcherBuilder {
    Fetcher::builder()
        .nameservers(vec![f.dns().addr()])
        .native_roots(false)
        .policy_port(f.https().port())
        .without_proxy()
}

#[tokio::test]
async fn request_is_a_get_of_the_well_known_path_with_our_user_agent() {
    let f = serve(PolicyResponse::policy(ENFORCE)).await;
    expect_fetched(discover(&f).await, "1", Mode::Enforce);
    let request = f.https().last_request(HOST).expect("a request was made");
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/.well-known/mta-sts.txt");
    assert_eq!(request.headers["user-agent"], USER_AGENT);
    assert!(USER_AGENT.starts_with("mtasts/"));
}

/// A policy of exactly the size limit.
fn policy_of_64_kib() -> String {
    let mut body = ENFORCE.to_owned();
    body.push_str("pad: ");
    body.push_str(&"x".repeat(MAX_POLICY_SIZE - body.len() - 1));
    body.push('\n');
    assert_eq!(body.len(), MAX_POLICY_SIZE);
    body
}

#[tokio::test]
async fn valid_policies_are_fetched() {
    let cases = [
        (
            "CRLF line ends",
            PolicyResponse::policy(ENFORCE.replace('\n', "\r\n")),
        ),
        (
            "an unknown field",
            PolicyResponse::policy(format!("{ENFORCE}future_field: yes\n")),
        ),
        (
            "a charset parameter",
            PolicyResponse::policy(ENFORCE).content_type("text/plain; charset=utf-8"),
        ),
        ("a chunked body", PolicyResponse::policy(ENFORCE).chunked()),
        (
            "exactly 64 KiB, chunked",
            PolicyResponse::policy(policy_of_64_kib()).chunked(),
        ),
    ];
    for (what, response) in cases {
        let f = serve(response).await;
        match discover(&f).await {
            Discovery::Fetched { id, policy } => {
                assert_eq!((id.as_str(), policy.mode()), ("1", Mode::Enforce), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn text_html_is_rejected() {
    let f = serve(PolicyResponse::policy(ENFORCE).content_type("text/html")).await;
    match expect_failed(discover(&f).await, "media_type") {
        FetchError::MediaType { content_type } => {
            assert_eq!(content_type.as_deref(), Some("text/html"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn responses_that_are_not_a_policy_fail_by_kind() {
    let cases = [
        (
            "no content type",
            PolicyResponse::policy(ENFORCE).no_content_type(),
            "media_type",
        ),
        (
            "a garbage body",
            PolicyResponse::policy("<html><body>hello</body></html>\n"),
            "invalid_policy",
        ),
        (
            "an untrusted CA",
            PolicyResponse::policy(ENFORCE).untrusted_cert(),
            "tls",
        ),
        (
            "a certificate for another name",
            PolicyResponse::policy(ENFORCE).wrong_name_cert(),
            "tls",
        ),
        (
            "closed mid-body",
            PolicyResponse::policy(ENFORCE).abort_after(20),
            "http",
        ),
        (
            "closed mid-chunk",
            PolicyResponse::policy(ENFORCE).chunked().abort_after(20),
            "http",
        ),
    ];
    for (what, response, kind) in cases {
        let f = serve(response).await;
        match discover(&f).await {
            Discovery::Failed(error) => assert_eq!(error.kind(), kind, "{what}: {error}"),
            other => panic!("{what}: {other:?}"),
        }
        if kind == "tls" {
            assert_eq!(f.https().request_count(HOST), 0, "{what}");
        }
    }
}

#[tokio::test]
async fn status_404_is_a_failure() {
    let f = serve(PolicyResponse::status(404)).await;
    match expect_failed(discover(&f).await, "http_status") {
        FetchError::HttpStatus { status } => assert_eq!(status, 404),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn redirect_to_a_valid_policy_is_not_followed() {
    let target = "https://mta-sts.other.test/.well-known/mta-sts.txt";
    let f = serve(PolicyResponse::redirect(301, target)).await;
    f.publish("other.test", "2", ENFORCE);
    match expect_failed(discover(&f).await, "redirect") {
        FetchError::Redirect { status, location } => {
            assert_eq!((status, location.as_deref()), (301, Some(target)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.https().request_count("mta-sts.other.test"), 0);
}

#[tokio::test]
async fn invalid_policy_files_fail_with_the_parser_error() {
    let cases = [
        (
            "version: STSv1\nmode: enforce\nmax_age: 86400\n",
            "missing_mx",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: xxx\n",
            "invalid_max_age",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 31557601\n",
            "invalid_max_age",
        ),
        (
            "version: STSv1\nmx: mail.example.com\nmax_age: 86400\n",
            "missing_field",
        ),
        (
            "version: STSv1\nmode: relaxed\nmx: mail.example.com\nmax_age: 86400\n",
            "invalid_mode",
        ),
    ];
    for (body, kind) in cases {
        let f = serve(PolicyResponse::policy(body)).await;
        expect_invalid_policy(discover(&f).await, kind);
    }
}

#[tokio::test]
async fn content_length_over_64_kib_is_rejected() {
    let body = format!("{ENFORCE}{}", "#".repeat(MAX_POLICY_SIZE));
    let f = serve(PolicyResponse::policy(body)).await;
    match expect_failed(discover(&f).await, "too_large") {
        FetchError::TooLarge {
            limit,
            content_length,
        } => {
            assert_eq!(limit, 64 * 1024);
            assert!(content_length.is_some_and(|l| l > 64 * 1024));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn chunked_body_over_64_kib_is_rejected_while_streaming() {
    let body = format!("{ENFORCE}{}", "#".repeat(MAX_POLICY_SIZE));
    let f = serve(PolicyResponse::policy(body).chunked()).await;
    match expect_failed(discover(&f).await, "too_large") {
        FetchError::TooLarge { content_length, .. } => assert_eq!(content_length, None),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn refused_connection_is_a_connect_failure() {
    let f = fixture().await;
    f.publish(DOMAIN, "1", ENFORCE);
    let fetcher = build(f.fetcher_builder().policy_port(closed_addr().port()));
    expect_failed(discover_with(&fetcher).await, "connect");
}

#[tokio::test]
async fn extra_ca_pem_file_is_trusted() {
    let f = fixture().await;
    f.publish(DOMAIN, "pem", ENFORCE);
    let fetcher = build(without_roots(&f).extra_ca_pem_file(f.ca_pem_path()));
    expect_fetched(discover_with(&fetcher).await, "pem", Mode::Enforce);
}

#[tokio::test]
async fn without_the_test_ca_the_certificate_is_untrusted() {
    let f = fixture().await;
    f.publish(DOMAIN, "1", ENFORCE);
    let other_ca = mtasts_test_support::TestCa::new();
    let fetcher = build(without_roots(&f).add_root_certificate(other_ca.cert_der()));
    expect_failed(discover_with(&fetcher).await, "tls");
}

#[tokio::test]
async fn bad_ca_file_is_a_build_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    for (file, kind) in [
        (empty, "no_certificate"),
        (dir.path().join("missing.pem"), "ca_file"),
    ] {
        let err = Fetcher::builder()
            .nameservers(vec!["127.0.0.1:53".parse().expect("addr")])
            .extra_ca_pem_file(&file)
            .build()
            .expect_err("a bad CA file");
        assert_eq!(err.kind(), kind, "{}", file.display());
    }
}

#[tokio::test]
async fn every_fetch_validates_the_current_certificate() {
    let f = serve(PolicyResponse::policy(ENFORCE)).await;
    let fetcher = f.fetcher();
    expect_fetched(discover_with(&fetcher).await, "1", Mode::Enforce);
    // Same fetcher, same host, now an untrusted certificate: no resumed session hides it.
    f.serve(DOMAIN, PolicyResponse::policy(ENFORCE).untrusted_cert());
    expect_failed(discover_with(&fetcher).await, "tls");
}
