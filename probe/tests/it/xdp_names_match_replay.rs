//! DNS questions and TLS server names through the kernel path: captures replayed onto a
//! veth line with tidegate's XDP program attached give the same names per flow as
//! `replay` of the same files. The program sends the payload start of every DNS message
//! and of every TCP segment that starts a TLS handshake record through the sample ring
//! buffer; the probe parses it with the replay's parser.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tidegate_probe::{
    capture::ebpf::{EbpfCapture, EbpfOptions, XdpModeChoice},
    record::addr,
    table::{FlowTable, Timeouts},
};
use tidegate_testkit::{net::VethPair, paths::corpus_pcap};

use crate::support::probe_cli::bin;
use crate::xdp_matches_replay::sendable_copy;

/// (src, dst, proto, sport, dport) -> names.
type Names = BTreeMap<(String, String, u8, u16, u16), BTreeSet<String>>;

/// Captures with DNS (UDP and TCP) and TLS ClientHellos.
const CAPTURES: [&str; 4] = [
    "ndpi-1kxun.pcap",
    "ndpi-chrome.pcap",
    "ndpi-dns_exfiltration.pcap",
    "ndpi-tls-rdn-extract.pcap",
];

fn name_of(r: &serde_json::Value) -> Option<String> {
    r["dns"]["qname"]
        .as_str()
        .or(r["sni"].as_str())
        .map(str::to_string)
}

/// The 5-tuple of a JSON record.
fn json_key(r: &serde_json::Value) -> (String, String, u8, u16, u16) {
    (
        r["src"].as_str().unwrap().to_string(),
        r["dst"].as_str().unwrap().to_string(),
        r["proto"].as_u64().unwrap() as u8,
        r["sport"].as_u64().unwrap() as u16,
        r["dport"].as_u64().unwrap() as u16,
    )
}

fn replay_names(file: &Path) -> Names {
    let out = Command::new(bin())
        .args(["replay", "--json"])
        .arg(file)
        .output()
        .unwrap();
    let mut m = Names::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        if let Some(n) = name_of(&r) {
            let k = json_key(&r);
            m.entry(k).or_default().insert(n);
        }
    }
    m
}

fn xdp_names(pair: &VethPair, file: &Path) -> Names {
    VethPair::in_ns(&pair.ns_b, || {
        let opts = EbpfOptions {
            flow_entries: 1 << 16,
            xdp_mode: XdpModeChoice::Native,
            egress: false,
            ..Default::default()
        };
        let mut cap = EbpfCapture::load(opts).expect("load (the verifier accepts the sampler)");
        cap.attach(&pair.if_b).expect("attach");
        pair.replay_into(file).expect("tcpreplay");
        std::thread::sleep(Duration::from_millis(200));
        let mut table = FlowTable::new(Timeouts::default());
        let mut samples = 0;
        loop {
            let n =
                cap.drain_app_samples(4096, &mut |k, kind, p| table.inspect_early(k, kind, p, 1));
            samples += n;
            if n == 0 {
                break;
            }
        }
        assert!(samples > 0, "no payload sample from {}", file.display());
        cap.finish(&mut table).unwrap();
        let mut m = Names::new();
        table.flush(|k, _, app| {
            let mut r = tidegate_wire::record::FlowRecord::default();
            app.apply(&mut r);
            if let Some(n) = r.dns.map(|d| d.qname).or(r.sni.map(String::from)) {
                let key = (
                    addr(k.family, &k.src).to_string(),
                    addr(k.family, &k.dst).to_string(),
                    k.proto,
                    k.sport,
                    k.dport,
                );
                m.entry(key).or_default().insert(n);
            }
        });
        m
    })
    .unwrap()
}

#[test]
fn names_seen_by_xdp_equal_the_replays() {
    let pair = VethPair::new("nam").expect("veth pair");
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut compared = 0;
    for c in CAPTURES {
        let copy = sendable_copy(&corpus_pcap(c), dir.path()).expect("an Ethernet capture");
        let want = replay_names(&copy);
        let got = xdp_names(&pair, &copy);
        compared += want.len();
        if got != want {
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(*k) != Some(*v))
                .take(5)
                .collect();
            failures.push(format!(
                "{c}: replay named {} flows, XDP {}; replay-only {missing:?}; xdp-only {extra:?}",
                want.len(),
                got.len()
            ));
        }
    }
    eprintln!("{compared} named 5-tuples compared");
    assert!(compared >= 40, "{compared}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `tidegate-probe run` as deployed (both live backends): the records it prints for a
/// capture replayed onto its line carry the names `replay` gives.
#[test]
fn probe_run_prints_the_replays_names_with_either_backend() {
    use crate::support::probe_cli::ProbeProcess;
    let dir = tempfile::tempdir().unwrap();
    let copy = sendable_copy(&corpus_pcap("ndpi-1kxun.pcap"), dir.path()).unwrap();
    let want = replay_names(&copy);
    assert!(want.len() >= 20, "{}", want.len());
    for backend in ["ebpf", "afpacket"] {
        let pair = VethPair::new(&format!("n{}", &backend[..2])).expect("veth pair");
        let p = ProbeProcess::run_on(&pair, &["--json", "--backend", backend]);
        pair.replay_into(&copy).expect("tcpreplay");
        std::thread::sleep(Duration::from_millis(500));
        let (code, records, err) = p.stop();
        assert_eq!(code, 0, "{err:?}");
        let mut got = Names::new();
        for r in &records {
            if let Some(n) = name_of(r) {
                let k = json_key(r);
                got.entry(k).or_default().insert(n);
            }
        }
        assert_eq!(got, want, "{backend}");
    }
}
