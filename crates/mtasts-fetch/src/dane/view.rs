//! The DANE view of a domain (what DNS said) and the pure decision that maps it to an answer.

use std::fmt;
use std::time::Duration;

use mtasts_engine::{DaneAnswer, DaneDiscovery};

use super::tlsa::TlsaRecord;
use crate::FetchError;

/// What the DANE discovery of RFC 7672 §2.2 found for one next-hop domain: the MX lookup, and
/// for each MX host its address and TLSA lookups. [`DaneView::verdict`] maps it to the answer
/// ([`decide`]); [`DaneView::discovery`] is what the engine keeps of it.
///
/// Built by [`crate::Fetcher::discover_dane`]; [`DaneView::new`] builds one by hand (tests,
/// fakes).
#[derive(Clone, Debug)]
pub struct DaneView {
    domain: String,
    mx: MxStatus,
    hosts: Vec<HostView>,
    truncated: bool,
    min_ttl: Option<Duration>,
}

/// The MX lookup of the domain (RFC 7672 §2.2.1).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum MxStatus {
    /// A validated MX RRset (AD): its hosts are DANE candidates.
    Secure,
    /// Validated "no MX records" (NODATA with AD): the domain itself is the one host (the
    /// implicit MX of RFC 5321 §5.1, RFC 7672 §2.2.2).
    SecureImplicit,
    /// Validated NXDOMAIN: the domain does not exist, there is no host.
    SecureNxDomain,
    /// The answer (records or denial) was not validated: DANE does not apply (RFC 7672 §2.2.1;
    /// TLSA records in an unsigned zone count for nothing).
    Insecure,
    /// The lookup failed (SERVFAIL, which is also what a validating resolver answers for bogus
    /// signatures; timeout; I/O).
    Failed(FetchError),
}

/// One MX host, its addresses and its TLSA records.
#[derive(Clone, Debug)]
pub struct HostView {
    name: String,
    preference: u16,
    addresses: Addresses,
    tlsa: TlsaStatus,
}

/// The A/AAAA lookups of an MX host (RFC 7672 §2.2.3).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Addresses {
    /// Validated address records. `expanded` is the end of the CNAME chain when the host is
    /// an alias whose whole chain validated: TLSA records are looked up there first, then at
    /// the host name.
    Secure {
        /// The fully CNAME-expanded name, when the host is an alias.
        expanded: Option<String>,
    },
    /// The host is a validated CNAME whose target's addresses are not validated: TLSA records
    /// are looked up at the host name only (RFC 7672 §2.2.3).
    SecureAlias {
        /// The CNAME target.
        target: String,
    },
    /// The address records were not validated: the host gets no DANE (RFC 7672 §2.2.3).
    Insecure,
    /// The host has no address record: mail cannot go there under any policy, so it does not
    /// count.
    None,
    /// An address lookup failed.
    Failed(FetchError),
}

/// The TLSA lookup of an MX host (`_25._tcp.<host>`, RFC 7672 §2.2.3).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TlsaStatus {
    /// Not looked up: the host's addresses are not validated (or missing, or failed).
    NotLooked,
    /// A validated TLSA RRset, at `name` (`_25._tcp.` and the expanded or original host name).
    Secure {
        /// Where the records were found.
        name: String,
        /// The records, usable or not.
        records: Vec<TlsaRecord>,
    },
    /// TLSA records without validation: they count for nothing (RFC 7672 §2.2).
    Insecure,
    /// No TLSA record (NXDOMAIN or NODATA).
    Absent,
    /// The TLSA lookup failed (SERVFAIL, timeout…).
    Failed(FetchError),
}

/// Why a view gives its answer: one row of the table of issue 13 (docs/postfix.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DaneReason {
    /// The MX RRset (or its absence) is not validated.
    MxInsecure,
    /// The MX lookup failed.
    MxFailed,
    /// The domain does not exist (validated NXDOMAIN).
    NoDomain,
    /// No host can receive mail (null MX, RFC 7505, or no host has an address).
    NoHosts,
    /// Every host has a validated TLSA RRset with a usable record.
    AllUsable,
    /// A host's address or TLSA lookup failed: Postfix does its own lookup and defers that
    /// host, as RFC 7672 §2.2 asks.
    LookupFailed,
    /// Some host has validated TLSA records, not every host has usable ones.
    SomeTlsa,
    /// No host has validated TLSA records.
    NoTlsa,
}

/// The decision for a view: the answer and the table row it comes from
/// ([`DaneReason::is_failure`] tells an answer that came from a failed lookup).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DaneVerdict {
    /// The answer.
    pub answer: DaneAnswer,
    /// The table row.
    pub reason: DaneReason,
}

impl DaneView {
    /// A view from its parts; `min_ttl` is the smallest TTL of the RRsets (and negative
    /// answers) used, `None` when no lookup gave one. Hosts beyond [`super::MAX_HOSTS`] are
    /// dropped and mark the view truncated.
    pub fn new(
        domain: impl Into<String>,
        mx: MxStatus,
        mut hosts: Vec<HostView>,
        min_ttl: Option<Duration>,
    ) -> Self {
        let truncated = hosts.len() > super::MAX_HOSTS;
        hosts.truncate(super::MAX_HOSTS);
        Self {
            domain: domain.into(),
            mx,
            hosts,
            truncated,
            min_ttl,
        }
    }

    pub(super) fn mark_truncated(mut self) -> Self {
        self.truncated = true;
        self
    }

    /// The next-hop domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The MX lookup.
    pub fn mx(&self) -> &MxStatus {
        &self.mx
    }

    /// The MX hosts looked at, by preference (empty unless the MX lookup validated).
    pub fn hosts(&self) -> &[HostView] {
        &self.hosts
    }

    /// Whether the domain has more MX hosts than [`super::MAX_HOSTS`]; the others were not
    /// looked up, so the view never gives `dane-only`.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The smallest TTL of the RRsets used.
    pub fn min_ttl(&self) -> Option<Duration> {
        self.min_ttl
    }

    /// [`decide`].
    pub fn verdict(&self) -> DaneVerdict {
        decide(self)
    }

    /// What the engine needs of this view ([`mtasts_engine::Discover::discover_dane`]): the answer, the
    /// reason's label, the smallest TTL, and whether the answer came from a failed lookup (then the engine keeps
    /// it for `cache_grace` only and backs off).
    ///
    /// ```
    /// use mtasts_fetch::dane::{DaneAnswer, DaneView, MxStatus};
    ///
    /// let view = DaneView::new("example.com", MxStatus::Insecure, vec![], None);
    /// let found = view.discovery();
    /// assert_eq!((found.answer, found.reason, found.failed), (DaneAnswer::MtaSts, "mx_insecure", false));
    /// ```
    pub fn discovery(&self) -> DaneDiscovery {
        let verdict = self.verdict();
        DaneDiscovery::new(
            verdict.answer,
            verdict.reason.kind(),
            self.min_ttl,
            verdict.reason.is_failure(),
        )
    }
}

impl HostView {
    /// A host from its parts.
    pub fn new(
        name: impl Into<String>,
        preference: u16,
        addresses: Addresses,
        tlsa: TlsaStatus,
    ) -> Self {
        Self {
            name: name.into(),
            preference,
            addresses,
            tlsa,
        }
    }

    /// The host name (lowercase, no trailing dot).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The MX preference (0 for the implicit MX).
    pub fn preference(&self) -> u16 {
        self.preference
    }

    /// The address lookups.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// The TLSA lookup.
    pub fn tlsa(&self) -> &TlsaStatus {
        &self.tlsa
    }

    /// What this host contributes to the decision.
    fn standing(&self) -> Standing {
        match &self.addresses {
            Addresses::Failed(_) => return Standing::Failed,
            Addresses::None => return Standing::Ignored,
            Addresses::Insecure => return Standing::NoDane,
            Addresses::Secure { .. } | Addresses::SecureAlias { .. } => {}
        }
        match &self.tlsa {
            TlsaStatus::Secure { records, .. } if records.iter().any(TlsaRecord::is_usable) => {
                Standing::Usable
            }
            TlsaStatus::Secure { .. } => Standing::Unusable,
            TlsaStatus::Failed(_) => Standing::Failed,
            TlsaStatus::NotLooked | TlsaStatus::Insecure | TlsaStatus::Absent => Standing::NoDane,
        }
    }
}

/// A host's part in the decision.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Validated addresses and TLSA with a usable record.
    Usable,
    /// Validated addresses and TLSA, none usable (Postfix then insists on unauthenticated TLS).
    Unusable,
    /// No (validated) TLSA, or addresses not validated.
    NoDane,
    /// An address or TLSA lookup failed.
    Failed,
    /// No address: the host does not count.
    Ignored,
}

/// Maps a DANE view to its answer, by the rules of RFC 7672 §2.2 and RFC 8461 §2 (DANE takes
/// precedence over MTA-STS):
///
/// | view | answer |
/// |---|---|
/// | MX not validated, or its lookup failed, or validated NXDOMAIN | MTA-STS |
/// | MX validated, a host's address or TLSA lookup failed | `dane` |
/// | MX validated, every host (with addresses) has validated TLSA with a usable record | `dane-only` |
/// | MX validated, some host has validated TLSA (usable or not) | `dane` |
/// | MX validated, no host has validated TLSA | MTA-STS |
///
/// A validated NODATA for MX makes the domain its own host (implicit MX). A host whose
/// addresses are not validated counts as a host without TLSA; a host without any address does
/// not count. A truncated view never gives `dane-only`.
pub fn decide(view: &DaneView) -> DaneVerdict {
    let verdict = |answer, reason| DaneVerdict { answer, reason };
    match view.mx {
        MxStatus::Secure | MxStatus::SecureImplicit => {}
        MxStatus::Insecure => return verdict(DaneAnswer::MtaSts, DaneReason::MxInsecure),
        MxStatus::Failed(_) => return verdict(DaneAnswer::MtaSts, DaneReason::MxFailed),
        MxStatus::SecureNxDomain => return verdict(DaneAnswer::MtaSts, DaneReason::NoDomain),
    }
    let standings: Vec<Standing> = view
        .hosts
        .iter()
        .map(HostView::standing)
        .filter(|s| *s != Standing::Ignored)
        .collect();
    if standings.is_empty() && !view.truncated {
        return verdict(DaneAnswer::MtaSts, DaneReason::NoHosts);
    }
    // RFC 7672 §2.1.1, §2.2.3: a failed TLSA lookup for a host of a secure MX RRset must not be taken
    // as "no TLSA"; `dane` lets Postfix do its own lookup and defer that host.
    if standings.contains(&Standing::Failed) {
        return verdict(DaneAnswer::Dane, DaneReason::LookupFailed);
    }
    if !view.truncated && standings.iter().all(|s| *s == Standing::Usable) {
        return verdict(DaneAnswer::DaneOnly, DaneReason::AllUsable);
    }
    if standings
        .iter()
        .any(|s| matches!(s, Standing::Usable | Standing::Unusable))
    {
        return verdict(DaneAnswer::Dane, DaneReason::SomeTlsa);
    }
    verdict(DaneAnswer::MtaSts, DaneReason::NoTlsa)
}

impl DaneReason {
    /// A stable, short label, e.g. `"mx_insecure"`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::MxInsecure => "mx_insecure",
            Self::MxFailed => "mx_failed",
            Self::NoDomain => "no_domain",
            Self::NoHosts => "no_hosts",
            Self::AllUsable => "all_usable",
            Self::LookupFailed => "lookup_failed",
            Self::SomeTlsa => "some_tlsa",
            Self::NoTlsa => "no_tlsa",
        }
    }

    /// Whether the answer comes from a failed lookup (MX, address or TLSA): it is kept only
    /// for `cache_grace` and the domain's DANE lookups follow the failure back-off.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::MxFailed | Self::LookupFailed)
    }
}

impl fmt::Display for DaneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MxInsecure => "the MX RRset is not DNSSEC-validated",
            Self::MxFailed => "the MX lookup failed",
            Self::NoDomain => "the domain does not exist",
            Self::NoHosts => "no MX host has an address",
            Self::AllUsable => "every MX host has usable TLSA records",
            Self::LookupFailed => "an MX host's address or TLSA lookup failed",
            Self::SomeTlsa => "some MX hosts have TLSA records, not all usable",
            Self::NoTlsa => "no MX host has DNSSEC-validated TLSA records",
        })
    }
}

impl MxStatus {
    /// A stable, short label: `secure`, `secure_implicit`, `secure_nxdomain`, `insecure`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Secure => "secure",
            Self::SecureImplicit => "secure_implicit",
            Self::SecureNxDomain => "secure_nxdomain",
            Self::Insecure => "insecure",
            Self::Failed(_) => "failed",
        }
    }
}

/// What the lookup found, in a few words (a failure with its error).
impl fmt::Display for MxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secure => f.write_str("validated (DNSSEC)"),
            Self::SecureImplicit => {
                f.write_str("validated: no MX records, the domain is its own host")
            }
            Self::SecureNxDomain => f.write_str("validated: the domain does not exist"),
            Self::Insecure => f.write_str("not validated: DANE does not apply"),
            Self::Failed(error) => write!(f, "lookup failed: {error}"),
        }
    }
}

impl Addresses {
    /// A stable, short label: `secure`, `secure_alias`, `insecure`, `none`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Secure { .. } => "secure",
            Self::SecureAlias { .. } => "secure_alias",
            Self::Insecure => "insecure",
            Self::None => "none",
            Self::Failed(_) => "failed",
        }
    }
}

/// What the lookups found, in a few words (a failure with its error).
impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secure { expanded: None } => f.write_str("validated"),
            Self::Secure {
                expanded: Some(name),
            } => write!(f, "validated (alias of {name})"),
            Self::SecureAlias { target } => write!(
                f,
                "validated alias of {target}, whose addresses are not validated"
            ),
            Self::Insecure => f.write_str("not validated: no DANE for this host"),
            Self::None => f.write_str("no address: the host does not count"),
            Self::Failed(error) => write!(f, "lookup failed: {error}"),
        }
    }
}

impl TlsaStatus {
    /// A stable, short label: `not_looked`, `secure`, `insecure`, `absent`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotLooked => "not_looked",
            Self::Secure { .. } => "secure",
            Self::Insecure => "insecure",
            Self::Absent => "absent",
            Self::Failed(_) => "failed",
        }
    }

    /// The validated records (usable or not); empty unless [`TlsaStatus::Secure`].
    pub fn records(&self) -> &[TlsaRecord] {
        match self {
            Self::Secure { records, .. } => records,
            _ => &[],
        }
    }
}

/// What the lookup found, in a few words (a failure with its error); the records are not listed.
impl fmt::Display for TlsaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLooked => f.write_str("not looked up (addresses not validated)"),
            Self::Secure { name, records } if records.is_empty() => {
                write!(f, "validated at {name}, no records")
            }
            Self::Secure { name, .. } => write!(f, "validated at {name}"),
            Self::Insecure => f.write_str("records not validated: ignored"),
            Self::Absent => f.write_str("none"),
            Self::Failed(error) => write!(f, "lookup failed: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable() -> TlsaRecord {
        TlsaRecord::new(3, 1, 1, [1; 32])
    }

    fn unusable() -> TlsaRecord {
        TlsaRecord::new(1, 1, 1, [1; 32])
    }

    fn secure() -> Addresses {
        Addresses::Secure { expanded: None }
    }

    fn tlsa(records: Vec<TlsaRecord>) -> TlsaStatus {
        TlsaStatus::Secure {
            name: "_25._tcp.mx".into(),
            records,
        }
    }

    fn failed() -> FetchError {
        FetchError::DnsServerFailure {
            name: "n".into(),
            code: "Server Failure",
        }
    }

    fn host(addresses: Addresses, tlsa: TlsaStatus) -> HostView {
        HostView::new("mx.example.com", 10, addresses, tlsa)
    }

    fn verdict(mx: MxStatus, hosts: Vec<HostView>) -> (DaneAnswer, DaneReason) {
        let v = DaneView::new("example.com", mx, hosts, Some(Duration::from_secs(300))).verdict();
        (v.answer, v.reason)
    }

    use DaneAnswer::{Dane, DaneOnly, MtaSts};

    // Row 1: MX validated, every host (with validated addresses) has usable TLSA.
    #[test]
    fn every_host_with_usable_tlsa_is_dane_only() {
        let hosts = vec![
            host(secure(), tlsa(vec![usable()])),
            // One usable record is enough, whatever else the RRset holds.
            host(secure(), tlsa(vec![unusable(), usable()])),
            // RFC 7672 §2.2.3: TLSA found through a secure alias counts too.
            host(
                Addresses::SecureAlias {
                    target: "t.example.net".into(),
                },
                tlsa(vec![usable()]),
            ),
        ];
        assert_eq!(
            verdict(MxStatus::Secure, hosts),
            (DaneOnly, DaneReason::AllUsable)
        );
    }

    // Row 2: at least one host has TLSA (usable or not), not all of them usable.
    #[test]
    fn some_hosts_with_tlsa_is_dane() {
        for other in [
            host(secure(), TlsaStatus::Absent),
            host(secure(), TlsaStatus::Insecure),
            host(secure(), tlsa(vec![unusable()])),
            host(secure(), tlsa(vec![])),
            // RFC 7672 §2.2.3: insecure addresses, no DANE for that host.
            host(Addresses::Insecure, TlsaStatus::NotLooked),
        ] {
            let hosts = vec![host(secure(), tlsa(vec![usable()])), other.clone()];
            assert_eq!(
                verdict(MxStatus::Secure, hosts),
                (Dane, DaneReason::SomeTlsa),
                "{other:?}"
            );
        }
        // Only unusable TLSA anywhere: still `dane` (Postfix insists on TLS, RFC 7672 §3.1).
        assert_eq!(
            verdict(
                MxStatus::Secure,
                vec![host(secure(), tlsa(vec![unusable()]))]
            ),
            (Dane, DaneReason::SomeTlsa)
        );
    }

    // Row 3: a host's TLSA lookup fails → `dane`, never the MTA-STS answer.
    #[test]
    fn a_failed_tlsa_or_address_lookup_is_dane_and_a_failure() {
        for failing in [
            host(secure(), TlsaStatus::Failed(failed())),
            host(Addresses::Failed(failed()), TlsaStatus::NotLooked),
        ] {
            for other in [
                host(secure(), tlsa(vec![usable()])),
                host(secure(), TlsaStatus::Absent),
            ] {
                let verdict = DaneView::new(
                    "example.com",
                    MxStatus::Secure,
                    vec![other, failing.clone()],
                    None,
                )
                .verdict();
                assert_eq!(verdict.answer, Dane);
                assert_eq!(verdict.reason, DaneReason::LookupFailed);
                assert!(verdict.reason.is_failure());
            }
        }
    }

    // Row 4: MX validated, no host has TLSA (validated NODATA / NXDOMAIN).
    #[test]
    fn no_host_with_validated_tlsa_is_the_mta_sts_answer() {
        let hosts = vec![
            host(secure(), TlsaStatus::Absent),
            // RFC 7672 §2.2: TLSA records that did not validate count for nothing.
            host(secure(), TlsaStatus::Insecure),
            host(Addresses::Insecure, TlsaStatus::NotLooked),
        ];
        assert_eq!(
            verdict(MxStatus::Secure, hosts),
            (MtaSts, DaneReason::NoTlsa)
        );
    }

    // Row 5: MX not validated, or the MX lookup fails.
    #[test]
    fn an_insecure_or_failed_mx_lookup_is_the_mta_sts_answer() {
        // Even with usable TLSA below it: TLSA in an unsigned zone counts for nothing.
        let hosts = vec![host(secure(), tlsa(vec![usable()]))];
        assert_eq!(
            verdict(MxStatus::Insecure, hosts.clone()),
            (MtaSts, DaneReason::MxInsecure)
        );
        let failed_mx = DaneView::new("example.com", MxStatus::Failed(failed()), hosts, None);
        assert_eq!(failed_mx.verdict().answer, MtaSts);
        assert!(failed_mx.verdict().reason.is_failure());
        assert_eq!(
            verdict(MxStatus::SecureNxDomain, vec![]),
            (MtaSts, DaneReason::NoDomain)
        );
    }

    // Row 6: no MX, the domain itself is the host: the same rules with that one host.
    #[test]
    fn the_implicit_mx_follows_the_same_rules() {
        let one = |tlsa_status| {
            verdict(
                MxStatus::SecureImplicit,
                vec![HostView::new("example.com", 0, secure(), tlsa_status)],
            )
        };
        assert_eq!(one(tlsa(vec![usable()])), (DaneOnly, DaneReason::AllUsable));
        assert_eq!(one(tlsa(vec![unusable()])), (Dane, DaneReason::SomeTlsa));
        assert_eq!(
            one(TlsaStatus::Failed(failed())),
            (Dane, DaneReason::LookupFailed)
        );
        assert_eq!(one(TlsaStatus::Absent), (MtaSts, DaneReason::NoTlsa));
    }

    #[test]
    fn hosts_without_addresses_do_not_count() {
        let hosts = vec![
            host(secure(), tlsa(vec![usable()])),
            host(Addresses::None, TlsaStatus::NotLooked),
        ];
        assert_eq!(
            verdict(MxStatus::Secure, hosts),
            (DaneOnly, DaneReason::AllUsable)
        );
        // A null MX (RFC 7505) or only address-less hosts: nothing to protect.
        assert_eq!(
            verdict(MxStatus::Secure, vec![]),
            (MtaSts, DaneReason::NoHosts)
        );
        assert_eq!(
            verdict(
                MxStatus::Secure,
                vec![host(Addresses::None, TlsaStatus::NotLooked)]
            ),
            (MtaSts, DaneReason::NoHosts)
        );
    }

    #[test]
    fn a_truncated_view_is_never_dane_only() {
        let hosts = vec![host(secure(), tlsa(vec![usable()])); super::super::MAX_HOSTS + 1];
        let view = DaneView::new("example.com", MxStatus::Secure, hosts, None);
        assert!(view.truncated());
        assert_eq!(view.hosts().len(), super::super::MAX_HOSTS);
        assert_eq!(view.verdict().answer, Dane);
    }

    #[test]
    fn the_engine_gets_the_answer_the_smallest_ttl_and_whether_a_lookup_failed() {
        let ttl = Some(Duration::from_secs(600));
        let view = |mx, hosts| DaneView::new("example.com", mx, hosts, ttl);
        let ok = view(MxStatus::Secure, vec![host(secure(), tlsa(vec![usable()]))]).discovery();
        assert_eq!(
            (ok.answer, ok.reason, ok.ttl, ok.failed),
            (DaneOnly, "all_usable", ttl, false)
        );
        let failing = view(
            MxStatus::Secure,
            vec![host(secure(), TlsaStatus::Failed(failed()))],
        )
        .discovery();
        assert_eq!((failing.answer, failing.failed), (Dane, true));
        let mx_failed = view(MxStatus::Failed(failed()), vec![]).discovery();
        assert_eq!((mx_failed.answer, mx_failed.failed), (MtaSts, true));
    }

    #[test]
    fn answers_and_reasons_have_stable_labels() {
        assert_eq!(DaneOnly.postfix_level(), Some("dane-only"));
        assert_eq!(Dane.postfix_level(), Some("dane"));
        assert_eq!(MtaSts.postfix_level(), None);
        assert_eq!(
            [DaneOnly.kind(), Dane.kind(), MtaSts.kind()],
            ["dane_only", "dane", "mta_sts"]
        );
        assert_eq!(DaneOnly.to_string(), "dane-only");
        assert_eq!(DaneReason::LookupFailed.kind(), "lookup_failed");
    }
}
