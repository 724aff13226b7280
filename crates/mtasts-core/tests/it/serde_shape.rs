//! The JSON shape of `Policy` and friends, and what the Python daemon stored.

use mtasts_core::{MaxAge, Mode, MxPattern, Policy, PolicyDomain, PolicyId};
use serde_json::json;

use crate::fixture;

fn sample() -> Policy {
    Policy::parse(&fixture("rfc8461_example.txt")).unwrap()
}

#[test]
fn serializes_in_the_python_daemon_shape() {
    let value = serde_json::to_value(sample()).unwrap();
    assert_eq!(
        value,
        json!({
            "version": "STSv1",
            "mode": "enforce",
            "max_age": 604800,
            "mx": ["mail.example.com", "*.example.net", "backupmx.example.com"],
        })
    );
    assert_eq!(
        serde_json::to_string(&sample()).unwrap(),
        r#"{"version":"STSv1","mode":"enforce","max_age":604800,"mx":["mail.example.com","*.example.net","backupmx.example.com"]}"#
    );
}

#[test]
fn extensions_are_extra_string_members() {
    let policy = Policy::parse(b"version: STSv1\nmode: none\nmax_age: 60\nfoo: bar baz\n").unwrap();
    assert_eq!(
        serde_json::to_value(&policy).unwrap(),
        json!({"version": "STSv1", "mode": "none", "max_age": 60, "mx": [], "foo": "bar baz"})
    );
    let back: Policy = serde_json::from_value(serde_json::to_value(&policy).unwrap()).unwrap();
    assert_eq!(back, policy);
}

#[test]
fn reads_what_the_python_daemon_stored() {
    let policy: Policy = serde_json::from_slice(&fixture("python_enforce.json")).unwrap();
    assert_eq!(policy, sample());

    let none: Policy = serde_json::from_slice(&fixture("python_none.json")).unwrap();
    assert_eq!(none.mode(), Mode::None);
    assert!(none.mx().is_empty());
    assert_eq!(none.max_age().as_secs(), 0);
}

/// Python keeps every line as a key (`""` for a blank line, the whole line for one without a
/// colon); those that are not valid extension fields are dropped, valid ones kept.
#[test]
fn python_quirks_are_tolerated() {
    let policy: Policy = serde_json::from_slice(&fixture("python_quirks.json")).unwrap();
    assert_eq!(policy.mode(), Mode::Testing);
    assert_eq!(policy.max_age().as_secs(), 86_400);
    assert_eq!(
        policy.mx(),
        ["mx1.example.com".parse::<MxPattern>().unwrap()]
    );
    assert_eq!(
        policy.extensions(),
        [(
            "contact".to_owned(),
            "Jürgen <postmaster@example.com>".to_owned()
        )]
    );
}

#[test]
fn max_age_may_be_a_number_or_a_string() {
    for max_age in [json!(86400), json!("86400"), json!("0000086400")] {
        let value =
            json!({"version": "STSv1", "mode": "enforce", "max_age": max_age, "mx": ["a.example"]});
        let policy: Policy = serde_json::from_value(value).unwrap();
        assert_eq!(policy.max_age(), MaxAge::new(86_400).unwrap());
    }
}

#[test]
fn deserialize_validates() {
    let base =
        json!({"version": "STSv1", "mode": "enforce", "max_age": 86400, "mx": ["a.example"]});
    let with = |key: &str, value: serde_json::Value| {
        let mut v = base.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let cases = [
        ("version STSv2", with("version", json!("STSv2"))),
        ("version missing", without("version")),
        ("mode unknown", with("mode", json!("report"))),
        ("mode missing", without("mode")),
        ("max_age too big", with("max_age", json!(31_557_601))),
        ("max_age negative", with("max_age", json!(-1))),
        ("max_age huge", with("max_age", json!(u64::MAX))),
        ("max_age fractional", with("max_age", json!(1.5))),
        ("max_age words", with("max_age", json!("a day"))),
        ("max_age missing", without("max_age")),
        ("mx missing in enforce", without("mx")),
        ("mx empty in enforce", with("mx", json!([]))),
        ("mx invalid", with("mx", json!(["mx.*.example"]))),
        ("mx not a list", with("mx", json!("a.example"))),
        ("not an object", json!(["version", "STSv1"])),
    ];
    for (name, value) in cases {
        let err = serde_json::from_value::<Policy>(value).expect_err(name);
        assert!(!err.to_string().is_empty(), "{name}");
    }
    let err = serde_json::from_str::<Policy>(
        r#"{"version":"STSv1","mode":"enforce","mode":"none","max_age":1,"mx":["a.example"]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("duplicate field `mode`"), "{err}");
}

#[test]
fn small_types_serialize_as_strings_and_numbers() {
    let id: PolicyId = "20160831085700Z".parse().unwrap();
    assert_eq!(serde_json::to_string(&id).unwrap(), r#""20160831085700Z""#);
    assert_eq!(
        serde_json::from_str::<PolicyId>(r#""20160831085700Z""#).unwrap(),
        id
    );
    assert!(serde_json::from_str::<PolicyId>(r#""bad id""#).is_err());

    assert_eq!(
        serde_json::to_string(&Mode::Testing).unwrap(),
        r#""testing""#
    );
    assert_eq!(
        serde_json::from_str::<Mode>(r#""none""#).unwrap(),
        Mode::None
    );
    assert!(serde_json::from_str::<Mode>(r#""None""#).is_err());

    assert_eq!(serde_json::to_string(&MaxAge::MAX).unwrap(), "31557600");

    let mx: MxPattern = "*.example.com".parse().unwrap();
    assert_eq!(serde_json::to_string(&mx).unwrap(), r#""*.example.com""#);
    assert_eq!(
        serde_json::from_str::<MxPattern>(r#""*.Example.com""#).unwrap(),
        mx
    );
    assert!(serde_json::from_str::<MxPattern>(r#""*""#).is_err());

    let domain = PolicyDomain::parse("example.com").unwrap();
    assert_eq!(serde_json::to_string(&domain).unwrap(), r#""example.com""#);
    assert_eq!(
        serde_json::from_str::<PolicyDomain>(r#""Example.COM.""#).unwrap(),
        domain
    );
    assert!(serde_json::from_str::<PolicyDomain>(r#"".example.com""#).is_err());
}
