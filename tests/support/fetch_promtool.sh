#!/bin/bash
# Puts promtool (from Debian's `prometheus` package) at DIR/promtool and prints its path.
# The package is only downloaded and unpacked, never installed: installing it would start a
# Prometheus server. Idempotent: a working DIR/promtool is kept as it is.
# Exit 0: ready; 3: no apt-get on this machine (callers skip, saying so); else: failed (callers
# fail: a machine with apt-get must be able to fetch it).
# Used by `make promtool` (make test depends on it) and the promtool tests.
set -euo pipefail
dest=$(realpath -m "${1:?usage: fetch_promtool.sh DIR}")
tool="$dest/promtool"
if [ -x "$tool" ] && "$tool" --version >/dev/null 2>&1; then
  echo "$tool"
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "no apt-get/dpkg-deb on this machine: cannot fetch promtool (Debian package prometheus)" >&2
  exit 3
fi
mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
download() { (cd "$work" && apt-get download -q prometheus >"$work/apt.log" 2>&1); }
if ! download; then
  # a fresh machine may have no package lists yet: refresh them once (root only)
  if [ "$(id -u)" -eq 0 ] && apt-get update -qq >>"$work/apt.log" 2>&1 && download; then
    :
  else
    echo "fetch_promtool: 'apt-get download prometheus' failed (try: apt-get update):" >&2
    tail -n 5 "$work/apt.log" >&2
    exit 1
  fi
fi
dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
"$work/usr/bin/promtool" --version >/dev/null
mv "$work/usr/bin/promtool" "$tool"
echo "$tool"
