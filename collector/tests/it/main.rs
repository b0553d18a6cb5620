//! The collector's integration tests, one binary: a module per thing a user does. They
//! run real components — ClickHouse from `scripts/clickhouse.sh`, the
//! `tidegate-collector` binary, the probe library replaying the shared corpus — through
//! the workspace's test kit (`tidegate-testkit`). Run them with `cargo nextest run`
//! (one process per test) or `cargo test --test it`.

mod support;

mod aggregate_backpressure;
mod aggregate_corpus_replay;
mod aggregate_flow_bounds;
mod alerts_jsonl_file;
mod alerts_webhook_delivery;
mod alerts_webhook_over_https;
mod alerts_webhook_survives_collector_crash;
mod analysts_filter_flows_with_an_expression;
mod analysts_save_and_share_filters;
mod analysts_triage_alerts_with_their_history;
mod analyze_cli;
mod api_cuts_slow_clients_and_throttles_guessing;
mod api_numbers_match_clickhouse;
mod api_refuses_or_binds_injection_in_every_field;
mod api_requires_credentials_and_names_bad_parameters;
mod check_config_and_run_agree;
mod check_config_cli;
mod cli_help_and_examples;
mod clickhouse_cluster_schema;
mod clickhouse_exactly_once;
mod clickhouse_insert_corpus;
mod clickhouse_migrations;
mod clickhouse_outage;
mod clickhouse_probe_health;
mod console_over_https_with_secure_cookies;
mod detect_corpus;
mod detect_live_alerts_reach_every_sink;
mod detect_quiet_attacks_in_office_traffic;
mod detect_rules;
mod detect_state_survives_sigkill;
mod detection_results_survive_a_collector_kill;
mod end_to_end_probe_to_clickhouse;
mod enforce_countries_compile_from_geolite;
mod enforce_through_the_collector;
mod enrich_corpus_capture;
mod enrich_lookup_geolite;
mod enrich_operator_ranges;
mod evidence_log;
mod evidence_timestamps;
mod fault_soak_every_record_stored_once;
mod forensic_replays_share_a_probe_id;
mod grafana_dashboards_query_clickhouse;
mod hostile_peers_cannot_stop_the_collector;
mod netflow_interop_with_softflowd_and_nfdump;
mod netflow_listener_hostile_input;
mod one_busy_probe_cannot_take_the_whole_spool;
mod policy_byte_caps;
mod policy_corpus_replay;
mod policy_malformed_files_are_refused;
mod policy_reload;
mod policy_reload_in_running_collector;
mod policy_sighup_reload;
mod policy_violations;
mod probes_fail_over_between_collectors_on_a_cluster;
mod roles_see_only_their_lines_and_do_what_their_role_allows;
mod second_collector_on_a_spool_is_refused;
mod syslog_config;
mod syslog_tcp;
mod syslog_udp;
mod the_map_is_home_where_the_policy_says;
mod transport_acknowledges_durable_batches;
mod transport_gen_certs_quick_start;
mod transport_protocol_errors;
mod transport_refuses_unauthenticated_probes;
mod ui_pages_in_headless_chromium;
