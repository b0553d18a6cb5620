//! An operator edits the policy of a running collector and sends SIGHUP: a broken file is
//! refused with its file:line error and the old policy stays in force; a valid one takes
//! over, and the violations raised afterwards follow it.

use std::net::SocketAddr;
use std::time::Duration;

use tidegate_testkit::{
    CollectorProcess,
    certs::Certs,
    collector::CollectorConfig,
    probe::{exporter, probe_options, replay_into},
    stack::PROBES,
};
use tidegate_testkit::{TestClickHouse, eventually_async as eventually, free_port};

const ISOLATE: &str = "[[zone]]\nname = \"special-zone\"\ncidrs = [\"192.168.0.0/16\"]\n\n\
[[rule]]\nid = \"RULE\"\nname = \"special zone stays inside\"\ntype = \"isolate\"\n\
zone = \"special-zone\"\npeers = []\n";

#[test]
fn sighup_swaps_in_a_valid_policy_and_refuses_a_broken_one() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ch = TestClickHouse::start();
        let certs = Certs::generate(&dir.path().join("certs"), &PROBES);
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = CollectorConfig::new(dir.path(), &certs, port, &ch.url()).write(dir.path());
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, ISOLATE.replace("RULE", "first")).unwrap();
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("\n[policy]\nfile = \"policy.toml\"\n\n[detect]\nenabled = false\n");
        std::fs::write(&config, text).unwrap();
        let collector = CollectorProcess::start(&config, addr);

        let rules = async |ch: &TestClickHouse| {
            if ch.query("EXISTS TABLE tidegate.policy_violations").await != "1" {
                return String::new();
            }
            ch.query("SELECT DISTINCT rule_id FROM tidegate.policy_violations ORDER BY rule_id")
                .await
        };
        let send = |probe: &str| {
            let mut e = exporter(probe_options(
                &certs,
                probe,
                addr,
                &dir.path().join(format!("spool-{probe}")),
            ));
            replay_into(&["ndpi-1kxun.pcap"], &mut e);
        };
        send("edge-1");
        assert!(
            eventually(Duration::from_secs(60), async || rules(&ch).await
                == "first")
            .await,
            "violations of the first policy: {:?}",
            rules(&ch).await
        );

        // A broken file: refused, named with its line; the old policy stays.
        std::fs::write(
            &policy,
            "[[zone]]\nname = \"special-zone\"\ncidrs = [\"192.168.0.1/16\"]\n",
        )
        .unwrap();
        collector.signal(libc::SIGHUP);
        let refused = collector
            .wait_log("policy reload refused", Duration::from_secs(10))
            .expect("the refusal is logged");
        assert!(
            refused.contains(&format!("{}:3", policy.display())),
            "{refused}"
        );

        // A valid file takes over.
        std::fs::write(&policy, ISOLATE.replace("RULE", "second")).unwrap();
        collector.signal(libc::SIGHUP);
        collector
            .wait_log("policy reloaded", Duration::from_secs(10))
            .expect("the reload is logged");
        send("edge-2");
        assert!(
            eventually(Duration::from_secs(60), async || rules(&ch).await
                == "first\nsecond")
            .await,
            "violations after the reload: {:?}",
            rules(&ch).await
        );
    });
}
