#!/usr/bin/env bash
# tidegate demo (the README's main job). On a fresh machine it sets everything up,
# builds, starts a local ClickHouse and the collector, loads the probe's eBPF programs
# (XDP ingress + TCX egress) on a veth "line" whose far end sits in a network namespace,
# replays real captured traffic from the corpus across that line, and shows what reached
# ClickHouse through probe → TLS → collector → ClickHouse. Ctrl-C at any point removes the
# namespace and stops every process it started.
#
#   sudo scripts/demo.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
cd "$root"

[[ $(id -u) -eq 0 ]] || die "the demo needs root (network namespaces, eBPF); run: sudo scripts/demo.sh"
"$here/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
log "building (release)"
cargo build --release --locked -p tidegate-probe -p tidegate-collector
bin="$root/target/release"

corpus="${TIDEGATE_CORPUS:-$root/../shared/corpus/pcap}"
out="$TIDEGATE_STATE/demo"
rm -rf "$out"
mkdir -p "$out"
export TIDEGATE_CH_PORT="${TIDEGATE_CH_PORT:-8123}"
export TIDEGATE_CH_DIR="$out/clickhouse"
collector_port=17443
ns=tg-demo-wan if_wan=tgdemo-wan if_line=tgdemo-line
probe_pid="" collector_pid=""

stop_pid() { # pid signal
  if [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; then
    kill "-$2" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  trap - EXIT INT TERM
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

log "generating a CA and certificates for the collector and probe edge-demo"
"$bin/tidegate-collector" gen-certs --out "$out/certs" --probe edge-demo >/dev/null
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
TOML
"$bin/tidegate-collector" check-config "$out/collector.toml"
"$bin/tidegate-collector" run --config "$out/collector.toml" 2>"$out/collector.log" &
collector_pid=$!
for _ in $(seq 1 100); do
  grep -q "collector accepting probes" "$out/collector.log" 2>/dev/null && break
  kill -0 "$collector_pid" 2>/dev/null || { cat "$out/collector.log" >&2; die "the collector failed to start"; }
  sleep 0.1
done

log "creating the line: veth $if_line (this host) <-> $if_wan (namespace $ns)"
ip netns del "$ns" 2>/dev/null || true
ip link del "$if_line" 2>/dev/null || true
ip netns add "$ns"
ip link add "$if_line" type veth peer name "$if_wan" netns "$ns"
ip -n "$ns" addr add 192.0.2.1/24 dev "$if_wan"
ip addr add 192.0.2.2/24 dev "$if_line"
ip -n "$ns" link set "$if_wan" up
ip link set "$if_line" up

log "starting the probe on $if_line (XDP native + TCX egress), exporting to the collector"
"$bin/tidegate-probe" run --iface "$if_line" --probe-id edge-demo --idle-timeout 5 \
  --collector "127.0.0.1:$collector_port" --tls-ca "$out/certs/ca.pem" \
  --tls-cert "$out/certs/probe-edge-demo.pem" --tls-key "$out/certs/probe-edge-demo.key" \
  --spool-dir "$out/probe-spool" --metrics-listen 127.0.0.1:9464 2>"$out/probe.log" &
probe_pid=$!
for _ in $(seq 1 100); do
  grep -q "capturing" "$out/probe.log" 2>/dev/null && break
  kill -0 "$probe_pid" 2>/dev/null || { cat "$out/probe.log" >&2; die "the probe failed to start"; }
  sleep 0.1
done

log "generating traffic: real captures replayed onto the line in both directions"
sent=0 sent_out=0
if [[ -d "$corpus" ]]; then
  # Arriving from abroad (XDP ingress): mixed applications, a scan, a spoofed SYN flood.
  for f in ndpi-1kxun.pcap ndpi-synscan.pcap stopddos-pkt.TCP.synflood.spoofed.pcap; do
    [[ -f "$corpus/$f" ]] || continue
    n=$(ip netns exec "$ns" tcpreplay -i "$if_wan" --pps=20000 "$corpus/$f" 2>&1 | awk '/Actual:/ {print $2; exit}')
    log "  in:  $f: ${n:-0} packets"
    sent=$((sent + ${n:-0}))
  done
  # Leaving this host (TCX egress): DNS exfiltration.
  f=ndpi-dns_exfiltration.pcap
  n=$(tcpreplay -i "$if_line" --pps=20000 "$corpus/$f" 2>&1 | awk '/Actual:/ {print $2; exit}')
  log "  out: $f: ${n:-0} packets"
  sent_out=$((sent_out + ${n:-0}))
else
  die "corpus not found at $corpus (set TIDEGATE_CORPUS to a directory of pcap files)"
fi
log "probe metrics: $(curl -s 127.0.0.1:9464/metrics | awk '/^tidegate_probe_(packets|accounted_packets)_total/ {printf "%s=%s ", $1, $2}')"

log "stopping the probe (SIGINT: it flushes every flow and waits for the collector's acks)"
kill -INT "$probe_pid"
wait "$probe_pid" || true
probe_pid=""

q() { curl -sf "$ch_url/" --data-binary "$1"; }
log "waiting for the collector to store everything in ClickHouse"
for _ in $(seq 1 100); do
  pending=$(curl -s 127.0.0.1:9465/metrics | awk '/^tidegate_collector_spool_pending_batches / {print $2}')
  [[ "${pending:-1}" == "0" ]] && break
  sleep 0.2
done

echo
echo "ClickHouse: tidegate.flows per line and direction"
q "SELECT line, direction, count() AS flow_records, sum(packets) AS packets, sum(bytes) AS ip_bytes
   FROM tidegate.flows GROUP BY line, direction ORDER BY line, direction FORMAT PrettyCompact"
echo "top flows by bytes"
q "SELECT direction, src_text AS src, sport, dst_text AS dst, dport, proto, sum(packets) AS packets, sum(bytes) AS bytes
   FROM tidegate.flows GROUP BY direction, src, sport, dst, dport, proto ORDER BY bytes DESC LIMIT 12 FORMAT PrettyCompact"
echo "1-minute rollup (flows_1m)"
q "SELECT line, direction, proto, sum(packets) AS packets, sum(bytes) AS bytes
   FROM tidegate.flows_1m GROUP BY line, direction, proto ORDER BY bytes DESC LIMIT 8 FORMAT PrettyCompact"
ingress=$(q "SELECT sum(packets) FROM tidegate.flows WHERE direction = 'ingress'")
egress=$(q "SELECT sum(packets) FROM tidegate.flows WHERE direction = 'egress'")
echo "replayed in: $sent packets -> ingress packets in ClickHouse: $ingress"
echo "replayed out: $sent_out packets -> egress packets in ClickHouse: $egress"
echo "(the kernel's own packets on the line, e.g. IPv6 neighbour discovery, are accounted too)"
echo
echo "threat perception on what was stored (tidegate-collector analyze over the flows in ClickHouse):"
q "SELECT src_text AS src, dst_text AS dst, sport, dport, proto, vlan, packets, bytes,
          concat(replaceOne(toString(first, 'UTC'), ' ', 'T'), 'Z') AS first,
          concat(replaceOne(toString(last, 'UTC'), ' ', 'T'), 'Z') AS last,
          tcp_flags, icmp_type, icmp_code, line, ifindex, toString(direction) AS direction
   FROM tidegate.flows ORDER BY first FORMAT JSONEachRow SETTINGS output_format_json_quote_64bit_integers = 0" \
  | "$bin/tidegate-collector" analyze 2>/dev/null >"$out/alerts.jsonl"
python3 - "$out/alerts.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{len(rows)} alerts")
print(f"{'severity':9} {'kind':16} {'source':22} {'target':22} {'measured':>12}  description")
order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
for a in sorted(rows, key=lambda a: (order.get(a["severity"], 9), a["kind"]))[:15]:
    print(f"{a['severity']:9} {a['kind']:16} {str(a.get('src'))[:22]:22} {str(a.get('dst'))[:22]:22} {a['measured']:>12.1f}  {a['description'][:70]}")
PY
log "logs and state: $out (collector.log, probe.log, collector.toml, certs/)"
