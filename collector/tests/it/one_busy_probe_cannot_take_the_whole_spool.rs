//! A line floods the collector while ClickHouse is down: its probe is held back at its
//! share of the spool (not acknowledged: it keeps its batches), while the other probes'
//! batches are still spooled and acknowledged; once ClickHouse is back, the held probe
//! goes on and every batch of each is stored once.

use std::time::Duration;

use tidegate_collector::spool::MAX_ENTRY_OVERHEAD;
use tidegate_testkit::{
    Stack, eventually,
    stack::{PROBES, StackOptions},
    transport::{Client, batch, say_hello, send, tls_connect},
};
use tidegate_wire::{DEFAULT_MAX_FRAME, Message, encode_batch, read_message_async};

/// Spool of 1 MiB in 64 KiB segments: past 512 KiB, each of the probes holding data may
/// hold at most an equal share of it.
const SPOOL: (u64, u64) = (1 << 20, 64 << 10);
/// Records per batch (each batch's packets: n(n+1)/2).
const RECORDS: u64 = 600;

async fn connect(s: &Stack, probe: &str) -> Client {
    // The stack's certificates are edge-1's and edge-2's; a further probe gets one from
    // the same CA.
    let cert = if PROBES.contains(&probe) {
        s.certs.probe(probe)
    } else {
        s.certs.issue_any(probe, 3)
    };
    let mut c = tls_connect(s.config.addr(), &s.certs.ca().cert, Some(&cert))
        .await
        .unwrap();
    match say_hello(&mut c, probe).await.unwrap() {
        Message::HelloAck(_) => c,
        m => panic!("{probe}: expected HelloAck, got {m:?}"),
    }
}

/// Sends batch `seq` of `probe`; returns its encoded size.
async fn send_batch(c: &mut Client, probe: &str, seq: u64) -> usize {
    let b = encode_batch(&batch(probe, seq, RECORDS));
    let len = b.len();
    send(c, &Message::Batch(b)).await.unwrap();
    len
}

/// The next Ack within `d` (its seq), or None when nothing arrives in time.
async fn ack_within(c: &mut Client, d: Duration) -> Option<u64> {
    match tokio::time::timeout(d, read_message_async(c, DEFAULT_MAX_FRAME)).await {
        Err(_) => None,
        Ok(Ok(Message::Ack(a))) => Some(a.seq),
        Ok(m) => panic!("expected an Ack, got {m:?}"),
    }
}

fn packets_of(s: &Stack, probe: &str) -> u64 {
    s.ch.query_sync(&format!(
        "SELECT sum(packets) FROM tidegate.flows WHERE probe_id = '{probe}' FORMAT TSV"
    ))
    .expect("query flows")
    .trim()
    .parse()
    .unwrap_or(0)
}

/// What the quiet probes do before the flood, and how many batches each sends while
/// the busy one is held back.
struct Quiet {
    probes: &'static [&'static str],
    /// Spool bytes each quiet probe fills before the flood (at least one batch).
    fill: u64,
    /// Batches each sends, acknowledged, while the busy one is held back.
    after: u64,
}

/// edge-1 floods while ClickHouse is down, after the quiet probes spooled `q.fill` bytes
/// each: it is held back at an equal share of the spool among the probes holding data
/// (itself included) and not before; the quiet ones are still taken in; once ClickHouse
/// is back everything acknowledged is stored once.
fn busy_probe_is_held_at_its_share(q: Quiet) {
    let mut s = Stack::start_with(StackOptions {
        spool_bytes: Some(SPOOL),
        ..StackOptions::default()
    });
    s.wait_for_schema();
    s.ch.stop();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let share = SPOOL.0 / (q.probes.len() as u64 + 1);
    let (mut busy, _quiet, seq, quiet_sent) = rt.block_on(async {
        // The quiet lines' probes have batches spooled before the flood starts.
        let (mut quiet, mut quiet_sent, mut batch_len) = (Vec::new(), Vec::new(), 0);
        for &p in q.probes {
            let mut c = connect(&s, p).await;
            let (mut seq, mut held) = (0, 0);
            while seq == 0 || held < q.fill {
                seq += 1;
                let len = send_batch(&mut c, p, seq).await as u64;
                batch_len = batch_len.max(len);
                assert_eq!(
                    ack_within(&mut c, Duration::from_secs(10)).await,
                    Some(seq),
                    "{p}'s batch {seq} before the flood"
                );
                held += len;
            }
            quiet.push(c);
            quiet_sent.push(seq);
        }
        assert!(
            batch_len * 8 < share,
            "a batch ({batch_len} bytes) is a small part of a share"
        );

        // The busy one sends until a batch is not acknowledged (an admitted batch is
        // acknowledged once synced: milliseconds, 10 s on the slowest machine).
        let mut busy = connect(&s, "edge-1").await;
        let (mut seq, mut acked, mut largest) = (0u64, 0u64, batch_len);
        loop {
            seq += 1;
            let len = send_batch(&mut busy, "edge-1", seq).await as u64;
            largest = largest.max(len);
            match ack_within(&mut busy, Duration::from_secs(10)).await {
                Some(a) => {
                    assert_eq!(a, seq);
                    acked += len;
                    assert!(
                        acked <= share,
                        "edge-1 was let in past its share of the spool ({acked} bytes \
                         acknowledged, share {share}) while {:?} hold data",
                        q.probes
                    );
                }
                None => break,
            }
        }
        // Held back at its share, not before: it is let in while what it holds (its
        // batches and their entries' headers) plus the next entry fits in the share.
        let header = MAX_ENTRY_OVERHEAD as u64;
        assert!(
            acked + seq * header + largest > share,
            "edge-1 was held back at {acked} bytes ({} batches), short of its share ({share})",
            seq - 1
        );

        // Meanwhile the quiet probes are still taken in, up to their own shares.
        for _ in 0..q.after {
            for (i, &p) in q.probes.iter().enumerate() {
                quiet_sent[i] += 1;
                let n = quiet_sent[i];
                send_batch(&mut quiet[i], p, n).await;
                assert_eq!(
                    ack_within(&mut quiet[i], Duration::from_secs(10)).await,
                    Some(n),
                    "{p}'s batch {n} waits behind edge-1's flood"
                );
            }
        }
        assert_eq!(
            ack_within(&mut busy, Duration::from_millis(500)).await,
            None,
            "edge-1 is still held back"
        );
        (busy, quiet, seq, quiet_sent)
    });

    // ClickHouse back: the spool drains, edge-1's waiting batch is taken, then the rest
    // of its flood.
    s.ch.resume();
    let busy_sent = rt.block_on(async {
        assert_eq!(
            ack_within(&mut busy, Duration::from_secs(90)).await,
            Some(seq),
            "edge-1's waiting batch is acknowledged once the spool drains"
        );
        for more in seq + 1..=seq + 3 {
            send_batch(&mut busy, "edge-1", more).await;
            assert_eq!(
                ack_within(&mut busy, Duration::from_secs(30)).await,
                Some(more)
            );
        }
        seq + 3
    });
    let per_batch = RECORDS * (RECORDS + 1) / 2;
    let mut want: Vec<(&str, u64)> = q.probes.iter().copied().zip(quiet_sent).collect();
    want.push(("edge-1", busy_sent));
    eventually("every batch in ClickHouse", Duration::from_secs(90), || {
        want.iter()
            .all(|&(p, batches)| packets_of(&s, p) >= batches * per_batch)
    });
    for (p, batches) in want {
        assert_eq!(
            packets_of(&s, p),
            batches * per_batch,
            "{p}: every acknowledged batch stored once"
        );
    }
}

#[test]
fn one_busy_probe_cannot_take_the_whole_spool() {
    // One quiet probe with a batch: the busy one gets half.
    busy_probe_is_held_at_its_share(Quiet {
        probes: &["edge-2"],
        fill: 0,
        after: 5,
    });
}

#[test]
fn beside_two_probes_holding_data_a_busy_one_gets_a_third_of_the_spool() {
    // Two quiet probes fill more than half of the spool between them first: the busy
    // one is then bound by its third (not half: the rule counts every holder), and the
    // spool still has room when it is held back.
    busy_probe_is_held_at_its_share(Quiet {
        probes: &["edge-2", "edge-3"],
        fill: SPOOL.0 * 28 / 100,
        after: 1,
    });
}
