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

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use mtasts_core::{Mode, PolicyDomain};
use mtasts_engine::{DaneAnswer, ResolvedPolicy};
use socketmap_proto::Reply;
use tracing::{error, warn};

use crate::config::ZoneConfig;
use crate::ratelimit::LogLimiter;

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
    /// `NOTFOUND `: an enforced policy whose reply does not fit the socketmap limit of 100 000 bytes even
    /// without TLSRPT attributes (a policy only a foreign store row can hold); logged as an error.
    TooLong,
}

impl AnswerKind {
    /// Every kind, in label order.
    pub const ALL: [Self; 10] = [
        Self::Secure,
        Self::Testing,
        Self::None,
        Self::NoPolicy,
        Self::ParentDomain,
        Self::IpLiteral,
        Self::Invalid,
        Self::DaneOnly,
        Self::Dane,
        Self::TooLong,
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
            Self::TooLong => "too_long",
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
///
/// A policy's reply is rendered once per zone flavour and kept with the policy ([`ResolvedPolicy::derived`]):
/// a memory hit clones the stored bytes. A reply that would not fit the socketmap limit is shortened, or
/// answered `NOTFOUND ` ([`Fit`]).
pub(crate) fn reply_for(
    zone: &ZoneConfig,
    domain: &PolicyDomain,
    policy: Option<&ResolvedPolicy>,
) -> (Reply, AnswerKind) {
    let Some(resolved) = policy else {
        return (Reply::NotFound, AnswerKind::NoPolicy);
    };
    match resolved.policy().mode() {
        Mode::Enforce => {}
        Mode::Testing if zone.strict_testing => {}
        Mode::Testing => return (Reply::NotFound, AnswerKind::Testing),
        Mode::None => return (Reply::NotFound, AnswerKind::None),
    }
    let flavour = Flavour::of(zone);
    let rendered = resolved
        .derived(|| Rendered::new(domain))
        .filter(|rendered| rendered.domain == *domain);
    let unkept;
    let rendering = match rendered {
        Some(rendered) => rendered.get(flavour, resolved),
        // Another domain's policy (the engine keeps one per domain, so not expected): rendered, not kept.
        None => {
            unkept = Rendering::new(flavour, domain, resolved, MAX_REPLY_LEN);
            &unkept
        }
    };
    if rendering.fit == Fit::TooLong
        && let Some(suppressed) = TOO_LONG_ERRORS.check()
    {
        error!(
            domain = domain.as_str(),
            len = rendering.len,
            max = MAX_REPLY_LEN,
            suppressed,
            "the policy's reply does not fit the socketmap limit even without TLSRPT attributes; \
             answering NOTFOUND (the policy is not enforced)"
        );
    }
    (rendering.reply.clone(), rendering.kind)
}

/// The longest reply Postfix reads (socketmap_table(5): 100 000 bytes of netstring payload, status word and
/// space included).
const MAX_REPLY_LEN: usize = socketmap_proto::DEFAULT_MAX_REPLY_LEN;

/// Errors for replies too long to send, at most one a second.
static TOO_LONG_ERRORS: LogLimiter = LogLimiter::new(Duration::from_secs(1));

/// Replies shortened to fit, at most one warning a second (each policy and flavour is rendered once).
static SHORTENED_WARNINGS: LogLimiter = LogLimiter::new(Duration::from_secs(1));

/// The zone settings that change the bytes of an `OK secure` reply (`strict_testing` and `dane` only decide
/// whether it is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flavour {
    require_sni: bool,
    tlsrpt: bool,
}

impl Flavour {
    const COUNT: usize = 4;

    fn of(zone: &ZoneConfig) -> Self {
        Self {
            require_sni: zone.require_sni,
            tlsrpt: zone.tlsrpt,
        }
    }

    fn index(self) -> usize {
        usize::from(self.require_sni) | (usize::from(self.tlsrpt) << 1)
    }
}

/// How much of a reply fits the socketmap limit. Tried in this order; the first that fits is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    /// The whole reply.
    Whole,
    /// Without the `{ policy_string = … }` groups (TLSRPT reports then lack the policy text).
    NoPolicyStrings,
    /// The `match=` list (and `servername=`) with the `mx_host_pattern` attributes only: Postfix ≥ 3.10.5
    /// enforces RFC 8461 §4.1 wildcards from them.
    MxPatternsOnly,
    /// No TLSRPT attribute at all.
    NoTlsrpt,
    /// Even the bare answer is too long (only a foreign store row can hold such a policy: fetch caps bodies at
    /// 64 KiB): `NOTFOUND `.
    TooLong,
}

impl Fit {
    /// A stable label for logs.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::NoPolicyStrings => "no_policy_strings",
            Self::MxPatternsOnly => "mx_patterns_only",
            Self::NoTlsrpt => "no_tlsrpt",
            Self::TooLong => "too_long",
        }
    }
}

/// A policy's rendered replies, one per [`Flavour`], each made on first use; kept in
/// [`ResolvedPolicy::derived`].
#[derive(Debug)]
struct Rendered {
    /// The domain the policy was looked up for (`policy_domain=`).
    domain: PolicyDomain,
    /// Boxed: a server usually answers one flavour, and an empty slot then costs 16 bytes instead of a
    /// `Rendering`'s 64 (kept with every cached policy: 10 000 of them by default).
    flavours: [OnceLock<Box<Rendering>>; Flavour::COUNT],
}

impl Rendered {
    fn new(domain: &PolicyDomain) -> Self {
        Self {
            domain: domain.clone(),
            flavours: Default::default(),
        }
    }

    fn get(&self, flavour: Flavour, resolved: &ResolvedPolicy) -> &Rendering {
        self.flavours[flavour.index()].get_or_init(|| {
            Box::new(Rendering::new(
                flavour,
                &self.domain,
                resolved,
                MAX_REPLY_LEN,
            ))
        })
    }
}

/// One rendered reply.
#[derive(Debug)]
struct Rendering {
    reply: Reply,
    kind: AnswerKind,
    fit: Fit,
    /// The length of the whole reply (status word and space included), as it would have been.
    len: usize,
}

impl Rendering {
    /// Renders the `OK secure` reply of an enforced policy, shortened to fit `max` ([`Fit`]).
    fn new(flavour: Flavour, domain: &PolicyDomain, resolved: &ResolvedPolicy, max: usize) -> Self {
        let parts = Parts::new(flavour, domain, resolved);
        let (reply, fit) = parts.fit(max);
        let len = parts.whole_len();
        let kind = match (&reply, fit) {
            (_, Fit::TooLong) => AnswerKind::TooLong,
            (Reply::NotFound, _) => AnswerKind::NoPolicy,
            _ => AnswerKind::Secure,
        };
        if !matches!(fit, Fit::Whole | Fit::TooLong)
            && let Some(suppressed) = SHORTENED_WARNINGS.check()
        {
            warn!(
                domain = domain.as_str(),
                len,
                max,
                kept = fit.as_str(),
                suppressed,
                "the policy's reply is too long for socketmap; TLSRPT attributes left out"
            );
        }
        Self {
            reply,
            kind,
            fit,
            len,
        }
    }
}

/// The pieces of an `OK secure` reply, in the order they are sent.
#[derive(Debug, Default)]
struct Parts {
    /// `secure match=…` and ` servername=hostname`; empty when the policy has no `mx`.
    answer: Vec<u8>,
    /// ` policy_type=sts policy_domain=… policy_ttl=…`.
    policy: Vec<u8>,
    /// ` mx_host_pattern=…`, one per `mx` line.
    mx_patterns: Vec<u8>,
    /// ` { policy_string = … }`, one per policy line.
    policy_strings: Vec<u8>,
}

/// `OK ` before the reply data.
const OK_PREFIX_LEN: usize = "OK ".len();

impl Parts {
    fn new(flavour: Flavour, domain: &PolicyDomain, resolved: &ResolvedPolicy) -> Self {
        let policy = resolved.policy();
        // RFC 8461 §3.2: enforce/testing policies have at least one mx (mtasts-core guarantees it); an empty
        // `match=` would leave mail stuck in Postfix's queue, so be defensive anyway.
        if policy.mx().is_empty() {
            return Self::default();
        }
        let mut answer = Vec::with_capacity(64 + 32 * policy.mx().len());
        answer.extend_from_slice(b"secure match=");
        // Duplicates removed in O(n): a policy may have thousands of `mx` lines.
        let mut seen = HashSet::with_capacity(policy.mx().len());
        for mx in policy.mx() {
            if !seen.insert(mx.as_str()) {
                continue;
            }
            if seen.len() > 1 {
                answer.push(b':');
            }
            // RFC 8461 §4.1 `*.example.com` → Postfix's `.example.com` (Postfix's form matches any depth; with
            // `tlsrpt` Postfix ≥ 3.10.5 enforces the one-label rule itself from `mx_host_pattern`).
            match mx.as_str().strip_prefix('*') {
                Some(rest) if mx.is_wildcard() => answer.extend_from_slice(rest.as_bytes()),
                _ => answer.extend_from_slice(mx.as_str().as_bytes()),
            }
        }
        if flavour.require_sni {
            answer.extend_from_slice(b" servername=hostname");
        }
        let mut parts = Self {
            answer,
            ..Self::default()
        };
        if flavour.tlsrpt {
            parts.tlsrpt(domain, resolved);
        }
        parts
    }

    /// Postfix 3.10 TLSRPT attributes (TLSRPT_README, "MTA-STS support via smtp_tls_policy_maps"):
    /// `policy_type=sts policy_domain=D policy_ttl=N`, one `mx_host_pattern=P` per `mx:` line, and one
    /// `{ policy_string = <line> }` per line of the policy.
    fn tlsrpt(&mut self, domain: &PolicyDomain, resolved: &ResolvedPolicy) {
        let policy = resolved.policy();
        let mut text = String::with_capacity(128);
        let _ = write!(
            text,
            " policy_type=sts policy_domain={} policy_ttl={}",
            domain.as_str(),
            policy.max_age().as_secs()
        );
        self.policy = text.into_bytes();
        let mut text = String::with_capacity(24 * policy.mx().len());
        for mx in policy.mx() {
            let _ = write!(text, " mx_host_pattern={}", mx.as_str());
        }
        self.mx_patterns = text.into_bytes();
        let mut text = String::with_capacity(128 + 32 * policy.mx().len());
        for line in policy.to_string().lines() {
            // Braces would end Postfix's `{ ... }` grouping early; only extension values can hold them.
            if line.contains(['{', '}']) {
                continue;
            }
            let _ = write!(text, " {{ policy_string = {line} }}");
        }
        self.policy_strings = text.into_bytes();
    }

    /// The length of the whole reply, `OK ` included.
    fn whole_len(&self) -> usize {
        OK_PREFIX_LEN
            + self.answer.len()
            + self.policy.len()
            + self.mx_patterns.len()
            + self.policy_strings.len()
    }

    /// The reply with as much as fits in `max` bytes (`OK ` included), and how much that is.
    fn fit(&self, max: usize) -> (Reply, Fit) {
        if self.answer.is_empty() {
            return (Reply::NotFound, Fit::Whole);
        }
        let all: [&[u8]; 4] = [
            &self.answer,
            &self.policy,
            &self.mx_patterns,
            &self.policy_strings,
        ];
        let candidates: [(Fit, [bool; 4]); 4] = [
            (Fit::Whole, [true, true, true, true]),
            (Fit::NoPolicyStrings, [true, true, true, false]),
            (Fit::MxPatternsOnly, [true, false, true, false]),
            (Fit::NoTlsrpt, [true, false, false, false]),
        ];
        for (fit, keep) in candidates {
            let len: usize = all
                .iter()
                .zip(keep)
                .filter(|(_, kept)| *kept)
                .map(|(part, _)| part.len())
                .sum();
            if OK_PREFIX_LEN + len <= max {
                let mut out = BytesMut::with_capacity(len);
                for (part, kept) in all.iter().zip(keep) {
                    if kept {
                        out.put_slice(part);
                    }
                }
                return (Reply::Ok(out.freeze()), fit);
            }
        }
        (Reply::NotFound, Fit::TooLong)
    }
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

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

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

    fn resolved(text: &str) -> ResolvedPolicy {
        ResolvedPolicy::new("id1".parse().expect("id"), text.parse().expect("policy"), 0)
    }

    const TLSRPT_SNI: Flavour = Flavour {
        require_sni: true,
        tlsrpt: true,
    };

    /// Each step of [`Fit`] in turn, at the exact length of the reply it keeps and one byte below it.
    #[test]
    fn a_reply_too_long_loses_policy_strings_then_attributes_then_is_notfound() {
        let domain = PolicyDomain::parse("example.com").expect("domain");
        let parts = Parts::new(TLSRPT_SNI, &domain, &resolved(ENFORCE));
        let answer = "OK secure match=mail.example.com:.example.net servername=hostname";
        let policy = " policy_type=sts policy_domain=example.com policy_ttl=86400";
        let patterns = " mx_host_pattern=mail.example.com mx_host_pattern=*.example.net \
                        mx_host_pattern=mail.example.com";
        let whole = format!(
            "{answer}{policy}{patterns} \
             {{ policy_string = version: STSv1 }} {{ policy_string = mode: enforce }} \
             {{ policy_string = max_age: 86400 }} {{ policy_string = mx: mail.example.com }} \
             {{ policy_string = mx: *.example.net }} {{ policy_string = mx: mail.example.com }}"
        );
        let steps = [
            (whole.clone(), Fit::Whole),
            (format!("{answer}{policy}{patterns}"), Fit::NoPolicyStrings),
            (format!("{answer}{patterns}"), Fit::MxPatternsOnly),
            (answer.to_owned(), Fit::NoTlsrpt),
            ("NOTFOUND ".to_owned(), Fit::TooLong),
        ];
        assert_eq!(parts.whole_len(), whole.len());
        for pair in steps.windows(2) {
            let [(text, fit), (shorter, shorter_fit)] = pair else {
                unreachable!("windows of 2");
            };
            let (reply, got) = parts.fit(text.len());
            assert_eq!((reply.to_string(), got), (text.clone(), *fit));
            assert!(reply.encoded_len() <= text.len());
            let (reply, got) = parts.fit(text.len() - 1);
            assert_eq!(
                (reply.to_string(), got),
                (shorter.clone(), *shorter_fit),
                "one byte below {fit:?}"
            );
        }
    }

    /// The socketmap limit is the netstring payload: `OK `, then the data.
    #[test]
    fn the_limit_counts_the_status_word() {
        let domain = PolicyDomain::parse("example.com").expect("domain");
        let plain = Flavour {
            require_sni: false,
            tlsrpt: false,
        };
        let parts = Parts::new(plain, &domain, &resolved(TESTING));
        let (reply, fit) = parts.fit("OK secure match=mail.example.com".len());
        assert_eq!((reply.encoded_len(), fit), (32, Fit::Whole));
        assert_eq!(parts.fit(31), (Reply::NotFound, Fit::TooLong));
    }

    #[test]
    fn a_reply_that_never_fits_is_notfound_and_counted_as_too_long() {
        let domain = PolicyDomain::parse("example.com").expect("domain");
        let rendering = Rendering::new(TLSRPT_SNI, &domain, &resolved(ENFORCE), 20);
        assert_eq!(
            (rendering.reply, rendering.kind, rendering.fit),
            (Reply::NotFound, AnswerKind::TooLong, Fit::TooLong)
        );
        assert!(rendering.len > 20);
    }

    /// A hit sends the bytes rendered by the first answer in the same flavour: the same allocation.
    #[test]
    fn replies_are_rendered_once_per_flavour_and_shared() {
        let domain = PolicyDomain::parse("example.com").expect("domain");
        let policy = resolved(ENFORCE);
        let zones = [(false, false), (true, false), (false, true), (true, true)].map(
            |(require_sni, tlsrpt)| ZoneConfig {
                require_sni,
                tlsrpt,
                ..ZoneConfig::default()
            },
        );
        let first: Vec<_> = zones
            .iter()
            .map(|zone| reply_for(zone, &domain, Some(&policy)).0)
            .collect();
        for (zone, first) in zones.iter().zip(&first) {
            let again = reply_for(zone, &domain, Some(&policy)).0;
            assert_eq!(again, *first);
            assert_eq!(again.payload().as_ptr(), first.payload().as_ptr());
        }
        let texts: HashSet<_> = first.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        // strict_testing shares the bytes of its flavour.
        let strict = ZoneConfig {
            strict_testing: true,
            ..zones[0].clone()
        };
        let strict = reply_for(&strict, &domain, Some(&policy)).0;
        assert_eq!(strict.payload().as_ptr(), first[0].payload().as_ptr());
    }

    /// The same policy value asked for another domain names that domain (the stored replies are not used).
    #[test]
    fn a_policy_shared_by_two_domains_names_each() {
        let zone = ZoneConfig {
            tlsrpt: true,
            ..ZoneConfig::default()
        };
        let policy = resolved(TESTING.replace("testing", "enforce").as_str());
        for name in ["a.example", "b.example", "a.example"] {
            let domain = PolicyDomain::parse(name).expect("domain");
            let reply = reply_for(&zone, &domain, Some(&policy)).0.to_string();
            assert!(
                reply.contains(&format!(" policy_domain={name} ")),
                "{reply}"
            );
        }
    }

    /// Thousands of `mx` lines, each twice: the `match=` list keeps the first of each, in order.
    #[test]
    fn duplicates_are_removed_from_long_mx_lists_in_order() {
        let mut text = String::from("version: STSv1\nmode: enforce\nmax_age: 86400\n");
        for round in 0..2 {
            for i in 0..3000 {
                let _ = writeln!(
                    text,
                    "mx: m{}.example",
                    if round == 0 { i } else { 2999 - i }
                );
            }
        }
        let zone = ZoneConfig {
            require_sni: false,
            ..ZoneConfig::default()
        };
        let domain = PolicyDomain::parse("example.com").expect("domain");
        let reply = reply_for(&zone, &domain, Some(&resolved(&text)))
            .0
            .to_string();
        let want: Vec<_> = (0..3000).map(|i| format!("m{i}.example")).collect();
        assert_eq!(reply, format!("OK secure match={}", want.join(":")));
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
                "dane",
                "too_long"
            ]
        );
        for (i, kind) in AnswerKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
