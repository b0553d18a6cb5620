#!/usr/bin/env bash
# Fuzzes the parsers that read what peers send, with libFuzzer and AddressSanitizer
# (cargo-fuzz on the stable toolchain with RUSTC_BOOTSTRAP=1). Seeds are real exports:
# softflowd (Debian) replaying corpus captures as NetFlow v5, v9 and IPFIX. The corpus
# that grows and any crash land under $TIDEGATE_STATE/fuzz/, never in the repository.
#
#   scripts/fuzz.sh [TARGET] [SECONDS]     # default: netflow_decode for 600 s
#   scripts/fuzz.sh netflow_decode 3600
#
# Targets: netflow_decode (collector/src/netflow/decode.rs, fuzz/fuzz_targets/).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

target="${1:-netflow_decode}"
secs="${2:-600}"
[[ -f "$root/fuzz/fuzz_targets/$target.rs" ]] || die "no fuzz target $target (fuzz/fuzz_targets/)"
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install --locked cargo-fuzz@0.13.2
fi

work="$TIDEGATE_STATE/fuzz/$target"
seeds="$work/seeds"
mkdir -p "$work/corpus" "$work/artifacts" "$seeds"

if [[ $target == netflow_decode && -z "$(ls -A "$seeds")" ]]; then
  command -v softflowd >/dev/null || die "softflowd is missing: run scripts/setup.sh"
  log "seeding from softflowd exports of corpus captures (v5, v9, IPFIX)"
  python3 - "$root/../shared/corpus/pcap" "$seeds" <<'PY'
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

cd "$root"
log "fuzzing $target for ${secs}s (corpus: $work/corpus, crashes: $work/artifacts)"
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz "$target" "$work/corpus" "$seeds" -- \
  -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" 2>&1 | tee "$work/last-run.log" | grep -E "^#[0-9]+.*(pulse|DONE)|stat::|ERROR|panicked" || true
grep -q "^==.*ERROR\|panicked" "$work/last-run.log" && die "$target crashed: see $work/artifacts and $work/last-run.log"
log "done: $(grep -E '^stat::number_of_executed_units' "$work/last-run.log" || echo 'see last-run.log')"
