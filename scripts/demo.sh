#!/usr/bin/env bash
# tidegate demo (the README's main job): sets everything up, builds, loads the probe's
# eBPF programs (XDP ingress + TCX egress) on a veth pair inside two network namespaces,
# replays real captured traffic from the corpus through the link, and shows the flows
# the probe captured. Ctrl-C at any point removes the namespaces and stops the probe.
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
cargo build --release --locked -p tidegate-probe
probe_bin="$root/target/release/tidegate-probe"

corpus="${TIDEGATE_CORPUS:-$root/../shared/corpus/pcap}"
out="$TIDEGATE_STATE/demo"
mkdir -p "$out"
ns_a=tg-demo-wan ns_b=tg-demo-edge if_a=tgdemo-wan if_b=tgdemo-line
probe_pid=""

cleanup() {
  trap - EXIT INT TERM
  if [[ -n "$probe_pid" ]] && kill -0 "$probe_pid" 2>/dev/null; then
    kill -INT "$probe_pid" 2>/dev/null || true
    wait "$probe_pid" 2>/dev/null || true
  fi
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
}
trap cleanup EXIT
trap 'log "interrupted: cleaning up"; exit 130' INT TERM

log "creating namespaces $ns_a <-> $ns_b joined by veth $if_a/$if_b"
ip netns del "$ns_a" 2>/dev/null || true
ip netns del "$ns_b" 2>/dev/null || true
ip netns add "$ns_a"
ip netns add "$ns_b"
ip -n "$ns_b" link set lo up
ip -n "$ns_a" link add "$if_a" type veth peer name "$if_b" netns "$ns_b"
ip -n "$ns_a" addr add 192.0.2.1/24 dev "$if_a"
ip -n "$ns_b" addr add 192.0.2.2/24 dev "$if_b"
ip -n "$ns_a" link set "$if_a" up
ip -n "$ns_b" link set "$if_b" up

log "starting the probe on line $if_b (XDP native + TCX egress)"
ip netns exec "$ns_b" "$probe_bin" run --iface "$if_b" --json --idle-timeout 5 \
  --metrics-listen 127.0.0.1:9464 >"$out/flows.jsonl" 2>"$out/probe.log" &
probe_pid=$!
for _ in $(seq 1 100); do
  grep -q "capturing" "$out/probe.log" 2>/dev/null && break
  kill -0 "$probe_pid" 2>/dev/null || { cat "$out/probe.log" >&2; die "the probe failed to start"; }
  sleep 0.1
done
grep -q "capturing" "$out/probe.log" || die "the probe did not start in 10 s (see $out/probe.log)"

log "generating traffic: ping across the line, then real captures replayed onto the wire"
ip netns exec "$ns_a" ping -c 20 -i 0.05 -q 192.0.2.2 >/dev/null || true
sent=0
if [[ -d "$corpus" ]]; then
  for f in ndpi-1kxun.pcap ndpi-dns_exfiltration.pcap ndpi-synscan.pcap stopddos-pkt.TCP.synflood.spoofed.pcap; do
    [[ -f "$corpus/$f" ]] || continue
    n=$(ip netns exec "$ns_a" tcpreplay -i "$if_a" --pps=20000 "$corpus/$f" 2>&1 |
      awk '/Actual:/ {print $2; exit}')
    log "  replayed $f: ${n:-0} packets"
    sent=$((sent + ${n:-0}))
  done
else
  log "  corpus not found at $corpus (set TIDEGATE_CORPUS); only the ping traffic is shown"
fi
log "metrics: $(ip netns exec "$ns_b" curl -s 127.0.0.1:9464/metrics | awk '/^tidegate_probe_(packets|accounted_packets)_total/ {printf "%s=%s ", $1, $2}')"

log "stopping the probe (SIGINT: it flushes every flow it holds)"
kill -INT "$probe_pid"
wait "$probe_pid" || true
probe_pid=""

python3 - "$out/flows.jsonl" "$out/probe.log" "$sent" <<'PY'
import json, sys, collections, re
flows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
log = open(sys.argv[2]).read()
sent = int(sys.argv[3])
by_key = collections.defaultdict(lambda: [0, 0])
for f in flows:
    k = (f["direction"], f["src"], f["sport"], f["dst"], f["dport"], f["proto"])
    by_key[k][0] += f["packets"]; by_key[k][1] += f["bytes"]
pk = sum(v[0] for v in by_key.values()); by = sum(v[1] for v in by_key.values())
ingress = sum(v[0] for k, v in by_key.items() if k[0] == "ingress")
print(f"\n{len(flows)} flow records, {len(by_key)} distinct flows, {pk} packets, {by} IP bytes")
m = re.search(r'counters=\[(.*?)\]', log.replace('\x1b', ''))
if m:
    print("probe counters:", re.sub(r'\x1b\[[0-9;]*m', '', m.group(1)))
if sent:
    print(f"replayed onto the wire: {sent} packets; ingress packets accounted: {ingress} (includes ping)")
print("\ntop flows by bytes:")
print(f"{'dir':8} {'source':>40} {'destination':>40} {'proto':>5} {'packets':>8} {'bytes':>10}")
for k, v in sorted(by_key.items(), key=lambda kv: -kv[1][1])[:15]:
    d, s, sp, t, tp, p = k
    print(f"{d:8} {s + ':' + str(sp):>40} {t + ':' + str(tp):>40} {p:>5} {v[0]:>8} {v[1]:>10}")
PY
log "flow records: $out/flows.jsonl   probe log: $out/probe.log"
