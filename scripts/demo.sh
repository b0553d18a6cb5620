#!/usr/bin/env bash
# tidegate demo (the README's main job). On a fresh machine it sets everything up, builds,
# and runs the whole deployment inside two network namespaces it creates — nothing is added
# to this host's own interfaces, addresses or routes:
#
#   tg-demo-home: the hub's side. A local ClickHouse, the collector (live detection + web
#                 UI), the probe with its eBPF programs (XDP ingress + TCX egress) on the
#                 veth "line" tgdemo-line, and a domestic server.
#   tg-demo-wan:  abroad, at the line's far end (tgdemo-wan): a special-zone host, a
#                 partner and a sanctioned server.
#
# Across the line it sends normal traffic (real captures replayed + live HTTP), a port scan
# and a spoofed SYN flood (real attack captures), and policy violations. The web console
# and the metrics endpoints are forwarded to this host's loopback (127.0.0.1 only). It keeps
# normal traffic flowing until Ctrl-C (or TIDEGATE_DEMO_SECONDS), then stops in pipeline
# order — probe (flushes every flow), collector (drains into ClickHouse), ClickHouse —
# prints what ClickHouse holds at the end, and removes the namespaces.
#
#   scripts/demo.sh                             # from a root shell
#   TIDEGATE_DEMO_SECONDS=120 scripts/demo.sh   # stop by itself after 120 s
#   TIDEGATE_DEMO_SHARDS=3 scripts/demo.sh      # ClickHouse as a 3-node sharded cluster
#                                               # (Distributed tables; [clickhouse.cluster])
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"

need_root "the demo" scripts/demo.sh
corpus="${TIDEGATE_CORPUS:-$root/../shared/corpus}/pcap"
[[ -d "$corpus" ]] || die "corpus not found at $corpus (the shared corpus is expected at ../shared/corpus beside the repository; set TIDEGATE_CORPUS to its directory)"

# The demo's addresses: the line, the hub's domestic server and the hosts abroad (the
# zones of dashboards/demo/policy.toml). They exist only inside the demo's namespaces, but
# a plan that overlaps this host's own addresses or routes (other than the default route)
# is not used, so nothing the demo shows can be mistaken for the host's own traffic: the
# first plan clear of the host is taken, its policy written from the demo's.
#        line net        domestic net   domestic    special net    special     partner net      partner      sanctioned net   sanctioned
plans=("192.0.2.0/24     10.0.0.0/8     10.1.2.3    10.77.0.0/16   10.77.0.5   203.0.113.0/24   203.0.113.7  198.51.100.0/24  198.51.100.66"
       "198.18.0.0/24    172.16.0.0/12  172.16.2.3  172.30.0.0/16  172.30.0.5  100.64.7.0/24    100.64.7.7   198.19.51.0/24   198.19.51.66")
host_nets() { # this host's addresses and non-default routes, one "prefix description" per line
  ip -o -4 addr show | awk '{print $4, "address on " $2}'
  ip -4 route show table all | awk '
    $1 == "default" { next }
    $1 ~ /^(local|broadcast|multicast|unicast|anycast|blackhole|unreachable|prohibit|throw)$/ { print $2, "route \"" $0 "\""; next }
    { print $1, "route \"" $0 "\"" }'
}
overlap() { # prefixes...: the first one that overlaps the host's networks, with why
  host_nets | python3 -c '
import ipaddress, sys
demo = [ipaddress.ip_network(n, strict=False) for n in sys.argv[1:]]
for line in sys.stdin:
    what, _, where = line.strip().partition(" ")
    try:
        net = ipaddress.ip_network(what, strict=False)
    except ValueError:
        continue
    for d in demo:
        if net.overlaps(d):
            print(f"{d} (this host has {what}: {where})")
            sys.exit(0)
' "$@"
}
plan="" why=""
for p in "${plans[@]}"; do
  read -r line_net dom_net domestic special_net special partner_net partner sanct_net sanctioned <<<"$p"
  o=$(overlap "$line_net" "$domestic/32" "$special/32" "$partner/32" "$sanctioned/32")
  if [[ -z "$o" ]]; then plan="$p"; break; fi
  why+="${why:+; }$o"
done
[[ -n "$plan" ]] || die "every address plan of the demo overlaps this host's network ($why); the demo never changes the host's network, but it will not show traffic that could be mistaken for the host's own: run it on another machine"
[[ -z "$why" ]] || log "the first address plan overlaps this host ($why): using line $line_net, domestic $domestic, abroad $special $partner $sanctioned"
line_prefix=${line_net%.*}
home_line="$line_prefix.2/${line_net#*/}" wan_line="$line_prefix.1/${line_net#*/}"
abroad=("$special" "$partner" "$sanctioned")

setup_toolchain
command -v socat >/dev/null || die "socat is missing; run scripts/setup.sh"
log "building (release)"
cargo build --release --locked -p tidegate-probe -p tidegate-collector
bin="$root/target/release"

out="$TIDEGATE_STATE/demo"
rm -rf "$out"
mkdir -p "$out"
export TIDEGATE_CH_PORT="${TIDEGATE_CH_PORT:-8123}"
export TIDEGATE_CH_DIR="$out/clickhouse"
shards="${TIDEGATE_DEMO_SHARDS:-1}"
[[ "$shards" =~ ^[1-9]$ ]] || die "TIDEGATE_DEMO_SHARDS must be a number of ClickHouse nodes from 1 to 9, got '$shards'"
((TIDEGATE_CH_PORT + shards <= 65535)) || die "TIDEGATE_CH_PORT leaves no room for $shards nodes"
collector_port=${TIDEGATE_DEMO_COLLECTOR_PORT:-17443}
ui_port=${TIDEGATE_DEMO_UI_PORT:-8080}
collector_metrics=${TIDEGATE_DEMO_COLLECTOR_METRICS_PORT:-9465}
probe_metrics=${TIDEGATE_DEMO_PROBE_METRICS_PORT:-9464}
web_port=${TIDEGATE_DEMO_WEB_PORT:-8081}
home=tg-demo-home wan=tg-demo-wan if_line=tgdemo-line if_wan=tgdemo-wan
probe_pid="" collector_pid="" traffic_pid="" web_pids=() forward_pids=() ch_started=""
in_home() { ip netns exec "$home" "$@"; }
in_wan() { ip netns exec "$wan" "$@"; }

wait_ready() { # pid log needle what: wait up to 10 s for NEEDLE in LOG; die if PID exits first
  for _ in $(seq 1 100); do
    grep -q "$3" "$2" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || { cat "$2" >&2; die "$4 failed to start"; }
    sleep 0.1
  done
  die "$4 did not start within 10 s (see $2)"
}
stop_pid() { # pid signal [seconds]: signal, wait up to SECONDS (default 20), then SIGKILL
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 0
  kill "-$2" "$1" 2>/dev/null || true
  for _ in $(seq 1 $((${3:-20} * 10))); do
    kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
q() { in_home curl -sf "http://127.0.0.1:$TIDEGATE_CH_PORT/" --data-binary "$1"; }

summary() { # what ClickHouse holds now
  echo
  echo "ClickHouse at the end: tidegate.flows per line and direction (with GeoLite2 enrichment and policy zones)"
  q "SELECT line, direction, count() AS flow_records, sum(packets) AS packets, sum(bytes) AS ip_bytes,
            uniqExact(src_country) AS src_countries FROM tidegate.flows GROUP BY line, direction ORDER BY line, direction FORMAT PrettyCompact"
  echo "traffic by zone pair"
  q "SELECT src_zone, dst_zone, count() AS flows, sum(bytes) AS bytes FROM tidegate.flows
     GROUP BY src_zone, dst_zone ORDER BY bytes DESC LIMIT 8 FORMAT PrettyCompact"
  echo "alerts (tidegate.alerts, final state)"
  q "SELECT severity, kind, src, dst, port, round(measured, 1) AS measured, threshold, unit, substring(description, 1, 60) AS description
     FROM tidegate.alerts FINAL ORDER BY severity DESC, first LIMIT 20 FORMAT PrettyCompact"
  echo "policy violations (tidegate.policy_violations, final state)"
  q "SELECT severity, rule_id, rule_location, kind, src, src_zone, dst, dst_zone, flows
     FROM tidegate.policy_violations FINAL ORDER BY severity DESC, first LIMIT 20 FORMAT PrettyCompact"
  if ((shards > 1)); then
    echo "rows per shard (tidegate.flows is a Distributed table over flows_local on each node)"
    q "SELECT _shard_num AS shard, count() AS flow_records, sum(bytes) AS ip_bytes FROM tidegate.flows
       GROUP BY shard ORDER BY shard FORMAT PrettyCompact"
  fi
  echo "notifications written to $out/alerts.jsonl: $(wc -l <"$out/alerts.jsonl" 2>/dev/null || echo 0)"
  local exported stored
  exported=$(sed -n 's/.*probe stopped; all flows exported records=\([0-9]*\).*/\1/p' "$out/probe.log" | tail -1)
  stored=$(q "SELECT count() FROM tidegate.flows" || echo "?")
  echo "flow records: the probe exported ${exported:-?}, ClickHouse holds $stored"
}

cleanup() { # stop in pipeline order: traffic, probe (flush), collector (drain), ClickHouse
  local rc=$?
  trap - EXIT INT TERM
  set +e # clean up as far as possible whatever fails
  stop_pid "$traffic_pid" TERM 2
  for p in "${web_pids[@]}"; do stop_pid "$p" TERM 2; done
  if [[ -n "$probe_pid" ]]; then
    log "stopping the probe (it exports every flow it holds)"
    stop_pid "$probe_pid" INT 30
  fi
  if [[ -n "$collector_pid" ]]; then
    log "stopping the collector (it stores everything it acknowledged)"
    stop_pid "$collector_pid" TERM 30
  fi
  for p in "${forward_pids[@]}"; do stop_pid "$p" TERM 2; done
  if [[ -n "$ch_started" ]]; then
    [[ -n "$probe_pid" ]] && summary
    in_home "$here/clickhouse.sh" stop >/dev/null 2>&1 || true
    for ((i = 2; i <= shards; i++)); do
      TIDEGATE_CH_DIR="$out/clickhouse-$i" TIDEGATE_CH_PORT=$((TIDEGATE_CH_PORT + i - 1)) \
        in_home "$here/clickhouse.sh" stop >/dev/null 2>&1 || true
    done
  fi
  ip netns del "$home" 2>/dev/null || true
  ip netns del "$wan" 2>/dev/null || true
  log "stopped; state and logs in $out"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted: stopping"; exit 130' INT TERM

log "creating namespaces $home and $wan joined by the line $if_line <-> $if_wan"
ip netns del "$home" 2>/dev/null || true
ip netns del "$wan" 2>/dev/null || true
ip netns add "$home"
ip netns add "$wan"
for ns in "$home" "$wan"; do ip -n "$ns" link set lo up; done
ip -n "$home" link add "$if_line" type veth peer name "$if_wan" netns "$wan"
ip -n "$home" addr add "$home_line" dev "$if_line"
ip -n "$home" addr add "$domestic/32" dev "$if_line"
ip -n "$wan" addr add "$wan_line" dev "$if_wan"
ip -n "$home" link set "$if_line" up
ip -n "$wan" link set "$if_wan" up
for a in "${abroad[@]}"; do
  ip -n "$wan" addr add "$a/32" dev "$if_wan"
  ip -n "$home" route add "$a/32" dev "$if_line"
done
ip -n "$wan" route add "$domestic/32" dev "$if_wan"

# The hub's services listen on the home namespace's loopback; this host reaches the console
# and the metrics through forwarders bound to its own 127.0.0.1.
forward() { # port
  setsid socat "TCP-LISTEN:$1,bind=127.0.0.1,reuseaddr,fork" \
    "EXEC:ip netns exec $home socat STDIO TCP\:127.0.0.1\:$1" >/dev/null 2>&1 &
  forward_pids+=($!)
}

cluster_toml=""
if ((shards == 1)); then
  log "starting ClickHouse (in $home, 127.0.0.1:$TIDEGATE_CH_PORT)"
  ch_url=$(in_home "$here/clickhouse.sh" start)
  ch_started=1
else
  # Node i: HTTP on TIDEGATE_CH_PORT + i - 1, native TCP on 19000 + i (the namespace's own
  # loopback), every node knowing cluster "tidegate" of one shard per node.
  spec="tidegate:$(seq -s, 19001 $((19000 + shards)))"
  nodes=""
  for ((i = 1; i <= shards; i++)); do
    port=$((TIDEGATE_CH_PORT + i - 1)) dir="$out/clickhouse"
    ((i == 1)) || dir="$out/clickhouse-$i"
    log "starting ClickHouse node $i of $shards (in $home, 127.0.0.1:$port, native TCP $((19000 + i)))"
    url=$(TIDEGATE_CH_DIR="$dir" TIDEGATE_CH_PORT=$port TIDEGATE_CH_TCP_PORT=$((19000 + i)) \
      TIDEGATE_CH_CLUSTER="$spec" in_home "$here/clickhouse.sh" start)
    ch_started=1
    ((i == 1)) && ch_url="$url"
    nodes+="${nodes:+, }\"$url\""
  done
  cluster_toml="
[clickhouse.cluster]                 # $shards shards, one replica each (no Keeper here)
name = \"tidegate\"
replicated = false
ddl = \"each_node\"
nodes = [$nodes]
"
fi
mmdb=$("$here/geoip.sh")

log "generating a CA and certificates for the collector and probe edge-demo"
"$bin/tidegate-collector" gen-certs --out "$out/certs" --probe edge-demo >/dev/null
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 16)
password_hash=$(printf '%s\n' "$password" | "$bin/tidegate-collector" hash-password)
# The demo's policy, on the address plan in use.
read -r p_line p_dom_net p_domestic p_special_net p_special p_partner_net p_partner p_sanct_net p_sanctioned <<<"${plans[0]}"
sed -e "s#\"$p_dom_net\"#\"$dom_net\"#" -e "s#\"$p_special_net\"#\"$special_net\"#" \
  -e "s#\"$p_partner_net\"#\"$partner_net\"#" -e "s#\"$p_sanct_net\"#\"$sanct_net\"#" \
  "$root/dashboards/demo/policy.toml" >"$out/policy.toml"
cp "$root/dashboards/demo/detect.toml" "$out/detect.toml"
cat >"$out/collector.toml" <<TOML
[collector]
metrics_listen = "127.0.0.1:$collector_metrics"

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
$cluster_toml
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
home_country = "CN"                  # the demo policy's domestic zone

[[api.user]]
name = "analyst"
password_hash = "$password_hash"
role = "admin"
TOML
"$bin/tidegate-collector" check-config "$out/collector.toml"
# Each service in a session of its own: Ctrl-C in this terminal reaches only this script,
# which then stops them in pipeline order.
setsid ip netns exec "$home" "$bin/tidegate-collector" run --config "$out/collector.toml" 2>"$out/collector.log" &
collector_pid=$!
wait_ready "$collector_pid" "$out/collector.log" "collector accepting probes" "the collector"
forward "$ui_port"
forward "$collector_metrics"

mkdir -p "$out/www"
head -c 200000 /dev/urandom >"$out/www/report.bin"
setsid ip netns exec "$home" python3 -m http.server "$web_port" --bind "$domestic" --directory "$out/www" >/dev/null 2>&1 &
web_pids+=($!)
setsid ip netns exec "$wan" python3 -m http.server "$web_port" --bind "$sanctioned" --directory "$out/www" >/dev/null 2>&1 &
web_pids+=($!)

log "starting the probe on $if_line (XDP native + TCX egress), exporting to the collector"
setsid ip netns exec "$home" "$bin/tidegate-probe" run --iface "$if_line" --probe-id edge-demo \
  --active-timeout 5 --idle-timeout 3 \
  --collector "127.0.0.1:$collector_port" --tls-ca "$out/certs/ca.pem" \
  --tls-cert "$out/certs/probe-edge-demo.pem" --tls-key "$out/certs/probe-edge-demo.key" \
  --spool-dir "$out/probe-spool" --metrics-listen "127.0.0.1:$probe_metrics" 2>"$out/probe.log" &
probe_pid=$!
wait_ready "$probe_pid" "$out/probe.log" "capturing" "the probe"
forward "$probe_metrics"

replay_in() { # pcap pps: replay a capture from abroad onto the line (XDP ingress)
  [[ -f "$corpus/$1" ]] || return 0
  in_wan tcpreplay -q -i "$if_wan" --pps="$2" "$corpus/$1" 2>&1 | awk '/Actual:/ {print $2; exit}'
}
normal_round() {
  for f in ndpi-1kxun.pcap ndpi-webex.pcap ndpi-zoom.pcap ndpi-443-safari.pcap ndpi-chrome.pcap ndpi-steam.pcapng; do
    replay_in "$f" 3000 >/dev/null
  done
  # Live HTTP: a partner abroad fetches a report from the domestic server (allowed).
  in_wan curl -s -o /dev/null --interface "$partner" "http://$domestic:$web_port/report.bin" || true
}

log "normal traffic: real captures replayed across the line, a partner abroad fetching a report"
normal_round
log "attack: a SYN port scan (ndpi-synscan.pcap) and a spoofed SYN flood (stopddos-pkt.TCP.synflood.spoofed.pcap)"
log "  scan:  $(replay_in ndpi-synscan.pcap 20000) packets"
log "  flood: $(replay_in stopddos-pkt.TCP.synflood.spoofed.pcap 20000) packets"
log "policy violations: special-zone host $special downloads from domestic server $domestic; the domestic side fetches from sanctioned $sanctioned"
in_wan curl -s -o /dev/null --interface "$special" "http://$domestic:$web_port/report.bin" || true
in_home curl -s -o /dev/null "http://$sanctioned:$web_port/report.bin" || true

log "waiting for the collector to raise the alerts (event-time windows close a few seconds after the attack)"
for _ in $(seq 1 120); do
  n=$(q "SELECT countIf(kind = 'syn_flood') > 0 AND countIf(kind = 'port_scan') > 0 FROM tidegate.alerts FINAL" 2>/dev/null || echo 0)
  v=$(q "SELECT count() FROM tidegate.policy_violations FINAL" 2>/dev/null || echo 0)
  [[ "$n" == "1" && "${v:-0}" -gt 0 ]] && break
  sleep 1
done
echo
echo "alerts raised so far: $(q "SELECT count() FROM tidegate.alerts FINAL" || echo 0), policy violations: $(q "SELECT count() FROM tidegate.policy_violations FINAL" || echo 0) (the summary at the end shows them as stored then)"
echo
echo "  dashboard:   http://127.0.0.1:$ui_port/"
echo "  user:        analyst"
echo "  password:    $password"
echo "  metrics:     http://127.0.0.1:$collector_metrics/metrics (collector), http://127.0.0.1:$probe_metrics/metrics (probe)"
echo "  state, logs: $out"
echo

# Keep normal traffic flowing so the dashboards stay live.
setsid bash -c "$(declare -f in_wan replay_in normal_round); wan=$wan if_wan=$if_wan corpus='$corpus' domestic=$domestic partner=$partner web_port=$web_port; while true; do sleep 10; normal_round; done" >/dev/null 2>&1 &
traffic_pid=$!
if [[ -n "${TIDEGATE_DEMO_SECONDS:-}" ]]; then
  log "running for ${TIDEGATE_DEMO_SECONDS} s (TIDEGATE_DEMO_SECONDS), then stopping"
  sleep "$TIDEGATE_DEMO_SECONDS"
else
  log "normal traffic keeps flowing; press Ctrl-C to stop"
  while kill -0 "$collector_pid" 2>/dev/null; do sleep 1; done
  die "the collector stopped unexpectedly (see $out/collector.log)"
fi
