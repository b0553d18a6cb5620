//! With `tunnels = "inner"` a tunnelled packet is keyed by the IP header inside its GRE,
//! VXLAN, GTP-U or IP-in-IP tunnel: replay gives what tshark gives for the innermost
//! header (the corpus tool's `--layer inner`), and XDP and AF_PACKET on a veth line give
//! what replay gives — the same inner flows, tunnel kinds, ids and outer endpoints.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tidegate_common::{Counter, Tunnels};
use tidegate_probe::{
    app::FlowAttrs,
    capture::{
        TunnelMode,
        afpacket::AfPacketCapture,
        ebpf::{EbpfCapture, EbpfOptions, XdpModeChoice},
        pcap::Replay,
    },
    config::Line,
    live::LiveSource,
    record::FlowRecord,
    table::{FlowTable, Timeouts},
};
use tidegate_testkit::{
    net::VethPair,
    paths::{TUNNEL_CAPTURES, corpus_dir, corpus_pcap},
};

use crate::{
    support::corpus::{Counts, Key, read_truth, sum_records},
    xdp_matches_replay::sendable_copy,
};

/// tshark's flows by the innermost IP header (the corpus tool, `--layer inner`).
fn tshark_inner(pcap: &Path, dir: &Path) -> BTreeMap<Key, Counts> {
    let tool = corpus_dir().join("tools/flows_from_tshark.py");
    let out = Command::new("python3")
        .arg(&tool)
        .arg(pcap)
        .args(["--layer", "inner"])
        .output()
        .expect("python3 runs the corpus tool");
    assert!(
        out.status.success(),
        "{}: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let tsv = dir.join(format!(
        "{}.inner.tsv",
        pcap.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tsv, &out.stdout).unwrap();
    read_truth(&tsv).by_key()
}

fn replay(files: &[PathBuf], tunnels: Tunnels) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    let mut r = Replay::new(Timeouts::default());
    r.set_tunnels(tunnels);
    for f in files {
        r.replay_file(f, "l", &mut out).unwrap();
    }
    r.finish(&mut out).unwrap();
    out
}

#[test]
fn replay_keys_tunnelled_packets_by_their_inner_header_as_tshark_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut tunnelled = 0;
    for c in TUNNEL_CAPTURES {
        let pcap = corpus_pcap(c);
        let want = tshark_inner(&pcap, dir.path());
        let records = replay(std::slice::from_ref(&pcap), Tunnels::Inner);
        let got = sum_records(&records);
        assert_eq!(got, want, "{c}: replay (inner) vs tshark --layer inner");
        // Every record of these captures came through a tunnel whose endpoints are
        // known, and the outer keying differs.
        for r in &records {
            let t = r.tunnel.as_ref().unwrap_or_else(|| panic!("{c}: {r:?}"));
            assert!(t.outer_src.is_some() && t.outer_dst.is_some(), "{c}: {r:?}");
            tunnelled += r.packets;
        }
        let outer = sum_records(&replay(&[pcap], Tunnels::Outer));
        assert_ne!(outer, got, "{c}: outer and inner keys must differ");
    }
    assert!(tunnelled > 200, "{tunnelled} tunnelled packets");
}

#[test]
fn vxlan_tenants_stay_apart_and_carry_their_network_id() {
    let records = replay(&[corpus_pcap("ndpi-vxlan.pcap")], Tunnels::Inner);
    let ids: std::collections::BTreeSet<_> = records
        .iter()
        .map(|r| {
            let t = r.tunnel.as_ref().unwrap();
            assert_eq!(t.kind, tidegate_common::Tunnel::Vxlan);
            (t.id, t.outer_src.unwrap(), t.outer_dst.unwrap())
        })
        .collect();
    // What tshark reads as the network ids and VTEPs of the capture.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(corpus_pcap("ndpi-vxlan.pcap"))
        .args([
            "-n",
            "-T",
            "fields",
            "-e",
            "vxlan.vni",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
        ])
        .args(["-E", "occurrence=f"])
        .output()
        .unwrap();
    let want: std::collections::BTreeSet<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (
                c[0].parse::<u32>().unwrap(),
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(ids, want);
}

/// (src, dst, proto, sport, dport, tunnel, tunnel id) -> (packets, bytes, outer endpoints)
type TunnelFlows = BTreeMap<(String, String, u8, u16, u16, String, u32), (u64, u64, String)>;

fn by_tunnel(records: &[FlowRecord]) -> TunnelFlows {
    let mut m = TunnelFlows::new();
    for r in records {
        let t = r.tunnel.as_ref();
        let e = m
            .entry((
                r.src.to_string(),
                r.dst.to_string(),
                r.proto,
                r.sport,
                r.dport,
                t.map_or("", |t| t.kind.name()).to_string(),
                t.map_or(0, |t| t.id),
            ))
            .or_default();
        e.0 += r.packets;
        e.1 += r.bytes;
        e.2 = format!(
            "{:?}>{:?}",
            t.and_then(|t| t.outer_src),
            t.and_then(|t| t.outer_dst)
        );
    }
    m
}

fn xdp_inner(pair: &VethPair, file: &Path) -> (Vec<FlowRecord>, u64) {
    VethPair::in_ns(&pair.ns_b, || {
        let opts = EbpfOptions {
            flow_entries: 1 << 16,
            xdp_mode: XdpModeChoice::Native,
            egress: false,
            tunnels: TunnelMode::Inner,
            ..Default::default()
        };
        let mut cap =
            EbpfCapture::load(opts).expect("load (the verifier accepts the inner parser)");
        cap.attach(&pair.if_b).expect("attach");
        pair.replay_into(file).expect("tcpreplay");
        std::thread::sleep(Duration::from_millis(200));
        let mut table = FlowTable::new(Timeouts::default());
        cap.finish(&mut table).unwrap();
        while cap.drain_app_samples(4096, &mut |k, kind, p| table.inspect_early(k, kind, p, 1)) > 0
        {
        }
        let decapsulated = cap.counters().unwrap()[Counter::Decapsulated as usize];
        let mut records = Vec::new();
        table.flush(|k, s, attrs: FlowAttrs| {
            let mut r = FlowRecord::new(k, s, "l");
            attrs.apply(&mut r);
            records.push(r);
        });
        (records, decapsulated)
    })
    .unwrap()
}

#[test]
fn xdp_keys_tunnelled_packets_like_replay() {
    let pair = VethPair::new("tun").expect("veth pair");
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for c in TUNNEL_CAPTURES {
        let Some(copy) = sendable_copy(&corpus_pcap(c), dir.path()) else {
            continue;
        };
        let want = replay(std::slice::from_ref(&copy), Tunnels::Inner);
        let (got, decapsulated) = xdp_inner(&pair, &copy);
        assert_eq!(by_tunnel(&got), by_tunnel(&want), "{c}: XDP vs replay");
        assert_eq!(
            decapsulated,
            want.iter()
                .filter(|r| r.tunnel.is_some())
                .map(|r| r.packets)
                .sum::<u64>(),
            "{c}: decapsulated packets"
        );
        compared += 1;
    }
    assert_eq!(compared, TUNNEL_CAPTURES.len());
}

/// The flows AF_PACKET (tunnels inner) sees arriving on `pair.if_b` while tcpreplay
/// sends `file` into the other end.
fn afpacket_inner(pair: &VethPair, file: &Path) -> Vec<FlowRecord> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let ready = std::sync::atomic::AtomicBool::new(false);
    use std::sync::atomic::Ordering::SeqCst;
    std::thread::scope(|s| {
        let rx = s.spawn(|| {
            VethPair::in_ns(&pair.ns_b, || {
                let line = Line {
                    name: "l".into(),
                    iface: pair.if_b.clone(),
                };
                let mut cap = AfPacketCapture::open(&[line], Tunnels::Inner).expect("AF_PACKET");
                let mut table = FlowTable::new(Timeouts::default());
                let take = |cap: &mut AfPacketCapture, table: &mut FlowTable| {
                    cap.poll(Duration::from_millis(20), &mut *table).unwrap();
                    cap.app_samples(&mut |k, kind, p| table.inspect_early(k, kind, p, 1));
                };
                ready.store(true, SeqCst);
                while !stop.load(SeqCst) {
                    take(&mut cap, &mut table);
                }
                let end = std::time::Instant::now() + Duration::from_millis(300);
                while std::time::Instant::now() < end {
                    take(&mut cap, &mut table);
                }
                cap.finish(&mut table).unwrap();
                let c = cap.counters().unwrap();
                assert_eq!(c[Counter::CaptureDropped as usize], 0);
                let mut records = Vec::new();
                table.flush(|k, s, attrs: FlowAttrs| {
                    if k.direction == 0 {
                        let mut r = FlowRecord::new(k, s, "l");
                        attrs.apply(&mut r);
                        records.push(r);
                    }
                });
                records
            })
            .unwrap()
        });
        while !ready.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let sent = pair.replay_into(file);
        stop.store(true, SeqCst);
        sent.expect("tcpreplay");
        rx.join().unwrap()
    })
}

#[test]
fn afpacket_keys_tunnelled_packets_like_replay() {
    let pair = VethPair::new("tua").expect("veth pair");
    let dir = tempfile::tempdir().unwrap();
    for c in TUNNEL_CAPTURES {
        let copy = sendable_copy(&corpus_pcap(c), dir.path()).expect("an Ethernet capture");
        let want = replay(std::slice::from_ref(&copy), Tunnels::Inner);
        let got = afpacket_inner(&pair, &copy);
        assert_eq!(
            by_tunnel(&got),
            by_tunnel(&want),
            "{c}: AF_PACKET vs replay"
        );
    }
}
