//! The HTTPS leg: RFC 8461 §3.2 (policy file) and §3.3 (fetch) rules.

use mtasts_core::Mode;
use mtasts_fetch::{FetchError, MAX_POLICY_SIZE, USER_AGENT};
use mtasts_test_support::PolicyResponse;

use crate::{
    DOMAIN, ENFORCE, discover, expect_failed, expect_fetched, expect_invalid_policy, fixture,
};

const HOST: &str = "mta-sts.example.com";

/// Publishes the TXT record and serves `response` for the policy host.
async fn serve(response: PolicyResponse) -> mtasts_test_support::Fixture {
    let f = fixture().await;
    f.publish_txt(DOMAIN, "1");
    f.serve(DOMAIN, response);
    f
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

#[tokio::test]
async fn crlf_policy_is_accepted() {
    let body = ENFORCE.replace('\n', "\r\n");
    let f = serve(PolicyResponse::policy(body)).await;
    expect_fetched(discover(&f).await, "1", Mode::Enforce);
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let f = serve(PolicyResponse::policy(format!(
        "{ENFORCE}future_field: yes\n"
    )))
    .await;
    expect_fetched(discover(&f).await, "1", Mode::Enforce);
}

#[tokio::test]
async fn charset_parameter_is_accepted() {
    let f = serve(PolicyResponse::policy(ENFORCE).content_type("text/plain; charset=utf-8")).await;
    expect_fetched(discover(&f).await, "1", Mode::Enforce);
}

#[tokio::test]
async fn chunked_policy_within_limit_is_accepted() {
    let f = serve(PolicyResponse::policy(ENFORCE).chunked()).await;
    expect_fetched(discover(&f).await, "1", Mode::Enforce);
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
async fn missing_content_type_is_rejected() {
    let f = serve(PolicyResponse::policy(ENFORCE).no_content_type()).await;
    expect_failed(discover(&f).await, "media_type");
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
    let f = serve(PolicyResponse::redirect(
        301,
        "https://mta-sts.other.test/.well-known/mta-sts.txt",
    ))
    .await;
    f.publish("other.test", "2", ENFORCE);
    match expect_failed(discover(&f).await, "redirect") {
        FetchError::Redirect { status, location } => {
            assert_eq!(status, 301);
            assert_eq!(
                location.as_deref(),
                Some("https://mta-sts.other.test/.well-known/mta-sts.txt")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.https().request_count("mta-sts.other.test"), 0);
}

#[tokio::test]
async fn garbage_body_is_invalid() {
    let f = serve(PolicyResponse::policy("<html><body>hello</body></html>\n")).await;
    expect_failed(discover(&f).await, "invalid_policy");
}

#[tokio::test]
async fn missing_mx_is_invalid() {
    let f = serve(PolicyResponse::policy(
        "version: STSv1\nmode: enforce\nmax_age: 86400\n",
    ))
    .await;
    expect_invalid_policy(discover(&f).await, "missing_mx");
}

#[tokio::test]
async fn non_numeric_max_age_is_invalid() {
    let f = serve(PolicyResponse::policy(
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: xxx\n",
    ))
    .await;
    expect_invalid_policy(discover(&f).await, "invalid_max_age");
}

#[tokio::test]
async fn max_age_above_one_year_is_invalid() {
    let f = serve(PolicyResponse::policy(
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 31557601\n",
    ))
    .await;
    expect_invalid_policy(discover(&f).await, "invalid_max_age");
}

#[tokio::test]
async fn missing_mode_is_invalid() {
    let f = serve(PolicyResponse::policy(
        "version: STSv1\nmx: mail.example.com\nmax_age: 86400\n",
    ))
    .await;
    expect_invalid_policy(discover(&f).await, "missing_field");
}

#[tokio::test]
async fn unknown_mode_is_invalid() {
    let f = serve(PolicyResponse::policy(
        "version: STSv1\nmode: relaxed\nmx: mail.example.com\nmax_age: 86400\n",
    ))
    .await;
    expect_invalid_policy(discover(&f).await, "invalid_mode");
}

#[tokio::test]
async fn certificate_from_untrusted_ca_is_rejected() {
    let f = serve(PolicyResponse::policy(ENFORCE).untrusted_cert()).await;
    expect_failed(discover(&f).await, "tls");
    assert_eq!(f.https().request_count(HOST), 0);
}

#[tokio::test]
async fn certificate_for_another_name_is_rejected() {
    let f = serve(PolicyResponse::policy(ENFORCE).wrong_name_cert()).await;
    expect_failed(discover(&f).await, "tls");
    assert_eq!(f.https().request_count(HOST), 0);
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
async fn body_of_exactly_64_kib_is_accepted() {
    let mut body = ENFORCE.to_owned();
    body.push_str("pad: ");
    body.push_str(&"x".repeat(MAX_POLICY_SIZE - body.len() - 1));
    body.push('\n');
    assert_eq!(body.len(), MAX_POLICY_SIZE);
    let f = serve(PolicyResponse::policy(body).chunked()).await;
    expect_fetched(discover(&f).await, "1", Mode::Enforce);
}

#[tokio::test]
async fn refused_connection_is_a_connect_failure() {
    let f = fixture().await;
    f.publish(DOMAIN, "1", ENFORCE);
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let fetcher = f
        .fetcher_builder()
        .policy_port(closed_port)
        .build()
        .expect("fetcher");
    let discovery = fetcher.discover(&crate::domain(DOMAIN), None).await;
    expect_failed(discovery, "connect");
}

#[tokio::test]
async fn extra_ca_pem_file_is_trusted() {
    let f = fixture().await;
    f.publish(DOMAIN, "pem", ENFORCE);
    let fetcher = mtasts_fetch::Fetcher::builder()
        .nameservers(vec![f.dns().addr()])
        .extra_ca_pem_file(f.ca_pem_path())
        .native_roots(false)
        .policy_port(f.https().port())
        .without_proxy()
        .build()
        .expect("fetcher");
    expect_fetched(
        fetcher.discover(&crate::domain(DOMAIN), None).await,
        "pem",
        Mode::Enforce,
    );
}

#[tokio::test]
async fn without_the_test_ca_the_certificate_is_untrusted() {
    let f = fixture().await;
    f.publish(DOMAIN, "1", ENFORCE);
    let other_ca = mtasts_test_support::TestCa::new();
    let fetcher = mtasts_fetch::Fetcher::builder()
        .nameservers(vec![f.dns().addr()])
        .add_root_certificate(other_ca.cert_der())
        .native_roots(false)
        .policy_port(f.https().port())
        .without_proxy()
        .build()
        .expect("fetcher");
    expect_failed(fetcher.discover(&crate::domain(DOMAIN), None).await, "tls");
}

#[tokio::test]
async fn bad_ca_file_is_a_build_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let err = mtasts_fetch::Fetcher::builder()
        .nameservers(vec!["127.0.0.1:53".parse().expect("addr")])
        .extra_ca_pem_file(&empty)
        .build()
        .expect_err("no certificate in file");
    assert_eq!(err.kind(), "no_certificate");
    let err = mtasts_fetch::Fetcher::builder()
        .nameservers(vec!["127.0.0.1:53".parse().expect("addr")])
        .extra_ca_pem_file(dir.path().join("missing.pem"))
        .build()
        .expect_err("missing file");
    assert_eq!(err.kind(), "ca_file");
}

#[tokio::test]
async fn connection_closed_mid_body_is_an_http_failure() {
    let f = serve(PolicyResponse::policy(ENFORCE).abort_after(20)).await;
    expect_failed(discover(&f).await, "http");
}

#[tokio::test]
async fn connection_closed_mid_chunked_body_is_an_http_failure() {
    let f = serve(PolicyResponse::policy(ENFORCE).chunked().abort_after(20)).await;
    expect_failed(discover(&f).await, "http");
}

#[tokio::test]
async fn every_fetch_validates_the_current_certificate() {
    let f = serve(PolicyResponse::policy(ENFORCE)).await;
    let fetcher = f.fetcher();
    let domain = crate::domain(DOMAIN);
    expect_fetched(fetcher.discover(&domain, None).await, "1", Mode::Enforce);
    // Same fetcher, same host, now an untrusted certificate: no resumed session hides it.
    f.serve(DOMAIN, PolicyResponse::policy(ENFORCE).untrusted_cert());
    expect_failed(fetcher.discover(&domain, None).await, "tls");
}
