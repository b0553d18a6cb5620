//! The eBPF programs, loaded into a veth pair inside namespaces this test creates, count
//! a bounded, known set of frames exactly: per flow, per direction, per error reason.

use std::{collections::HashMap, net::Ipv4Addr};

use tidegate_common::{Counter, FlowKey, FlowStats, NO_VLAN};
use tidegate_probe::{
    capture::ebpf::{EbpfCapture, EbpfOptions, Timestamps, XdpModeChoice},
    record::key_addr,
};
use tidegate_testkit::net::VethPair;

use tidegate_testkit::net::frames::{self, RawSender};

struct Sent {
    frame: Vec<u8>,
    count: u64,
    ip_len: u64,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
    vlan: Option<u16>,
    flags: u8,
}

#[allow(clippy::too_many_arguments)]
fn flow(
    mac: [u8; 6],
    vlan: Option<u16>,
    proto: u8,
    s: &str,
    d: &str,
    sp: u16,
    dp: u16,
    len: u16,
    flags: u8,
    count: u64,
) -> Sent {
    let (src, dst) = (s.parse().unwrap(), d.parse().unwrap());
    Sent {
        frame: frames::ipv4(mac, vlan, proto, src, dst, sp, dp, len, flags),
        count,
        ip_len: len as u64,
        src,
        dst,
        sport: sp,
        dport: dp,
        proto,
        vlan,
        flags,
    }
}

fn collect(into: &mut HashMap<FlowKey, FlowStats>) -> impl FnMut(&FlowKey, &FlowStats) + '_ {
    |k, s| into.entry(*k).or_default().merge(s)
}

/// Unix-epoch nanoseconds now.
fn epoch_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `window`: the wall-clock span the frames were sent in (ns, Unix epoch).
fn check(
    got: &HashMap<FlowKey, FlowStats>,
    sent: &Sent,
    ifindex: u32,
    direction: u8,
    window: (u64, u64),
) {
    let mut k = FlowKey::ZERO;
    k.family = 4;
    k.src = key_addr(sent.src.into()).1;
    k.dst = key_addr(sent.dst.into()).1;
    k.sport = sent.sport;
    k.dport = sent.dport;
    k.proto = sent.proto;
    k.vlan = sent.vlan.unwrap_or(NO_VLAN);
    k.ifindex = ifindex;
    k.direction = direction;
    let s = got.get(&k).unwrap_or_else(|| {
        panic!(
            "flow {}:{} -> {}:{} missing; got {got:#?}",
            sent.src, sent.sport, sent.dst, sent.dport
        )
    });
    assert_eq!(
        s.packets, sent.count,
        "packets of {}:{}",
        sent.src, sent.sport
    );
    assert_eq!(
        s.bytes,
        sent.count * sent.ip_len,
        "bytes of {}:{}",
        sent.src,
        sent.sport
    );
    assert_eq!(s.tcp_flags, sent.flags as u16);
    assert!(
        s.first_ns <= s.last_ns && s.first_ns > 1_600_000_000_000_000_000,
        "epoch timestamps"
    );
    // Either clock: within the sending window, give or take a timer tick (≤ 10 ms) and
    // the monotonic-to-epoch conversion.
    const SLACK: u64 = 50_000_000;
    assert!(
        s.first_ns + SLACK >= window.0 && s.last_ns <= window.1 + SLACK,
        "timestamps {}..{} outside the sending window {window:?}",
        s.first_ns,
        s.last_ns
    );
}

#[test]
fn xdp_and_tc_count_every_frame_exactly() {
    count_every_frame("cnt", Timestamps::Precise, None);
}

/// The default clock: the kernel's coarse clock (one jiffy).
#[test]
fn xdp_and_tc_count_every_frame_exactly_with_coarse_timestamps() {
    count_every_frame("cnk", Timestamps::Coarse, None);
}

/// The probe's published tick, no helper call per packet.
#[test]
fn xdp_and_tc_count_every_frame_exactly_with_tick_timestamps() {
    count_every_frame("cnx", Timestamps::Tick, None);
}

/// A jumbo-MTU line gets the multi-buffer program (frames may come in fragments); the
/// counts are the same.
#[test]
fn xdp_and_tc_count_every_frame_exactly_on_a_jumbo_mtu_line() {
    count_every_frame("cnj", Timestamps::Coarse, Some(9000));
}

fn count_every_frame(name: &str, timestamps: Timestamps, mtu: Option<u32>) {
    let pair = VethPair::new(name).expect("veth pair");
    if let Some(m) = mtu {
        for (ns, dev) in [(&pair.ns_a, &pair.if_a), (&pair.ns_b, &pair.if_b)] {
            let st = std::process::Command::new("ip")
                .args(["-n", ns, "link", "set", "dev", dev, "mtu", &m.to_string()])
                .status()
                .unwrap();
            assert!(st.success(), "set the MTU of {dev}");
        }
    }
    let mac_a = VethPair::mac(&pair.ns_a, &pair.if_a).unwrap();
    let mac_b = VethPair::mac(&pair.ns_b, &pair.if_b).unwrap();
    let ingress = [
        flow(
            mac_b,
            None,
            17,
            "198.51.100.1",
            "203.0.113.9",
            40000,
            53,
            100,
            0,
            1000,
        ),
        flow(
            mac_b,
            None,
            6,
            "198.51.100.2",
            "203.0.113.9",
            40001,
            443,
            60,
            0x02,
            7,
        ),
        flow(
            mac_b,
            Some(42),
            17,
            "198.51.100.3",
            "203.0.113.9",
            123,
            123,
            500,
            0,
            33,
        ),
        flow(
            mac_b,
            None,
            6,
            "198.51.100.4",
            "203.0.113.9",
            5,
            6,
            1500,
            0x18,
            1,
        ),
    ];
    let egress = [flow(
        mac_a,
        None,
        17,
        "203.0.113.9",
        "198.51.100.1",
        53,
        40000,
        200,
        0,
        11,
    )];
    const ARP: u64 = 5;
    const TRUNC: u64 = 3;

    VethPair::in_ns(&pair.ns_b, || {
        let opts = EbpfOptions {
            flow_entries: 4096,
            xdp_mode: XdpModeChoice::Native,
            timestamps,
            ..Default::default()
        };
        let mut cap = EbpfCapture::load(opts).expect("load eBPF");
        let rep = cap.attach(&pair.if_b).expect("attach");
        assert_eq!(rep.xdp_mode, "native");
        assert_eq!(
            rep.xdp_program,
            if mtu.unwrap_or(1500) <= tidegate_probe::capture::ebpf::LINEAR_MAX_MTU {
                tidegate_common::maps::PROG_XDP_LINEAR
            } else {
                tidegate_common::maps::PROG_XDP
            }
        );
        let mut got = HashMap::new();
        let start = epoch_ns();

        VethPair::in_ns(&pair.ns_a, || {
            let tx = RawSender::new(&pair.if_a).unwrap();
            for s in &ingress {
                for _ in 0..s.count {
                    tx.send(&s.frame).unwrap();
                }
            }
            for _ in 0..ARP {
                tx.send(&frames::arp(mac_b)).unwrap();
            }
            let mut short = frames::arp(mac_b);
            short[12..14].copy_from_slice(&[0x08, 0x00]);
            short.truncate(14 + 10);
            for _ in 0..TRUNC {
                tx.send(&short).unwrap();
            }
        })
        .unwrap();
        // A sweep in the middle (generation flip) must not lose or double anything.
        cap.sweep(&mut collect(&mut got)).unwrap();
        let tx = RawSender::new(&pair.if_b).unwrap();
        for s in &egress {
            for _ in 0..s.count {
                tx.send(&s.frame).unwrap();
            }
        }
        // veth delivers asynchronously (NAPI); give the last frames a moment to arrive.
        std::thread::sleep(std::time::Duration::from_millis(200));
        cap.finish(&mut collect(&mut got)).unwrap();
        let window = (start, epoch_ns());
        let c = cap.counters().unwrap();

        for s in &ingress {
            check(&got, s, rep.ifindex, 0, window);
        }
        for s in &egress {
            check(&got, s, rep.ifindex, 1, window);
        }
        assert_eq!(
            got.len(),
            ingress.len() + egress.len(),
            "no other flows: {got:#?}"
        );
        let ip_frames: u64 = ingress.iter().chain(&egress).map(|s| s.count).sum();
        assert_eq!(c[Counter::Packets as usize], ip_frames + ARP + TRUNC);
        assert_eq!(c[Counter::Accounted as usize], ip_frames);
        assert_eq!(c[Counter::ErrNonIp as usize], ARP);
        assert_eq!(c[Counter::ErrTruncatedIp as usize], TRUNC);
        assert_eq!(c[Counter::MapFull as usize], 0);
        assert_eq!(c[Counter::FallbackDropped as usize], 0);
    })
    .unwrap();
}

/// Pins the calling thread to one CPU; false if it cannot (fewer CPUs, or not allowed).
fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays in its bounds
    // (cpu < CPU_SETSIZE is checked), and the call only reads the set.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// One flow whose frames are sent — and so accounted, XDP in the sender's NAPI context
/// and TC egress in its own — from two CPUs in turn: the CPU that claimed the flow's slot
/// adds plainly, the other atomically to the shared pair, and the probe's totals are the
/// frames sent, exactly, across sweeps.
#[test]
fn a_flow_whose_frames_come_from_two_cpus_is_counted_exactly() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("skipped: needs two CPUs, this machine has {cpus}");
        return;
    }
    let pair = VethPair::new("cpu2").expect("veth pair");
    let mac_a = VethPair::mac(&pair.ns_a, &pair.if_a).unwrap();
    let mac_b = VethPair::mac(&pair.ns_b, &pair.if_b).unwrap();
    const ROUNDS: u64 = 6;
    const PER_ROUND: u64 = 200;
    let mut ingress = flow(
        mac_b,
        None,
        17,
        "198.51.100.7",
        "203.0.113.9",
        41000,
        53,
        120,
        0,
        0,
    );
    let mut egress = flow(
        mac_a,
        None,
        6,
        "203.0.113.9",
        "198.51.100.7",
        443,
        41001,
        80,
        0x10,
        0,
    );
    ingress.count = ROUNDS * PER_ROUND;
    egress.count = ROUNDS * PER_ROUND;
    VethPair::in_ns(&pair.ns_b, || {
        let opts = EbpfOptions {
            flow_entries: 4096,
            xdp_mode: XdpModeChoice::Native,
            ..Default::default()
        };
        let mut cap = EbpfCapture::load(opts).expect("load eBPF");
        let rep = cap.attach(&pair.if_b).expect("attach");
        let mut got = HashMap::new();
        let start = epoch_ns();
        for round in 0..ROUNDS {
            let cpu = (round % 2) as usize;
            // Each round from its own thread, pinned, so the test thread keeps its CPUs.
            std::thread::scope(|sc| {
                sc.spawn(|| {
                    assert!(pin_to(cpu), "pin to CPU {cpu}");
                    VethPair::in_ns(&pair.ns_a, || {
                        let tx = RawSender::new(&pair.if_a).unwrap();
                        for _ in 0..PER_ROUND {
                            tx.send(&ingress.frame).unwrap();
                        }
                    })
                    .unwrap();
                    let tx = RawSender::new(&pair.if_b).unwrap();
                    for _ in 0..PER_ROUND {
                        tx.send(&egress.frame).unwrap();
                    }
                });
            });
            if round == 2 {
                // A sweep in the middle: nothing lost or doubled across it.
                std::thread::sleep(std::time::Duration::from_millis(50));
                cap.sweep(&mut collect(&mut got)).unwrap();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        cap.finish(&mut collect(&mut got)).unwrap();
        let window = (start, epoch_ns());
        check(&got, &ingress, rep.ifindex, 0, window);
        check(&got, &egress, rep.ifindex, 1, window);
        let c = cap.counters().unwrap();
        assert_eq!(c[Counter::Accounted as usize], 2 * ROUNDS * PER_ROUND);
        assert_eq!(c[Counter::MapFull as usize], 0);
    })
    .unwrap();
}
