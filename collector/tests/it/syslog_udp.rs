//! An operator points the syslog sink at a UDP receiver: every alert and violation the
//! detector and the policy raise on real captures arrives as a valid RFC 5424 datagram
//! (PRI, event timestamp, MSGID, structured data), optionally with a CEF payload, and an
//! oversized message arrives shortened to 2048 bytes with its header and SD intact.

use std::net::UdpSocket;
use std::time::Duration;
use tidegate_threat::Finding;
use tidegate_threat::policy::ViolationState;

use crate::support::syslog::*;
use tidegate_collector::sinks::syslog::{Facility, Protocol, SyslogConfig, SyslogSink};

fn receiver() -> (UdpSocket, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    (sock, addr)
}

fn recv(sock: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let n = sock.recv(&mut buf).expect("a datagram within 5 s");
    buf.truncate(n);
    buf
}

#[test]
fn alerts_and_violations_arrive_as_rfc5424_datagrams() {
    let alerts = synflood_alerts();
    let violations = isolation_violations(20);
    let (sock, addr) = receiver();
    let mut cfg = SyslogConfig::new(addr, Protocol::Udp);
    cfg.hostname = Some("collector-test".into());
    let mut sink = SyslogSink::connect(&cfg).unwrap();
    // One at a time, so the receive buffer never overflows and order is kept.
    for a in &alerts {
        sink.send(Finding::Alert(a)).unwrap();
        let raw = recv(&sock);
        let m = parse(&raw).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&raw)));
        check_alert(&m, a, 20, "collector-test");
        assert_eq!(m.app_name, "tidegate");
        assert_eq!(
            m.msg.as_deref(),
            Some(format!("\u{feff}{}", a.description).as_str())
        );
    }
    eprintln!(
        "{} alerts and {} violations delivered over UDP",
        alerts.len(),
        violations.len()
    );
    let flood = alerts.iter().find(|a| a.kind.as_str() == "syn_flood");
    assert!(
        flood.is_some(),
        "no syn_flood among {} alerts",
        alerts.len()
    );
    for v in &violations {
        sink.send(Finding::Violation(&ViolationState::opening(v.clone())))
            .unwrap();
        let raw = recv(&sock);
        let m = parse(&raw).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&raw)));
        check_violation(&m, v, 20);
    }
    // The rule name's `"` and `]` went through the SD escapes and came back intact.
    assert!(violations[0].rule_name.contains("\"inside\" [strict]"));
}

#[test]
fn cef_payload_carries_the_alert_in_header_and_extensions() {
    let alerts = synflood_alerts();
    let (sock, addr) = receiver();
    let mut cfg = SyslogConfig::new(addr, Protocol::Udp);
    cfg.cef = true;
    cfg.facility = Facility::Local0;
    cfg.app_name = "tg-test".into();
    let mut sink = SyslogSink::connect(&cfg).unwrap();
    for a in &alerts {
        sink.send(Finding::Alert(a)).unwrap();
        let raw = recv(&sock);
        let m = parse(&raw).unwrap();
        check_alert(&m, a, 16, &sink.header().hostname);
        assert_eq!(m.app_name, "tg-test");
        let cef = m.msg.expect("a CEF payload");
        // Header: 7 fields split on unescaped pipes (descriptions carry none here).
        let fields: Vec<&str> = cef.splitn(8, '|').collect();
        assert_eq!(fields.len(), 8, "{cef}");
        assert_eq!(&fields[..3], ["CEF:0", "tidegate", "tidegate"]);
        assert_eq!(fields[4], a.kind.as_str());
        assert_eq!(fields[5], a.description.replace('\\', "\\\\"));
        let sev: u8 = fields[6].parse().unwrap();
        assert!((1..=10).contains(&sev));
        let ext = fields[7];
        assert!(
            ext.starts_with(&format!("rt={}", a.last_ns / 1_000_000)),
            "{ext}"
        );
        assert!(
            ext.contains(&format!("cs2Label=alertId cs2={}", a.id)),
            "{ext}"
        );
        if let Some(d) = &a.dst {
            assert!(ext.contains(&format!("dst={d}")), "{ext}");
        }
    }
}

#[test]
fn an_oversized_message_arrives_shortened_with_header_and_sd_intact() {
    let mut a = synflood_alerts().remove(0);
    a.description = format!("{} {}", a.description, "é".repeat(4000));
    let (sock, addr) = receiver();
    let mut sink = SyslogSink::connect(&SyslogConfig::new(addr, Protocol::Udp)).unwrap();
    sink.send(Finding::Alert(&a)).unwrap();
    let raw = recv(&sock);
    assert!(raw.len() <= 2048 && raw.len() > 2000, "{} bytes", raw.len());
    let m = parse(&raw).unwrap();
    check_alert(&m, &a, 20, &sink.header().hostname);
    let msg = m.msg.unwrap();
    assert!(
        msg.starts_with('\u{feff}') && msg.ends_with("é..."),
        "{msg}"
    );
    assert!(a.description.starts_with(&msg[3..msg.len() - 3]));
}
