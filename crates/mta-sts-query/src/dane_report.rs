//! Text and JSON renderings of a [`DaneView`] (`--dane`): what DNS said, host by host, and the answer the
//! daemon gives in a zone with `dane: true`.

use std::io::{self, Write};

use mtasts_fetch::dane::{DaneView, HostView, TlsaStatus};
use serde_json::{Value, json};

/// The daemon's reply for the view's answer, or `None` when it gives the MTA-STS answer.
fn reply(view: &DaneView) -> Option<String> {
    view.verdict()
        .answer
        .postfix_level()
        .map(|level| format!("OK {level}"))
}

/// The text report, after the MTA-STS one.
pub(crate) fn text(out: &mut impl Write, view: &DaneView) -> io::Result<()> {
    writeln!(out, "dane mx:      {}", view.mx())?;
    for host in view.hosts() {
        writeln!(
            out,
            "dane host:    {} (preference {})",
            host.name(),
            host.preference()
        )?;
        writeln!(out, "  addresses:  {}", host.addresses())?;
        writeln!(out, "  tlsa:       {}", host.tlsa())?;
        for record in host.tlsa().records() {
            match record.usability() {
                Ok(()) => writeln!(out, "              {record} (usable)")?,
                Err(why) => writeln!(out, "              {record} (unusable: {why})")?,
            }
        }
    }
    if view.truncated() {
        writeln!(
            out,
            "dane hosts:   more than {} MX hosts; the others were not looked up",
            view.hosts().len()
        )?;
    }
    let verdict = view.verdict();
    match reply(view) {
        Some(reply) => writeln!(out, "dane answer:  {reply} ({})", verdict.reason)?,
        None => writeln!(out, "dane answer:  the MTA-STS answer ({})", verdict.reason)?,
    }
    Ok(())
}

fn host_json(host: &HostView) -> Value {
    let name = match host.tlsa() {
        TlsaStatus::Secure { name, .. } => Some(name.as_str()),
        _ => None,
    };
    let records: Vec<Value> = host
        .tlsa()
        .records()
        .iter()
        .map(|record| {
            json!({
                "usage": record.usage(),
                "selector": record.selector(),
                "matching_type": record.matching_type(),
                "record": record.to_string(),
                "usable": record.is_usable(),
                "unusable": record.usability().err().map(|why| why.to_string()),
            })
        })
        .collect();
    json!({
        "name": host.name(),
        "preference": host.preference(),
        "addresses": { "status": host.addresses().kind(), "message": host.addresses().to_string() },
        "tlsa": {
            "status": host.tlsa().kind(), "message": host.tlsa().to_string(), "name": name,
            "records": records,
        },
    })
}

/// The `dane` member of the JSON report.
pub(crate) fn json(view: &DaneView) -> Value {
    let verdict = view.verdict();
    json!({
        "mx": { "status": view.mx().kind(), "message": view.mx().to_string() },
        "hosts": view.hosts().iter().map(host_json).collect::<Vec<_>>(),
        "truncated": view.truncated(),
        "min_ttl": view.min_ttl().map(|ttl| ttl.as_secs()),
        "answer": verdict.answer.kind(),
        "reply": reply(view),
        "reason": { "kind": verdict.reason.kind(), "message": verdict.reason.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtasts_fetch::dane::{Addresses, DaneAnswer, MxStatus, TlsaRecord};

    fn view(records: Vec<TlsaRecord>) -> DaneView {
        DaneView::new(
            "example.com",
            MxStatus::Secure,
            vec![HostView::new(
                "mx.example.com",
                10,
                Addresses::Secure { expanded: None },
                TlsaStatus::Secure {
                    name: "_25._tcp.mx.example.com".into(),
                    records,
                },
            )],
            Some(std::time::Duration::from_secs(300)),
        )
    }

    #[test]
    fn text_and_json_show_each_record_and_the_reply() {
        let view = view(vec![
            TlsaRecord::new(3, 1, 1, [0xab; 32]),
            TlsaRecord::new(1, 1, 1, [0xcd; 32]),
        ]);
        assert_eq!(view.verdict().answer, DaneAnswer::DaneOnly);
        let mut out = Vec::new();
        text(&mut out, &view).expect("write");
        let want = format!(
            "dane mx:      validated (DNSSEC)\n\
             dane host:    mx.example.com (preference 10)\n  \
             addresses:  validated\n  \
             tlsa:       validated at _25._tcp.mx.example.com\n              \
             3 1 1 {} (usable)\n              \
             1 1 1 {} (unusable: certificate usage 1 (PKIX) is not used by SMTP)\n\
             dane answer:  OK dane-only (every MX host has usable TLSA records)\n",
            "ab".repeat(32),
            "cd".repeat(32)
        );
        assert_eq!(String::from_utf8(out).expect("utf8"), want);
        let value = json(&view);
        assert_eq!(value["answer"], "dane_only");
        assert_eq!(value["reply"], "OK dane-only");
        assert_eq!(value["mx"]["status"], "secure");
        assert_eq!(value["min_ttl"], 300);
        let tlsa = &value["hosts"][0]["tlsa"];
        assert_eq!(tlsa["name"], "_25._tcp.mx.example.com");
        assert_eq!(tlsa["records"][0]["usable"], true);
        assert_eq!(tlsa["records"][1]["usable"], false);
        assert_eq!(tlsa["records"][1]["usage"], 1);
    }

    #[test]
    fn the_mta_sts_fallback_has_no_reply() {
        let view = view(vec![]);
        let value = json(&view);
        assert_eq!(value["answer"], "dane");
        let insecure = DaneView::new("example.com", MxStatus::Insecure, vec![], None);
        let value = json(&insecure);
        assert_eq!(value["answer"], "mta_sts");
        assert_eq!(value["reply"], Value::Null);
        assert_eq!(value["reason"]["kind"], "mx_insecure");
        let mut out = Vec::new();
        text(&mut out, &insecure).expect("write");
        let out = String::from_utf8(out).expect("utf8");
        assert!(
            out.contains("dane answer:  the MTA-STS answer (the MX RRset is not DNSSEC-validated)"),
            "{out}"
        );
    }
}
