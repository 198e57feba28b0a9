"""``python -m di2siem`` is the same as the ``di2siem`` console script."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
