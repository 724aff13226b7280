//! Runs the built `mta-sts-query` binary against the in-process fixture (loopback only).

use std::process::Output;

use mtasts_test_support::{ConnectProxy, Fixture, PolicyResponse, init_tracing};
use tokio::process::Command;

const DOMAIN: &str = "example.com";
const ENFORCE: &str =
    "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n";

/// A command for the binary, pointed at the fixture, with proxy variables removed.
fn query(fixture: &Fixture) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mta-sts-query"));
    command
        .arg("--nameserver")
        .arg(fixture.dns().addr().to_string())
        .arg("--ca-file")
        .arg(fixture.ca_pem_path())
        .arg("--port")
        .arg(fixture.https().port().to_string())
        .kill_on_drop(true);
    for var in [
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "MTASTS_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

async fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().await.expect("run mta-sts-query");
    (
        status.code().expect("exit code"),
        String::from_utf8(stdout).expect("utf8 stdout"),
        String::from_utf8(stderr).expect("utf8 stderr"),
    )
}

async fn fixture() -> Fixture {
    init_tracing();
    Fixture::start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_is_printed_and_exits_0() {
    let f = fixture().await;
    f.publish(DOMAIN, "20240101", ENFORCE);
    let (code, stdout, stderr) = run(query(&f).arg(DOMAIN)).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("status:       policy"), "{stdout}");
    assert!(stdout.contains("id:           20240101"), "{stdout}");
    assert!(stdout.contains("mode:         enforce"), "{stdout}");
    assert!(stdout.contains("max_age:      86400"), "{stdout}");
    assert!(
        stdout.contains("mail.example.com") && stdout.contains("*.example.net"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_machine_readable() {
    let f = fixture().await;
    f.publish(DOMAIN, "j1", ENFORCE);
    let (code, stdout, _) = run(query(&f).arg("--json").arg(DOMAIN)).await;
    assert_eq!(code, 0);
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(value["status"], "policy");
    assert_eq!(value["id"], "j1");
    assert_eq!(value["policy"]["mode"], "enforce");
    assert_eq!(value["policy"]["max_age"], 86400);
    assert_eq!(value["policy"]["mx"][0], "mail.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_version_gives_unchanged_and_exits_4() {
    let f = fixture().await;
    f.publish(DOMAIN, "same", ENFORCE);
    let (code, stdout, _) = run(query(&f).arg(DOMAIN).arg("same")).await;
    assert_eq!(code, 4, "{stdout}");
    assert!(stdout.contains("unchanged"), "{stdout}");
    assert_eq!(f.https().request_count("mta-sts.example.com"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_record_is_no_policy_and_exits_3() {
    let f = fixture().await;
    f.dns().set_negative_ttl(60);
    let (code, stdout, _) = run(query(&f).arg(DOMAIN)).await;
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("no policy") && stdout.contains("NXDOMAIN"),
        "{stdout}"
    );
    assert!(stdout.contains("negative_ttl: 60s"), "{stdout}");
    let (code, stdout, _) = run(query(&f).arg("--json").arg(DOMAIN)).await;
    assert_eq!(code, 3);
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(value["status"], "no_policy");
    assert_eq!(value["reason"]["kind"], "nxdomain");
    assert_eq!(value["negative_ttl"], 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_domain_form_is_no_policy_without_queries() {
    let f = fixture().await;
    let (code, stdout, _) = run(query(&f).arg(".example.com")).await;
    assert_eq!(code, 3, "{stdout}");
    assert_eq!(f.dns().total_queries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_is_explained_and_exits_5() {
    let f = fixture().await;
    f.publish_txt(DOMAIN, "1");
    f.serve(DOMAIN, PolicyResponse::status(404));
    let (code, stdout, _) = run(query(&f).arg(DOMAIN)).await;
    assert_eq!(code, 5, "{stdout}");
    assert!(stdout.contains("failed (http_status)"), "{stdout}");
    assert!(stdout.contains("404"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_reason_names_the_tls_problem() {
    let f = fixture().await;
    f.publish_txt(DOMAIN, "1");
    f.serve(DOMAIN, PolicyResponse::policy(ENFORCE).untrusted_cert());
    let (code, stdout, _) = run(query(&f).arg(DOMAIN)).await;
    assert_eq!(code, 5, "{stdout}");
    assert!(stdout.contains("failed (tls)"), "{stdout}");
    assert!(stdout.to_lowercase().contains("certificate"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_verbosity_traces_each_step() {
    let f = fixture().await;
    f.publish(DOMAIN, "dbg", ENFORCE);
    let (code, _, stderr) = run(query(&f).args(["-v", "debug", DOMAIN])).await;
    assert_eq!(code, 0, "{stderr}");
    for step in [
        "TXT lookup",
        "TXT answer",
        "fetching policy",
        "policy response",
        "policy parsed",
    ] {
        assert!(stderr.contains(step), "missing {step:?} in:\n{stderr}");
    }
    assert!(stderr.contains("https://mta-sts.example.com"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_verbosity_is_quiet() {
    let f = fixture().await;
    f.publish(DOMAIN, "q", ENFORCE);
    let (code, _, stderr) = run(query(&f).arg(DOMAIN)).await;
    assert_eq!(code, 0);
    assert_eq!(stderr, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_from_environment_is_used() {
    let f = fixture().await;
    f.publish(DOMAIN, "viaproxy", ENFORCE);
    let proxy = ConnectProxy::start_with_basic_auth("user", "pw").await;
    let url = format!("http://user:pw@{}", proxy.addr());
    let (code, stdout, stderr) = run(query(&f).env("https_proxy", &url).arg(DOMAIN)).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(proxy.connect_count(), 1);
    // no_proxy like curl: a matching suffix bypasses it.
    let (code, _, _) = run(query(&f)
        .env("HTTPS_PROXY", &url)
        .env("no_proxy", "example.com")
        .arg(DOMAIN))
    .await;
    assert_eq!(code, 0);
    assert_eq!(proxy.connect_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_option_bounds_the_query() {
    let f = fixture().await;
    f.dns().set_silent("_mta-sts.example.com");
    let start = std::time::Instant::now();
    let (code, stdout, _) = run(query(&f).args(["--timeout", "0.5", DOMAIN])).await;
    assert_eq!(code, 5, "{stdout}");
    assert!(stdout.contains("dns_timeout"), "{stdout}");
    assert!(start.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_1() {
    let f = fixture().await;
    let mut command = query(&f);
    command.args(["--ca-file", "/nonexistent/ca.pem", DOMAIN]);
    let (code, _, stderr) = run(&mut command).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");
    let (code, _, stderr) = run(query(&f).args([DOMAIN, "not-an-id!"])).await;
    assert_eq!(code, 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_documents_exit_codes() {
    let (code, stdout, _) =
        run(Command::new(env!("CARGO_BIN_EXE_mta-sts-query")).arg("--help")).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("Exit status:"), "{stdout}");
    for line in [
        "0  the domain has a policy",
        "3  the domain has no policy",
        "4  the policy id",
        "5  discovery failed",
    ] {
        assert!(stdout.contains(line), "missing {line:?}");
    }
    assert!(!stdout.contains("--port"), "--port is hidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn man_page_and_completions_are_generated() {
    let bin = env!("CARGO_BIN_EXE_mta-sts-query");
    let (code, man, _) = run(Command::new(bin).args(["--generate", "man"])).await;
    assert_eq!(code, 0);
    assert!(man.contains(".TH mta-sts-query"), "{man}");
    assert!(
        man.contains("Exit status"),
        "exit codes are in the man page"
    );
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, _) =
            run(Command::new(bin).args(["--generate", &format!("complete-{shell}")])).await;
        assert_eq!(code, 0);
        assert!(script.contains("nameserver"), "{shell}: {script}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_is_honoured() {
    let f = fixture().await;
    f.publish(DOMAIN, "sslenv", ENFORCE);
    let base = |command: &mut Command| {
        command
            .arg("--nameserver")
            .arg(f.dns().addr().to_string())
            .arg("--port")
            .arg(f.https().port().to_string())
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("SSL_CERT_DIR")
            .arg(DOMAIN);
    };
    let bin = env!("CARGO_BIN_EXE_mta-sts-query");
    let mut with_env = Command::new(bin);
    with_env.env("SSL_CERT_FILE", f.ca_pem_path());
    base(&mut with_env);
    let (code, stdout, stderr) = run(&mut with_env).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Without it the test CA is unknown (another CA is given so the root store is never empty).
    let other_ca = mtasts_test_support::TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let other_pem = dir.path().join("other.pem");
    other_ca.write_pem(&other_pem);
    let mut without = Command::new(bin);
    without
        .env_remove("SSL_CERT_FILE")
        .arg("--ca-file")
        .arg(&other_pem);
    base(&mut without);
    let (code, stdout, _) = run(&mut without).await;
    assert_eq!(code, 5, "{stdout}");
    assert!(stdout.contains("failed (tls)"), "{stdout}");
}

/// The sloppy records the Python daemon enforces (issue 14): accepted, with a warning line on stderr and a
/// `leniencies` list in the JSON; a strict record has neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_accepted_through_a_leniency_are_flagged() {
    let f = fixture().await;
    for (record, leniency) in [
        ("v=STSv1; id=20160831085700Z   ", "txt_trailing_whitespace"),
        ("v=STSv1; id=20160831085700Z;;;", "txt_empty_field"),
    ] {
        f.dns().set_txt("_mta-sts.example.com", [record]);
        f.serve(DOMAIN, PolicyResponse::policy(ENFORCE));
        let (code, stdout, stderr) = run(query(&f).arg(DOMAIN)).await;
        assert_eq!(code, 0, "{record:?}: {stdout}{stderr}");
        assert!(stdout.contains("id:           20160831085700Z"), "{stdout}");
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
        assert_eq!(warnings.len(), 1, "{record:?}: {stderr}");
        assert!(
            warnings[0].contains("example.com: accepted only through a leniency: the TXT record"),
            "{stderr}"
        );
        let (code, stdout, _) = run(query(&f).arg("--json").arg(DOMAIN)).await;
        assert_eq!(code, 0);
        let value: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
        assert_eq!(
            value["leniencies"],
            serde_json::json!([leniency]),
            "{record:?}"
        );
        assert_eq!(value["policy"]["mode"], "enforce");
    }
    f.dns()
        .set_txt("_mta-sts.example.com", ["v=STSv1; id=20160831085700Z;"]);
    let (code, stdout, stderr) = run(query(&f).arg("--json").arg(DOMAIN)).await;
    assert_eq!(code, 0);
    assert!(!stderr.contains("warning"), "{stderr}");
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(value["leniencies"], serde_json::json!([]));
}

/// `--dane`: the MX validation, each host's TLSA records with their usability, and the daemon's answer, in text
/// and JSON, next to the MTA-STS result (which keeps the exit status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_shows_the_view_and_the_daemons_answer() {
    let f = fixture().await;
    f.publish(DOMAIN, "d1", ENFORCE);
    let dns = f.dns();
    dns.set_secure_by_default(true);
    dns.set_mx(DOMAIN, 10, "mail.example.com");
    dns.set_a("mail.example.com", std::net::Ipv4Addr::LOCALHOST);
    dns.set_tlsa("_25._tcp.mail.example.com", 3, 1, 1, &[0xab; 32]);
    dns.add_tlsa("_25._tcp.mail.example.com", 0, 0, 1, &[0xcd; 32]);

    let (code, stdout, stderr) = run(query(&f).arg("--dane").arg(DOMAIN)).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("mode:         enforce"), "{stdout}");
    assert!(
        stdout.contains("dane mx:      validated (DNSSEC)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dane host:    mail.example.com (preference 10)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  tlsa:       validated at _25._tcp.mail.example.com"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("3 1 1 {} (usable)", "ab".repeat(32))),
        "{stdout}"
    );
    assert!(stdout.contains("0 0 1 "), "{stdout}");
    assert!(
        stdout.contains("(unusable: certificate usage 0"),
        "{stdout}"
    );
    assert!(stdout.contains("dane answer:  OK dane-only ("), "{stdout}");

    let (code, stdout, _) = run(query(&f).arg("--json").arg("--dane").arg(DOMAIN)).await;
    assert_eq!(code, 0);
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(value["status"], "policy");
    let dane = &value["dane"];
    assert_eq!(dane["mx"]["status"], "secure");
    assert_eq!(dane["answer"], "dane_only");
    assert_eq!(dane["reply"], "OK dane-only");
    let records = &dane["hosts"][0]["tlsa"]["records"];
    assert_eq!(records.as_array().map(Vec::len), Some(2), "{dane}");

    // An unsigned zone: TLSA records count for nothing, the daemon gives the MTA-STS answer.
    dns.set_secure_by_default(false);
    let (code, stdout, _) = run(query(&f).arg("--json").arg("--dane").arg(DOMAIN)).await;
    assert_eq!(code, 0);
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(value["dane"]["mx"]["status"], "insecure");
    assert_eq!(value["dane"]["answer"], "mta_sts");
    assert_eq!(value["dane"]["reply"], serde_json::Value::Null);
    assert_eq!(value["dane"]["hosts"], serde_json::json!([]));

    // Without --dane, no DANE lookup at all.
    let mx_queries = dns.query_count(DOMAIN);
    assert!(mx_queries > 0, "the --dane runs asked for MX");
    let (_, stdout, _) = run(query(&f).arg("--json").arg(DOMAIN)).await;
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(value["dane"], serde_json::Value::Null);
    assert_eq!(dns.query_count(DOMAIN), mx_queries);
}
