//! Real DNSSEC on loopback: zones signed at test time (ldns-keygen, ldns-signzone), served by
//! NSD, validated by Unbound with the zones' own trust anchors.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

/// How long a server may take to log that it serves.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// How many times a server is started on another port when the first one was taken.
const START_ATTEMPTS: usize = 5;

/// The Debian packages that hold the tools (for the "what to install" message).
const PACKAGES: &str = "nsd unbound ldnsutils";

/// A zone to sign and serve (see [`DnssecResolver`]).
///
/// The zone gets an SOA (negative TTL 300 s), `NS ns` and `ns A 127.0.0.1`; add the rest with
/// [`SignedZone::record`]. Its records have a TTL of 300 s.
#[derive(Clone, Debug)]
pub struct SignedZone {
    origin: String,
    records: Vec<String>,
    broken: Vec<String>,
}

impl SignedZone {
    /// A zone for `origin`, e.g. `good.test` (Unbound's built-in `test.` zone is switched
    /// off, so `.test` names work).
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.trim_end_matches('.').to_ascii_lowercase(),
            records: Vec::new(),
            broken: Vec::new(),
        }
    }

    /// A mail domain: [`SignedZone::new`] plus `@ MX 10 mx` and `mx A 127.0.0.1`.
    pub fn mail(origin: &str) -> Self {
        Self::new(origin)
            .record("@ MX 10 mx")
            .record("mx A 127.0.0.1")
    }

    /// Adds a record in zone-file syntax, owner relative to the origin unless it ends with a
    /// dot: `"@ MX 10 mx"`, `"mx A 127.0.0.1"`, `"_25._tcp.mx TLSA 3 1 1 5a5a…"`.
    #[must_use]
    pub fn record(mut self, line: &str) -> Self {
        self.records.push(line.to_owned());
        self
    }

    /// Adds a TLSA record at `owner` (e.g. `_25._tcp.mx`) from its four fields.
    #[must_use]
    pub fn tlsa(self, owner: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> Self {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.record(&format!("{owner} TLSA {usage} {selector} {matching} {hex}"))
    }

    /// Corrupts, after signing, every signature over RRsets of `record_type` (`"TLSA"`,
    /// `"MX"`…): the validating resolver answers SERVFAIL for them. `"DNSKEY"` breaks the
    /// whole zone.
    #[must_use]
    pub fn break_signatures(mut self, record_type: &str) -> Self {
        self.broken.push(record_type.to_ascii_uppercase());
        self
    }

    /// The origin, without trailing dot.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn file_name(&self) -> String {
        format!("{}.zone", self.origin)
    }

    fn zone_text(&self) -> String {
        let origin = &self.origin;
        let mut text = format!(
            "$ORIGIN {origin}.\n$TTL 300\n\
             @ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300\n\
             @ IN NS ns.{origin}.\nns IN A 127.0.0.1\n"
        );
        for record in &self.records {
            let _ = writeln!(text, "{record}");
        }
        text
    }
}

/// A validating resolver (Unbound) on `127.0.0.1:<port>` in front of an authoritative server
/// (NSD) serving [`SignedZone`]s, each signed at start with fresh keys (ECDSA P-256, NSEC)
/// and trusted through its own key-signing key.
///
/// Both servers are killed when this is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mtasts_test_support::{DnssecResolver, SignedZone};
/// let zones = [SignedZone::mail("good.test").tlsa("_25._tcp.mx", 3, 1, 1, &[0x5a; 32])];
/// let Some(resolver) = DnssecResolver::start(&zones).await else {
///     return; // tools not installed, not under CI: skipped with a printed reason
/// };
/// assert!(resolver.addr().ip().is_loopback());
/// # }
/// ```
#[derive(Debug)]
pub struct DnssecResolver {
    addr: SocketAddr,
    authoritative: SocketAddr,
    _unbound: Server,
    _nsd: Server,
    _dir: TempDir,
}

impl DnssecResolver {
    /// Signs `zones`, starts NSD and Unbound on free loopback ports and waits until both
    /// serve.
    ///
    /// Returns `None` (after printing why) when `nsd`, `unbound`, `ldns-keygen` or
    /// `ldns-signzone` is missing and `CI` is not set.
    ///
    /// # Panics
    ///
    /// Under CI when a tool is missing; when signing fails or a server does not start (test
    /// support only).
    pub async fn start(zones: &[SignedZone]) -> Option<Self> {
        let tools = Tools::find()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut anchors = Vec::new();
        for zone in zones {
            anchors.push(sign(&tools, dir.path(), zone).await);
        }
        let nsd = start_server("nsd", START_ATTEMPTS, |port| {
            let conf = dir.path().join("nsd.conf");
            std::fs::write(&conf, nsd_conf(dir.path(), port, zones)).expect("write nsd.conf");
            let mut command = Command::new(&tools.nsd);
            command.arg("-d").arg("-c").arg(conf);
            (command, "nsd started")
        })
        .await;
        let authoritative = nsd.addr;
        let unbound = start_server("unbound", START_ATTEMPTS, |port| {
            let conf = dir.path().join("unbound.conf");
            let text = unbound_conf(dir.path(), port, authoritative, zones, &anchors);
            std::fs::write(&conf, text).expect("write unbound.conf");
            let mut command = Command::new(&tools.unbound);
            command.arg("-d").arg("-c").arg(conf);
            (command, "start of service")
        })
        .await;
        tracing::debug!(resolver = %unbound.addr, %authoritative, "DNSSEC resolver started");
        Some(Self {
            addr: unbound.addr,
            authoritative,
            _unbound: unbound,
            _nsd: nsd,
            _dir: dir,
        })
    }

    /// The validating resolver (Unbound), UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The authoritative server (NSD), UDP and TCP: its answers carry RRSIGs but never AD.
    pub fn authoritative_addr(&self) -> SocketAddr {
        self.authoritative
    }
}

/// The programs used, found in `PATH`, `/usr/sbin` or `/sbin`.
struct Tools {
    nsd: PathBuf,
    unbound: PathBuf,
    keygen: PathBuf,
    signzone: PathBuf,
}

impl Tools {
    fn find() -> Option<Self> {
        let found = (
            crate::tools::find_program("nsd"),
            crate::tools::find_program("unbound"),
            crate::tools::find_program("ldns-keygen"),
            crate::tools::find_program("ldns-signzone"),
        );
        if let (Some(nsd), Some(unbound), Some(keygen), Some(signzone)) = found {
            return Some(Self {
                nsd,
                unbound,
                keygen,
                signzone,
            });
        }
        crate::skip_or_fail(
            "DNSSEC test servers not found (need nsd, unbound, ldns-keygen, ldns-signzone)",
            &format!("install them: apt-get install {PACKAGES}"),
        );
        None
    }
}

/// Signs `zone` into `<dir>/<origin>.zone.signed` and returns the path of its trust anchor
/// (the key-signing key's DNSKEY record).
async fn sign(tools: &Tools, dir: &Path, zone: &SignedZone) -> PathBuf {
    std::fs::write(dir.join(zone.file_name()), zone.zone_text()).expect("write zone file");
    let keygen = |ksk: bool| {
        let mut command = Command::new(&tools.keygen);
        command.current_dir(dir).args(["-a", "ECDSAP256SHA256"]);
        if ksk {
            command.arg("-k");
        }
        command.arg(&zone.origin);
        command
    };
    let ksk = run(keygen(true)).await;
    let zsk = run(keygen(false)).await;
    let mut signzone = Command::new(&tools.signzone);
    signzone
        .current_dir(dir)
        .args(["-o", &zone.origin, &zone.file_name(), &zsk, &ksk]);
    run(signzone).await;
    if !zone.broken.is_empty() {
        let path = dir.join(format!("{}.signed", zone.file_name()));
        let signed = std::fs::read_to_string(&path).expect("read signed zone");
        std::fs::write(&path, corrupt_signatures(&signed, &zone.broken))
            .expect("write signed zone");
    }
    dir.join(format!("{ksk}.key"))
}

/// Runs a command to completion and returns its stdout (trimmed); panics on failure.
async fn run(mut command: Command) -> String {
    let output = command.output().await.expect("run DNSSEC tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Flips one character of the signature of every RRSIG covering one of `types` (the
/// signature stays valid base64 of the same length, it just no longer verifies).
fn corrupt_signatures(signed: &str, types: &[String]) -> String {
    let mut out = String::with_capacity(signed.len());
    for line in signed.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let covers_broken = fields.get(3) == Some(&"RRSIG")
            && fields.get(4).is_some_and(|t| types.iter().any(|b| b == t));
        match fields.last() {
            Some(signature) if covers_broken && signature.len() > 10 => {
                let mut bytes = signature.as_bytes().to_vec();
                bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
                let corrupted = String::from_utf8(bytes).expect("base64 is ASCII");
                let start = line.len() - signature.len();
                out.push_str(&line[..start]);
                out.push_str(&corrupted);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn nsd_conf(dir: &Path, port: u16, zones: &[SignedZone]) -> String {
    let dir = dir.display();
    let mut conf = format!(
        "server:\n  ip-address: 127.0.0.1\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  \
         zonesdir: \"{dir}\"\n  pidfile: \"{dir}/nsd.pid\"\n  xfrdfile: \"{dir}/xfrd.state\"\n  \
         zonelistfile: \"{dir}/zone.list\"\n  xfrdir: \"{dir}\"\n  database: \"\"\n  \
         server-count: 1\n  verbosity: 1\n  hide-version: yes\n\
         remote-control:\n  control-enable: no\n"
    );
    for zone in zones {
        let _ = write!(
            conf,
            "zone:\n  name: \"{}\"\n  zonefile: \"{}.signed\"\n",
            zone.origin,
            zone.file_name()
        );
    }
    conf
}

fn unbound_conf(
    dir: &Path,
    port: u16,
    authoritative: SocketAddr,
    zones: &[SignedZone],
    anchors: &[PathBuf],
) -> String {
    let dir = dir.display();
    let mut conf = format!(
        "server:\n  interface: 127.0.0.1\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  \
         directory: \"{dir}\"\n  pidfile: \"{dir}/unbound.pid\"\n  use-syslog: no\n  \
         logfile: \"\"\n  verbosity: 1\n  val-log-level: 2\n  num-threads: 1\n  do-ip6: no\n  \
         do-not-query-localhost: no\n  qname-minimisation: no\n  local-zone: \"test.\" nodefault\n"
    );
    for anchor in anchors {
        let _ = writeln!(conf, "  trust-anchor-file: \"{}\"", anchor.display());
    }
    conf.push_str("remote-control:\n  control-enable: no\n");
    for zone in zones {
        let _ = write!(
            conf,
            "stub-zone:\n  name: \"{}\"\n  stub-addr: {}@{}\n",
            zone.origin,
            authoritative.ip(),
            authoritative.port()
        );
    }
    conf
}

/// A server process (and its process group), killed on drop.
#[derive(Debug)]
struct Server {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        // NSD forks its workers: kill the whole group the server leads.
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok())
            && let Err(error) = killpg(Pid::from_raw(pid), Signal::SIGKILL)
        {
            tracing::debug!(server = self.name, %error, "could not kill the server's group");
        }
    }
}

/// Starts a server on a free loopback port (UDP and TCP), retrying on another port when it
/// exits before logging `ready` (the port was taken meanwhile).
async fn start_server(
    name: &'static str,
    attempts: usize,
    mut command_for: impl FnMut(u16) -> (Command, &'static str),
) -> Server {
    let mut logs = String::new();
    for _ in 0..attempts {
        let port = free_port();
        let (mut command, ready) = command_for(port);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let server = Server {
            name,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            child,
        };
        match wait_ready(name, stderr, ready).await {
            Ok(()) => return server,
            Err(log) => logs.push_str(&log),
        }
    }
    panic!("{name} did not start after {attempts} attempts:\n{logs}");
}

/// Reads the server's stderr until a line contains `ready`; then forwards the rest to
/// `tracing` in the background (so the pipe never fills). `Err` holds the log when the server
/// exits first.
async fn wait_ready(name: &'static str, stderr: ChildStderr, ready: &str) -> Result<(), String> {
    let mut lines = BufReader::new(stderr).lines();
    let mut log = String::new();
    let found = tokio::time::timeout(READY_WITHIN, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains(ready);
            log.push_str(&line);
            log.push('\n');
            if done {
                return true;
            }
        }
        false
    })
    .await;
    match found {
        Ok(true) => {
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(server = name, "{line}");
                }
            });
            Ok(())
        }
        Ok(false) => Err(log),
        Err(_elapsed) => panic!("{name} did not log {ready:?} within {READY_WITHIN:?}:\n{log}"),
    }
}

/// A loopback port that is free for both UDP and TCP right now.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind UDP on loopback");
        let port = udp.local_addr().expect("udp local addr").port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signatures_over_the_broken_types_change() {
        let signed = "a.test.\t300\tIN\tTLSA\t3 1 1 5a\n\
                      a.test.\t300\tIN\tRRSIG\tTLSA 13 3 300 2 1 7 test. AAAAAAAAAAAAAAAA==\n\
                      a.test.\t300\tIN\tRRSIG\tNSEC 13 3 300 2 1 7 test. AAAAAAAAAAAAAAAA==\n";
        let out = corrupt_signatures(signed, &["TLSA".to_owned()]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], signed.lines().next().expect("line"));
        assert!(lines[1].ends_with(" AAAAAAAAAABAAAAA=="), "{}", lines[1]);
        assert!(lines[2].ends_with(" AAAAAAAAAAAAAAAA=="), "{}", lines[2]);
    }

    #[test]
    fn zone_text_has_soa_ns_and_the_records() {
        let text = SignedZone::new("Good.Test.")
            .record("@ MX 10 mx")
            .zone_text();
        assert!(text.starts_with("$ORIGIN good.test.\n"), "{text}");
        assert!(text.contains("@ IN NS ns.good.test.\n"), "{text}");
        assert!(text.ends_with("@ MX 10 mx\n"), "{text}");
    }
}
