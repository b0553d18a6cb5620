//! The NetFlow/IPFIX port is open to whatever the network sends. Garbage of every kind is
//! counted per exporter and reason on the metrics endpoint, a flood of data for templates
//! that never come is held within its limits (the collector's memory stays flat), senders
//! that are not listed are refused under one label, and a good message after all that is
//! stored.

use std::{net::UdpSocket, time::Duration};

use tidegate_collector::netflow::ipfix::Encoder;
use tidegate_testkit::{Stack, free_port, stack::StackOptions};
use tidegate_wire::FlowRecord;

use crate::support::netflow::{listener_config, rss, sample, scrape};

fn ipfix_set(domain: u32, set_id: u16, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0, 10, 0, 0];
    m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&domain.to_be_bytes());
    m.extend_from_slice(&set_id.to_be_bytes());
    m.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    m.extend_from_slice(body);
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

#[test]
fn hostile_datagrams_are_counted_and_the_listener_keeps_serving() {
    let port = free_port();
    let s = Stack::start_with(StackOptions {
        extra: listener_config(port),
        metrics: true,
        ..StackOptions::default()
    });
    s.wait_for_schema();
    let metrics = s.config.metrics_port.unwrap();
    let to = ("127.0.0.1", port);
    let listed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();

    let good: Vec<u8> = {
        let r = FlowRecord {
            src: "198.51.100.7".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            sport: 40_000,
            dport: 443,
            proto: 6,
            packets: 7,
            bytes: 700,
            first: 1_700_000_000_000_000_000,
            last: 1_700_000_001_000_000_000,
            ..FlowRecord::default()
        };
        Encoder::new(1)
            .messages(&[&r], 1_700_000_000, true)
            .remove(0)
    };
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 9);
    let mut huge_template = 300u16.to_be_bytes().to_vec();
    huge_template.extend_from_slice(&65_535u16.to_be_bytes());
    huge_template.extend_from_slice(&[0, 8, 0, 4]);
    let garbage: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "truncated"),
        (vec![0x42], "truncated"),
        (b"\x00\x01hello".to_vec(), "unknown_version"),
        (vec![0xff; 1200], "unknown_version"),
        (truncated, "truncated"),
        (ipfix_set(1, 2, &huge_template), "malformed"),
        (
            {
                let mut v9 = vec![0, 9, 0, 1];
                v9.extend_from_slice(&[0; 16]);
                v9.extend_from_slice(&[1, 0, 0, 0]);
                v9
            },
            "malformed",
        ),
    ];
    let mut want = std::collections::BTreeMap::<&str, f64>::new();
    for _ in 0..10 {
        for (d, reason) in &garbage {
            listed.send_to(d, to).unwrap();
            *want.entry(reason).or_default() += 1.0;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..25 {
        stranger.send_to(&good, to).unwrap();
    }

    // A flood of data for templates that never arrive: 20 000 datagrams of 1.2 KB, over
    // a thousand template ids and a hundred observation domains. (Held data whose template
    // does arrive is decoded with it: ids 256 and 257, the good message's, stay clear.)
    let pid = s.collector.pid().unwrap();
    let before = rss(pid);
    for i in 0..20_000u32 {
        let body = vec![(i % 251) as u8; 1200];
        let d = ipfix_set(i % 100, 1000 + (i % 1000) as u16, &body);
        listed.send_to(&d, to).unwrap();
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let grew = rss(pid).saturating_sub(before);
    assert!(grew < 64 << 20, "the collector grew by {} MiB", grew >> 20);

    listed.send_to(&good, to).unwrap();
    tidegate_testkit::eventually("the good record stored", Duration::from_secs(30), || {
        s.ch.query_sync("SELECT sum(packets) FROM tidegate.flows WHERE source = 'ipfix'")
            .map(|v| v.trim() == "7")
            .unwrap_or(false)
    });

    let text = scrape(metrics);
    for (reason, n) in &want {
        let got = sample(
            &text,
            &format!(
                "tidegate_collector_netflow_dropped_total{{exporter=\"exporter:softflowd\",reason=\"{reason}\"}}"
            ),
        );
        assert_eq!(got, *n, "{reason}:\n{text}");
    }
    assert_eq!(
        sample(
            &text,
            "tidegate_collector_netflow_dropped_total{exporter=\"unlisted\",reason=\"unknown_exporter\"}"
        ),
        25.0
    );
    let held = sample(
        &text,
        "tidegate_collector_netflow_sets_held_total{exporter=\"exporter:softflowd\"}",
    );
    let dropped = sample(
        &text,
        "tidegate_collector_netflow_dropped_total{exporter=\"exporter:softflowd\",reason=\"no_template\"}",
    );
    assert!(
        held > 0.0 && held + dropped <= 20_000.0,
        "held {held}, dropped {dropped}"
    );
    assert_eq!(
        sample(
            &text,
            "tidegate_collector_netflow_records_total{exporter=\"exporter:softflowd\"}"
        ),
        1.0
    );
}
