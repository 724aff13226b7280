//! PostgreSQL over TLS, against a TLS-only cluster the test starts itself: `initdb` in a temporary directory (as
//! the `postgres` user, through `runuser`: initdb refuses root), `ssl = on` with a server certificate from a test
//! CA, and `hostssl` as the only TCP entry of pg_hba.conf, so a plain connection is refused by the server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mtasts_cache::PolicyCache;
use mtasts_cache::conformance::{self, Harness, must_set, sample_entry};
use mtasts_cache_sql::{PostgresCache, PostgresOptions};
use mtasts_test_support::{TestCa, skip_or_fail};
use tempfile::TempDir;

use crate::postgres::Schema;

/// A running TLS-only cluster, stopped when dropped.
struct TlsCluster {
    dir: TempDir,
    bindir: PathBuf,
    port: u16,
    ca: PathBuf,
}

impl TlsCluster {
    /// Starts a cluster, or `None` (test skipped outside CI) when PostgreSQL's server programs, `runuser` or
    /// the `postgres` user are missing.
    fn start() -> Option<Self> {
        let bindir = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|dir| dir.join("initdb").is_file());
        let usable = Command::new("runuser")
            .args(["-u", "postgres", "--", "true"])
            .status()
            .is_ok_and(|s| s.success());
        let (Some(bindir), true) = (bindir, usable) else {
            skip_or_fail(
                "cannot start a PostgreSQL cluster (pg_config --bindir with initdb, runuser, user postgres)",
                "install postgresql and run the tests as root",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("spare port")
            .port();
        let data = dir.path().join("data");
        let ca = TestCa::new();
        let ca_file = dir.path().join("ca.pem");
        ca.write_pem(&ca_file);
        run(&["chown", "-R", "postgres:postgres", &path(dir.path())]);
        run_as_postgres(
            &bindir.join("initdb"),
            &[
                "-D",
                &path(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        ca.issue(&["localhost"]).write_pem_files(&data, "server");
        run(&["chown", "-R", "postgres:postgres", &path(&data)]);
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1,::1'\nunix_socket_directories = '{}'\nssl = on\n\
             ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\n",
            path(dir.path())
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .expect("write pg_hba.conf");
        let log = path(&dir.path().join("server.log"));
        run_as_postgres(
            &bindir.join("pg_ctl"),
            &["-D", &path(&data), "-l", &log, "-w", "-t", "60", "start"],
        );
        Some(Self {
            dir,
            bindir,
            port,
            ca: ca_file,
        })
    }

    /// A URL to the cluster's `postgres` database with `params` (`sslmode=…`).
    fn url(&self, params: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?{params}",
            self.port
        )
    }

    /// The parameters of a fully verified connection.
    fn verify_full(&self) -> String {
        format!("sslmode=verify-full&sslrootcert={}", path(&self.ca))
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let data = path(&self.dir.path().join("data"));
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bindir.join("pg_ctl"))
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            eprintln!("---- log of the TLS PostgreSQL cluster ----\n{log}");
        }
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status();
    assert!(status.is_ok_and(|s| s.success()), "{args:?} failed");
}

fn run_as_postgres(program: &Path, args: &[&str]) {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("run as postgres");
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn append(file: &Path, text: &str) {
    let mut content = std::fs::read_to_string(file).expect("read config");
    content.push_str(text);
    std::fs::write(file, content).expect("write config");
}

/// The conformance suite with `sslmode=verify-full`, each function in its own schema of one cluster.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_over_tls_with_verify_full() {
    let Some(cluster) = TlsCluster::start() else {
        return;
    };
    let url = cluster.url(&cluster.verify_full());
    let schema = Schema::create_at(&url).await.expect("TLS cluster is up");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&schema.raw)
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted, "the connection uses TLS");
    schema.finish().await;
    macro_rules! on_fresh_schema {
        ($($test:ident),+) => {$(
            let schema = Schema::create_at(&url).await.expect("TLS cluster is up");
            conformance::run::$test(&schema).await;
            schema.finish().await;
        )+};
    }
    on_fresh_schema!(
        get_set,
        newer_wins,
        concurrent_writers,
        paging,
        remove_clear,
        proactive_ts,
        shared_storage,
        corrupt_entries
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_connection_is_refused_and_says_why() {
    let Some(cluster) = TlsCluster::start() else {
        return;
    };
    let store =
        PostgresOptions::new(cluster.url("sslmode=disable")).timeout(Duration::from_secs(5));
    let err = PostgresCache::connect(store)
        .await
        .expect_err("plain text refused");
    assert_eq!(err.kind(), "config", "{err:?}");
    let text = err.with_causes();
    assert!(text.contains("no encryption"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_fails_clearly() {
    let Some(cluster) = TlsCluster::start() else {
        return;
    };
    let other_ca = cluster.dir.path().join("other-ca.pem");
    TestCa::with_name("another CA").write_pem(&other_ca);
    let params = format!("sslmode=verify-full&sslrootcert={}", path(&other_ca));
    let options = PostgresOptions::new(cluster.url(&params)).timeout(Duration::from_secs(5));
    let err = PostgresCache::connect(options)
        .await
        .expect_err("untrusted certificate");
    assert_eq!(err.kind(), "unavailable", "{err:?}");
    let text = err.with_causes();
    assert!(text.contains("certificate"), "{text}");
    // The right CA, but an address the certificate (issued for localhost) does not name: verify-full refuses,
    // verify-ca (no name check) accepts.
    let by_address = |mode: &str| {
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={}",
            cluster.port,
            path(&cluster.ca)
        );
        PostgresOptions::new(url).timeout(Duration::from_secs(5))
    };
    let err = PostgresCache::connect(by_address("verify-full"))
        .await
        .expect_err("name not in the certificate");
    assert_eq!(err.kind(), "unavailable", "{err:?}");
    let store = PostgresCache::connect(by_address("verify-ca"))
        .await
        .expect("chain verified, name not checked");
    must_set(&store, "example.com", &sample_entry(1_700_000_000)).await;
    store.close().await;
}
