//! Exactness under load: sweeps (and flows leaving the kernel table) while trafgen pushes
//! traffic flat out, and a flow table deliberately too small (every flow beyond it takes
//! the ring-buffer fallback).

use std::{
    collections::HashMap,
    io::Read,
    time::{Duration, Instant},
};

use tidegate_common::{Counter, FlowKey, FlowStats};
use tidegate_probe::{
    capture::ebpf::{EbpfCapture, EbpfOptions, XdpModeChoice},
    clock::realtime_ns,
    table::{FlowTable, Timeouts},
};
use tidegate_testkit::net::{UdpWorkload, VethPair};

struct Outcome {
    flows: HashMap<u16, (u64, u64)>,
    counters: [u64; Counter::COUNT as usize],
    sweeps: u64,
    /// Slots freed by the sweeps (flows removed while their packets kept coming).
    retired: usize,
    /// Hand-overs by the sweeps: deltas, or held records released.
    exported: usize,
    /// Records the flow table exported (with [`Sink::Records`]).
    records: usize,
    veth_drops: u64,
    elapsed: Duration,
}

/// What the sweeps hand flows to.
#[derive(Clone, Copy)]
enum Sink {
    /// A closure: every flow's growth at every sweep.
    Deltas,
    /// The probe's flow table with these timeouts: flows held in the kernel table until
    /// their record is due; records summed as the table exports them.
    Records(Timeouts),
}

fn run(
    tag: &str,
    load: &UdpWorkload,
    opts: EbpfOptions,
    sweep_every: Duration,
    sink: Sink,
) -> Outcome {
    let pair = VethPair::new(tag).expect("veth pair");
    let mac_b = VethPair::mac(&pair.ns_b, &pair.if_b).unwrap();
    let dir = tempfile::tempdir().unwrap();
    VethPair::in_ns(&pair.ns_b, || {
        let mut cap = EbpfCapture::load(opts).expect("load");
        cap.attach(&pair.if_b).expect("attach");
        let mut flows: HashMap<u16, (u64, u64)> = HashMap::new();
        let mut add = |k: &FlowKey, s: &FlowStats| {
            if k.dport == UdpWorkload::DPORT {
                let e = flows.entry(k.sport).or_default();
                e.0 += s.packets;
                e.1 += s.bytes;
            }
        };
        let started = Instant::now();
        // Flat out, one CPU.
        let mut tg = load
            .spawn(&pair.ns_a, &pair.if_a, mac_b, None, 1, dir.path())
            .expect("spawn trafgen");
        let mut tg_stderr = tg
            .child_mut()
            .and_then(|c| c.stderr.take())
            .expect("trafgen stderr");
        let (mut sweeps, mut retired, mut exported, mut records) = (0, 0, 0, 0);
        let mut table = match sink {
            Sink::Records(t) => Some(FlowTable::new(t)),
            Sink::Deltas => None,
        };
        let mut next = Instant::now() + sweep_every;
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if Instant::now() >= next {
                let st = match table.as_mut() {
                    Some(t) => {
                        cap.drain_fallback(t);
                        let st = cap.sweep(t).unwrap();
                        records += t.expire(realtime_ns(), |k, s, _| add(k, s));
                        st
                    }
                    None => {
                        cap.drain_fallback(&mut add);
                        cap.sweep(&mut add).unwrap()
                    }
                };
                sweeps += 1;
                retired += st.retired;
                exported += st.exported;
                next = Instant::now() + sweep_every;
            } else if let Some(t) = table.as_mut() {
                cap.drain_fallback(t);
            } else {
                cap.drain_fallback(&mut add);
            }
            if let Some(st) = tg.exited() {
                break st;
            }
            assert!(Instant::now() < deadline, "trafgen did not finish in 120 s");
            std::thread::sleep(Duration::from_micros(200));
        };
        let elapsed = started.elapsed();
        let mut err = String::new();
        let _ = tg_stderr.read_to_string(&mut err);
        assert!(status.success(), "trafgen: {err}");
        std::thread::sleep(Duration::from_millis(300));
        match table.as_mut() {
            Some(t) => {
                cap.finish(t).unwrap();
                records += t.flush(|k, s, _| add(k, s));
            }
            None => {
                cap.finish(&mut add).unwrap();
            }
        }
        let counters = cap.counters().unwrap();
        let veth_drops = VethPair::link_stat(&pair.ns_a, &pair.if_a, "tx_dropped").unwrap()
            + VethPair::link_stat(&pair.ns_b, &pair.if_b, "rx_dropped").unwrap();
        Outcome {
            flows,
            counters,
            sweeps,
            retired,
            exported,
            records,
            veth_drops,
            elapsed,
        }
    })
    .unwrap()
}

fn assert_exact(load: &UdpWorkload, o: &Outcome) {
    let c = &o.counters;
    eprintln!(
        "sent {} in {:?} ({:.0} pps), sweeps {}, xdp saw {}, map_full {}, fallback_dropped {}, veth drops {}",
        load.packets,
        o.elapsed,
        load.packets as f64 / o.elapsed.as_secs_f64(),
        o.sweeps,
        c[Counter::Packets as usize],
        c[Counter::MapFull as usize],
        c[Counter::FallbackDropped as usize],
        o.veth_drops
    );
    assert_eq!(
        c[Counter::FallbackDropped as usize],
        0,
        "nothing may be lost in the probe"
    );
    assert_eq!(
        c[Counter::Accounted as usize],
        c[Counter::Packets as usize],
        "every frame the program saw is accounted"
    );
    // Frames the veth dropped before XDP never reached the probe; the link counts them.
    assert_eq!(
        c[Counter::Packets as usize] + o.veth_drops,
        load.packets,
        "sent = seen by XDP + dropped by veth"
    );
    let total: u64 = o.flows.values().map(|v| v.0).sum();
    assert_eq!(
        total,
        c[Counter::Packets as usize],
        "flow sums equal frames seen"
    );
    let bytes: u64 = o.flows.values().map(|v| v.1).sum();
    assert_eq!(bytes, total * load.ip_len as u64);
    if o.veth_drops == 0 {
        let per = load.per_flow();
        assert_eq!(o.flows.len(), load.flows as usize);
        for (port, (p, _)) in &o.flows {
            assert_eq!(*p, per, "flow {port}");
        }
    }
}

/// Flows stay in the kernel table across sweeps: each sweep exports what they added
/// since the last one, and the totals are exact.
#[test]
fn sweeps_under_line_rate_lose_nothing() {
    let load = UdpWorkload::new(2_000, 1_000_000, 64);
    let opts = EbpfOptions {
        flow_entries: 65_536,
        xdp_mode: XdpModeChoice::Native,
        ..Default::default()
    };
    let o = run("gen", &load, opts, Duration::from_millis(5), Sink::Deltas);
    assert!(
        o.sweeps >= 20,
        "the test must sweep many times under load ({})",
        o.sweeps
    );
    assert!(
        o.exported as u64 > 2 * load.flows as u64,
        "flows must be exported by several sweeps each ({} deltas)",
        o.exported
    );
    assert_eq!(o.counters[Counter::MapFull as usize], 0);
    assert_exact(&load, &o);
}

/// Every sweep removes every flow from the kernel table while trafgen keeps sending to
/// all of them: each removal races packets that re-create the flow in another slot, and
/// still no packet is lost or counted twice.
#[test]
fn flows_removed_while_their_packets_keep_coming_are_counted_once() {
    let load = UdpWorkload::new(2_000, 1_000_000, 64);
    let opts = EbpfOptions {
        flow_entries: 65_536,
        xdp_mode: XdpModeChoice::Native,
        retire_idle: Duration::ZERO,
        ..Default::default()
    };
    let o = run("ret", &load, opts, Duration::from_millis(5), Sink::Deltas);
    assert!(
        o.retired as u64 > 10 * load.flows as u64,
        "flows must leave the table many times under load ({} removals)",
        o.retired
    );
    assert_eq!(o.counters[Counter::MapFull as usize], 0);
    assert_exact(&load, &o);
}

#[test]
fn map_too_small_falls_back_to_ring_buffer_exactly() {
    let load = UdpWorkload::new(5_000, 400_000, 100);
    let opts = EbpfOptions {
        flow_entries: 64,
        fallback_bytes: 1 << 24,
        xdp_mode: XdpModeChoice::Native,
        ..Default::default()
    };
    let o = run("full", &load, opts, Duration::from_millis(50), Sink::Deltas);
    assert!(
        o.counters[Counter::MapFull as usize] > load.packets / 2,
        "most packets must take the fallback path"
    );
    assert_exact(&load, &o);
}

/// The probe's own set-up: flows held in the kernel table across many sweeps, handed
/// over only when their record is due (here every 200 ms of activity): each record is
/// exported once, the records add up to every packet, and the sweeps did not copy every
/// flow out every time.
#[test]
fn flows_held_across_many_sweeps_are_exported_once_per_record_exactly() {
    let load = UdpWorkload::new(2_000, 1_000_000, 64);
    let opts = EbpfOptions {
        flow_entries: 65_536,
        xdp_mode: XdpModeChoice::Native,
        ..Default::default()
    };
    let timeouts = Timeouts {
        active: Duration::from_millis(200),
        idle: Duration::from_secs(5),
    };
    let o = run(
        "held",
        &load,
        opts,
        Duration::from_millis(5),
        Sink::Records(timeouts),
    );
    eprintln!(
        "{} sweeps, {} hand-overs, {} records",
        o.sweeps, o.exported, o.records
    );
    assert!(o.sweeps >= 20, "many sweeps under load ({})", o.sweeps);
    assert!(
        o.records >= 2 * load.flows as usize,
        "every flow must span several records ({} records)",
        o.records
    );
    // One hand-over per record (plus the last ones at shutdown), not one per sweep.
    assert!(
        o.exported <= o.records,
        "{} hand-overs for {} records",
        o.exported,
        o.records
    );
    assert!(
        (o.exported as u64) < o.sweeps * load.flows as u64 / 4,
        "held flows must not be handed over at every sweep ({} hand-overs, {} sweeps)",
        o.exported,
        o.sweeps
    );
    assert_eq!(o.counters[Counter::MapFull as usize], 0);
    assert_exact(&load, &o);
}

/// Held flows removed from the kernel table at every sweep while their packets keep
/// coming: each removal hands the record over and the next packet holds it again from
/// another slot — still every packet exported once.
#[test]
fn held_flows_removed_while_their_packets_keep_coming_are_counted_once() {
    let load = UdpWorkload::new(2_000, 1_000_000, 64);
    let opts = EbpfOptions {
        flow_entries: 65_536,
        xdp_mode: XdpModeChoice::Native,
        retire_idle: Duration::ZERO,
        ..Default::default()
    };
    let timeouts = Timeouts {
        active: Duration::from_millis(300),
        idle: Duration::from_secs(5),
    };
    let o = run(
        "hret",
        &load,
        opts,
        Duration::from_millis(5),
        Sink::Records(timeouts),
    );
    assert!(
        o.retired as u64 > 10 * load.flows as u64,
        "flows must leave the table many times under load ({} removals)",
        o.retired
    );
    assert!(o.records >= load.flows as usize);
    assert_eq!(o.counters[Counter::MapFull as usize], 0);
    assert_exact(&load, &o);
}
