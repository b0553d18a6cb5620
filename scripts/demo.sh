#!/usr/bin/env bash
# tidegate demo (the README's main job). On a fresh machine it sets everything up,
# builds, starts a local ClickHouse and the collector (live detection + web UI), loads the
# probe's eBPF programs (XDP ingress + TCX egress) on a veth "line" whose far end sits in a
# network namespace, and sends across that line a mix of normal traffic (real captures
# replayed + live HTTP), a port scan and a spoofed SYN flood (real attack captures), and a
# policy violation (a host of the isolated special zone talking to a domestic server).
# It prints what ClickHouse holds, the alerts and violations the collector raised, and the
# dashboard URL and credentials, then keeps normal traffic flowing until Ctrl-C, which
# removes the namespace and stops every process it started.
#
#   scripts/demo.sh                          # from a root shell
#   TIDEGATE_DEMO_SECONDS=120 scripts/demo.sh   # stop by itself after 120 s
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"

need_root "the demo" scripts/demo.sh
setup_toolchain
log "building (release)"
cargo build --release --locked -p tidegate-probe -p tidegate-collector
bin="$root/target/release"

corpus="${TIDEGATE_CORPUS:-$root/../shared/corpus}/pcap"
out="$TIDEGATE_STATE/demo"
rm -rf "$out"
mkdir -p "$out"
export TIDEGATE_CH_PORT="${TIDEGATE_CH_PORT:-8123}"
export TIDEGATE_CH_DIR="$out/clickhouse"
collector_port=${TIDEGATE_DEMO_COLLECTOR_PORT:-17443}
ui_port=${TIDEGATE_DEMO_UI_PORT:-8080}
ns=tg-demo-wan if_wan=tgdemo-wan if_line=tgdemo-line
probe_pid="" collector_pid="" traffic_pid="" web_pids=()

wait_ready() { # pid log needle what: wait up to 10 s for NEEDLE in LOG; die if PID exits first
  for _ in $(seq 1 100); do
    grep -q "$3" "$2" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || { cat "$2" >&2; die "$4 failed to start"; }
    sleep 0.1
  done
  die "$4 did not start within 10 s (see $2)"
}
stop_pid() { # pid signal
  if [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; then
    kill "-$2" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  trap - EXIT INT TERM
  stop_pid "$traffic_pid" TERM
  for p in "${web_pids[@]}"; do stop_pid "$p" TERM; done
  stop_pid "$probe_pid" INT
  stop_pid "$collector_pid" TERM
  "$here/clickhouse.sh" stop >/dev/null 2>&1 || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del "$if_line" 2>/dev/null || true
}
trap cleanup EXIT
trap 'log "interrupted: cleaning up"; exit 130' INT TERM

log "starting ClickHouse (local, 127.0.0.1:$TIDEGATE_CH_PORT)"
ch_url=$("$here/clickhouse.sh" start)
mmdb=$("$here/geoip.sh")

log "generating a CA and certificates for the collector and probe edge-demo"
"$bin/tidegate-collector" gen-certs --out "$out/certs" --probe edge-demo >/dev/null
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 16)
password_sha=$(printf %s "$password" | sha256sum | cut -d' ' -f1)
cp "$root/dashboards/demo/policy.toml" "$out/policy.toml"
cp "$root/dashboards/demo/detect.toml" "$out/detect.toml"
cat >"$out/collector.toml" <<TOML
[collector]
metrics_listen = "127.0.0.1:9465"

[transport]
listen = "127.0.0.1:$collector_port"
ca_cert = "certs/ca.pem"
cert = "certs/collector.pem"
key = "certs/collector.key"

[spool]
dir = "spool"

[clickhouse]
url = "$ch_url"
database = "tidegate"
retention_days = 0

[enrich]
mmdb = ["$mmdb"]

[policy]
file = "policy.toml"

[detect]
config = "detect.toml"
idle_advance_secs = 3

[alerts]
jsonl = "alerts.jsonl"

[api]
listen = "127.0.0.1:$ui_port"

[[api.user]]
name = "analyst"
password_sha256 = "$password_sha"
TOML
"$bin/tidegate-collector" check-config "$out/collector.toml"
"$bin/tidegate-collector" run --config "$out/collector.toml" 2>"$out/collector.log" &
collector_pid=$!
wait_ready "$collector_pid" "$out/collector.log" "collector accepting probes" "the collector"

log "creating the line: veth $if_line (this host, 'domestic' 10.1.2.3) <-> $if_wan (namespace $ns: abroad)"
ip netns del "$ns" 2>/dev/null || true
ip link del "$if_line" 2>/dev/null || true
ip netns add "$ns"
ip link add "$if_line" type veth peer name "$if_wan" netns "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" addr add 192.0.2.1/24 dev "$if_wan"
ip addr add 192.0.2.2/24 dev "$if_line"
ip -n "$ns" link set "$if_wan" up
ip link set "$if_line" up
# Hosts of the demo's zones (dashboards/demo/policy.toml): a domestic server on this host,
# and across the line a special-zone host, a partner abroad and a sanctioned server.
ip addr add 10.1.2.3/32 dev "$if_line"
for a in 10.77.0.5 203.0.113.7 198.51.100.66; do
  ip -n "$ns" addr add "$a/32" dev "$if_wan"
  ip route add "$a/32" dev "$if_line"
done
ip -n "$ns" route add 10.1.2.3/32 dev "$if_wan"
mkdir -p "$out/www"
head -c 200000 /dev/urandom >"$out/www/report.bin"
python3 -m http.server 8081 --bind 10.1.2.3 --directory "$out/www" >/dev/null 2>&1 &
web_pids+=($!)
ip netns exec "$ns" python3 -m http.server 8082 --bind 198.51.100.66 --directory "$out/www" >/dev/null 2>&1 &
web_pids+=($!)

log "starting the probe on $if_line (XDP native + TCX egress), exporting to the collector"
"$bin/tidegate-probe" run --iface "$if_line" --probe-id edge-demo --active-timeout 5 --idle-timeout 3 \
  --collector "127.0.0.1:$collector_port" --tls-ca "$out/certs/ca.pem" \
  --tls-cert "$out/certs/probe-edge-demo.pem" --tls-key "$out/certs/probe-edge-demo.key" \
  --spool-dir "$out/probe-spool" --metrics-listen 127.0.0.1:9464 2>"$out/probe.log" &
probe_pid=$!
wait_ready "$probe_pid" "$out/probe.log" "capturing" "the probe"
[[ -d "$corpus" ]] || die "corpus not found at $corpus (the shared corpus is expected at ../shared/corpus beside the repository; set TIDEGATE_CORPUS to its directory)"

replay_in() { # pcap pps: replay a capture from abroad onto the line (XDP ingress)
  [[ -f "$corpus/$1" ]] || return 0
  ip netns exec "$ns" tcpreplay -q -i "$if_wan" --pps="$2" "$corpus/$1" 2>&1 | awk '/Actual:/ {print $2; exit}'
}
normal_round() {
  for f in ndpi-1kxun.pcap ndpi-webex.pcap ndpi-zoom.pcap ndpi-443-safari.pcap ndpi-chrome.pcap ndpi-steam.pcapng; do
    replay_in "$f" 3000 >/dev/null
  done
  # Live HTTP: a partner abroad fetches a report from the domestic server (allowed).
  ip netns exec "$ns" curl -s -o /dev/null --interface 203.0.113.7 http://10.1.2.3:8081/report.bin || true
}

log "normal traffic: real captures replayed across the line, a partner abroad fetching a report"
normal_round
log "attack: a SYN port scan (ndpi-synscan.pcap) and a spoofed SYN flood (stopddos-pkt.TCP.synflood.spoofed.pcap)"
log "  scan:  $(replay_in ndpi-synscan.pcap 20000) packets"
log "  flood: $(replay_in stopddos-pkt.TCP.synflood.spoofed.pcap 20000) packets"
log "policy violation: special-zone host 10.77.0.5 downloads from domestic server 10.1.2.3; this host fetches from sanctioned 198.51.100.66"
ip netns exec "$ns" curl -s -o /dev/null --interface 10.77.0.5 http://10.1.2.3:8081/report.bin || true
curl -s -o /dev/null http://198.51.100.66:8082/report.bin || true

q() { curl -sf "$ch_url/" --data-binary "$1"; }
log "waiting for the collector to raise the alerts (event-time windows close a few seconds after the attack)"
for _ in $(seq 1 120); do
  n=$(q "SELECT countIf(kind = 'syn_flood') > 0 AND countIf(kind = 'port_scan') > 0 FROM tidegate.alerts FINAL" 2>/dev/null || echo 0)
  v=$(q "SELECT count() FROM tidegate.policy_violations FINAL" 2>/dev/null || echo 0)
  [[ "$n" == "1" && "${v:-0}" -gt 0 ]] && break
  sleep 1
done

echo
echo "ClickHouse: tidegate.flows per line and direction (with GeoLite2 enrichment and policy zones)"
q "SELECT line, direction, count() AS flow_records, sum(packets) AS packets, sum(bytes) AS ip_bytes,
          uniqExact(src_country) AS src_countries FROM tidegate.flows GROUP BY line, direction ORDER BY line, direction FORMAT PrettyCompact"
echo "traffic by zone pair"
q "SELECT src_zone, dst_zone, count() AS flows, sum(bytes) AS bytes FROM tidegate.flows
   GROUP BY src_zone, dst_zone ORDER BY bytes DESC LIMIT 8 FORMAT PrettyCompact"
echo "alerts raised live by the collector (tidegate.alerts)"
q "SELECT severity, kind, src, dst, port, round(measured, 1) AS measured, threshold, unit, substring(description, 1, 60) AS description
   FROM tidegate.alerts FINAL ORDER BY severity DESC, first LIMIT 12 FORMAT PrettyCompact"
echo "policy violations (tidegate.policy_violations)"
q "SELECT severity, rule_id, rule_location, kind, src, src_zone, dst, dst_zone, flows
   FROM tidegate.policy_violations FINAL ORDER BY severity DESC, first LIMIT 12 FORMAT PrettyCompact"
echo "notifications written to $out/alerts.jsonl: $(wc -l <"$out/alerts.jsonl" 2>/dev/null || echo 0)"
echo
echo "  dashboard:   http://127.0.0.1:$ui_port/"
echo "  user:        analyst"
echo "  password:    $password"
echo "  metrics:     http://127.0.0.1:9465/metrics (collector), http://127.0.0.1:9464/metrics (probe)"
echo "  state, logs: $out"
echo

# Keep normal traffic flowing so the dashboards stay live.
( while true; do sleep 10; normal_round; done ) >/dev/null 2>&1 &
traffic_pid=$!
if [[ -n "${TIDEGATE_DEMO_SECONDS:-}" ]]; then
  log "running for ${TIDEGATE_DEMO_SECONDS} s (TIDEGATE_DEMO_SECONDS), then cleaning up"
  sleep "$TIDEGATE_DEMO_SECONDS"
else
  log "normal traffic keeps flowing; press Ctrl-C to stop and clean up"
  while kill -0 "$collector_pid" 2>/dev/null; do sleep 1; done
  die "the collector stopped unexpectedly (see $out/collector.log)"
fi
