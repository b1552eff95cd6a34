# Shared helpers for the scripts in this folder; sourced, never run.
# shellcheck shell=bash

OLDEST_VENV="${IOTSHIELD_OLDEST_VENV:-$ROOT/.venv/oldest}"
CURRENT_VENV="${IOTSHIELD_CURRENT_VENV:-$ROOT/.venv/current}"
LLM_VENV="${IOTSHIELD_LLM_VENV:-$ROOT/.venv/llm}"
# Outside the repo so that every clone on a machine shares one Debian tree.
CHROOT_DIR="${IOTSHIELD_CHROOT:-/var/lib/iotshield/forky}"

say() { echo "iotshield: $*" >&2; }

py_version_at_least() {
  # True when interpreter $1 is at least version $2.$3.$4.
  "$1" -c "import sys; sys.exit(0 if sys.version_info[:3] >= ($2, $3, $4) else 1)" 2>/dev/null
}

find_oldest_python() {
  # The oldest lane is pinned to CPython 3.13.0, which pyenv provides on these machines.
  local candidate
  for candidate in "${IOTSHIELD_OLDEST_PYTHON:-}" \
      "$(command -v pyenv >/dev/null 2>&1 && pyenv prefix 3.13.0 2>/dev/null)/bin/python3.13" \
      "$HOME/.pyenv/versions/3.13.0/bin/python3.13"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

find_native_current_python() {
  # Current Home Assistant needs Python >= 3.14.2; use one on PATH when the machine has it.
  local candidate
  for candidate in "${IOTSHIELD_CURRENT_PYTHON:-}" python3.15 python3.14; do
    [ -n "$candidate" ] || continue
    candidate="$(command -v "$candidate" 2>/dev/null)" || continue
    if py_version_at_least "$candidate" 3 14 2; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

debian_mirror() {
  # The mirror apt already uses, so that debootstrap reaches what apt reaches.
  local uri
  uri="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -E '/debian/?( |$)' | grep -v security | head -n 1 | sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//; s/ .*//')"
  echo "${IOTSHIELD_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

CHROOT_MOUNTED=()
chroot_mount() {
  # Bind the repo at the same path inside the chroot so that venv paths agree on both sides.
  local target
  mkdir -p "$CHROOT_DIR$ROOT" "$CHROOT_DIR/proc" "$CHROOT_DIR/dev"
  for target in proc dev "${ROOT#/}"; do
    if ! mountpoint -q "$CHROOT_DIR/$target"; then
      case "$target" in
        proc) mount -t proc proc "$CHROOT_DIR/proc" ;;
        dev) mount --rbind /dev "$CHROOT_DIR/dev"; mount --make-rslave "$CHROOT_DIR/dev" ;;
        *) mount --bind "/$target" "$CHROOT_DIR/$target" ;;
      esac
      CHROOT_MOUNTED+=("$CHROOT_DIR/$target")
    fi
  done
}

chroot_umount() {
  local i
  for ((i = ${#CHROOT_MOUNTED[@]} - 1; i >= 0; i--)); do
    umount -R -l "${CHROOT_MOUNTED[$i]}" 2>/dev/null || true
  done
  CHROOT_MOUNTED=()
}

in_chroot() {
  # Run a command inside the chroot, in the repo, with a clean environment.
  chroot "$CHROOT_DIR" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CI="${CI:-}" /bin/sh -c 'cd "$0" && exec "$@"' "$ROOT" "$@"
}
