//! Property tests: printing then parsing gives the value back, and no input makes a parser
//! panic.

use mtasts_core::{
    MaxAge, Mode, MxPattern, Policy, PolicyDomain, PolicyId, TxtRecord, select_record,
};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,12}[a-zA-Z0-9])?"
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..5).prop_map(|labels| labels.join("."))
}

fn mx_pattern() -> impl Strategy<Value = MxPattern> {
    (any::<bool>(), domain(), any::<bool>()).prop_map(|(wildcard, domain, dot)| {
        let text = format!(
            "{}{domain}{}",
            if wildcard { "*." } else { "" },
            if dot { "." } else { "" }
        );
        text.parse().expect("generated pattern is valid")
    })
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Enforce), Just(Mode::Testing), Just(Mode::None)]
}

fn max_age() -> impl Strategy<Value = MaxAge> {
    (0..=MaxAge::MAX.as_secs()).prop_map(|secs| MaxAge::new(secs).expect("in range"))
}

fn ext_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31}".prop_filter("standard key", |k| {
        !matches!(k.as_str(), "version" | "mode" | "max_age" | "mx")
    })
}

fn ext_value() -> impl Strategy<Value = String> {
    "[!-~äß✓😀]([ !-~äß✓😀]{0,20}[!-~äß✓😀])?"
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        mode(),
        max_age(),
        prop::collection::vec(mx_pattern(), 1..6),
        prop::collection::vec((ext_name(), ext_value()), 0..4),
        any::<bool>(),
    )
        .prop_map(|(mode, max_age, mx, extensions, drop_mx)| {
            let mx = if drop_mx && mode == Mode::None {
                Vec::new()
            } else {
                mx
            };
            let mut policy = Policy::new(mode, max_age, mx).expect("mx present unless none");
            for (name, value) in extensions {
                policy = policy.with_extension(name, value).expect("valid extension");
            }
            policy
        })
}

/// Text that looks like a policy file, to drive the parser beyond its first line.
fn policy_like_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("version".to_owned()),
            Just("mode".to_owned()),
            Just("max_age".to_owned()),
            Just("mx".to_owned()),
            Just("STSv1".to_owned()),
            Just("enforce".to_owned()),
            Just("none".to_owned()),
            Just("*.".to_owned()),
            "[a-z0-9.:;* \t\r\n_-]{1,8}",
            "\\PC{1,3}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn policy_display_parse_round_trip(policy in policy()) {
        let text = policy.to_string();
        prop_assert_eq!(Policy::parse(text.as_bytes()), Ok(policy.clone()));
        let crlf = text.replace('\n', "\r\n");
        prop_assert_eq!(crlf.parse::<Policy>(), Ok(policy));
    }

    #[test]
    fn policy_json_round_trip(policy in policy()) {
        let json = serde_json::to_string(&policy).expect("serializes");
        prop_assert_eq!(serde_json::from_str::<Policy>(&json).expect("deserializes"), policy);
    }

    #[test]
    fn mx_pattern_round_trip_and_matching(pattern in mx_pattern(), host_label in label()) {
        prop_assert_eq!(pattern.to_string().parse::<MxPattern>(), Ok(pattern.clone()));
        let text = pattern.as_str();
        if let Some(parent) = text.strip_prefix("*.") {
            let host = format!("{host_label}.{parent}");
            prop_assert!(pattern.matches(&host));
            prop_assert!(pattern.matches(&host.to_uppercase()));
            let dotted = format!("{host}.");
            prop_assert!(pattern.matches(&dotted));
            prop_assert!(!pattern.matches(parent));
            let deeper = format!("x.{host}");
            prop_assert!(!pattern.matches(&deeper));
        } else {
            prop_assert!(pattern.matches(text));
            prop_assert!(pattern.matches(&text.to_uppercase()));
            let sub = format!("{host_label}.{text}");
            prop_assert!(!pattern.matches(&sub));
        }
    }

    #[test]
    fn txt_record_round_trip(
        id in "[a-zA-Z0-9]{1,32}",
        extensions in prop::collection::vec(
            ("[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31}".prop_filter("id or v", |n| n != "id" && n != "v"), "[!-:<>-~]{1,16}"),
            0..4,
        ),
        before in "[ \t]{0,2}",
        after in "[ \t]{0,2}",
        trailing in any::<bool>(),
    ) {
        let sep = format!("{before};{after}");
        let mut text = format!("v=STSv1{sep}id={id}");
        for (name, value) in &extensions {
            text.push_str(&format!("{sep}{name}={value}"));
        }
        if trailing {
            text.push_str(&sep);
        }
        let record: TxtRecord = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(record.id().as_str(), id.as_str());
        prop_assert_eq!(record.extensions(), extensions.as_slice());
        prop_assert_eq!(record.to_string().parse::<TxtRecord>(), Ok(record.clone()));
        prop_assert_eq!(select_record([text.as_str(), "v=spf1 -all"]), Ok(record));
    }

    #[test]
    fn policy_id_and_max_age_round_trip(id in "[a-zA-Z0-9]{1,32}", age in max_age()) {
        let parsed: PolicyId = id.parse().expect("valid id");
        prop_assert_eq!(parsed.to_string(), id);
        prop_assert_eq!(age.to_string().parse::<MaxAge>(), Ok(age));
    }

    #[test]
    fn policy_domain_is_idempotent(name in domain()) {
        // `domain()` can draw a dotted quad such as "0.0.0.0": an IP literal, which is never a policy domain.
        prop_assume!(name.parse::<std::net::IpAddr>().is_err());
        let parsed = PolicyDomain::parse(&name).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        prop_assert_eq!(parsed.as_str(), name.to_ascii_lowercase());
        prop_assert_eq!(PolicyDomain::parse(parsed.as_str()), Ok(parsed));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Policy::parse(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = text.parse::<TxtRecord>();
        let _ = text.parse::<MxPattern>();
        let _ = text.parse::<MaxAge>();
        let _ = text.parse::<PolicyId>();
        let _ = PolicyDomain::parse(&text);
        let _ = select_record(text.split('|'));
    }

    #[test]
    fn arbitrary_text_never_panics_and_accepted_text_is_stable(text in policy_like_text()) {
        for candidate in [text.clone(), format!("version: STSv1\nmode: none\nmax_age: 1\n{text}")] {
            if let Ok(policy) = candidate.parse::<Policy>() {
                prop_assert_eq!(policy.to_string().parse::<Policy>(), Ok(policy));
            }
            let record = format!("v=STSv1; id=a{candidate}");
            if let Ok(parsed) = record.parse::<TxtRecord>() {
                prop_assert_eq!(parsed.to_string().parse::<TxtRecord>(), Ok(parsed));
            }
            let _ = PolicyDomain::parse(&candidate);
            if let Ok(pattern) = candidate.parse::<MxPattern>() {
                prop_assert_eq!(pattern.to_string().parse::<MxPattern>(), Ok(pattern));
            }
        }
    }
}
