//! ClickHouse goes away while the collector runs: inserts fail fast with retryable errors
//! (bounded by insert_timeout), and once it is back the spool's retries store every batch
//! once — also when the server had committed an insert whose answer never arrived.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tidegate_collector::sinks::clickhouse::{
    ClickHouseConfig, ClickHouseSink, InsertLabels, Outcome, SinkError, SinkMetrics,
};
use tidegate_testkit::{TestClickHouse, eventually_async as eventually, probe::corpus_records};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn config(url: String, database: &str, insert_timeout: Duration) -> ClickHouseConfig {
    ClickHouseConfig {
        url,
        database: database.into(),
        retention_days: 0,
        insert_timeout,
        ..Default::default()
    }
}

fn failures(m: &SinkMetrics, outcome: Outcome) -> u64 {
    m.inserts
        .get_or_create(&InsertLabels {
            table: "flows",
            outcome,
        })
        .get()
}

#[tokio::test]
async fn clickhouse_down_then_back_loses_and_doubles_nothing() {
    let records = corpus_records();
    let (b1, b2) = (&records[..120], &records[120..300]);
    let mut ch = TestClickHouse::start();
    let metrics = SinkMetrics::default();
    let timeout = Duration::from_secs(3);
    let s = ClickHouseSink::connect(config(ch.url(), "tg_outage", timeout), metrics.clone())
        .await
        .unwrap();
    s.migrate().await.unwrap();
    s.insert_batch("edge-1", 1, b1).await.unwrap();

    ch.stop();
    assert!(!s.ping().await);
    for _ in 0..3 {
        let started = Instant::now();
        let e = s.insert_batch("edge-1", 2, b2).await.unwrap_err();
        let took = started.elapsed();
        assert!(e.is_retryable(), "{e}");
        assert!(matches!(e, SinkError::Unreachable { .. }), "{e:?}");
        assert!(
            took < timeout,
            "refused connections fail at once, took {took:?}"
        );
        assert!(
            e.to_string()
                .contains("insert of 180 rows into flows (token edge-1:2)"),
            "{e}"
        );
    }
    assert_eq!(failures(&metrics, Outcome::Retryable), 3);

    ch.resume();
    assert!(eventually(Duration::from_secs(10), async || s.ping().await).await);
    // The spool replays what was not acknowledged, and may replay batch 1 again too.
    s.insert_batch("edge-1", 2, b2).await.unwrap();
    s.insert_batch("edge-1", 1, b1).await.unwrap();
    let packets: u64 = records[..300].iter().map(|r| r.packets).sum();
    assert_eq!(
        ch.query("SELECT count(), sum(packets) FROM tg_outage.flows")
            .await,
        format!("300\t{packets}")
    );
    assert_eq!(
        ch.query("SELECT sum(flows), sum(packets) FROM tg_outage.flows_1m")
            .await,
        format!("300\t{packets}")
    );
    assert_eq!(failures(&metrics, Outcome::Ok), 3);
    assert_eq!(failures(&metrics, Outcome::Permanent), 0);
}

#[tokio::test]
async fn a_server_that_never_answers_is_cut_off_at_insert_timeout() {
    // Accepts connections and reads requests, never answers (a hung server or a black hole).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0; 65536];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    let timeout = Duration::from_millis(1500);
    let s = ClickHouseSink::connect(config(url, "tidegate", timeout), SinkMetrics::default())
        .await
        .unwrap();
    let records = corpus_records();

    let started = Instant::now();
    let e = s
        .insert_batch("edge-1", 1, &records[..10])
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, SinkError::Timeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(e.to_string().ends_with("timed out after 1.5s"), "{e}");

    let started = Instant::now();
    assert!(!s.ping().await);
    assert!(started.elapsed() < timeout + Duration::from_secs(1));
    let e = s.migrate().await.unwrap_err();
    assert!(
        matches!(e, SinkError::Timeout { .. }) && e.is_retryable(),
        "{e:?}"
    );
}

/// A TCP proxy to `upstream` that, while `drop_answers` is set, lets requests through but
/// closes the client's connection when the server's answer starts, so the server has
/// done the work and the client only sees a broken connection.
async fn answer_dropping_proxy(upstream: u16) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let drop_answers = Arc::new(AtomicBool::new(false));
    let flag = drop_answers.clone();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let flag = flag.clone();
            tokio::spawn(async move {
                let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                let (mut client_rd, mut client_wr) = client.into_split();
                let (mut server_rd, mut server_wr) = server.into_split();
                let requests =
                    tokio::spawn(
                        async move { tokio::io::copy(&mut client_rd, &mut server_wr).await },
                    );
                let mut buf = vec![0; 65536];
                while let Ok(n) = server_rd.read(&mut buf).await {
                    if n == 0 || flag.load(Ordering::SeqCst) {
                        break;
                    }
                    if client_wr.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                requests.abort();
            });
        }
    });
    (url, drop_answers)
}

#[tokio::test]
async fn an_insert_committed_whose_answer_was_lost_is_not_doubled_by_the_retry() {
    let records = corpus_records();
    let (b1, b2) = (&records[..100], &records[100..250]);
    let ch = TestClickHouse::start();
    let (url, drop_answers) = answer_dropping_proxy(ch.port()).await;
    let s = ClickHouseSink::connect(
        config(url, "tg_lost", Duration::from_secs(10)),
        SinkMetrics::default(),
    )
    .await
    .unwrap();
    s.migrate().await.unwrap();
    s.insert_batch("edge-1", 1, b1).await.unwrap();

    drop_answers.store(true, Ordering::SeqCst);
    let e = s.insert_batch("edge-1", 2, b2).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    // The server stored batch 2 although the collector was told nothing.
    assert_eq!(ch.query("SELECT count() FROM tg_lost.flows").await, "250");

    drop_answers.store(false, Ordering::SeqCst);
    s.insert_batch("edge-1", 2, b2).await.unwrap();
    let packets: u64 = records[..250].iter().map(|r| r.packets).sum();
    for table in ["flows", "flows_1m", "flows_1h"] {
        let count = if table == "flows" {
            "count()"
        } else {
            "sum(flows)"
        };
        assert_eq!(
            ch.query(&format!(
                "SELECT {count}, sum(packets) FROM tg_lost.{table}"
            ))
            .await,
            format!("250\t{packets}"),
            "{table}"
        );
    }
}
