#!/usr/bin/env bash
# Idempotent toolchain set-up for tidegate on Debian 12 (run as root).
#
# Installs, from the package registries only, everything the build, the demo
# and the tests need. A second run with everything present takes seconds.
#
#   scripts/setup.sh            # build + test toolchain
#   (it also runs scripts/setup-browser.sh: Chromium, node, npm packages for the UI)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BPF_LINKER_VERSION=0.13.0
LLVM_MAJOR=22
APT_PACKAGES=(
  # eBPF toolchain: Debian's rustc 1.96 (LLVM 22) with a prebuilt core for bpfel-unknown-none.
  rustc-web cargo-web libstd-rust-web-dev-bpf "llvm-${LLVM_MAJOR}-dev" "clang-${LLVM_MAJOR}"
  # bpf-linker links against LLVM's libraries, which need these at link time.
  libzstd-dev zlib1g-dev libpolly-${LLVM_MAJOR}-dev
  # Network test tooling: namespaces/veth, traffic generators, reference dissector.
  iproute2 iputils-ping tcpreplay netsniff-ng tshark ethtool socat
  # ClickHouse launcher venv; misc.
  python3 curl ca-certificates pkg-config
  # The auditor's evidence bundle check (dashboards/evidence/verify_bundle.py).
  openssl
  # Seeds for the batch_decode fuzz target (scripts/fuzz.sh).
  zstd
)

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
  need_root "installing Debian packages (${need_apt[*]})" scripts/setup.sh
  log "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # wireshark-common asks whether non-root users may capture; answer no without prompting.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Debian's rustc must still be built on LLVM 22: bpf-linker and the bitcode it links must agree.
if ! /usr/bin/rustc -vV 2>/dev/null | grep -q "^LLVM version: ${LLVM_MAJOR}\."; then
  die "Debian's /usr/bin/rustc does not report LLVM ${LLVM_MAJOR} ($(/usr/bin/rustc -vV 2>/dev/null | grep LLVM || echo 'rustc missing')); the eBPF build needs rustc-web built on LLVM ${LLVM_MAJOR} — update BPF_LINKER/LLVM pins in scripts/setup.sh."
fi

# Userspace toolchain: rustup's stable (rust-version in Cargo.toml) with clippy and rustfmt.
if ! command -v cargo >/dev/null 2>&1 || [[ "$(command -v cargo)" == /usr/bin/cargo ]]; then
  [[ -x "$HOME/.cargo/bin/cargo" ]] || die "rustup's cargo is missing (expected \$HOME/.cargo/bin/cargo); install rustup stable 1.95 first."
  export PATH="$HOME/.cargo/bin:$PATH"
fi
for c in clippy rustfmt; do
  rustup component list --installed 2>/dev/null | grep -q "^${c}" || rustup component add "$c"
done

# The test runner (one process per test). The machine image usually has it.
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest (a few minutes)"
  cargo install --locked cargo-nextest
fi

# bpf-linker built against Debian's LLVM 22.
if ! bpf-linker --version 2>/dev/null | grep -q "${BPF_LINKER_VERSION}"; then
  log "building bpf-linker ${BPF_LINKER_VERSION} against LLVM ${LLVM_MAJOR} (a few minutes)"
  LLVM_PREFIX="/usr/lib/llvm-${LLVM_MAJOR}" cargo install --locked "bpf-linker@${BPF_LINKER_VERSION}" \
    --no-default-features --features "llvm-${LLVM_MAJOR}"
fi

# The local ClickHouse (chdb-core in a venv under .state/) for the demo and the tests.
"$here/clickhouse.sh" install
# A real GeoLite2 country database (July 2018, from PyPI) for the demo and enrichment tests.
"$here/geoip.sh" >/dev/null

# Chromium, node and the UI's npm packages: the browser tests are part of cargo test.
"$here/setup-browser.sh"

# Benchmark and interop peers (softflowd, nfdump, pmacct, argus) and the plot's font:
# scripts/bench.sh, and the NetFlow/IPFIX interop tests.
"$here/setup-bench.sh"

log "toolchain ready"
