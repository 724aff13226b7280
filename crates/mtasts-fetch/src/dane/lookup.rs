//! The DANE discovery of RFC 7672 §2.2: MX, then each host's addresses and TLSA records.

use std::time::Duration;

use futures_util::future::join_all;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::time::Instant;

use super::MAX_HOSTS;
use super::stub::{Answer, Stub};
use super::tlsa::TlsaRecord;
use super::view::{Addresses, DaneView, HostView, MxStatus, TlsaStatus};

/// The smallest of the TTLs seen so far.
#[derive(Default)]
struct MinTtl(Option<Duration>);

impl MinTtl {
    fn see(&mut self, ttl: Option<Duration>) {
        self.0 = match (self.0, ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Runs the whole discovery for `domain` (an ASCII name without trailing dot); every query
/// ends by `deadline`.
pub(super) async fn discover(stub: &Stub, domain: &str, deadline: Instant) -> DaneView {
    let mut ttl = MinTtl::default();
    let Some(domain_name) = fqdn(domain) else {
        // A PolicyDomain is always a valid DNS name; keep the view honest anyway.
        return DaneView::new(domain, MxStatus::Insecure, Vec::new(), None);
    };
    let answer = match stub.query(&domain_name, RecordType::MX, deadline).await {
        Ok(answer) => answer,
        Err(error) => return DaneView::new(domain, MxStatus::Failed(error), Vec::new(), None),
    };
    ttl.see(answer.ttl());
    let mut exchanges: Vec<(u16, Name)> = answer
        .records
        .iter()
        .filter_map(|record| match &record.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_lowercase())),
            _ => None,
        })
        .collect();
    let (mx, exchanges) = match (answer.authentic, answer.code, exchanges.is_empty()) {
        // RFC 7672 §2.2.1: an insecure MX RRset (or denial) gives no DANE candidates.
        (false, ..) => (MxStatus::Insecure, Vec::new()),
        (true, ResponseCode::NXDomain, _) => (MxStatus::SecureNxDomain, Vec::new()),
        // RFC 5321 §5.1, RFC 7672 §2.2.2: no MX records, the domain itself is the host.
        (true, _, true) => (MxStatus::SecureImplicit, vec![(0, domain_name)]),
        (true, _, false) => {
            // One entry per host, at its best preference, then by preference.
            exchanges.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
            exchanges.dedup_by(|a, b| a.1 == b.1);
            exchanges.sort();
            // RFC 7505: a null MX ("."): the domain accepts no mail, no host.
            exchanges.retain(|(_, name)| !name.is_root());
            (MxStatus::Secure, exchanges)
        }
    };
    let truncated = exchanges.len() > MAX_HOSTS;
    let hosts = join_all(
        exchanges
            .into_iter()
            .take(MAX_HOSTS)
            .map(|(preference, name)| host(stub, preference, name, deadline)),
    )
    .await;
    let hosts = hosts
        .into_iter()
        .map(|(host, host_ttl)| {
            ttl.see(host_ttl);
            host
        })
        .collect();
    let view = DaneView::new(domain, mx, hosts, ttl.0);
    if truncated {
        view.mark_truncated()
    } else {
        view
    }
}

/// Looks up one MX host: addresses, then TLSA records when the addresses validated.
async fn host(
    stub: &Stub,
    preference: u16,
    name: Name,
    deadline: Instant,
) -> (HostView, Option<Duration>) {
    let mut ttl = MinTtl::default();
    let label = ascii(&name);
    let addresses = addresses(stub, &name, deadline, &mut ttl).await;
    // RFC 7672 §2.2.3: TLSA at the fully expanded name of an all-secure alias first, then at
    // the host name itself.
    let bases: Vec<Name> = match &addresses {
        Addresses::Secure {
            expanded: Some(expanded),
        } => fqdn(expanded)
            .into_iter()
            .chain(std::iter::once(name.clone()))
            .collect(),
        Addresses::Secure { expanded: None } | Addresses::SecureAlias { .. } => vec![name],
        Addresses::Insecure | Addresses::None | Addresses::Failed(_) => Vec::new(),
    };
    let tlsa = if bases.is_empty() {
        TlsaStatus::NotLooked
    } else {
        tlsa(stub, &bases, deadline, &mut ttl).await
    };
    tracing::debug!(host = %label, ?addresses, ?tlsa, "DANE host looked up");
    (HostView::new(label, preference, addresses, tlsa), ttl.0)
}

/// The A and AAAA lookups of a host (concurrently), and a CNAME lookup when the host is an
/// alias whose addresses did not validate.
async fn addresses(stub: &Stub, name: &Name, deadline: Instant, ttl: &mut MinTtl) -> Addresses {
    let (a, aaaa) = tokio::join!(
        stub.query(name, RecordType::A, deadline),
        stub.query(name, RecordType::AAAA, deadline),
    );
    let answers = match (a, aaaa) {
        (Ok(a), Ok(aaaa)) => [a, aaaa],
        (Err(error), _) | (_, Err(error)) => return Addresses::Failed(error),
    };
    let with_addresses: Vec<&Answer> = answers
        .iter()
        .filter(|answer| {
            answer
                .records
                .iter()
                .any(|r| matches!(r.data, RData::A(_) | RData::AAAA(_)))
        })
        .collect();
    if with_addresses.is_empty() {
        return Addresses::None;
    }
    for answer in &with_addresses {
        ttl.see(answer.ttl());
    }
    let target = chain_end(name, &with_addresses[0].records);
    if with_addresses.iter().all(|answer| answer.authentic) {
        return Addresses::Secure {
            expanded: target.as_ref().map(ascii),
        };
    }
    let Some(first_target) = cname_target(name, &with_addresses[0].records) else {
        return Addresses::Insecure;
    };
    // RFC 7672 §2.2.3: an alias whose own CNAME validated keeps DANE (at the host name) even
    // when its target's zone is unsigned. The resolver only reports that for a CNAME query.
    match stub.query(name, RecordType::CNAME, deadline).await {
        Ok(answer) if answer.authentic && cname_target(name, &answer.records).is_some() => {
            ttl.see(answer.ttl());
            Addresses::SecureAlias {
                target: ascii(&first_target),
            }
        }
        Ok(_) => Addresses::Insecure,
        Err(error) => Addresses::Failed(error),
    }
}

/// The TLSA lookups at `_25._tcp.<base>` for each base in order, until one has records.
async fn tlsa(stub: &Stub, bases: &[Name], deadline: Instant, ttl: &mut MinTtl) -> TlsaStatus {
    let mut status = TlsaStatus::Absent;
    for base in bases {
        // RFC 7672 §2.2.3: SMTP on port 25 over TCP.
        let Some(name) = fqdn(&format!("_25._tcp.{}", ascii(base))) else {
            continue;
        };
        let answer = match stub.query(&name, RecordType::TLSA, deadline).await {
            Ok(answer) => answer,
            Err(error) => return TlsaStatus::Failed(error),
        };
        ttl.see(answer.ttl());
        let records: Vec<TlsaRecord> = answer
            .records
            .iter()
            .filter_map(|record| match &record.data {
                RData::TLSA(t) => Some(TlsaRecord::new(
                    t.cert_usage.into(),
                    t.selector.into(),
                    t.matching.into(),
                    t.cert_data.clone(),
                )),
                _ => None,
            })
            .collect();
        match (records.is_empty(), answer.authentic) {
            (false, true) => {
                return TlsaStatus::Secure {
                    name: ascii(&name),
                    records,
                };
            }
            // RFC 7672 §2.2: unvalidated TLSA records count for nothing; try the next base.
            (false, false) => status = TlsaStatus::Insecure,
            (true, _) => {}
        }
    }
    status
}

/// The target of `name`'s CNAME in `records`, if any.
fn cname_target(name: &Name, records: &[Record]) -> Option<Name> {
    records.iter().find_map(|record| match &record.data {
        RData::CNAME(target) if record.name == *name => Some(target.0.to_lowercase()),
        _ => None,
    })
}

/// The end of the CNAME chain that starts at `name`, if `name` is an alias (bounded by the
/// number of records, so a loop ends).
fn chain_end(name: &Name, records: &[Record]) -> Option<Name> {
    let mut current = cname_target(name, records)?;
    for _ in 0..records.len() {
        match cname_target(&current, records) {
            Some(next) => current = next,
            None => break,
        }
    }
    Some(current)
}

/// `name.` as a DNS name.
fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(name).ok().map(|mut n| {
        n.set_fqdn(true);
        n.to_lowercase()
    })
}

/// The name in lowercase ASCII without the trailing dot.
fn ascii(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    match text.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => text,
    }
}
