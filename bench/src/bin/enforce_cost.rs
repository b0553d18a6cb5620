//! Enforcement cost: the XDP program's per-packet cost with no policy and with policies
//! of 1, 1 000 and 100 000 drop prefixes (BPF_PROG_TEST_RUN on real corpus frames against
//! the return-only program), and how long a policy change takes to be enforced: compile
//! (collector), encode/decode, kernel install (fill the idle generation, switch, grace
//! period, clear the old one), and end to end — published by a collector transport,
//! carried over mutual TLS to a probe's sender, installed in the kernel, acknowledged.
//!
//! `cargo run --release -p tidegate-bench --bin enforce_cost -- [--smoke] [--out FILE]`

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use aya::{
    maps::{Array, Map, MapData},
    programs::Xdp,
};
use clap::Parser;
use tidegate_bench::xdp::{corpus_frames, load_with_prefixes, run_ns};
use tidegate_common::maps::{CONTROL, CTL_ENFORCE, PROG_XDP, PROG_XDP_BASELINE};
use tidegate_probe::capture::ebpf::{EbpfCapture, EbpfOptions, Enforcer, SharedEnforcer, dup};
use tidegate_testkit::{
    certs::Certs,
    probe::{exporter, probe_options},
    transport::{MemSink, TestServer},
};
use tidegate_threat::{
    enrich::Enricher,
    policy::{Policy, enforce::compile},
};
use tidegate_wire::EnforcePlan;

#[derive(Parser)]
struct Args {
    /// Corpus pcap directory (default: `$TIDEGATE_CORPUS/pcap`, else
    /// `../shared/corpus/pcap` beside the repository).
    #[arg(long, default_value_os_t = tidegate_bench::aggregate::default_corpus())]
    corpus: PathBuf,
    /// Packets sampled from the corpus.
    #[arg(long, default_value_t = 1_000)]
    packets: usize,
    /// BPF_PROG_TEST_RUN repeat count per packet.
    #[arg(long, default_value_t = 1_000)]
    repeat: u32,
    /// Policy changes timed end to end.
    #[arg(long, default_value_t = 30)]
    changes: usize,
    /// Seconds-long run for CI: few packets, small policies; asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/enforce_cost.md")]
    out: PathBuf,
}

/// A deny-list policy of `n` prefixes: the destinations of half the sampled frames (as
/// host prefixes) and pseudo-random /16–/28 blocks, in monitor mode so every packet is
/// judged and passes on.
fn policy_text(n: usize, frame_dsts: &[Ipv4Addr], seed: u64) -> String {
    let mut cidrs: BTreeSet<String> = BTreeSet::new();
    for d in frame_dsts.iter().step_by(2).take(n / 2) {
        cidrs.insert(format!("{d}/32"));
    }
    let mut x = seed | 1;
    while cidrs.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 16 + (x >> 59) as u8 % 13;
        let a = Ipv4Addr::from(((x >> 8) as u32) & (u32::MAX << (32 - len)));
        if a.is_private() || a.is_loopback() || a.octets()[0] == 0 || a.octets()[0] >= 224 {
            continue;
        }
        cidrs.insert(format!("{a}/{len}"));
    }
    let list: Vec<String> = cidrs.into_iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "[[rule]]\nid = \"bench-deny\"\nname = \"bench\"\ntype = \"deny_list\"\naction = \"drop\"\ncidrs = [{}]\n\n[enforce]\nmode = \"monitor\"\n",
        list.join(", ")
    )
}

fn compiled(text: &str, version: u64) -> anyhow::Result<(EnforcePlan, Duration)> {
    let t0 = Instant::now();
    let p =
        Policy::parse(text, Path::new("bench-policy.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan =
        compile(&p, &Enricher::default(), &[], &[], version).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((plan, t0.elapsed()))
}

fn ipv4_dst(frame: &[u8]) -> Option<Ipv4Addr> {
    (frame.len() >= 34 && frame[12..14] == [0x08, 0x00])
        .then(|| Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]))
}

struct Row {
    rules: usize,
    prefixes: usize,
    base: f64,
    tg: f64,
    compile: Duration,
    encoded: usize,
    install: Duration,
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    let sizes: Vec<usize> = if a.smoke {
        a.packets = a.packets.min(100);
        a.repeat = a.repeat.min(20);
        a.changes = a.changes.min(3);
        vec![0, 1, 1_000]
    } else {
        vec![0, 1, 1_000, 100_000]
    };
    let frames = corpus_frames(&a.corpus, a.packets)?;
    let dsts: Vec<Ipv4Addr> = frames.iter().filter_map(|f| ipv4_dst(f)).collect();
    let mut ebpf = load_with_prefixes(1 << 16, 1 << 18)?;
    let control_map = ebpf.take_map(CONTROL).context("control map")?;
    let dup_control = match &control_map {
        Map::Array(d) => dup(d)?,
        _ => anyhow::bail!("CONTROL is not an array"),
    };
    let control: Array<MapData, u32> = Array::try_from(control_map)?;
    let nr_cpus = aya::util::nr_cpus().map_err(|(f, e)| anyhow::anyhow!("{f}: {e}"))?;
    let mut enf = Enforcer::take(&mut ebpf, dup_control, nr_cpus)?;
    let base: &Xdp = ebpf
        .program(PROG_XDP_BASELINE)
        .context("program")?
        .try_into()?;
    let tg: &Xdp = ebpf.program(PROG_XDP).context("program")?.try_into()?;
    let mut out = vec![0u8; 2048];
    let mut rows = Vec::new();
    // Every size's test runs on this one CPU, as receive-side scaling keeps a flow on one
    // CPU (see xdp_cost): the sample's flows stay in the table from size to size, claimed
    // by the CPU of the first warm-up.
    let cpu = tidegate_bench::xdp::this_and_other_cpu()?.0;
    for (i, &n) in sizes.iter().enumerate() {
        let (install, compile_t, encoded, prefixes) = if n == 0 {
            enf.clear()?;
            (Duration::ZERO, Duration::ZERO, 0, 0)
        } else {
            let (plan, ct) =
                compiled(&policy_text(n, &dsts, 0x9e37_79b9 + i as u64), i as u64 + 1)?;
            let bytes = plan.encode();
            let back = EnforcePlan::decode(&bytes)?;
            let t0 = Instant::now();
            enf.install(&back).map_err(anyhow::Error::msg)?;
            (t0.elapsed(), ct, bytes.len(), plan.prefixes.len())
        };
        anyhow::ensure!(
            (control.get(&CTL_ENFORCE, 0)? == 0) == (n == 0),
            "enforcement switched {} for a policy of {n} rules",
            if n == 0 { "on" } else { "off" }
        );
        // Warm up, then the baseline and tidegate back to back on each frame.
        let pinned = tidegate_bench::xdp::pin_to_cpu(cpu)?;
        for f in &frames {
            run_ns(tg, f, 1, &mut out)?;
        }
        let (mut b, mut t) = (0f64, 0f64);
        for f in &frames {
            b += run_ns(base, f, a.repeat, &mut out)?;
            t += run_ns(tg, f, a.repeat, &mut out)?;
        }
        drop(pinned);
        rows.push(Row {
            rules: n,
            prefixes,
            base: b / frames.len() as f64,
            tg: t / frames.len() as f64,
            compile: compile_t,
            encoded,
            install,
        });
    }
    let judged: u64 = enf.rule_totals()?.values().map(|t| t.packets).sum();

    // End to end: a collector transport publishes, the probe's sender installs, acks.
    let e2e = end_to_end(a.changes, if a.smoke { 1_000 } else { 100_000 }, &dsts)?;

    let mut s = tidegate_bench::report::heading("Enforcement cost");
    writeln!(
        s,
        "Method: BPF_PROG_TEST_RUN, {} real Ethernet frames sampled across the corpus, each run {} times \
         (kernel-measured mean per run, every run on one CPU); baseline (return-only XDP) and tidegate's \
         XDP program back to back on each frame. Policies are deny lists of N prefixes in monitor mode (every packet is judged and \
         passes on): half of them the sampled frames' destinations as host prefixes (exact-match map), the \
         rest pseudo-random /16–/28 blocks (LPM trie); {judged} packet runs matched a rule in all. \
         \"No policy\" is the program with enforcement off (`CONTROL[CTL_ENFORCE] = 0`).\n",
        frames.len(),
        a.repeat
    )?;
    writeln!(
        s,
        "| policy | prefixes in the kernel | baseline ns/pkt | tidegate ns/pkt | ratio | added by the policy ns/pkt | compile | plan size | install (fill, switch, grace, clear old) |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let off = rows[0].tg - rows[0].base;
    for r in &rows {
        let name = if r.rules == 0 {
            "no policy".to_string()
        } else {
            format!("{} rules", r.rules)
        };
        writeln!(
            s,
            "| {name} | {} | {:.1} | {:.1} | {:.2}× | {:+.1} | {:.1} ms | {} KiB | {:.1} ms |",
            r.prefixes,
            r.base,
            r.tg,
            r.tg / r.base,
            (r.tg - r.base) - off,
            r.compile.as_secs_f64() * 1e3,
            r.encoded / 1024,
            r.install.as_secs_f64() * 1e3
        )?;
    }
    writeln!(
        s,
        "\n## Policy change to enforcement, end to end\n\n\
         {} policy changes, alternating between two deny lists of {} prefixes: the collector transport \
         publishes the compiled plan, the probe's sender receives it over mutual TLS (loopback), installs it \
         in the kernel maps (idle generation, switch, RCU grace period, old generation cleared) and \
         acknowledges; time from publish to the acknowledgement arriving. Target: ≤ 2 s.\n",
        e2e.len(),
        e2e_prefixes(a.smoke)
    )?;
    writeln!(s, "| | p50 | p90 | max |\n|---|---:|---:|---:|")?;
    writeln!(
        s,
        "| publish → enforced and acknowledged | {:.1} ms | {:.1} ms | {:.1} ms |",
        quantile(&e2e, 0.5) * 1e3,
        quantile(&e2e, 0.9) * 1e3,
        quantile(&e2e, 1.0) * 1e3
    )?;
    tidegate_bench::report::publish(s, a.smoke, Some(&a.out))?;
    Ok(())
}

fn e2e_prefixes(smoke: bool) -> usize {
    if smoke { 1_000 } else { 100_000 }
}

/// The `q` quantile (nearest rank) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Publish-to-acknowledgement seconds of `changes` policy changes, sorted.
fn end_to_end(changes: usize, prefixes: usize, dsts: &[Ipv4Addr]) -> anyhow::Result<Vec<f64>> {
    let tmp = tempfile::tempdir()?;
    let probe = "bench-enforce";
    let certs = Certs::generate(&tmp.path().join("pki"), &[probe]);
    let sink = MemSink::new();
    let server = TestServer::start(&certs.transport_config(0), sink.clone());
    let mut cap = EbpfCapture::load(EbpfOptions {
        flow_entries: 1024,
        enforce: true,
        enforce_prefixes: (prefixes as u32 + 1024).next_power_of_two(),
        ..Default::default()
    })?;
    let enf = SharedEnforcer::new(cap.take_enforcer().context("enforcer")?);
    let mut o = probe_options(&certs, probe, server.addr, &tmp.path().join("spool"));
    o.enforcer = Some(enf.clone());
    let exp = exporter(o);
    let plans = [
        compiled(&policy_text(prefixes, dsts, 1), 0)?.0,
        compiled(&policy_text(prefixes, dsts, 2), 0)?.0,
    ];
    let mut lat = Vec::with_capacity(changes);
    for i in 0..changes {
        let mut plan = plans[i % 2].clone();
        plan.version = 100 + i as u64;
        let t0 = Instant::now();
        sink.publish(&plan);
        let _ = &enf;
        sink.wait_enforcing(probe, plan.version, Duration::from_secs(30))
            .context("the probe did not acknowledge the plan in 30 s")?;
        lat.push(t0.elapsed().as_secs_f64());
    }
    drop(exp);
    server.stop();
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}
