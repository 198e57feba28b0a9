#!/usr/bin/env bash
# Builds the wheelhouse of the simulator install (DEST, default .cache/sandbox-wheelhouse-demo): the di2siem wheel
# from a clean copy of the package sources plus pure-Python wheels of its dependencies.
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
extra=()
for f in README.md README.rst LICENSE; do [[ -e $REPO/$f ]] && extra+=("$f"); done
tar -C "$REPO" --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' \
  -cf - pyproject.toml collector "${extra[@]}" | tar -C "$tmp/src" -xf -
export PIP_DISABLE_PIP_VERSION_CHECK=1 SOURCE_DATE_EPOCH=315619200
"$PYTHON" -m pip wheel -q --no-deps --no-cache-dir -w "$tmp/wheels" "$tmp/src" 2>&1 | grep -v '^WARNING: Location' >&2 || true
ls "$tmp"/wheels/di2siem-*.whl >/dev/null
"$PYTHON" -m pip download -q --only-binary=:all: --platform any --implementation py --abi none \
  --python-version 3.9 -d "$tmp/wheels" "$tmp"/wheels/di2siem-*.whl 2>&1 | grep -v '^WARNING: Location' >&2 || true
ls "$tmp"/wheels/requests-*.whl >/dev/null
rm -f "$DEST"/*.whl
cp "$tmp"/wheels/*.whl "$DEST"/
ls "$DEST"
