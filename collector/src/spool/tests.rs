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
