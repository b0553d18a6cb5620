use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;

fn cfg(dir: &std::path::Path, max: u64, seg: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: max,
        segment_bytes: seg,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn appends_come_back_in_order_and_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, mut rd) = Spool::open(cfg(d.path(), 1 << 30, 4096)).unwrap();
        let mut handles = Vec::new();
        for seq in 1..=200u64 {
            let s = spool.clone();
            // Appends from one probe are issued in order; await each before the next.
            handles.push(
                s.append("p1", 0, seq, format!("batch-{seq}").as_bytes())
                    .await
                    .unwrap(),
            );
        }
        assert!(
            handles.windows(2).all(|w| w[0] < w[1]),
            "positions increase"
        );
        for seq in 1..=120u64 {
            let e = rd.next().await.unwrap();
            assert_eq!(
                (e.probe_id.as_str(), e.seq, e.payload.clone()),
                ("p1", seq, format!("batch-{seq}").into_bytes())
            );
            if seq == 120 {
                rd.commit(e.end, 120).unwrap();
            }
        }
        assert_eq!(spool.last_seq("p1", 0), Some(200));
        assert_eq!(spool.pending(), 80);
    });
    // Reopen: the reader resumes after the committed entry; marks are kept.
    rt().block_on(async {
        let (spool, mut rd) = Spool::open(cfg(d.path(), 1 << 30, 4096)).unwrap();
        assert_eq!(spool.last_seq("p1", 0), Some(200));
        assert_eq!(spool.pending(), 80);
        for seq in 121..=200u64 {
            assert_eq!(rd.next().await.unwrap().seq, seq);
        }
        assert!(rd.try_next().unwrap().is_none());
        let segs = std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert!(segs >= 1);
    });
}

#[test]
fn committed_segments_are_deleted_and_marks_outlive_them() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, mut rd) = Spool::open(cfg(d.path(), 1 << 30, 1024)).unwrap();
        for seq in 1..=100u64 {
            spool.append("edge-1", 0, seq, &[7u8; 100]).await.unwrap();
        }
        let before = spool.bytes();
        let mut last = None;
        for _ in 0..100 {
            last = Some(rd.next().await.unwrap());
        }
        // One more append so the final commit lands in the newest segment.
        spool.append("edge-1", 0, 101, &[7u8; 100]).await.unwrap();
        let e = rd.next().await.unwrap();
        assert_eq!(e.seq, 101);
        drop(last);
        rd.commit(e.end, 101).unwrap();
        assert!(
            spool.bytes() < before / 4,
            "segments freed: {} of {before}",
            spool.bytes()
        );
    });
    let segs: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    rt().block_on(async {
        let (spool, mut rd) = Spool::open(cfg(d.path(), 1 << 30, 1024)).unwrap();
        assert_eq!(
            spool.last_seq("edge-1", 0),
            Some(101),
            "mark survives deletion of its segment"
        );
        assert!(rd.try_next().unwrap().is_none());
    });
}

#[test]
fn torn_tail_is_cut_and_acknowledged_entries_kept() {
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, _rd) = Spool::open(cfg(d.path(), 1 << 30, 1 << 20)).unwrap();
        for seq in 1..=5 {
            spool.append("p", 0, seq, b"ok").await.unwrap();
        }
    });
    let seg = d.path().join(segment_name(0));
    let good_len = std::fs::metadata(&seg).unwrap().len();
    // A crash in the middle of an append leaves half an entry.
    let half = &entry::encode("p", 0, 6, b"never acknowledged")[..15];
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(half)
        .unwrap();
    rt().block_on(async {
        let (spool, mut rd) = Spool::open(cfg(d.path(), 1 << 30, 1 << 20)).unwrap();
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
        assert_eq!(spool.last_seq("p", 0), Some(5));
        for seq in 1..=5 {
            assert_eq!(rd.next().await.unwrap().seq, seq);
        }
        spool.append("p", 0, 6, b"again").await.unwrap();
        assert_eq!(rd.next().await.unwrap().payload, b"again");
    });
}

#[test]
fn corruption_inside_a_sealed_segment_is_an_error_not_silent_loss() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, _rd) = Spool::open(cfg(d.path(), 1 << 30, 256)).unwrap();
        for seq in 1..=20 {
            spool.append("p", 0, seq, &[1u8; 60]).await.unwrap();
        }
    });
    let seg = d.path().join(segment_name(0));
    let mut b = std::fs::read(&seg).unwrap();
    b[20] ^= 0xff;
    std::fs::write(&seg, b).unwrap();
    let err = Spool::open(cfg(d.path(), 1 << 30, 256))
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn a_full_spool_makes_appends_wait_until_a_commit_frees_space() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, mut rd) = Spool::open(cfg(d.path(), 2048, 1024)).unwrap();
        let mut n = 0u64;
        // Fill until an append would block.
        loop {
            let fut = spool.append("p", 0, n + 1, &[0u8; 200]);
            match tokio::time::timeout(Duration::from_millis(200), fut).await {
                Ok(r) => {
                    r.unwrap();
                    n += 1;
                }
                Err(_) => break,
            }
            assert!(n < 100, "the spool never filled");
        }
        assert!(spool.bytes() <= 2048 + 300);
        // The blocked append goes through once the reader commits.
        let s2 = spool.clone();
        let blocked = tokio::spawn(async move { s2.append("p", 0, 1000, &[0u8; 200]).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!blocked.is_finished());
        let mut last = None;
        for _ in 0..n {
            last = Some(rd.next().await.unwrap());
        }
        rd.commit(last.unwrap().end, n).unwrap();
        // Commit only frees whole segments; keep draining until the blocked one lands.
        let done = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if blocked.is_finished() {
                    break;
                }
                if let Some(e) = rd.try_next().unwrap() {
                    rd.commit(e.end, 1).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(done.is_ok(), "append stayed blocked");
    });
}

/// Appends 200-byte batches as `holder` `probe` from `seq` on until one is not let in
/// (it would wait for room); the number appended. Admission takes the bytes at the
/// append's first poll, so one let in but slow to sync is told apart from one that waits.
async fn fill_as(spool: &Spool, holder: Holder, probe: &str, seq: u64) -> u64 {
    use std::{future::Future, task::Poll};
    let mut n = 0;
    loop {
        let before = spool.bytes();
        let mut append = Box::pin(spool.append_as(holder, probe, 0, seq + n, &[0u8; 200]));
        let first = std::future::poll_fn(|cx| Poll::Ready(append.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(r) => {
                r.unwrap();
            }
            Poll::Pending if spool.bytes() > before => {
                append.await.unwrap();
            }
            Poll::Pending => return n,
        }
        n += 1;
        assert!(n < 100, "{probe}'s appends never waited");
    }
}

async fn fill(spool: &Spool, probe: &str, seq: u64) -> u64 {
    fill_as(spool, Holder::Probe, probe, seq).await
}

#[test]
fn an_exporter_is_bound_by_the_room_only_and_holds_no_share() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let max = 8192;
        let (spool, _rd) = Spool::open(cfg(d.path(), max, 1024)).unwrap();
        spool.append("probe", 0, 1, &[0u8; 200]).await.unwrap();
        // Past half full an exporter goes on until the spool is full (a probe in its
        // place would wait at half: the test below).
        let n = fill_as(&spool, Holder::Exporter, "exporter:rtr", 1).await;
        assert!(n > 0);
        assert!(
            spool.bytes() + 300 > max,
            "{} of {max} bytes when the exporter waited",
            spool.bytes()
        );
        assert_eq!(spool.held_by("exporter:rtr"), 0);
    });
}

#[test]
fn a_probe_that_fills_the_spool_waits_at_its_share_while_the_others_are_spooled() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let max = 8192;
        let (spool, mut rd) = Spool::open(cfg(d.path(), max, 1024)).unwrap();
        spool.append("quiet", 0, 1, &[0u8; 200]).await.unwrap();
        // The busy probe sends without pause: past half full it waits at its share
        // (half the spool: two probes hold data), not when the spool is full.
        let busy = fill(&spool, "busy", 1).await;
        let held = spool.held_by("busy");
        assert!(
            held <= max / 2 && held + 300 > max / 2,
            "busy holds {held} of {max}"
        );
        // The quiet probe is still spooled, up to the room left.
        let quiet = fill(&spool, "quiet", 2).await;
        assert!(quiet >= 10, "the quiet probe got {quiet} batches in");
        assert!(spool.bytes() <= max);
        // Commits free the spool; the busy probe goes on.
        let s2 = spool.clone();
        let waiting = tokio::spawn(async move { s2.append("busy", 0, 1000, &[0u8; 200]).await });
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while !waiting.is_finished() {
                if let Some(e) = rd.try_next().unwrap() {
                    rd.commit(e.end, 1).unwrap();
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "the busy probe's append stayed blocked");
        assert_eq!(spool.last_seq("busy", 0), Some(1000));
        assert_eq!(spool.last_seq("quiet", 0), Some(quiet + 1));
        assert!(busy > 0);
    });
}

#[test]
fn shares_are_recovered_from_the_segments_on_reopen() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), 8192, 1024);
    let before = rt().block_on(async {
        let (spool, _rd) = Spool::open(c.clone()).unwrap();
        for i in 1..=5 {
            spool.append("a", 0, i, &[0u8; 300]).await.unwrap();
        }
        spool.append("b", 0, 1, &[0u8; 10]).await.unwrap();
        (spool.held_by("a"), spool.held_by("b"))
    });
    rt().block_on(async {
        let (spool, mut rd) = Spool::open(c).unwrap();
        assert_eq!((spool.held_by("a"), spool.held_by("b")), before);
        assert_eq!(before.0 + before.1, spool.bytes());
        // The recovered shares are given back as their segments are deleted: commit
        // everything, roll to a new segment, commit that.
        let mut end = None;
        while let Some(e) = rd.try_next().unwrap() {
            end = Some(e.end);
        }
        rd.commit(end.unwrap(), 6).unwrap();
        let end = spool.append("c", 0, 1, &[0u8; 900]).await.unwrap();
        while rd.try_next().unwrap().is_some() {}
        rd.commit(end, 1).unwrap();
        assert_eq!((spool.held_by("a"), spool.held_by("b")), (0, 0));
    });
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let first = Spool::open(cfg(d.path(), 1 << 30, 4096)).unwrap();
    let e = Spool::open(cfg(d.path(), 1 << 30, 4096))
        .err()
        .expect("refused");
    assert!(matches!(e, SpoolError::Locked(_)), "{e}");
    assert!(e.to_string().contains("in use by another process"), "{e}");
    drop(first);
}

#[test]
fn sequences_of_one_probe_are_kept_apart_across_restarts_and_segment_deletion() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, mut rd) = Spool::open(cfg(d.path(), 1 << 30, 4096)).unwrap();
        for seq in 1..=60u64 {
            spool.append("p", 11, seq, &[1u8; 100]).await.unwrap();
        }
        for seq in 1..=5u64 {
            spool.append("p", 22, seq, &[2u8; 100]).await.unwrap();
        }
        let mut last = None;
        for _ in 0..65 {
            let e = rd.next().await.unwrap();
            last = Some(e.end);
            assert!(e.epoch == 11 || e.epoch == 22);
        }
        // Everything committed: the segments go, probes.json keeps the marks.
        rd.commit(last.unwrap(), 65).unwrap();
        assert_eq!(spool.last_seq("p", 11), Some(60));
        assert_eq!(spool.last_seq("p", 22), Some(5));
        assert_eq!(spool.last_seq("p", 33), None);
    });
    rt().block_on(async {
        let (spool, _rd) = Spool::open(cfg(d.path(), 1 << 30, 4096)).unwrap();
        assert_eq!(spool.last_seq("p", 11), Some(60));
        assert_eq!(spool.last_seq("p", 22), Some(5));
        assert_eq!(spool.last_seq("p", 0), None);
    });
}

/// Appends `seq` of probe `p1`; the payload names it.
async fn put(spool: &Spool, seq: u64) -> Result<Position, SpoolError> {
    spool
        .append("p1", 0, seq, format!("batch-{seq}").as_bytes())
        .await
}

/// Everything a fresh reader of `dir` yields, by sequence number.
fn replayed(dir: &std::path::Path, seg: u64) -> Vec<u64> {
    rt().block_on(async {
        let (_spool, mut rd) = Spool::open(cfg(dir, 1 << 30, seg)).unwrap();
        let mut seqs = Vec::new();
        while let Some(e) = rd.try_next().unwrap() {
            assert_eq!(e.payload, format!("batch-{}", e.seq).into_bytes());
            seqs.push(e.seq);
        }
        seqs
    })
}

#[test]
fn a_write_that_fails_part_way_leaves_no_garbage_before_the_next_batches() {
    // A full disk fails batch 2 after 20 of its bytes. Batch 3 then goes in: the reader
    // and a restart see 1 and 3, and batch 2 again once the probe resends it.
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, mut rd) = Spool::open(cfg(d.path(), 1 << 30, 1 << 20)).unwrap();
        put(&spool, 1).await.unwrap();
        spool.fault().write_budget.store(20, Ordering::Relaxed);
        let e = put(&spool, 2).await.unwrap_err();
        assert!(e.to_string().contains("no space left"), "{e}");
        spool
            .fault()
            .write_budget
            .store(u64::MAX, Ordering::Relaxed);
        assert_eq!(spool.last_seq("p1", 0), Some(1), "2 is not acknowledged");
        put(&spool, 3).await.unwrap();
        let mut seqs = Vec::new();
        while let Some(e) = rd.try_next().unwrap() {
            seqs.push(e.seq);
        }
        assert_eq!(seqs, [1, 3]);
        assert_eq!(spool.pending(), 2);
    });
    assert_eq!(replayed(d.path(), 1 << 20), [1, 3]);
    rt().block_on(async {
        let (spool, _rd) = Spool::open(cfg(d.path(), 1 << 30, 1 << 20)).unwrap();
        put(&spool, 2).await.unwrap();
    });
    assert_eq!(replayed(d.path(), 1 << 20), [1, 3, 2]);
}

#[test]
fn a_failed_fdatasync_stops_the_spool_until_a_restart_and_acknowledges_nothing_after_it() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, _rd) = Spool::open(cfg(d.path(), 1 << 30, 1 << 20)).unwrap();
        put(&spool, 1).await.unwrap();
        spool.fault().fail_sync.store(true, Ordering::Relaxed);
        assert!(put(&spool, 2).await.is_err());
        // The kernel may report a lost write once only: no later sync is trusted.
        let e = put(&spool, 3).await.unwrap_err();
        assert!(
            e.to_string().contains("until the collector restarts"),
            "{e}"
        );
        assert_eq!(spool.last_seq("p1", 0), Some(1));
        let one = entry::encode("p1", 0, 1, b"batch-1").len() as u64;
        assert_eq!(
            spool.bytes(),
            one,
            "the failed batches' bytes are given back"
        );
    });
    // After a restart the spool takes batches again.
    rt().block_on(async {
        let (spool, _rd) = Spool::open(cfg(d.path(), 1 << 30, 1 << 20)).unwrap();
        put(&spool, 2).await.unwrap();
        put(&spool, 3).await.unwrap();
    });
    assert_eq!(replayed(d.path(), 1 << 20), [1, 2, 3]);
}

#[test]
fn a_group_split_by_a_segment_roll_acknowledges_what_the_roll_made_durable() {
    // Segments of 200 bytes: each holds a few batches. Concurrent appends form groups
    // across rolls; a write failure mid-way acknowledges exactly the batches stored.
    let d = tempfile::tempdir().unwrap();
    let (acked, failed) = rt().block_on(async {
        let (spool, _rd) = Spool::open(cfg(d.path(), 1 << 30, 200)).unwrap();
        let one = entry::encode("p1", 0, 1, b"batch-1").len() as u64;
        // Room for five batches and part of a sixth.
        spool
            .fault()
            .write_budget
            .store(5 * one + 7, Ordering::Relaxed);
        let mut tasks = Vec::new();
        for seq in 1..=12u64 {
            let s = spool.clone();
            tasks.push(tokio::spawn(async move { (seq, put(&s, seq).await) }));
        }
        let (mut acked, mut failed) = (Vec::new(), Vec::new());
        for t in tasks {
            let (seq, r) = t.await.unwrap();
            match r {
                Ok(_) => acked.push(seq),
                Err(_) => failed.push(seq),
            }
        }
        (acked, failed)
    });
    assert_eq!(acked.len(), 5, "acked {acked:?}, failed {failed:?}");
    let mut seqs = replayed(d.path(), 200);
    seqs.sort_unstable();
    assert_eq!(seqs, acked, "stored exactly what was acknowledged");
}
