//! An operator points the syslog sink at a TCP receiver: alerts and violations from real
//! captures arrive octet-counted (RFC 6587) and parse as RFC 5424; when the receiver
//! restarts, the sink reports the messages it could not deliver, reconnects with backoff,
//! and every message it reports as sent afterwards arrives.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use tidegate_threat::Finding;
use tidegate_threat::policy::ViolationState;

use crate::support::syslog::*;
use tidegate_collector::sinks::syslog::{Protocol, SyslogConfig, SyslogError, SyslogSink};

/// Accepts one connection and returns the first `n` frames read from it (or all of them
/// until the sink's side closes), then drops connection and listener.
fn receive(listener: TcpListener, n: usize) -> thread::JoinHandle<Vec<Vec<u8>>> {
    thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("the sink connects");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        read_frames(&mut s, n)
    })
}

fn sink_to(addr: &str) -> SyslogSink {
    let mut cfg = SyslogConfig::new(addr, Protocol::Tcp);
    cfg.hostname = Some("collector-tcp".into());
    SyslogSink::connect(&cfg).unwrap()
}

#[test]
fn alerts_and_violations_arrive_octet_counted() {
    let alerts = synflood_alerts();
    let violations = isolation_violations(50);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let rx = receive(listener, alerts.len() + violations.len());
    let mut sink = sink_to(&addr);
    for a in &alerts {
        sink.send(Finding::Alert(a)).unwrap();
    }
    for v in &violations {
        sink.send(Finding::Violation(&ViolationState::opening(v.clone())))
            .unwrap();
    }
    let frames = rx.join().unwrap();
    eprintln!(
        "{} alerts + {} violations sent, {} frames received",
        alerts.len(),
        violations.len(),
        frames.len()
    );
    assert_eq!(frames.len(), alerts.len() + violations.len());
    for (raw, a) in frames.iter().zip(&alerts) {
        let m = parse(raw).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(raw)));
        check_alert(&m, a, 20, "collector-tcp");
    }
    for (raw, v) in frames[alerts.len()..].iter().zip(&violations) {
        check_violation(&parse(raw).unwrap(), v, 20);
    }
}

#[test]
fn a_restarted_receiver_gets_the_messages_sent_after_it_is_back() {
    let alerts = synflood_alerts();
    let a = &alerts[0];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let rx = receive(listener, 2);
    let mut sink = sink_to(&addr);
    sink.send(Finding::Alert(a)).unwrap();
    sink.send(Finding::Alert(a)).unwrap();
    assert_eq!(rx.join().unwrap().len(), 2);

    // Receiver gone: the sink notices the closed connection, cannot reconnect, says so.
    let err = sink.send(Finding::Alert(a)).unwrap_err();
    assert!(
        matches!(err, SyslogError::Connect { .. }),
        "expected a connect error, got {err}"
    );
    assert!(err.to_string().contains(&addr), "{err}");
    // Right after a failed attempt the sink backs off instead of blocking.
    let err = sink.send(Finding::Alert(a)).unwrap_err();
    assert!(matches!(err, SyslogError::Backoff { .. }), "{err}");

    // Receiver back on the same port: sends succeed again once the backoff has elapsed,
    // and exactly the messages reported as sent arrive.
    let listener = TcpListener::bind(&addr).unwrap();
    let rx = receive(listener, usize::MAX);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = Vec::new();
    let mut failed = 0;
    let mut i = 0u64;
    while sent.len() < 5 {
        assert!(Instant::now() < deadline, "no reconnection within 10 s");
        let mut x = a.clone();
        x.id = format!("restart-{i}");
        i += 1;
        match sink.send(Finding::Alert(&x)) {
            Ok(()) => sent.push(x.id),
            Err(SyslogError::Backoff { retry_in, .. }) => {
                assert!(retry_in <= Duration::from_secs(30));
                failed += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("unexpected error after restart: {e}"),
        }
    }
    drop(sink); // closes the connection: the receiver sees the end of the stream.
    let frames = rx.join().unwrap();
    let ids: Vec<String> = frames
        .iter()
        .map(|f| {
            parse(f)
                .unwrap()
                .param("tidegate@32473", "id")
                .unwrap()
                .to_string()
        })
        .collect();
    eprintln!(
        "{failed} sends refused during backoff, then {} delivered",
        ids.len()
    );
    assert_eq!(ids, sent);
}

#[test]
fn an_unreachable_receiver_is_a_clear_error_at_connect() {
    // A port nobody listens on: bind, learn the port, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let err = SyslogSink::connect(&SyslogConfig::new(addr.clone(), Protocol::Tcp)).unwrap_err();
    assert!(matches!(err, SyslogError::Connect { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("syslog receiver {addr} (tcp): cannot connect:")),
        "{text}"
    );
    let _ = TcpStream::connect(&addr).unwrap_err();
}
