use super::*;

/// A parsed configuration with its diagnostics' lists, for short assertions.
struct Parsed {
    config: Config,
    unknown_keys: Vec<String>,
    warnings: Vec<String>,
}

impl std::ops::Deref for Parsed {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

fn parse(text: &str) -> Parsed {
    match Config::parse(text) {
        Ok((config, diagnostics)) => Parsed {
            config,
            unknown_keys: diagnostics.unknown_keys().to_vec(),
            warnings: diagnostics.warnings().to_vec(),
        },
        Err(e) => panic!("config {text:?} failed: {e}"),
    }
}

/// Each `(text, key)` is refused with an error naming `key`.
fn refused(cases: &[(&str, &str)]) {
    for (text, key) in cases {
        let e = error(text);
        assert!(e.contains(&format!("`{key}`")), "{text:?}: {e}");
    }
}

fn tcp(host: &str, port: u16) -> ListenConfig {
    ListenConfig::Tcp {
        host: host.into(),
        port,
    }
}

fn error(text: &str) -> String {
    match Config::parse(text) {
        Ok(cfg) => panic!("config {text:?} was accepted: {cfg:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_means_python_defaults() {
    for text in ["", "\n", "# nothing\n", "---\n", "~\n"] {
        let cfg = parse(text);
        assert_eq!(cfg.listen, tcp("127.0.0.1", 8461));
        assert!(cfg.reuse_port);
        assert_eq!(cfg.cache_grace, Duration::from_secs(60));
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(cfg.cache, CacheConfig::Internal { cache_size: 10_000 });
        assert_eq!(
            cfg.proactive,
            ProactiveConfig {
                enabled: false,
                interval: Duration::from_secs(86_400),
                concurrency_limit: 100,
                grace_ratio: 2.0
            }
        );
        assert_eq!(cfg.default_zone, ZoneConfig::default());
        assert!(cfg.default_zone.require_sni);
        assert!(!cfg.default_zone.strict_testing);
        assert!(!cfg.default_zone.tlsrpt);
        assert!(
            !cfg.default_zone.dane,
            "DANE is off unless a zone asks for it"
        );
        assert_eq!(cfg.freshness.max_dane_ttl, Duration::from_secs(3600));
        assert_eq!(cfg.default_zone.timeout, Duration::from_secs(4));
        assert!(cfg.zones.is_empty());
        assert!(cfg.unknown_keys.is_empty());
    }
}

#[test]
fn missing_file_means_defaults_with_a_warning() {
    let missing = Path::new("/nonexistent/mta-sts-daemon.yml");
    assert!(matches!(
        Config::load(missing),
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound
    ));
    let (cfg, diagnostics) = Config::load_or_default(missing).unwrap();
    assert_eq!(cfg.listen, tcp("127.0.0.1", 8461));
    assert_eq!(diagnostics.warnings().len(), 1);
    assert_eq!(cfg, Config::default());
}

#[test]
fn socket_mode_follows_yaml_1_1() {
    // (mode as written, mode PyYAML gives to os.chmod)
    let cases: &[(&str, u32)] = &[
        ("0666", 0o666),
        ("0660", 0o660),
        ("0600", 0o600),
        ("0o666", 0o666), // a string in YAML 1.1; we read octal digits in strings as octal
        ("\"0666\"", 0o666),
        ("'0660'", 0o660),
        ("438", 438),
        ("0x1b6", 0o666),
        ("0", 0),
    ];
    for (text, want) in cases {
        let cfg = parse(&format!("path: /tmp/s.sock\nmode: {text}\n"));
        assert_eq!(
            cfg.listen,
            ListenConfig::Unix {
                path: "/tmp/s.sock".into(),
                mode: Some(*want)
            },
            "mode: {text}"
        );
    }
    let cfg = parse("path: /tmp/s.sock\nmode: 666\n");
    assert_eq!(
        cfg.listen,
        ListenConfig::Unix {
            path: "/tmp/s.sock".into(),
            mode: Some(666)
        }
    );
    assert!(
        cfg.warnings.iter().any(|w| w.contains("leading zero")),
        "{:?}",
        cfg.warnings
    );
    refused(&[
        ("path: /tmp/s.sock\nmode: 0999\n", "mode"),
        ("path: /tmp/s.sock\nmode: rw\n", "mode"),
        ("path: /tmp/s.sock\nmode: 070000\n", "mode"),
    ]);
}

#[test]
fn booleans_follow_yaml_1_1() {
    // (value as written, what reuse_port becomes)
    let cases: &[(&str, bool)] = &[
        ("yes", true),
        ("Yes", true),
        ("YES", true),
        ("on", true),
        ("On", true),
        ("ON", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("no", false),
        ("No", false),
        ("NO", false),
        ("off", false),
        ("Off", false),
        ("OFF", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
        ("1", true),
        ("0", false),
        ("~", true), // null: the default applies
        ("", true),
    ];
    for (text, want) in cases {
        assert_eq!(
            parse(&format!("reuse_port: {text}\n")).reuse_port,
            *want,
            "reuse_port: {text}"
        );
        let zone = parse(&format!("default_zone:\n  strict_testing: {text}\n"))
            .config
            .default_zone;
        let default = ZoneConfig::default().strict_testing;
        let want_strict = if text.is_empty() || *text == "~" {
            default
        } else {
            *want
        };
        assert_eq!(zone.strict_testing, want_strict, "strict_testing: {text}");
    }
    for text in ["\"yes\"", "'false'", "y", "n", "2", "enabled"] {
        let e = error(&format!("reuse_port: {text}\n"));
        assert!(
            e.contains("`reuse_port`") && e.contains("expected a boolean"),
            "{text}: {e}"
        );
    }
}

#[test]
fn numbers_accept_ints_floats_and_reject_strings() {
    let cfg = parse("cache_grace: 1.5\nshutdown_timeout: 0x10\n");
    assert_eq!(cfg.cache_grace, Duration::from_millis(1500));
    assert_eq!(cfg.shutdown_timeout, Duration::from_secs(16));
    assert_eq!(
        parse("cache_grace: 1:00\n").cache_grace,
        Duration::from_secs(60)
    );
    assert_eq!(
        parse("cache_grace: 010\n").cache_grace,
        Duration::from_secs(8)
    );
    let e = error("cache_grace: \"60\"\n");
    assert!(
        e.contains("`cache_grace` (line 1)") && e.contains("a number of seconds"),
        "{e}"
    );
    refused(&[
        ("cache_grace: -1\n", "cache_grace"),
        ("cache_grace: .inf\n", "cache_grace"),
        ("shutdown_timeout: 1e3\n", "shutdown_timeout"),
    ]);
}

#[test]
fn tcp_listen_keys() {
    let cfg = parse("host: \"::1\"\nport: 10025\nreuse_port: off\n");
    assert_eq!(cfg.listen, tcp("::1", 10025));
    assert!(!cfg.reuse_port);
    assert_eq!(parse("port: \"8462\"\n").listen, tcp("127.0.0.1", 8462));
    refused(&[
        ("port: 70000\n", "port"),
        ("port: http\n", "port"),
        ("host: 1\n", "host"),
    ]);
}

#[test]
fn path_wins_over_host_and_port() {
    let cfg = parse("host: 0.0.0.0\nport: 1\npath: /run/x.sock\n");
    assert_eq!(
        cfg.listen,
        ListenConfig::Unix {
            path: "/run/x.sock".into(),
            mode: None
        }
    );
    assert_eq!(cfg.warnings.len(), 2);
    assert!(cfg.unknown_keys.is_empty());
    // `path: ~` is the same as no path (Python: cfg.get('path') is None).
    assert_eq!(parse("path:\n").listen, tcp("127.0.0.1", 8461));
}

#[test]
fn zones_fill_defaults_per_zone() {
    let cfg = parse(
        "default_zone:\n  strict_testing: yes\n  timeout: 2\nzones:\n  myzone:\n    require_sni: no\n    tlsrpt: on\n  empty:\n",
    );
    assert!(cfg.default_zone.strict_testing);
    assert_eq!(cfg.default_zone.timeout, Duration::from_secs(2));
    let my = cfg.zone("myzone");
    assert!(!my.require_sni && my.tlsrpt && !my.strict_testing);
    assert_eq!(my.timeout, Duration::from_secs(4));
    assert_eq!(cfg.zone("empty"), &ZoneConfig::default());
    assert_eq!(cfg.zone("unknown-name"), &cfg.default_zone);
    let e = error("zones:\n  z:\n    timeout: soon\n");
    assert!(e.contains("`zones.z.timeout` (line 3)"), "{e}");
    refused(&[
        ("zones: [a]\n", "zones"),
        ("default_zone:\n  timeout: 0\n", "default_zone.timeout"),
    ]);
}

#[test]
fn dane_is_a_zone_switch_with_its_own_cache_bound() {
    let cfg = parse("zones:\n  dane:\n    dane: yes\nfreshness:\n  max_dane_ttl: 600\n");
    assert!(cfg.zone("dane").dane);
    assert!(!cfg.default_zone.dane);
    assert!(cfg.dane_enabled());
    assert_eq!(cfg.freshness.max_dane_ttl, Duration::from_secs(600));
    assert!(!parse("").dane_enabled());
    assert!(parse("default_zone:\n  dane: true\n").dane_enabled());
    let e = error("default_zone:\n  dane: \"true\"\n");
    assert!(e.contains("`default_zone.dane` (line 2)"), "{e}");
    assert!(error("freshness:\n  max_dane_ttl: long\n").contains("`freshness.max_dane_ttl`"));
}

#[test]
fn cache_types_and_options() {
    assert_eq!(
        parse("cache:\n  type: internal\n  options:\n    cache_size: 5\n").cache,
        CacheConfig::Internal { cache_size: 5 }
    );
    assert_eq!(
        parse("cache:\n  type: internal\n").cache,
        CacheConfig::Internal { cache_size: 10_000 }
    );
    if cfg!(feature = "sqlite") {
        assert_eq!(
            parse(
                "cache:\n  type: sqlite\n  options:\n    filename: /var/lib/c.db\n    threads: 2\n"
            )
            .cache,
            CacheConfig::Sqlite {
                filename: "/var/lib/c.db".into(),
                threads: Some(2),
                timeout: Duration::from_secs(5)
            }
        );
        assert!(error("cache:\n  type: sqlite\n").contains("`cache.options.filename`"));
    }
    if cfg!(feature = "redis") {
        let cfg = parse(
            "cache:\n  type: redis\n  options:\n    url: \"redis://127.0.0.1/0\"\n    max_connections: 25\n    socket_timeout: 1.0\n    socket_connect_timeout: 1.0\n    health_check_interval: 3\n",
        );
        assert_eq!(
            cfg.cache,
            CacheConfig::Redis(RedisConfig {
                url: "redis://127.0.0.1/0".into(),
                server: RedisServerConfig {
                    max_connections: Some(25),
                    socket_timeout: Some(Duration::from_secs(1)),
                    socket_connect_timeout: Some(Duration::from_secs(1)),
                    ssl_check_hostname: true,
                    ..RedisServerConfig::default()
                },
            })
        );
        assert_eq!(
            cfg.unknown_keys,
            vec!["cache.options.health_check_interval".to_owned()]
        );
        let cfg = parse(
            "cache:\n  type: redis_sentinel\n  options:\n    sentinel_master_name: \"mymaster\"\n    sentinels:\n      - [\"sentinel1\", 26379]\n      - [sentinel2, 26380]\n    password: pw\n",
        );
        let CacheConfig::RedisSentinel(s) = &cfg.cache else {
            panic!("not sentinel")
        };
        assert_eq!(s.master_name, "mymaster");
        assert_eq!(
            s.sentinels,
            vec![
                ("sentinel1".to_owned(), 26379),
                ("sentinel2".to_owned(), 26380)
            ]
        );
        assert_eq!(s.server.password.as_deref(), Some("pw"));
        // redis-py's ssl options, for the master through Sentinel as for a single server.
        let cfg = parse(
            "cache:\n  type: redis_sentinel\n  options:\n    sentinel_master_name: m\n    sentinels: [[s, 26379]]\n    ssl: true\n    ssl_ca_certs: /etc/ca.pem\n    ssl_certfile: /etc/c.pem\n    ssl_keyfile: /etc/k.pem\n    ssl_cert_reqs: required\n    ssl_check_hostname: false\n",
        );
        let CacheConfig::RedisSentinel(s) = &cfg.cache else {
            panic!("not sentinel")
        };
        assert!(s.server.ssl && !s.server.ssl_check_hostname && !s.server.ssl_cert_reqs_none);
        assert_eq!(
            s.server.ssl_ca_certs.as_deref(),
            Some(Path::new("/etc/ca.pem"))
        );
        assert!(cfg.unknown_keys.is_empty(), "{:?}", cfg.unknown_keys);
        let e = error(
            "cache:\n  type: redis\n  options:\n    url: rediss://h\n    ssl_cert_reqs: maybe\n",
        );
        assert!(e.contains("`cache.options.ssl_cert_reqs`"), "{e}");
        let e = error(
            "cache:\n  type: redis_sentinel\n  options:\n    sentinel_master_name: m\n    sentinels: [[a, b]]\n",
        );
        assert!(e.contains("`cache.options.sentinels`"), "{e}");
    }
    if cfg!(feature = "postgres") {
        assert_eq!(
            parse("cache:\n  type: postgres\n  options:\n    dsn: postgres://user@%2Frun%2Fpostgresql/user\n").cache,
            CacheConfig::Postgres(PostgresConfig {
                dsn: Some("postgres://user@%2Frun%2Fpostgresql/user".into()),
                ..PostgresConfig::default()
            })
        );
        // asyncpg's keywords, as configs in the field pass them.
        let cfg = parse(
            "cache:\n  type: postgres\n  options:\n    host: [db1.example, /run/postgresql]\n    port: 5433\n    user: mta\n    password: pw\n    passfile: /etc/mta-sts.pgpass\n    database: cache\n    ssl: true\n    server_settings:\n      application_name: mta-sts\n      statement_timeout: 2000\n    command_timeout: 2\n    min_size: 1\n    max_size: 4\n    timeout: 3\n",
        );
        let CacheConfig::Postgres(pg) = &cfg.cache else {
            panic!("not postgres")
        };
        assert_eq!(pg.host, ["db1.example", "/run/postgresql"]);
        assert_eq!(
            (pg.port, pg.user.as_deref(), pg.database.as_deref()),
            (Some(5433), Some("mta"), Some("cache"))
        );
        assert_eq!(pg.ssl.as_deref(), Some("verify-full"));
        assert_eq!(
            pg.server_settings,
            [
                ("application_name".to_owned(), "mta-sts".to_owned()),
                ("statement_timeout".to_owned(), "2000".to_owned())
            ]
        );
        assert_eq!(
            (pg.command_timeout, pg.min_size, pg.max_size),
            (Some(Duration::from_secs(2)), 1, 4)
        );
        assert!(cfg.unknown_keys.is_empty(), "{:?}", cfg.unknown_keys);
        let e = error("cache:\n  type: postgres\n  options:\n    ssl: verify-everything\n");
        assert!(e.contains("`cache.options.ssl`"), "{e}");
    }
    let e = error("cache:\n  type: memcached\n");
    assert!(
        e.contains("`cache.type` (line 2)") && e.contains("one of internal"),
        "{e}"
    );
    assert!(error("cache: internal\n").contains("`cache`"));
}

#[test]
fn proactive_fetching_keys() {
    let cfg = parse(
        "proactive_policy_fetching:\n  enabled: true\n  interval: 3600\n  concurrency_limit: 5\n  grace_ratio: 4\n",
    );
    assert_eq!(
        cfg.proactive,
        ProactiveConfig {
            enabled: true,
            interval: Duration::from_secs(3600),
            concurrency_limit: 5,
            grace_ratio: 4.0
        }
    );
    assert!(error("proactive_policy_fetching:\n  grace_ratio: 0\n").contains("grace_ratio"));
    assert!(
        error("proactive_policy_fetching:\n  concurrency_limit: 0\n").contains("concurrency_limit")
    );
}

#[test]
fn our_sections() {
    let cfg = parse(
        "resolver:\n  nameservers: [\"127.0.0.1:5353\", \"::1\"]\n  extra_ca_file: /etc/ca.pem\n  policy_port: 8443\nlimits:\n  max_connections: 5\n  max_pipeline: 2\nfreshness:\n  failure_backoff: 10\n",
    );
    assert_eq!(
        cfg.resolver.nameservers,
        vec![
            "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
    assert_eq!(
        cfg.resolver.extra_ca_file,
        Some(PathBuf::from("/etc/ca.pem"))
    );
    assert_eq!(cfg.resolver.policy_port, Some(8443));
    assert_eq!(cfg.resolver.proxy, ProxySetting::Environment);
    assert_eq!(
        parse("resolver:\n  proxy: none\n").resolver.proxy,
        ProxySetting::Disabled
    );
    assert_eq!(
        parse("resolver:\n  proxy: http://p:3128\n").resolver.proxy,
        ProxySetting::Url("http://p:3128".into())
    );
    assert_eq!(cfg.limits.max_connections, 5);
    assert_eq!(cfg.limits.max_pipeline, 2);
    assert_eq!(cfg.limits.max_request_size, 10_000);
    assert_eq!(cfg.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(
        parse("limits:\n  idle_timeout: 0\n").limits.idle_timeout,
        Duration::ZERO
    );
    assert_eq!(
        parse("limits:\n  idle_timeout: 2.5\n").limits.idle_timeout,
        Duration::from_millis(2500)
    );
    assert!(error("limits:\n  idle_timeout: -1\n").contains("`limits.idle_timeout`"));
    assert_eq!(cfg.freshness.failure_backoff, Duration::from_secs(10));
    assert!(error("resolver:\n  nameservers: [dns.example]\n").contains("`resolver.nameservers`"));
}

#[test]
fn unknown_keys_are_reported_with_paths() {
    let cfg = parse(
        "hots: 1\ndefault_zone:\n  strict: yes\nzones:\n  z:\n    tiemout: 3\nlimits:\n  foo: 1\n",
    );
    let want = [
        "hots",
        "default_zone.strict",
        "zones.z.tiemout",
        "limits.foo",
    ];
    assert_eq!(cfg.unknown_keys, want);
}

#[test]
fn yaml_errors_are_config_errors() {
    assert!(matches!(
        Config::parse("a: [1\n"),
        Err(ConfigError::Yaml(_))
    ));
    assert!(matches!(
        Config::parse("- a\n- b\n"),
        Err(ConfigError::Invalid { .. })
    ));
    assert!(matches!(
        Config::parse("just a string\n"),
        Err(ConfigError::Invalid { .. })
    ));
}

#[test]
fn shipped_examples_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config_examples");
    let mut seen = 0;
    for name in [
        "mta-sts-daemon.yml.internal",
        "mta-sts-daemon.yml.sqlite",
        "mta-sts-daemon.yml.sqlite_unixsock",
        "mta-sts-daemon.yml.redis",
        "mta-sts-daemon.yml.redis_sentinel",
        "mta-sts-daemon.yml.postgres",
        // The Debian package's /etc/mta-sts-daemon.yml (SQLite, like Debian's postfix-mta-sts-resolver).
        "mta-sts-daemon.yml.default",
    ] {
        let ty = match name.rsplit('.').next().unwrap_or_default() {
            "default" => "sqlite",
            suffix => suffix.trim_end_matches("_unixsock"),
        };
        let built = ty == "internal"
            || (ty == "sqlite" && cfg!(feature = "sqlite"))
            || (ty.starts_with("redis") && cfg!(feature = "redis"))
            || (ty == "postgres" && cfg!(feature = "postgres"));
        let path = dir.join(name);
        assert!(path.is_file(), "{name} is missing");
        if !built {
            assert!(
                Config::load(&path).is_err(),
                "{name} parsed although its store is not built"
            );
            continue;
        }
        let (cfg, diagnostics) = Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(diagnostics.is_empty(), "{name}: {diagnostics:?}");
        assert_eq!(cfg.cache.type_name(), ty, "{name}");
        seen += 1;
    }
    assert!(seen >= 1);
    if cfg!(feature = "sqlite") {
        let (unix, _) = Config::load(&dir.join("mta-sts-daemon.yml.sqlite_unixsock")).unwrap();
        assert_eq!(
            unix.listen,
            ListenConfig::Unix {
                path: "/var/spool/postfix/run/mta-sts/mta-sts.sock".into(),
                mode: Some(0o666),
            }
        );
    }
}

#[test]
fn listen_values() {
    assert_eq!("[::1]:9461".parse(), Ok(tcp("::1", 9461)));
    assert_eq!(" localhost:0 ".parse(), Ok(tcp("localhost", 0)));
    for bad in [
        "",
        "9461",
        ":9461",
        "[]:9461",
        "host:",
        "host:99999",
        "::1:9461",
        "unix:",
    ] {
        assert!(bad.parse::<ListenConfig>().is_err(), "{bad:?} accepted");
    }
    for text in ["127.0.0.1:9461", "[::1]:0", "unix:/run/m.sock"] {
        let listen: ListenConfig = text.parse().expect("valid");
        assert_eq!(listen.to_string(), text);
        assert_eq!(listen.to_string().parse(), Ok(listen));
    }
}

#[test]
fn metrics_section() {
    assert_eq!(parse("").metrics, None);
    assert_eq!(parse("metrics:\n").metrics, None);
    assert_eq!(
        parse("metrics:\n  listen: \"127.0.0.1:9461\"\n").metrics,
        Some(MetricsConfig {
            listen: tcp("127.0.0.1", 9461)
        })
    );
    let unix = parse("metrics:\n  listen: unix:/run/m.sock\n  mode: 0660\n");
    assert_eq!(
        unix.metrics,
        Some(MetricsConfig {
            listen: ListenConfig::Unix {
                path: "/run/m.sock".into(),
                mode: Some(0o660)
            }
        })
    );
    assert!(unix.warnings.is_empty(), "{:?}", unix.warnings);
    let tcp_mode = parse("metrics:\n  listen: \"[::1]:0\"\n  mode: 0660\n  other: 1\n");
    assert_eq!(tcp_mode.warnings.len(), 1, "{:?}", tcp_mode.warnings);
    assert_eq!(tcp_mode.unknown_keys, ["metrics.other"]);
    for bad in [
        "metrics:\n  listen: 9461\n",
        "metrics:\n  listen: \"9461\"\n",
        "metrics:\n  listen: [a]\n",
        "metrics: yes\n",
    ] {
        match Config::parse(bad) {
            Err(ConfigError::Invalid { key, .. }) => {
                assert!(key.starts_with("metrics"), "{bad:?}: {key}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn an_empty_document_reads_as_the_defaults() {
    let (cfg, diagnostics) = Config::parse("").expect("empty");
    assert_eq!(cfg, Config::default());
    assert!(diagnostics.is_empty());
    // The engine's defaults are the daemon's.
    assert_eq!(cfg.cache_grace, DEFAULT_CACHE_GRACE);
    assert_eq!(cfg.limits.max_discoveries, DEFAULT_MAX_IN_FLIGHT);
    assert_eq!(cfg.limits.memory_cache_bytes, DEFAULT_MEMORY_BYTES);
    assert_eq!(cfg.freshness.max_negative_ttl, DEFAULT_MAX_NEGATIVE_TTL);
}

#[test]
fn memory_cache_bytes_is_a_byte_count_of_at_least_one_mebibyte() {
    assert_eq!(DEFAULT_MEMORY_BYTES, 64 << 20);
    let cfg = parse("limits:\n  memory_cache_bytes: 1048576\n");
    assert_eq!(cfg.limits.memory_cache_bytes, 1 << 20);
    // `internal` keeps `cache_size` as its entry cap; the byte bound is the same key.
    let internal = parse(
        "cache:\n  type: internal\n  options:\n    cache_size: 5\nlimits:\n  memory_cache_bytes: 2097152\n",
    );
    assert_eq!(internal.cache, CacheConfig::Internal { cache_size: 5 });
    assert_eq!(internal.limits.memory_cache_bytes, 2 << 20);
    for bad in ["1048575", "-1", "64MiB", "1.5"] {
        let text = format!("limits:\n  memory_cache_bytes: {bad}\n");
        assert!(
            error(&text).contains("`limits.memory_cache_bytes`"),
            "{bad}"
        );
    }
}

/// Every key path the parser accepts, over documents that take each branch (both listeners, every cache type),
/// with zone names written `NAME`.
fn accepted_keys() -> std::collections::BTreeSet<String> {
    extract::ASKED.with(|asked| asked.borrow_mut().clear());
    let caches = [
        "internal\n",
        "sqlite\n  options:\n    filename: /x.db\n",
        "redis\n  options:\n    url: redis://h/0\n",
        "redis_sentinel\n  options:\n    sentinel_master_name: m\n    sentinels: [[h, 1]]\n",
        "postgres\n  options:\n    dsn: postgres://h/db\n",
    ];
    for (i, cache) in caches.iter().enumerate() {
        let listen = if i == 0 { "path: /run/x.sock\n" } else { "" };
        let text = format!(
            "{listen}cache:\n  type: {cache}zones:\n  z:\n    tlsrpt: true\nmetrics:\n  listen: unix:/m\n"
        );
        // A store left out of this build is refused before its options are read.
        let _ = Config::parse(&text);
    }
    extract::ASKED.with(|asked| {
        asked
            .borrow()
            .iter()
            .map(|path| match path.strip_prefix("zones.") {
                Some(rest) => match rest.split_once('.') {
                    Some((_, key)) => format!("zones.NAME.{key}"),
                    None => "zones.NAME".to_owned(),
                },
                None => path.clone(),
            })
            .collect()
    })
}

/// The key itself, or a dotted tail of its path (`limits.max_pipeline`, `max_pipeline`).
fn written_forms(path: &str) -> Vec<&str> {
    let mut forms = vec![path];
    forms.extend(path.match_indices('.').map(|(i, _)| &path[i + 1..]));
    forms
}

#[test]
fn every_accepted_key_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let markdown =
        std::fs::read_to_string(root.join("docs/configuration.md")).expect("configuration.md");
    let man =
        std::fs::read_to_string(root.join("docs/man/mta-sts-daemon.yml.5")).expect("man page");
    // Words of the man page's macro lines (`.BR cache_size " (integer ...`).
    let man_words: std::collections::BTreeSet<&str> = man
        .lines()
        .filter(|l| l.starts_with('.'))
        .flat_map(|l| l.split([' ', '"', ',']))
        .collect();
    let keys = accepted_keys();
    assert!(keys.len() > 50, "only {} keys seen: {keys:?}", keys.len());
    let mut missing = Vec::new();
    for path in &keys {
        // A section is documented through its keys.
        if keys.iter().any(|k| k.starts_with(&format!("{path}."))) {
            continue;
        }
        let forms = written_forms(path);
        if !forms.iter().any(|f| markdown.contains(&format!("`{f}`"))) {
            missing.push(format!("docs/configuration.md: {path}"));
        }
        if !forms.iter().any(|f| man_words.contains(f)) {
            missing.push(format!("docs/man/mta-sts-daemon.yml.5: {path}"));
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:#?}");
}

#[test]
fn control_section() {
    assert_eq!(
        parse("").control.socket,
        Path::new("/run/mta-sts/control.sock")
    );
    let config = parse("control:\n  socket: /var/run/x/ctl.sock\n  other: 1\n");
    assert_eq!(config.control.socket, Path::new("/var/run/x/ctl.sock"));
    assert_eq!(config.unknown_keys, ["control.other"]);
    let err = Config::parse("control:\n  socket: \"\"\n").expect_err("empty path");
    assert!(err.to_string().contains("`control.socket`"), "{err}");
}
