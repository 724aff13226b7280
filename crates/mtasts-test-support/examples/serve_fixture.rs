//! Runs the test fixture (DNS + HTTPS + CA on loopback) until Ctrl-C, with a few sample
//! domains, so `mta-sts-query` can be tried by hand (see docs/query.md).
//!
//! ```text
//! cargo run -p mtasts-test-support --example serve_fixture
//! ```

use mtasts_test_support::{Fixture, PolicyResponse};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let fixture = Fixture::start().await;
    fixture.publish(
        "example.com",
        "20240101T000000",
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n",
    );
    fixture.publish(
        "testing.example",
        "t1",
        "version: STSv1\nmode: testing\nmx: mx.testing.example\nmax_age: 3600\n",
    );
    fixture.publish_txt("broken.example", "b1");
    fixture.serve("broken.example", PolicyResponse::status(404));
    fixture.publish_txt("badcert.example", "c1");
    fixture.serve(
        "badcert.example",
        PolicyResponse::policy("version: STSv1\nmode: none\nmax_age: 60\n").untrusted_cert(),
    );
    fixture.dns().set_servfail("_mta-sts.servfail.example");

    // Keep the CA file where the user can read it after we exit.
    let ca_file = std::env::temp_dir().join("mtasts-fixture-ca.pem");
    fixture.ca().write_pem(&ca_file);
    let flags = format!(
        "--nameserver {} --ca-file {} --port {}",
        fixture.dns().addr(),
        ca_file.display(),
        fixture.https().port()
    );
    println!("fixture running; try:");
    for domain in [
        "example.com",
        "testing.example",
        "nopolicy.example",
        "broken.example",
        "badcert.example",
        "servfail.example",
    ] {
        println!("  mta-sts-query {flags} {domain}");
    }
    println!("press Ctrl-C to stop");
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("cannot wait for Ctrl-C: {error}");
    }
}
