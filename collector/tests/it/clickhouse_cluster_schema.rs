//! The schema on a sharded ClickHouse cluster (three nodes on loopback, `Distributed`
//! over native TCP): every node gets the local tables and the `Distributed` ones, two
//! collectors writing through different nodes store a batch both of them received once,
//! the rollups on each shard add up to the flows, and the replicated form of every
//! statement (which needs Keeper, absent from this build) is valid ClickHouse.

use tidegate_collector::sinks::clickhouse::{
    ClickHouseConfig, ClickHouseSink, ClusterConfig, Ddl, GroupPart, SinkMetrics,
    cluster::Layout,
    migrations::{MIGRATIONS, render},
};
use tidegate_testkit::{clickhouse::TestCluster, probe::corpus_records};
use tidegate_wire::record::FlowRecord;

use crate::support::{clickhouse::migrated, records::totals_row};

async fn store(sink: &ClickHouseSink, spool_offset: u64, batches: &[(u64, &[FlowRecord])]) {
    let parts: Vec<GroupPart<'_>> = batches
        .iter()
        .map(|(seq, r)| ("edge-1", 7, *seq, *r, &[][..]))
        .collect();
    sink.insert_group("spool", 0, spool_offset, &parts)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_a_three_node_cluster_store_each_batch_once_and_spread_it_over_the_shards()
 {
    let cl = TestCluster::start("tg3", 3);
    let db = "tg_cluster";
    let a = migrated(cl.sink_config(0, db)).await;

    for (i, node) in cl.nodes.iter().enumerate() {
        let tables = node
            .query(&format!(
                "SELECT name, engine FROM system.tables WHERE database = '{db}' \
                 AND name IN ('flows', 'flows_local', 'flows_1m', 'flows_1m_local', 'alerts', \
                 'alerts_local', 'schema_migrations') ORDER BY name"
            ))
            .await;
        assert_eq!(
            tables,
            "alerts\tDistributed\nalerts_local\tReplacingMergeTree\nflows\tDistributed\n\
             flows_1m\tDistributed\nflows_1m_local\tSummingMergeTree\nflows_local\tMergeTree\n\
             schema_migrations\tMergeTree",
            "node {i}"
        );
        assert_eq!(
            node.query(&format!("SELECT count() FROM {db}.schema_migrations"))
                .await,
            MIGRATIONS.len().to_string(),
            "node {i} records its own migrations"
        );
    }

    // A second collector writes through the second node; its start finds the schema in
    // place on every node.
    let b = ClickHouseSink::connect(cl.sink_config(1, db), SinkMetrics::default())
        .await
        .unwrap();
    let report = b.migrate().await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.already_applied.len(), MIGRATIONS.len());

    // Eight batches of one probe sequence. Collector A stored 0-4 and died before the
    // acknowledgements of 3 and 4 reached the probe; the probe sent 3-7 to B. A's spool
    // replays its group after the restart, grouped as before.
    let records = corpus_records();
    let batches: Vec<(u64, &[FlowRecord])> = records
        .chunks(records.len().div_ceil(8))
        .enumerate()
        .map(|(i, c)| (i as u64 + 1, c))
        .collect();
    assert_eq!(batches.len(), 8);
    store(&a, 0, &batches[..5]).await;
    store(&b, 4096, &batches[3..]).await;
    store(&a, 0, &batches[..5]).await;

    let want = totals_row(&records);
    for (i, node) in cl.nodes.iter().enumerate() {
        assert_eq!(
            node.query(&format!(
                "SELECT count(), sum(packets), sum(bytes) FROM {db}.flows"
            ))
            .await,
            want,
            "the Distributed table read through node {i}"
        );
    }
    // Each shard holds its share of the flows, and the sum of the shards is the whole.
    let shards = cl.shard_rows(db).await;
    for (i, n) in shards.iter().enumerate() {
        let share = *n as f64 / records.len() as f64;
        assert!(
            (0.2..0.47).contains(&share),
            "shard {i} holds {n} of {} flows ({share:.2})",
            records.len()
        );
    }
    let total: u64 = shards.iter().sum();
    assert_eq!(total, records.len() as u64);
    // The rollups (a materialized view on each shard) add up to the flows.
    let packets: u64 = records.iter().map(|r| r.packets).sum();
    assert_eq!(
        cl.nodes[2]
            .query(&format!(
                "SELECT sum(packets), sum(flows) FROM {db}.flows_1m"
            ))
            .await,
        format!("{packets}\t{}", records.len())
    );

    // Retention reaches the local table of every node.
    let c7 = ClickHouseConfig {
        retention_days: 7,
        ..cl.sink_config(2, db)
    };
    let r = ClickHouseSink::connect(c7, SinkMetrics::default())
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    assert!(
        r.retention_changes
            .iter()
            .any(|c| c.starts_with("flows: TTL")),
        "{r:?}"
    );
    for node in &cl.nodes {
        let e = node
            .query(&format!(
                "SELECT engine_full FROM system.tables WHERE database = '{db}' AND name = 'flows_local'"
            ))
            .await;
        assert!(e.contains("toIntervalDay(7)"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_missing_from_the_node_list_or_unknown_to_the_servers_is_refused() {
    let cl = TestCluster::start("tg2", 2);
    let refused = async |c: ClickHouseConfig| {
        ClickHouseSink::connect(c, SinkMetrics::default())
            .await
            .unwrap()
            .migrate()
            .await
            .unwrap_err()
            .to_string()
    };
    let mut c = cl.sink_config(0, "tg_refused");
    c.cluster.as_mut().unwrap().nodes.truncate(1);
    let e = refused(c).await;
    assert!(e.contains("has 2 nodes") && e.contains("lists 1"), "{e}");

    let mut c = cl.sink_config(0, "tg_refused");
    c.cluster.as_mut().unwrap().name = "nope".into();
    let e = refused(c).await;
    assert!(e.contains("knows no cluster \"nope\""), "{e}");
    // Nothing was created on either node.
    for node in &cl.nodes {
        assert_eq!(
            node.query("SELECT count() FROM system.databases WHERE name = 'tg_refused'")
                .await,
            "0"
        );
    }
}

/// Production runs `ON CLUSTER` DDL with replicated engines, which needs Keeper; this
/// build has none (it refuses `ON CLUSTER`), so the server checks every such statement's
/// syntax (`formatQuery`) and the statements' shape is checked here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicated_on_cluster_schema_is_valid_clickhouse() {
    let cl = TestCluster::start("tg1", 1);
    let ch = &cl.nodes[0];
    let c = ClusterConfig {
        name: cl.name.clone(),
        replicated: true,
        ddl: Ddl::OnCluster,
        nodes: vec![],
    };
    let l = Layout::new("tidegate", &c);
    let mut statements = vec![l.create_database(), l.create_schema_migrations()];
    for m in MIGRATIONS {
        let text = render(m.sql, "tidegate", 30).unwrap();
        for st in tidegate_collector::sinks::clickhouse::migrations::statements(&text) {
            statements.extend(l.statements(st).unwrap());
        }
    }
    statements.push(l.alter_stored("flows", "MODIFY TTL toDate(first) + toIntervalDay(30)"));
    let mut replicated = 0;
    for st in &statements {
        assert!(st.contains(" ON CLUSTER tg1"), "{st}");
        replicated += usize::from(st.contains("ENGINE = Replicated"));
        let formatted = ch
            .client()
            .query("SELECT formatQuery(?)")
            .bind(st)
            .fetch_one::<String>()
            .await
            .unwrap_or_else(|e| panic!("{st}: {e}"));
        assert!(formatted.contains("ON CLUSTER tg1"), "{formatted}");
    }
    // flows, flows_1m, flows_1h, probe_health, alerts, policy_violations, alert_triage,
    // audit_log, saved_filters and schema_migrations.
    assert_eq!(replicated, 10, "{statements:#?}");
    // The server knows the cluster, and refuses ON CLUSTER only for want of Keeper.
    let e = ch
        .client()
        .query_raw(&l.create_database())
        .execute()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Replicated DDL queries are disabled"), "{e}");
}
