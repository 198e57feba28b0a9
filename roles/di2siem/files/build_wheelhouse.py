#!/usr/bin/env python3
"""Build the di2siem wheelhouse on the Ansible controller, idempotently.

Builds the collector wheel from a clean copy of the source tree (SOURCE_DATE_EPOCH makes it
byte-reproducible), downloads its runtime dependencies as pure-Python wheels, and syncs the
result into DEST together with requirements.txt (pinned versions + sha256 hashes) that the
target installs with `pip install --no-index --require-hashes`. DEST changes only when the
wheel set changes. Prints one JSON object: changed, wheels, requirements.
"""

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

# Never copied: caches and build leftovers (a stale build/ can leak deleted modules into the
# wheel) anywhere, and at the top level the parts of the repository that are not the package.
IGNORE_ANYWHERE = shutil.ignore_patterns(
    ".git",
    ".cache",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
)
IGNORE_TOP = {
    "molecule",
    "roles",
    "playbooks",
    "inventory",
    "inventory.example",
    "benchmarks",
    "tests",
    ".ci",
    "venv",
}


def ignore(directory, names):
    skipped = set(IGNORE_ANYWHERE(directory, names))
    if directory == ignore.top:
        skipped |= IGNORE_TOP.intersection(names)
    return skipped


# 1980-01-02: the zip format cannot store earlier dates.
DEFAULT_EPOCH = "315619200"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run(cmd, env):
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        sys.exit(f"command failed (rc={proc.returncode}): {' '.join(cmd)}")


def wheel_set(directory):
    if not os.path.isdir(directory):
        return {}
    return {
        name: sha256(os.path.join(directory, name))
        for name in sorted(os.listdir(directory))
        if name.endswith(".whl")
    }


def requirements(wheels):
    lines = []
    for name, digest in sorted(wheels.items()):
        project, version = name.split("-")[:2]
        lines.append(f"{project}=={version} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


def replace(path, data):
    with open(path + ".tmp", "wb") as handle:
        handle.write(data)
    os.replace(path + ".tmp", path)


def sync(built, new, reqs, dest):
    """Make DEST hold exactly the wheels of NEW plus requirements.txt; True if it changed."""
    old = wheel_set(dest)
    req_path = os.path.join(dest, "requirements.txt")
    old_reqs = None
    if os.path.isfile(req_path):
        with open(req_path) as handle:
            old_reqs = handle.read()
    if new == old and reqs == old_reqs:
        return False
    for name, digest in new.items():
        if old.get(name) != digest:
            with open(os.path.join(built, name), "rb") as handle:
                replace(os.path.join(dest, name), handle.read())
    for name in old:
        if name not in new:
            os.unlink(os.path.join(dest, name))
    replace(req_path, reqs.encode())
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="repository root (pyproject.toml)")
    parser.add_argument("--dest", required=True, help="wheelhouse directory on the controller")
    parser.add_argument(
        "--python-version", default="3.9", help="oldest target Python the dependencies must support"
    )
    parser.add_argument("--python", default=sys.executable, help="Python with pip")
    args = parser.parse_args()

    source = os.path.realpath(args.source)
    if not os.path.isfile(os.path.join(source, "pyproject.toml")):
        sys.exit(f"no pyproject.toml in {source}: set di2siem_source_dir to the repository root")
    env = dict(os.environ)
    env.setdefault("SOURCE_DATE_EPOCH", DEFAULT_EPOCH)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    tmp = tempfile.mkdtemp(prefix="di2siem-wheelhouse-")
    try:
        src = os.path.join(tmp, "src")
        ignore.top = source
        shutil.copytree(source, src, ignore=ignore)
        built = os.path.join(tmp, "wheels")
        run(
            [args.python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", built, src],
            env,
        )
        own = [os.path.join(built, n) for n in os.listdir(built) if n.endswith(".whl")]
        if len(own) != 1:
            sys.exit(f"expected exactly one wheel from {source}, got {own!r}")
        # Runtime dependencies, read from the wheel's own metadata, as pure-Python wheels.
        run(
            [
                args.python,
                "-m",
                "pip",
                "download",
                "--no-cache-dir",
                "--only-binary=:all:",
                "--platform",
                "any",
                "--implementation",
                "py",
                "--abi",
                "none",
                "--python-version",
                args.python_version,
                "-d",
                built,
                own[0],
            ],
            env,
        )
        new = wheel_set(built)
        reqs = requirements(new)
        os.makedirs(args.dest, exist_ok=True)
        # Several plays (Molecule scenarios) may share one wheelhouse: sync under a lock, and
        # replace files atomically so a reader never sees a half-written wheel.
        with open(os.path.join(args.dest, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            changed = sync(built, new, reqs, args.dest)
        json.dump(
            {
                "changed": changed,
                "wheels": sorted(new),
                "requirements": reqs,
                "dest": os.path.realpath(args.dest),
            },
            sys.stdout,
        )
        sys.stdout.write("\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
