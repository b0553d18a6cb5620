# Shared helpers for tidegate's shell scripts. Source, don't run:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It sets $here (scripts/) and $root (the repository).

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

# Colour only when stderr is a terminal (logs piped to a file stay plain text).
if [[ -t 2 ]]; then _tg_blue=$'\033[1;34m' _tg_red=$'\033[1;31m' _tg_off=$'\033[0m'; else _tg_blue="" _tg_red="" _tg_off=""; fi
log() { printf '%s[tidegate]%s %s\n' "$_tg_blue" "$_tg_off" "$*" >&2; }
die() { printf '%s[tidegate] error:%s %s\n' "$_tg_red" "$_tg_off" "$*" >&2; exit 1; }

# need_root WHAT COMMAND...: exits unless running as root, saying what to run. The
# scripts load eBPF programs, create network namespaces and install Debian packages, so
# they run as root; a root shell needs no sudo (minimal Debian does not ship it).
need_root() {
  local what="$1"; shift
  [[ $(id -u) -eq 0 ]] && return 0
  local cmd="$*" how
  how="from a root shell run: $cmd; as this user: su -c '$cmd' root"
  command -v sudo >/dev/null 2>&1 && how+=" (or: sudo $cmd)"
  die "$what needs root (eBPF, network namespaces, Debian packages): $how"
}

# Installs what is missing (scripts/setup.sh, idempotent) and puts rustup's cargo first.
setup_toolchain() {
  "$here/setup.sh"
  export PATH="$HOME/.cargo/bin:$PATH"
}

# Where local state (ClickHouse venv and data, spools, certificates) lives.
: "${TIDEGATE_STATE:=${root:-.}/.state}"
export TIDEGATE_STATE
