"""`python -m di2siem_sandbox` runs the simulators (same options as `di2siem sandbox`)."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
