//! The peers benchmark as Markdown.

use std::fmt::Write as _;

use super::{Outcome, Results, Tool};

fn mib(b: Option<u64>) -> String {
    b.map_or("–".into(), |b| {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    })
}

fn group(n: u64) -> String {
    crate::numbers::thousands(&n.to_string())
}

/// One line per finished run, for the terminal.
pub fn progress_line(o: &Outcome) -> String {
    match (&o.counted, &o.error) {
        (Some(c), _) => format!(
            "{:>9} at {:>4}: offered {:>9.0} pps, sent {}, link drops {}, accounted {} ({:.4}), flows {}{}",
            o.tool.name(),
            o.rate().label(),
            o.offered_pps,
            o.sent,
            o.link_dropped,
            c.packets,
            o.packet_ratio().unwrap_or(0.0),
            c.flows,
            o.error
                .as_ref()
                .map(|e| format!(" [{e}]"))
                .unwrap_or_default()
        ),
        (None, e) => format!(
            "{:>9} at {:>4}: FAILED: {}",
            o.tool.name(),
            o.rate().label(),
            e.as_deref().unwrap_or("?")
        ),
    }
}

/// The results file.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Loss at the generator's rates over a veth: tidegate vs libpcap flow exporters (generated)\n"
    );
    if let Some(m) = &r.machine {
        let _ = writeln!(s, "{}", m.markdown());
    }
    let _ = writeln!(s, "Command: `{}`\n", r.command);
    let per_flow = r.packets / r.flows.max(1) as u64;
    let _ = writeln!(
        s,
        "Workload: trafgen sends {} frames of {} bytes (IPv4/UDP, minimum size) over {} flows \
         (source port cycling, {} packets each: the truth is exact) from one end of a veth pair in its \
         own network namespace (one trafgen process, rate-limited or flat out; `max×N`: N processes \
         flat out, each cycling over every flow, so the truth stays exact); the tool under test captures on the other end, in a second namespace \
         where nothing else runs. For every offered rate each tool runs in turn on the same replay \
         (the order rotates per rate); after trafgen exits the tool gets {} to drain, then is stopped \
         and flushes every flow. *Offered* is the rate the sender's interface transmitted at (its \
         counter sampled every 2 ms); *sent* its frame count; *link drops* are frames the veth dropped \
         before the probed end (sender `tx_dropped` + receiver `rx_dropped`), which no tool can see. \
         *Accounted* is the sum of packets over the tool's records for the workload's flows. Both \
         CPUs are shared by the generator, the kernel's receive path and the tool (and other work on \
         the machine: see the load average).\n",
        group(r.packets),
        r.frame_len,
        group(r.flows as u64),
        per_flow,
        if r.smoke { "0.5 s" } else { "2 s" },
    );
    let _ = writeln!(s, "![Loss vs offered rate](loss_vs_rate.png)\n");

    // Headline: the highest offered rate.
    let max_rate = r
        .outcomes
        .iter()
        .map(|o| o.rate())
        .max_by_key(|x| x.order());
    let at_max: Vec<&Outcome> = r
        .outcomes
        .iter()
        .filter(|o| Some(o.rate()) == max_rate)
        .collect();
    let tg = at_max
        .iter()
        .find(|o| o.tool == Tool::Tidegate)
        .and_then(|o| o.counted.as_ref().map(|c| c.packets));
    let _ = writeln!(
        s,
        "## At the highest offered rate ({})\n",
        max_rate.map_or("–".into(), |x| x.label())
    );
    let _ = writeln!(
        s,
        "| tool | offered pps | generated | sent (on the wire) | accounted | accounted / sent | loss | flows / true | accounted vs tidegate |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for o in &at_max {
        let (acc, ratio, loss, flows, vs) = match &o.counted {
            Some(c) => (
                group(c.packets),
                format!("{:.4}", o.packet_ratio().unwrap_or(0.0)),
                format!("{:.2} %", o.loss_pct().unwrap_or(0.0)),
                format!("{} / {}", group(c.flows), group(r.flows as u64)),
                tg.filter(|t| *t > 0).map_or("–".into(), |t| {
                    format!("{:.3}×", c.packets as f64 / t as f64)
                }),
            ),
            None => (
                "failed".into(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ),
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {acc} | {ratio} | {loss} | {flows} | {vs} |",
            o.tool.name(),
            o.offered_pps,
            group(o.generated),
            group(o.sent)
        );
    }
    let _ = writeln!(
        s,
        "\nTarget: tidegate exact (accounted = sent, every flow); peers as measured.\n\n\
         *Generated* vs *sent*: trafgen bypasses the qdisc (its default). With an XDP program on the \
         receiving veth end, the veth receives in NAPI mode through a small ring; when that ring is \
         full the veth stops its queue, and frames trafgen sends past the qdisc are dropped before they \
         reach the wire (no interface counter sees them: *generated* − *sent*). Without XDP (the \
         libpcap peers) the veth hands frames to the receive backlog and the sender is not pushed \
         back, so the tool's capture ring overflows instead. So at the highest rates tidegate can be \
         offered less than the peers (the XDP receive path paces the sender); *accounted / sent* is \
         what each tool made of what reached its interface, *accounted / generated* what it made of \
         what the generator tried to send. In the XDP mode the veth's own counters can trail \
         the frames XDP saw by a fraction of a percent (accounted / sent slightly above 1); tidegate's \
         own counters are in the last column.\n"
    );

    let _ = writeln!(s, "## Every rate\n");
    let _ = writeln!(
        s,
        "| requested | tool | offered pps | generated | sent (on the wire) | link drops | received | accounted | accounted / sent | loss | accounted / generated | flows / true | foreign records | peak RSS | tool's own counters |"
    );
    let _ = writeln!(
        s,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    );
    let mut sorted: Vec<&Outcome> = r.outcomes.iter().collect();
    sorted.sort_by_key(|o| {
        (
            o.rate().order(),
            Tool::ALL.iter().position(|t| *t == o.tool),
        )
    });
    for o in sorted {
        match &o.counted {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.4} | {:.2} % | {:.4} | {} / {} | {} | {} | {} |",
                    o.rate().label(),
                    o.tool.name(),
                    o.offered_pps,
                    group(o.generated),
                    group(o.sent),
                    group(o.link_dropped),
                    group(o.received),
                    group(c.packets),
                    o.packet_ratio().unwrap_or(0.0),
                    o.loss_pct().unwrap_or(0.0),
                    c.packets as f64 / o.generated.max(1) as f64,
                    group(c.flows),
                    group(r.flows as u64),
                    c.foreign_records,
                    mib(o.peak_rss),
                    c.note.replace('|', "/")
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "| {} | {} | – | – | – | – | – | failed: {} | | | | | | | |",
                    o.rate().label(),
                    o.tool.name(),
                    o.error
                        .as_deref()
                        .unwrap_or("?")
                        .replace('|', "/")
                        .replace('\n', " ")
                );
            }
        }
    }
    if !r.missing.is_empty() {
        let _ = writeln!(
            s,
            "\nNot installed, skipped: {} (run `scripts/setup-bench.sh`).",
            r.missing
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(s, "\n## Settings (made fair)\n");
    let _ = writeln!(
        s,
        "Every tool holds far more flows than the workload has, uses timeouts longer than a run \
         (so nothing is exported early), flushes everything it holds when stopped, and reads at most \
         {} bytes of each frame where a snap length can be set; libpcap peers get a {} MiB capture \
         buffer where the tool lets it be set. Peak RSS is the tool's main process only (tidegate's \
         eBPF maps are kernel memory, not in it).\n",
        super::tools::SNAPLEN,
        super::tools::PCAP_BUFFER_BYTES >> 20
    );
    for t in Tool::ALL {
        let _ = writeln!(
            s,
            "- **{}** (Debian: {}): {}",
            t.name(),
            t.package(),
            t.settings()
        );
    }
    if r.smoke {
        s.push_str(crate::report::SMOKE_NOTE);
        s.push('\n');
    }
    s
}
