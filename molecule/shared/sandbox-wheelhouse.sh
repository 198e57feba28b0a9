#!/usr/bin/env bash
# Builds the wheelhouse of the simulator install (DEST, default .cache/sandbox-wheelhouse-demo): the
# di2siem-sandbox wheel (sandbox/, its own distribution) from a clean copy of its sources. It has no
# dependencies (standard library only), so that one wheel is the whole wheelhouse.
# Independent from the role's own wheelhouse (prepare runs before converge).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${1:-$REPO/.cache/sandbox-wheelhouse-demo}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/src" "$tmp/wheels"
tar -C "$REPO/sandbox" --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' \
  --exclude=build -cf - . | tar -C "$tmp/src" -xf -
export PIP_DISABLE_PIP_VERSION_CHECK=1 SOURCE_DATE_EPOCH=315619200
"$PYTHON" -m pip wheel -q --no-deps --no-cache-dir -w "$tmp/wheels" "$tmp/src" 2>&1 | grep -v '^WARNING: Location' >&2 || true
ls "$tmp"/wheels/di2siem_sandbox-*-py3-none-any.whl >/dev/null
rm -f "$DEST"/*.whl
cp "$tmp"/wheels/*.whl "$DEST"/
ls "$DEST"
