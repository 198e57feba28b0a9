#!/usr/bin/env python3
"""Run the collector's own `di2siem check --offline` on a configuration rendered on the Ansible
controller, before any target changes (the role's tasks/preflight_config.yml).

Reads one JSON object on stdin: {"config": TEXT, "credentials": TEXT, "stand_in": BOOL} (the
rendered config.json and credentials.json; secrets come only this way, never on a command
line). Writes them into a private temporary directory (0700, files 0600), where DIR in the
configuration text (the marker @DI2SIEM_DIR@) is that directory, and an empty file
DIR/target-file when stand_in is true (a file of the target the collector only checks the
existence of). Runs `python -m di2siem check --offline --config DIR/config.json` with
PYTHONPATH=SOURCE/collector, removes the directory whatever happens, and passes the check's
output (DIR/ left out of file names) and exit code through.

Usage: check_rendered.py SOURCE < request.json
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

MARKER = "@DI2SIEM_DIR@"


def _text(rendered) -> str:
    """A rendered template's text: some ansible-core versions (2.16) hand a JSON template's
    result over already decoded."""
    return rendered if isinstance(rendered, str) else json.dumps(rendered, indent=2)


def main() -> int:
    source = sys.argv[1]
    request = json.load(sys.stdin)
    tmp = tempfile.mkdtemp(suffix=".di2siem-preflight")
    try:
        os.chmod(tmp, 0o700)
        files = {
            "credentials.json": _text(request["credentials"]),
            "config.json": _text(request["config"]).replace(MARKER, json.dumps(tmp)[1:-1]),
        }
        if request.get("stand_in"):
            files["target-file"] = ""
        for name, text in files.items():
            fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        env = dict(os.environ, PYTHONPATH=os.path.join(source, "collector"))
        check = ["check", "--offline", "--config", os.path.join(tmp, "config.json")]
        proc = subprocess.run(
            [sys.executable, "-m", "di2siem", *check],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.write(proc.stdout.replace(tmp + "/", ""))
    sys.stderr.write(proc.stderr.replace(tmp + "/", ""))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
