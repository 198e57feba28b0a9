#!/usr/bin/env python3
"""Build (or take) the di2siem wheelhouse on the Ansible controller, idempotently.

Two sources, one result: DEST holds exactly one wheel set plus requirements.txt (every wheel
pinned by version and sha256) that the targets install with
`pip install --no-index --require-hashes`. Prints one JSON object: changed, wheels,
requirements, version, dest.

- Built (default): the collector wheel from a clean copy of SOURCE (SOURCE_DATE_EPOCH makes it
  byte-reproducible), and its runtime dependencies exactly as SOURCE/requirements.lock pins them
  (versions and sha256 hashes; `pip download --require-hashes`). A warm DEST built from the same
  source and lock is reused without running pip at all: no package index needed.
- Prebuilt (--prebuilt): a wheelhouse made by `make dist` (a directory, a .tar.gz, or an
  http(s) URL of the .tar.gz with --prebuilt-sha256), checked wheel by wheel against its
  requirements.txt. No pip, no package index.

--version: the di2siem version the wheel set must carry (the role's di2siem_version).
--update-lock: resolve pyproject.toml's dependencies again and rewrite SOURCE/requirements.lock.
"""

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

# Never copied: caches and build leftovers (a stale build/ can leak deleted modules into the
# wheel) anywhere; at the top level only the package's own files are taken.
IGNORE_ANYWHERE = shutil.ignore_patterns(
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
)
PACKAGE_FILES = ("pyproject.toml", "README.md", "LICENSE", "collector")
LOCK = "requirements.lock"
REQUIREMENTS = "requirements.txt"
STAMP = ".source-sha256"
# 1980-01-02: the zip format cannot store earlier dates.
DEFAULT_EPOCH = "315619200"
# Dependencies as pure-Python wheels for the oldest target Python.
PURE = ["--only-binary=:all:", "--platform", "any", "--implementation", "py", "--abi", "none"]
LOCK_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})$")


def fail(message):
    sys.exit(f"di2siem wheelhouse: {message}")


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def normalize(project):
    return re.sub(r"[-_.]+", "-", project).lower()


def run(cmd, env):
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        fail(f"command failed (rc={proc.returncode}): {' '.join(cmd)}")
    return proc.stdout


def wheel_set(directory):
    if not os.path.isdir(directory):
        return {}
    return {
        name: sha256_file(os.path.join(directory, name))
        for name in sorted(os.listdir(directory))
        if name.endswith(".whl")
    }


def requirements(wheels):
    lines = []
    for name, digest in sorted(wheels.items()):
        project, version = name.split("-")[:2]
        lines.append(f"{project}=={version} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


def parse_pins(text, where):
    """{normalized project: (version, sha256)} of a lock or requirements.txt."""
    pins = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = LOCK_LINE.match(line)
        if not match:
            fail(f"{where}:{number}: expected 'name==version --hash=sha256:<64 hex>', got {line!r}")
        pins[normalize(match[1])] = (match[2], match[3])
    return pins


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def copy_source(source, dest):
    os.makedirs(dest)
    for name in PACKAGE_FILES:
        path = os.path.join(source, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(dest, name), ignore=IGNORE_ANYWHERE)
        elif os.path.isfile(path):
            shutil.copy2(path, os.path.join(dest, name))


def tree_digest(root, extra):
    """sha256 over every file's path and bytes below ROOT, plus EXTRA (the lock)."""
    digest = hashlib.sha256(extra.encode())
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def own_version(wheels):
    versions = [n.split("-")[1] for n in wheels if normalize(n.split("-")[0]) == "di2siem"]
    if len(versions) != 1:
        fail(f"expected exactly one di2siem wheel, got {len(versions)}")
    return versions[0]


def has_setuptools(python):
    # setuptools >= 70.1 builds wheels itself; older ones (>= 61, pyproject.toml) need wheel.
    probe = (
        "import sys, setuptools; v = tuple(int(p) for p in setuptools.__version__.split('.')[:2]);"
        "v >= (70, 1) or __import__('wheel'); sys.exit(v < (61, 0))"
    )
    return subprocess.run([python, "-c", probe], capture_output=True, check=False).returncode == 0


def build(args, env, tmp, dest):
    """The wheel set from SOURCE and its lock, in a new directory; None when DEST (same source
    and lock) already holds it."""
    source = os.path.realpath(args.source)
    if not os.path.isfile(os.path.join(source, "pyproject.toml")):
        fail(f"no pyproject.toml in {source}: set di2siem_source_dir to the collection root")
    lock_path = os.path.join(source, LOCK)
    if not os.path.isfile(lock_path):
        fail(f"no {LOCK} in {source}: run `make lock` in the di2siem repository")
    lock = read(lock_path)
    pins = parse_pins(lock, lock_path)
    src = os.path.join(tmp, "src")
    copy_source(source, src)
    stamp = tree_digest(src, lock)
    stamp_path = os.path.join(dest, STAMP)
    if os.path.isfile(stamp_path) and read(stamp_path).strip() == stamp:
        current = wheel_set(dest)
        recorded = os.path.join(dest, REQUIREMENTS)
        if os.path.isfile(recorded) and read(recorded) == requirements(current):
            return None, stamp
    built = os.path.join(tmp, "wheels")
    wheel_cmd = [args.python, "-m", "pip", "wheel", "--no-deps", "-w", built]
    # With setuptools at hand the build needs no package index (no isolated build env).
    if has_setuptools(args.python):
        wheel_cmd.append("--no-build-isolation")
    run([*wheel_cmd, src], env)
    # Locked dependencies: reuse DEST's wheels whose hashes the lock names, download the rest.
    have = {digest: name for name, digest in wheel_set(dest).items()}
    missing = []
    for project, (version, digest) in sorted(pins.items()):
        if digest in have:
            shutil.copy2(os.path.join(dest, have[digest]), os.path.join(built, have[digest]))
        else:
            missing.append(f"{project}=={version} --hash=sha256:{digest}")
    if missing:
        wanted = os.path.join(tmp, "missing.txt")
        with open(wanted, "w", encoding="utf-8") as handle:
            handle.write("\n".join(missing) + "\n")
        download = [args.python, "-m", "pip", "download", "--no-deps", "--require-hashes", *PURE]
        run([*download, "--python-version", args.python_version, "-d", built, "-r", wanted], env)
    new = wheel_set(built)
    got = {normalize(n.split("-")[0]): (n.split("-")[1], d) for n, d in new.items()}
    got.pop("di2siem", None)
    if got != pins:
        fail(f"the downloaded wheels differ from {lock_path}: {sorted(set(got) ^ set(pins))}")
    return built, stamp


def fetch(url, expected, tmp):
    if not expected:
        fail("a URL wheelhouse needs its sha256: set di2siem_wheelhouse_sha256")
    path = os.path.join(tmp, "download.tar.gz")
    with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as handle:
        shutil.copyfileobj(response, handle)
    return path


def prebuilt(args, tmp):
    """The wheel set of a prebuilt wheelhouse (directory, .tar.gz or URL), checked."""
    where = args.prebuilt
    expected = (args.prebuilt_sha256 or "").lower()
    if re.match(r"^https?://", where):
        where = fetch(where, expected, tmp)
    if os.path.isfile(where):
        if expected and sha256_file(where) != expected:
            fail(f"{args.prebuilt}: sha256 differs from di2siem_wheelhouse_sha256 {expected}")
        root = os.path.join(tmp, "prebuilt")
        with tarfile.open(where) as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.isfile() and m.name.endswith((".whl", REQUIREMENTS))
            ]
            os.makedirs(root)
            for member in members:
                data = archive.extractfile(member).read()
                with open(os.path.join(root, os.path.basename(member.name)), "wb") as handle:
                    handle.write(data)
    elif os.path.isdir(where):
        root = where
    else:
        fail(f"{args.prebuilt}: no such directory or file (di2siem_wheelhouse_src)")
    listed = os.path.join(root, REQUIREMENTS)
    if not os.path.isfile(listed):
        fail(f"{args.prebuilt}: no {REQUIREMENTS} (a wheelhouse made by `make dist`)")
    pins = parse_pins(read(listed), listed)
    wheels = wheel_set(root)
    found = {normalize(n.split("-")[0]): (n.split("-")[1], d) for n, d in wheels.items()}
    wrong = sorted(p for p in set(pins) | set(found) if pins.get(p) != found.get(p))
    if wrong:
        fail(f"{args.prebuilt}: wheels differ from its {REQUIREMENTS} (hash or set): {wrong}")
    return root


def replace(path, data):
    with open(path + ".tmp", "wb") as handle:
        handle.write(data)
    os.replace(path + ".tmp", path)


def sync(built, dest, stamp):
    """Make DEST hold exactly BUILT's wheels plus requirements.txt; True if it changed."""
    new = wheel_set(built)
    reqs = requirements(new)
    old = wheel_set(dest)
    req_path = os.path.join(dest, REQUIREMENTS)
    old_reqs = read(req_path) if os.path.isfile(req_path) else None
    changed = not (new == old and reqs == old_reqs)
    for name, digest in new.items():
        if old.get(name) != digest:
            with open(os.path.join(built, name), "rb") as handle:
                replace(os.path.join(dest, name), handle.read())
    for name in old:
        if name not in new:
            os.unlink(os.path.join(dest, name))
    if changed:
        replace(req_path, reqs.encode())
    replace(os.path.join(dest, STAMP), (stamp + "\n").encode())
    return changed


def update_lock(args, env, tmp):
    source = os.path.realpath(args.source)
    src = os.path.join(tmp, "src")
    copy_source(source, src)
    built = os.path.join(tmp, "wheels")
    run([args.python, "-m", "pip", "wheel", "--no-deps", "-w", built, src], env)
    (own,) = [os.path.join(built, n) for n in os.listdir(built)]
    download = [args.python, "-m", "pip", "download", *PURE]
    run([*download, "--python-version", args.python_version, "-d", built, own], env)
    os.unlink(own)
    header = (
        "# Runtime dependencies of di2siem, hash-locked: the wheels the role installs on the\n"
        "# targets (pure Python, py3-none-any, Python >= 3.9). Regenerate with `make lock`.\n"
    )
    replace(os.path.join(source, LOCK), (header + requirements(wheel_set(built))).encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="collection root (pyproject.toml)")
    parser.add_argument("--dest", help="wheelhouse directory on the controller")
    parser.add_argument("--prebuilt", default="", help="wheelhouse directory, .tar.gz or URL")
    parser.add_argument("--prebuilt-sha256", default="", help="sha256 of the .tar.gz / URL")
    parser.add_argument("--version", default="", help="di2siem version the set must carry")
    parser.add_argument("--python-version", default="3.9", help="oldest target Python")
    parser.add_argument("--python", default=sys.executable, help="Python with pip")
    parser.add_argument("--update-lock", action="store_true", help="rewrite requirements.lock")
    args = parser.parse_args()

    env = dict(os.environ)
    env.setdefault("SOURCE_DATE_EPOCH", DEFAULT_EPOCH)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    tmp = tempfile.mkdtemp(prefix="di2siem-wheelhouse-")
    try:
        if args.update_lock:
            update_lock(args, env, tmp)
            return 0
        if not args.dest:
            fail("--dest is required")
        dest = os.path.abspath(args.dest)
        os.makedirs(dest, exist_ok=True)
        # Several plays may share one wheelhouse: work under a lock, and replace files
        # atomically so a reader never sees a half-written wheel.
        with open(os.path.join(dest, ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if args.prebuilt:
                root, stamp = prebuilt(args, tmp), "prebuilt"
            else:
                root, stamp = build(args, env, tmp, dest)
            # The version is checked before DEST changes: a refused set leaves it as it was.
            version = own_version(wheel_set(root if root is not None else dest))
            if args.version and version != args.version:
                fail(
                    f"the wheel set carries di2siem {version}, not {args.version}:"
                    " set di2siem_version to it, or give the wheelhouse of that version"
                )
            changed = root is not None and sync(root, dest, stamp)
            wheels = wheel_set(dest)
            reqs = read(os.path.join(dest, REQUIREMENTS))
        json.dump(
            {
                "changed": changed,
                "wheels": sorted(wheels),
                "requirements": reqs,
                "version": version,
                "dest": dest,
            },
            sys.stdout,
        )
        sys.stdout.write("\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
