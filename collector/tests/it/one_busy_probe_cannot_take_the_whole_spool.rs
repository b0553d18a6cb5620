//! A line floods the collector while ClickHouse is down: its probe is held back at its
//! share of the spool (not acknowledged: it keeps its batches), while the other probe's
//! batches are still spooled and acknowledged; once ClickHouse is back, the held probe
//! goes on and every batch of both is stored once.

use std::time::Duration;

use tidegate_collector::spool::MAX_ENTRY_OVERHEAD;
use tidegate_testkit::{
    Stack, eventually,
    stack::StackOptions,
    transport::{Client, batch, say_hello, send, tls_connect},
};
use tidegate_wire::{DEFAULT_MAX_FRAME, Message, encode_batch, read_message_async};

/// Spool of 1 MiB in 64 KiB segments: past 512 KiB, with two probes holding data, each
/// may hold at most half of it.
const SPOOL: (u64, u64) = (1 << 20, 64 << 10);
/// Records per batch (each batch's packets: n(n+1)/2).
const RECORDS: u64 = 600;

async fn connect(s: &Stack, probe: &str) -> Client {
    let mut c = tls_connect(
        s.config.addr(),
        &s.certs.ca().cert,
        Some(&s.certs.probe(probe)),
    )
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

#[test]
fn one_busy_probe_cannot_take_the_whole_spool() {
    let mut s = Stack::start_with(StackOptions {
        spool_bytes: Some(SPOOL),
        ..StackOptions::default()
    });
    s.wait_for_schema();
    s.ch.stop();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let half = SPOOL.0 / 2;
    let (mut busy, _quiet, seq) = rt.block_on(async {
        // The quiet line's probe has a batch spooled before the flood starts.
        let mut quiet = connect(&s, "edge-2").await;
        let batch_len = send_batch(&mut quiet, "edge-2", 1).await as u64;
        assert!(
            batch_len * 8 < half,
            "a batch ({batch_len} bytes) is a small part of a share"
        );
        assert_eq!(
            ack_within(&mut quiet, Duration::from_secs(10)).await,
            Some(1)
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
                        acked <= half,
                        "edge-1 was let in past its half of the spool ({acked} bytes \
                         acknowledged) while edge-2 holds data"
                    );
                }
                None => break,
            }
        }
        // Held back at its share, not before: it is let in while what it holds (its
        // batches and their entries' headers) plus the next entry fits in half.
        let header = MAX_ENTRY_OVERHEAD as u64;
        assert!(
            acked + seq * header + largest > half,
            "edge-1 was held back at {acked} bytes ({} batches), short of its share ({half})",
            seq - 1
        );

        // Meanwhile the quiet probe is still taken in, up to its own share.
        for q in 2..=6 {
            send_batch(&mut quiet, "edge-2", q).await;
            assert_eq!(
                ack_within(&mut quiet, Duration::from_secs(10)).await,
                Some(q),
                "edge-2's batch {q} waits behind edge-1's flood"
            );
        }
        assert_eq!(
            ack_within(&mut busy, Duration::from_millis(500)).await,
            None,
            "edge-1 is still held back"
        );
        (busy, quiet, seq)
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
    let want = [("edge-2", 6), ("edge-1", busy_sent)];
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
