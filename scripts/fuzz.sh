#!/usr/bin/env bash
# Fuzzes the parsers that read what peers send, with libFuzzer and AddressSanitizer
# (cargo-fuzz on the stable toolchain with RUSTC_BOOTSTRAP=1). Seeds are real data: the
# shared corpus captures (pcap files, their frames, wire batches of their flows), DNS/TLS
# payloads from them, softflowd's NetFlow exports of them, and the example configurations.
# The corpus that grows and any crash land under $TIDEGATE_STATE/fuzz/, never in the
# repository.
#
#   scripts/fuzz.sh TARGET [SECONDS]      # one target, default 600 s
#   scripts/fuzz.sh --runs N [TARGET...]   # a campaign: N executions of each target
#                                          # (all targets when none is named)
#   scripts/fuzz.sh --smoke               # every target for 20 s (the test suite runs this)
#
# Targets (fuzz/fuzz_targets/): netflow_decode, batch_decode, packet_parse, capture_read,
# app_names, config_parse, api_filter. Each run's statistics go to $TIDEGATE_STATE/fuzz/<target>/last-run.log.
#
# TIDEGATE_FUZZ_TIMEOUT (seconds, default 10): one input running longer is reported as a
# hang. Raise it for a campaign at idle priority beside other work, where a starved
# process would otherwise report spurious timeouts.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

all_targets=(netflow_decode batch_decode packet_parse capture_read app_names config_parse api_filter)
mode=time secs=600 runs=0 targets=()
case "${1:-}" in
  --smoke) mode=time secs=20 targets=("${all_targets[@]}") ;;
  --runs) mode=runs runs="${2:?--runs N}"; shift 2; targets=("$@") ;;
  "") die "usage: scripts/fuzz.sh TARGET [SECONDS] | --runs N [TARGET...] | --smoke" ;;
  *) targets=("$1"); secs="${2:-600}" ;;
esac
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ -f "$root/fuzz/fuzz_targets/$t.rs" ]] || die "no fuzz target $t (fuzz/fuzz_targets/)"
done
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install --locked cargo-fuzz@0.13.2
fi
corpus_pcaps="${TIDEGATE_CORPUS:-$root/../shared/corpus}/pcap"

seed() {
target=$1
work="$TIDEGATE_STATE/fuzz/$target"
seeds="$work/seeds"
mkdir -p "$work/corpus" "$work/artifacts" "$seeds"
[[ -n "$(ls -A "$seeds")" ]] && return 0
case $target in
  capture_read)
    # Small real captures, whole (pcap and pcapng).
    mapfile -t small < <(find "$corpus_pcaps" -type f -size -64k | sort)
    for f in "${small[@]:0:40}"; do cp "$f" "$seeds/"; done ;;
  packet_parse | app_names)
    python3 - "$corpus_pcaps" "$seeds" "$target" <<'PY'
import os, struct, sys
pcaps, out, target = sys.argv[1], sys.argv[2], sys.argv[3]
n = 0
for name in sorted(os.listdir(pcaps)):
    if not name.endswith(".pcap") or n >= 400:
        continue
    data = open(os.path.join(pcaps, name), "rb").read()
    if len(data) < 24 or data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"):
        continue
    e = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    link = struct.unpack(e + "I", data[20:24])[0]
    kind = {1: 0, 101: 1, 113: 2, 276: 3, 0: 4, 104: 5}.get(link)
    if kind is None:
        continue
    off, k = 24, 0
    while off + 16 <= len(data) and k < 12:
        incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        k += 1
        if target == "packet_parse":
            blob = bytes([kind]) + frame
        else:
            # The tail of the frame: DNS messages and TLS records start there.
            blob = frame[42:] if len(frame) > 42 else frame
        open(os.path.join(out, f"{name}-{k}"), "wb").write(blob)
        n += 1
PY
    ;;
  batch_decode)
    cargo build --release --locked -q -p tidegate-probe
    for f in ndpi-1kxun.pcap ndpi-dns_exfiltration.pcap ndpi-synscan.pcap; do
      "$root/target/release/tidegate-probe" replay "$corpus_pcaps/$f" --json 2>/dev/null | head -200 |
        python3 "$here/fuzz_batch_seed.py" "$seeds/$f.batch" || true
    done ;;
  config_parse)
    cp "$root"/dashboards/examples/*.toml "$seeds/" 2>/dev/null || true
    find "$root/dashboards/policy" -name '*.toml' -exec cp {} "$seeds/" \; 2>/dev/null || true ;;
  api_filter)
    # The documented examples (the module documentation of collector/src/api/filter.rs).
    i=0
    while IFS= read -r ex; do
      i=$((i + 1)); printf '%s' "$ex" >"$seeds/example-$i"
    done <<'EX'
dst = 10.0.0.0/8 and dport in (22, 3389)
country != CN and bytes > 10M
not (proto = udp or proto = icmp) flags = syn packets < 3
name = example.com or tls_sni ~ "bank"
duration > 30s and verdict = would_drop direction = egress
ip = 2001:db8::/32 asn = AS4134 zone != domestic line = "hk-1"
dns_rcode = nxdomain dns_qtype in (a, aaaa, txt) vlan >= 100 icmp_type = 3
source = ipfix sampling > 1 src_country = DE dst_asn != 0 enforce_rule ~ x
EX
    ;;
esac
if [[ $target == netflow_decode && -z "$(ls -A "$seeds")" ]]; then
  command -v softflowd >/dev/null || die "softflowd is missing: run scripts/setup.sh"
  log "seeding from softflowd exports of corpus captures (v5, v9, IPFIX)"
  python3 - "$corpus_pcaps" "$seeds" <<'PY'
import os, socket, struct, subprocess, sys
pcaps, out = sys.argv[1], sys.argv[2]
for name in ["ndpi-1kxun.pcap", "ndpi-synscan.pcap", "ndpi-vxlan.pcap", "ndpi-icmp-tunnel.pcap"]:
    for version, extra in [("5", []), ("9", []), ("10", []), ("10", ["-A", "milli"]), ("10", ["-s", "10"])]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
        port = s.getsockname()[1]
        subprocess.run(["timeout", "30", "softflowd", "-d", "-a", "-c", "none", "-r", os.path.join(pcaps, name),
                        "-n", f"127.0.0.1:{port}", "-v", version] + extra,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        chunks = []
        try:
            while len(chunks) < 40:
                d = s.recv(65535)
                chunks.append(bytes([0]) + struct.pack(">H", len(d)) + d)
        except socket.timeout:
            pass
        if chunks:
            tag = "-".join([version] + extra).replace(" ", "")
            with open(os.path.join(out, f"{name}-{tag}"), "wb") as f:
                f.write(b"".join(chunks))
PY
  log "$(ls "$seeds" | wc -l) seeds"
fi

}

cd "$root"
log "building the fuzz targets (AddressSanitizer)"
RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir fuzz
summary=()
for target in "${targets[@]}"; do
  seed "$target"
  work="$TIDEGATE_STATE/fuzz/$target"
  if [[ $mode == runs ]]; then
    limit=(-runs="$runs")
    log "fuzzing $target for $runs executions (corpus: $work/corpus, crashes: $work/artifacts)"
  else
    limit=(-max_total_time="$secs")
    log "fuzzing $target for ${secs}s (corpus: $work/corpus, crashes: $work/artifacts)"
  fi
  # NetFlow inputs are datagram sequences: longer ones only slow the search down.
  case $target in api_filter) max_len=2100 ;; netflow_decode | app_names | config_parse) max_len=8192 ;; *) max_len=65536 ;; esac
  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz "$target" "$work/corpus" "$work/seeds" -- \
    "${limit[@]}" -max_len="$max_len" -rss_limit_mb=2048 -timeout="${TIDEGATE_FUZZ_TIMEOUT:-10}" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" >"$work/last-run.log" 2>&1 || true
  if grep -q "^==.*ERROR\|panicked\|deadly signal" "$work/last-run.log"; then
    die "$target crashed: see $work/artifacts and $work/last-run.log"
  fi
  execs=$(grep -E '^stat::number_of_executed_units' "$work/last-run.log" | awk '{print $2}')
  [[ -n $execs ]] || die "$target did not run: see $work/last-run.log"
  summary+=("$target: $execs executions, 0 crashes")
  log "$target: $execs executions, no crash"
done
printf '%s\n' "${summary[@]}"
