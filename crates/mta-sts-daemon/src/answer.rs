//! From a socketmap key to a Postfix policy-table answer: key normalization and the reply text.
//!
//! The contract (see `docs/postfix.md`):
//! - `enforce` → `OK secure match=<mx1>:<mx2>…` (`*.x` written `.x`, duplicates removed), then
//!   ` servername=hostname` when the zone has `require_sni`, then the Postfix 3.10 TLSRPT attributes when it
//!   has `tlsrpt`;
//! - `testing` → `NOTFOUND ` unless `strict_testing`; `none`, no policy, failed discovery → `NOTFOUND `;
//! - in a zone with `dane`, a domain whose DANE discovery (RFC 7672 §2.2) gives `dane-only` or `dane` →
//!   `OK dane-only` / `OK dane`, exactly, whatever its MTA-STS policy (RFC 8461 §2: MTA-STS must not override
//!   DANE; Postfix reports DANE to TLSRPT itself, so no attributes follow).
//!
//! Never `TEMP`/`PERM`/`TIMEOUT` for a discovery problem: Postfix defers mail on any table lookup error, while
//! RFC 8461 §3.3 says to deliver as if there were no policy.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};
use mtasts_core::{Mode, PolicyDomain};
use mtasts_engine::{DaneAnswer, ResolvedPolicy};
use socketmap_proto::Reply;

use crate::config::ZoneConfig;

/// What a socketmap key asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// A domain to look up.
    Domain(PolicyDomain),
    /// A key answered `NOTFOUND ` without any lookup, and why.
    Skip(SkipReason),
}

/// Why a key gets `NOTFOUND ` without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum SkipReason {
    /// `.example.com`: Postfix's parent-domain lookup; RFC 8461 §3.4 forbids parent policies.
    ParentDomain,
    /// `[192.0.2.1]`, `2001:db8::1`: an address has no MTA-STS policy.
    IpLiteral,
    /// Not a valid domain name.
    Invalid,
}

impl SkipReason {
    /// A stable label for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ParentDomain => "parent_domain",
            Self::IpLiteral => "ip_literal",
            Self::Invalid => "invalid_domain",
        }
    }
}

/// What a socketmap answer said (the `kind` label of `mtasts_answers_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AnswerKind {
    /// `OK secure match=…`: an `enforce` policy (or `testing` with `strict_testing`).
    Secure,
    /// `NOTFOUND `: a `testing` policy.
    Testing,
    /// `NOTFOUND `: a `mode: none` policy.
    None,
    /// `NOTFOUND `: no policy (none published, or discovery failed with nothing valid cached).
    NoPolicy,
    /// `NOTFOUND ` without lookup: a parent-domain key `.example.com` (RFC 8461 §3.4).
    ParentDomain,
    /// `NOTFOUND ` without lookup: an IP address.
    IpLiteral,
    /// `NOTFOUND ` without lookup: not a domain name, or a request without a usable key.
    Invalid,
    /// `OK dane-only`: a zone with `dane`, every MX host has usable DNSSEC-validated TLSA records.
    DaneOnly,
    /// `OK dane`: a zone with `dane`, some MX hosts have DNSSEC-validated TLSA records (or a TLSA lookup failed).
    Dane,
}

impl AnswerKind {
    /// Every kind, in label order.
    pub const ALL: [Self; 9] = [
        Self::Secure,
        Self::Testing,
        Self::None,
        Self::NoPolicy,
        Self::ParentDomain,
        Self::IpLiteral,
        Self::Invalid,
        Self::DaneOnly,
        Self::Dane,
    ];

    /// The label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Secure => "secure",
            Self::Testing => "testing",
            Self::None => "none",
            Self::NoPolicy => "no_policy",
            Self::ParentDomain => "parent_domain",
            Self::IpLiteral => "ip_literal",
            Self::Invalid => "invalid",
            Self::DaneOnly => "dane_only",
            Self::Dane => "dane",
        }
    }

    /// The position in [`AnswerKind::ALL`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl From<SkipReason> for AnswerKind {
    fn from(reason: SkipReason) -> Self {
        match reason {
            SkipReason::ParentDomain => Self::ParentDomain,
            SkipReason::IpLiteral => Self::IpLiteral,
            SkipReason::Invalid => Self::Invalid,
        }
    }
}

/// Normalizes a socketmap key as the Python daemon's `filter_domain` does, then canonicalizes it:
/// `[host]`, `[host]:port`, `host:port`, surrounding blanks, a trailing dot and upper case all give `host`;
/// U-labels become A-labels.
pub(crate) fn normalize_key(key: &str) -> Key {
    let key = key.trim();
    let host = if let Some(rest) = key.strip_prefix('[') {
        // `[host]` or `[host]:port` (socketmap_table(5) next-hop forms).
        rest.split(']').next().unwrap_or(rest)
    } else if is_ip(key) {
        return Key::Skip(SkipReason::IpLiteral);
    } else if let Some((host, _port)) = key.rsplit_once(':') {
        host
    } else {
        key
    };
    let host = host.trim();
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.starts_with('.') {
        return Key::Skip(SkipReason::ParentDomain);
    }
    if is_ip(host) {
        return Key::Skip(SkipReason::IpLiteral);
    }
    match PolicyDomain::parse(host) {
        Ok(domain) => Key::Domain(domain),
        Err(_) => Key::Skip(SkipReason::Invalid),
    }
}

fn is_ip(text: &str) -> bool {
    let bare = text
        .strip_prefix("ipv6:")
        .or_else(|| text.strip_prefix("IPv6:"))
        .unwrap_or(text);
    bare.parse::<IpAddr>().is_ok()
}

/// The reply for `policy` (the engine's answer; `None` = no policy) under `zone`'s settings, and its kind.
pub(crate) fn reply_for(
    zone: &ZoneConfig,
    domain: &PolicyDomain,
    policy: Option<&ResolvedPolicy>,
) -> (Reply, AnswerKind) {
    let Some(resolved) = policy else {
        return (Reply::NotFound, AnswerKind::NoPolicy);
    };
    let policy = resolved.policy();
    match policy.mode() {
        Mode::Enforce => {}
        Mode::Testing if zone.strict_testing => {}
        Mode::Testing => return (Reply::NotFound, AnswerKind::Testing),
        Mode::None => return (Reply::NotFound, AnswerKind::None),
    }
    // RFC 8461 §3.2: enforce/testing policies have at least one mx (mtasts-core guarantees it); an empty
    // `match=` would leave mail stuck in Postfix's queue, so be defensive anyway.
    if policy.mx().is_empty() {
        return (Reply::NotFound, AnswerKind::NoPolicy);
    }
    let mut out = BytesMut::with_capacity(64 + 32 * policy.mx().len());
    out.put_slice(b"secure match=");
    let mut first = true;
    for (i, mx) in policy.mx().iter().enumerate() {
        if policy.mx()[..i]
            .iter()
            .any(|earlier| earlier.as_str() == mx.as_str())
        {
            continue;
        }
        if !first {
            out.put_u8(b':');
        }
        first = false;
        // RFC 8461 §4.1 `*.example.com` → Postfix's `.example.com` (Postfix's form matches any depth; with
        // `tlsrpt` Postfix ≥ 3.10.5 enforces the one-label rule itself from `mx_host_pattern`).
        match mx.as_str().strip_prefix('*') {
            Some(rest) if mx.is_wildcard() => out.put_slice(rest.as_bytes()),
            _ => out.put_slice(mx.as_str().as_bytes()),
        }
    }
    if zone.require_sni {
        out.put_slice(b" servername=hostname");
    }
    if zone.tlsrpt {
        append_tlsrpt(&mut out, domain, resolved);
    }
    (Reply::Ok(out.freeze()), AnswerKind::Secure)
}

/// The reply for a DANE answer (RFC 7672 via Postfix's own `dane-only` / `dane` levels), and its kind; `None` when
/// DANE does not apply and the MTA-STS answer ([`reply_for`]) is given.
pub(crate) fn dane_reply(answer: DaneAnswer) -> Option<(Reply, AnswerKind)> {
    let kind = match answer {
        DaneAnswer::DaneOnly => AnswerKind::DaneOnly,
        DaneAnswer::Dane => AnswerKind::Dane,
        _ => return None,
    };
    let level = answer.postfix_level()?;
    Some((Reply::Ok(Bytes::from_static(level.as_bytes())), kind))
}

/// Postfix 3.10 TLSRPT attributes (TLSRPT_README, "MTA-STS support via smtp_tls_policy_maps"):
/// `policy_type=sts policy_domain=D policy_ttl=N`, one `mx_host_pattern=P` per `mx:` line, and one
/// `{ policy_string = <line> }` per line of the policy.
fn append_tlsrpt(out: &mut BytesMut, domain: &PolicyDomain, resolved: &ResolvedPolicy) {
    let policy = resolved.policy();
    let mut text = String::with_capacity(128);
    let _ = write!(
        text,
        " policy_type=sts policy_domain={} policy_ttl={}",
        domain.as_str(),
        policy.max_age().as_secs()
    );
    for mx in policy.mx() {
        let _ = write!(text, " mx_host_pattern={}", mx.as_str());
    }
    for line in policy.to_string().lines() {
        // Braces would end Postfix's `{ ... }` grouping early; only extension values can hold them.
        if line.contains(['{', '}']) {
            continue;
        }
        let _ = write!(text, " {{ policy_string = {line} }}");
    }
    out.put_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(key: &str) -> String {
        match normalize_key(key) {
            Key::Domain(d) => d.as_str().to_owned(),
            Key::Skip(reason) => format!("skip:{}", reason.as_str()),
        }
    }

    #[test]
    fn key_forms() {
        let cases = [
            ("example.com", "example.com"),
            ("EXAMPLE.COM", "example.com"),
            ("example.com.", "example.com"),
            ("[mx.example.com]", "mx.example.com"),
            ("[mx.example.com]:587", "mx.example.com"),
            ("[MX.example.com.]:25", "mx.example.com"),
            ("mx.example.com:25", "mx.example.com"),
            (" example.com ", "example.com"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("BÜCHER.example.", "xn--bcher-kva.example"),
            (".example.com", "skip:parent_domain"),
            (".com", "skip:parent_domain"),
            ("[.example.com]", "skip:parent_domain"),
            ("192.0.2.1", "skip:ip_literal"),
            ("[192.0.2.1]", "skip:ip_literal"),
            ("[192.0.2.1]:25", "skip:ip_literal"),
            ("2001:db8::1", "skip:ip_literal"),
            ("[2001:db8::1]", "skip:ip_literal"),
            ("[ipv6:2001:db8::1]", "skip:ip_literal"),
            ("", "skip:invalid_domain"),
            ("exa mple.com", "skip:invalid_domain"),
            ("-bad-.example", "skip:invalid_domain"),
        ];
        for (key, want) in cases {
            assert_eq!(domain(key), want, "key {key:?}");
        }
    }

    const ENFORCE: &str = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\nmx: *.example.net\nmx: mail.example.com\n";
    const TESTING: &str = "version: STSv1\nmode: testing\nmax_age: 86400\nmx: mail.example.com\n";
    const NONE: &str = "version: STSv1\nmode: none\nmax_age: 86400\n";

    /// The reply text and kind for `policy` (None: no policy) in a zone with the given switches.
    fn answer(
        strict_testing: bool,
        require_sni: bool,
        policy: Option<&str>,
    ) -> (String, AnswerKind) {
        let zone = ZoneConfig {
            strict_testing,
            require_sni,
            ..ZoneConfig::default()
        };
        let domain = PolicyDomain::parse("example.com").expect("domain");
        let resolved = policy.map(|text| {
            ResolvedPolicy::new(
                "id1".parse().expect("id"),
                text.parse().expect("policy"),
                1000,
            )
        });
        let (reply, kind) = reply_for(&zone, &domain, resolved.as_ref());
        (reply.to_string(), kind)
    }

    #[test]
    fn replies_and_kinds_by_mode_and_zone() {
        use AnswerKind::*;
        let secure = "OK secure match=mail.example.com:.example.net servername=hostname";
        // (strict_testing, require_sni, policy, reply, kind)
        let cases = [
            (false, true, Some(ENFORCE), secure, Secure),
            (
                false,
                false,
                Some(ENFORCE),
                "OK secure match=mail.example.com:.example.net",
                Secure,
            ),
            (false, true, Some(TESTING), "NOTFOUND ", Testing),
            (
                true,
                true,
                Some(TESTING),
                "OK secure match=mail.example.com servername=hostname",
                Secure,
            ),
            (false, true, Some(NONE), "NOTFOUND ", None),
            (true, true, Some(NONE), "NOTFOUND ", None),
            (false, true, Option::None, "NOTFOUND ", NoPolicy),
        ];
        for (strict, sni, policy, reply, kind) in cases {
            assert_eq!(
                answer(strict, sni, policy),
                (reply.to_owned(), kind),
                "strict_testing={strict} require_sni={sni} {policy:?}"
            );
        }
    }

    #[test]
    fn tlsrpt_attributes_follow_postfix_3_10() {
        let zone = ZoneConfig {
            tlsrpt: true,
            ..ZoneConfig::default()
        };
        let domain = PolicyDomain::parse("example.com").expect("domain");
        let reply = |text: &str| {
            let resolved =
                ResolvedPolicy::new("id1".parse().expect("id"), text.parse().expect("policy"), 0);
            reply_for(&zone, &domain, Some(&resolved)).0.to_string()
        };
        assert_eq!(
            reply(ENFORCE),
            "OK secure match=mail.example.com:.example.net servername=hostname \
             policy_type=sts policy_domain=example.com policy_ttl=86400 \
             mx_host_pattern=mail.example.com mx_host_pattern=*.example.net mx_host_pattern=mail.example.com \
             { policy_string = version: STSv1 } { policy_string = mode: enforce } \
             { policy_string = max_age: 86400 } { policy_string = mx: mail.example.com } \
             { policy_string = mx: *.example.net } { policy_string = mx: mail.example.com }"
        );
        assert_eq!(reply(TESTING), "NOTFOUND ");
    }

    #[test]
    fn dane_answers_are_exactly_the_postfix_level() {
        let reply = |answer| dane_reply(answer).map(|(reply, kind)| (reply.to_string(), kind));
        assert_eq!(
            reply(DaneAnswer::DaneOnly),
            Some(("OK dane-only".to_owned(), AnswerKind::DaneOnly))
        );
        assert_eq!(
            reply(DaneAnswer::Dane),
            Some(("OK dane".to_owned(), AnswerKind::Dane))
        );
        assert_eq!(reply(DaneAnswer::MtaSts), None);
    }

    #[test]
    fn skipped_keys_and_labels() {
        assert_eq!(
            AnswerKind::from(SkipReason::ParentDomain),
            AnswerKind::ParentDomain
        );
        let labels: Vec<_> = AnswerKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            labels,
            [
                "secure",
                "testing",
                "none",
                "no_policy",
                "parent_domain",
                "ip_literal",
                "invalid",
                "dane_only",
                "dane"
            ]
        );
        for (i, kind) in AnswerKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
