//! The answer contract, end to end over TCP.

use std::time::Duration;

use mtasts_test_support::{Fixture, PolicyResponse};

use crate::support::*;

#[tokio::test]
async fn enforced_policy_answers_secure_match() {
    let (_fixture, daemon, addr) = standard("").await;
    assert_eq!(query(addr, "postfix", "enforce.test").await, ENFORCE_REPLY);
    daemon.shutdown().await;
}

/// Every form Postfix sends a next-hop in reaches the domain's policy with one discovery; parent-domain keys
/// (RFC 8461 §3.4) and IP literals are `NOTFOUND ` without any network access.
#[tokio::test]
async fn keys_are_normalized_and_parents_and_addresses_skipped() {
    let (fixture, daemon, addr) = standard("").await;
    let skipped = [
        ".enforce.test",
        ".test",
        "[192.0.2.1]",
        "192.0.2.1",
        "[2001:db8::1]:25",
        "2001:db8::1",
        "not a domain",
    ];
    assert_replies(addr, &skipped.map(|key| ("postfix", key, "NOTFOUND "))).await;
    assert_eq!(fixture.dns().total_queries(), 0);
    let forms = [
        "enforce.test",
        "ENFORCE.TEST",
        "enforce.test.",
        "[enforce.test]",
        "[enforce.test]:25",
        "enforce.test:587",
    ];
    assert_replies(addr, &forms.map(|key| ("postfix", key, ENFORCE_REPLY))).await;
    assert_eq!(fixture.https().request_count("mta-sts.enforce.test"), 1);
    daemon.shutdown().await;
}

#[tokio::test]
async fn u_labels_are_looked_up_as_a_labels() {
    let fixture = enforcing("xn--bcher-kva.test").await;
    let daemon = start(&fixture, "").await;
    assert_eq!(
        query(tcp_addr(&daemon), "postfix", "bücher.test").await,
        ENFORCE_REPLY
    );
    daemon.shutdown().await;
}

/// No enforced policy (testing, none, none published) and failed discoveries (HTTP error, SERVFAIL, invalid
/// policy file) are all `NOTFOUND `, never a lookup error (RFC 8461 §3.3: deliver as if there were no policy).
#[tokio::test]
async fn no_enforced_policy_and_discovery_failures_are_notfound_never_errors() {
    let fixture = standard_fixture().await;
    fixture.dns().set_nxdomain("_mta-sts.absent.test");
    fixture.publish_txt("broken.test", "id1");
    fixture.serve("broken.test", PolicyResponse::status(500));
    fixture.dns().set_servfail("_mta-sts.servfail.test");
    fixture.publish_txt("badpolicy.test", "id1");
    fixture.serve(
        "badpolicy.test",
        PolicyResponse::policy("version: STSv1\nmode: enforce\nmax_age: 86400\n"),
    );
    let daemon = start(&fixture, "").await;
    let keys = [
        "testing.test",
        "none.test",
        "absent.test",
        "broken.test",
        "servfail.test",
        "badpolicy.test",
    ];
    assert_replies(
        tcp_addr(&daemon),
        &keys.map(|key| ("postfix", key, "NOTFOUND ")),
    )
    .await;
    daemon.shutdown().await;
}

#[tokio::test]
async fn zones_select_their_settings_and_fall_back_to_default_zone() {
    let (_fixture, daemon, addr) = standard(
        "default_zone:\n  require_sni: yes\nzones:\n  strict:\n    strict_testing: yes\n  nosni:\n    require_sni: no\n  rpt:\n    tlsrpt: on\n",
    )
    .await;
    let tlsrpt = format!(
        "{ENFORCE_REPLY} policy_type=sts policy_domain=enforce.test policy_ttl=86400 \
         mx_host_pattern=mail.example.com mx_host_pattern=*.mx.example.net \
         {{ policy_string = version: STSv1 }} {{ policy_string = mode: enforce }} \
         {{ policy_string = max_age: 86400 }} {{ policy_string = mx: mail.example.com }} \
         {{ policy_string = mx: *.mx.example.net }}"
    );
    assert_replies(
        addr,
        &[
            // strict_testing: testing answered like enforce.
            (
                "strict",
                "testing.test",
                "OK secure match=mail.example.com servername=hostname",
            ),
            ("strict", "none.test", "NOTFOUND "),
            ("postfix", "testing.test", "NOTFOUND "),
            // require_sni: false (Postfix < 3.4).
            (
                "nosni",
                "enforce.test",
                "OK secure match=mail.example.com:.mx.example.net",
            ),
            // An unknown zone name uses default_zone.
            ("whatever", "enforce.test", ENFORCE_REPLY),
            // tlsrpt: Postfix 3.10 attributes.
            ("rpt", "enforce.test", &tlsrpt),
        ],
    )
    .await;
    daemon.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_share_one_discovery() {
    let fixture = enforcing("coalesce.test").await;
    let daemon = start(&fixture, "").await;
    let addr = tcp_addr(&daemon);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        tasks.spawn(async move { query(addr, "postfix", "coalesce.test").await });
    }
    while let Some(reply) = tasks.join_next().await {
        assert_eq!(reply.expect("task"), ENFORCE_REPLY);
    }
    assert_eq!(fixture.https().request_count("mta-sts.coalesce.test"), 1);
    daemon.shutdown().await;
}

#[tokio::test]
async fn freshness_grace_unchanged_id_expiry_and_stale_on_error() {
    let fixture = Fixture::start().await;
    fixture.publish(
        "fresh.test",
        "id1",
        "version: STSv1\nmode: enforce\nmax_age: 600\nmx: mail.example.com\n",
    );
    let (daemon, clock) = start_with_clock(&fixture, "cache_grace: 60\n").await;
    let addr = tcp_addr(&daemon);
    let want = "OK secure match=mail.example.com servername=hostname";
    let txt = "_mta-sts.fresh.test";
    let host = "mta-sts.fresh.test";

    assert_eq!(query(addr, "postfix", "fresh.test").await, want);
    let (txt0, https0) = (
        fixture.dns().query_count(txt),
        fixture.https().request_count(host),
    );
    assert_eq!(https0, 1);

    // Within cache_grace: no network at all.
    clock.advance(Duration::from_secs(30));
    assert_eq!(query(addr, "postfix", "fresh.test").await, want);
    assert_eq!(fixture.dns().query_count(txt), txt0);

    // After cache_grace: the TXT id is re-checked; unchanged, so no HTTPS.
    clock.advance(Duration::from_secs(40));
    assert_eq!(query(addr, "postfix", "fresh.test").await, want);
    assert!(fixture.dns().query_count(txt) > txt0);
    assert_eq!(fixture.https().request_count(host), 1);

    // Near max_age the policy is refetched over HTTPS although the id is unchanged (RFC 8461 §5.1).
    clock.advance(Duration::from_secs(600));
    assert_eq!(query(addr, "postfix", "fresh.test").await, want);
    assert_eq!(fixture.https().request_count(host), 2);

    // Discovery failing: the cached policy keeps answering while valid (RFC 8461 §3.3)...
    fixture.dns().set_servfail(txt);
    clock.advance(Duration::from_secs(120));
    assert_eq!(query(addr, "postfix", "fresh.test").await, want);
    // ...and once it has expired, the answer is "no policy", never an error.
    clock.advance(Duration::from_secs(1200));
    assert_eq!(query(addr, "postfix", "fresh.test").await, "NOTFOUND ");
    daemon.shutdown().await;
}

/// An enforce policy with `count` distinct `mx` lines of `letters` letters and `.t` (`aaa.t`, `aab.t`, …): 6000
/// of three letters make a body of about 60 KiB, under the fetch limit of 64 KiB.
fn many_mx_policy(count: usize, letters: u32) -> (String, Vec<String>) {
    let names: Vec<String> = (0..count)
        .map(|i| {
            (0..letters)
                .rev()
                .map(|place| {
                    let digit = (i / 26_usize.pow(place)) % 26;
                    char::from(b'a' + u8::try_from(digit).expect("a letter"))
                })
                .chain(".t".chars())
                .collect()
        })
        .collect();
    let mut text = String::from("version: STSv1\nmode: enforce\nmax_age: 86400\n");
    for name in &names {
        text.push_str("mx: ");
        text.push_str(name);
        text.push('\n');
    }
    (text, names)
}

/// Issue 11 rows 6 and 7: a policy of 6000 `mx` lines in a `tlsrpt: true` zone. Its whole reply (about 330 KB
/// with the TLSRPT attributes) is over socketmap's 100 000 bytes: the attributes are left out, every pipelined
/// request is answered within the limit, and the connection stays open.
#[tokio::test]
async fn a_policy_of_6000_mx_lines_is_answered_within_the_socketmap_limit_pipelined() {
    use futures_util::StreamExt as _;
    use socketmap_proto::{ClientCodec, DEFAULT_MAX_REPLY_LEN, Reply};
    use tokio::io::AsyncWriteExt as _;

    let fixture = standard_fixture().await;
    let (text, names) = many_mx_policy(6000, 3);
    assert!(text.len() < 64 * 1024, "{}", text.len());
    fixture.publish("large.test", "id1", &text);
    let daemon = start(&fixture, "zones:\n  rpt:\n    tlsrpt: true\n").await;
    let large = format!("OK secure match={} servername=hostname", names.join(":"));
    let rpt_small = format!(
        "{ENFORCE_REPLY} policy_type=sts policy_domain=enforce.test policy_ttl=86400 \
         mx_host_pattern=mail.example.com mx_host_pattern=*.mx.example.net \
         {{ policy_string = version: STSv1 }} {{ policy_string = mode: enforce }} \
         {{ policy_string = max_age: 86400 }} {{ policy_string = mx: mail.example.com }} \
         {{ policy_string = mx: *.mx.example.net }}"
    );
    let asked = [
        ("rpt", "large.test", large.as_str()),
        ("rpt", "enforce.test", rpt_small.as_str()),
        ("postfix", "large.test", large.as_str()),
        ("rpt", "none.test", "NOTFOUND "),
    ];
    // 4 × 10 requests in one write: the first of each domain discovers, the others are memory hits.
    let mut wire = Vec::new();
    for _ in 0..10 {
        for (zone, key, _) in asked {
            let request = format!("{zone} {key}");
            wire.extend_from_slice(format!("{}:{request},", request.len()).as_bytes());
        }
    }
    let mut stream = tokio::net::TcpStream::connect(tcp_addr(&daemon))
        .await
        .expect("connect");
    stream.write_all(&wire).await.expect("write");
    // The client codec refuses any reply over Postfix's limit (a decoding error ends the stream).
    let codec = ClientCodec::new().with_max_reply_len(DEFAULT_MAX_REPLY_LEN);
    let mut replies = tokio_util::codec::FramedRead::new(stream, codec);
    for i in 0..40 {
        let (zone, key, want) = asked[i % asked.len()];
        let reply = tokio::time::timeout(Duration::from_secs(30), replies.next())
            .await
            .unwrap_or_else(|_| panic!("reply {i} ({zone} {key}) did not come"))
            .unwrap_or_else(|| panic!("the connection closed before reply {i} ({zone} {key})"))
            .unwrap_or_else(|e| panic!("reply {i} ({zone} {key}): {e}"));
        assert!(reply.encoded_len() <= DEFAULT_MAX_REPLY_LEN);
        assert!(
            reply.to_string() == want,
            "reply {i} ({zone} {key}): {} bytes, {:.80}…",
            reply.encoded_len(),
            reply.to_string()
        );
        if want != "NOTFOUND " {
            assert!(matches!(reply, Reply::Ok(_)));
        }
    }
    // Still open: one more request on the same connection.
    let mut stream = replies.into_inner();
    stream
        .write_all(b"20:postfix enforce.test,")
        .await
        .expect("write");
    let mut replies = tokio_util::codec::FramedRead::new(stream, ClientCodec::new());
    let reply = replies.next().await.expect("a reply").expect("a reply");
    assert_eq!(reply.to_string(), ENFORCE_REPLY);
    assert_eq!(fixture.https().request_count("mta-sts.large.test"), 1);
    close_and_stop(replies, daemon).await;
}

/// A policy whose bare answer is over socketmap's limit: only a store row written by something else can hold one
/// (fetched bodies are at most 64 KiB). It is answered `NOTFOUND ` and counted as `too_long`; the connection
/// stays open.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_foreign_store_row_too_long_to_answer_is_notfound_and_counted() {
    use mta_sts_daemon::AnswerKind;
    use mtasts_cache::{CacheEntry, PolicyCache as _};
    use mtasts_cache_sql::{SqliteCache, SqliteOptions};
    use socketmap_proto::SocketmapClient;

    let dir = tempfile::tempdir().expect("tempdir");
    // 20 000 names of 6 characters: a `match=` list of 140 000 bytes.
    let (text, _) = many_mx_policy(20_000, 4);
    let store = SqliteCache::open(SqliteOptions::new(dir.path().join("cache.db")))
        .await
        .expect("open the store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let entry = CacheEntry::new(
        now,
        "id1".parse().expect("id"),
        text.parse().expect("policy"),
    );
    assert!(store.set("huge.test", &entry).await.expect("write"));
    drop(store);
    let fixture = standard_fixture().await;
    fixture.publish_txt("huge.test", "id1");
    let daemon = start(
        &fixture,
        &format!(
            "{}zones:\n  rpt:\n    tlsrpt: true\n",
            sqlite_yaml(dir.path())
        ),
    )
    .await;
    let mut client = SocketmapClient::connect_tcp(tcp_addr(&daemon))
        .await
        .expect("connect");
    for zone in ["postfix", "rpt", "postfix"] {
        assert_eq!(ask(&mut client, zone, "huge.test").await, "NOTFOUND ");
        assert_eq!(
            ask(&mut client, zone, "enforce.test").await.get(..2),
            Some("OK")
        );
    }
    let metrics = daemon.metrics();
    assert_eq!(
        metrics.answers(metrics.zone(b"postfix"), AnswerKind::TooLong),
        2
    );
    assert_eq!(
        metrics.answers(metrics.zone(b"rpt"), AnswerKind::TooLong),
        1
    );
    assert_eq!(fixture.https().request_count("mta-sts.huge.test"), 0);
    close_and_stop(client, daemon).await;
}
