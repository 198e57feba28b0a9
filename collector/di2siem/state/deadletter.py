"""Dead letters: elements of JumpCloud pages that can never be shipped as events (``null``,
nested deeper than the parser can hold, invalid UTF-8 inside them; source.pages.UNPARSABLE).

A page that is otherwise well formed is not retried forever for one such element: the
element's exact bytes are kept in ``<state_dir>/dead-letter/<org>--<sha256>.raw`` (0600,
written atomically and durably before the stream goes on), the rest of the page is shipped,
and the org's totals count it (``skipped_unparsable``, shown by ``status`` and the metrics).
The file name holds the digest of the bytes, so an overlap re-read of the same element
finds its file and counts a duplicate instead of keeping it twice.
"""

from __future__ import annotations

import hashlib
import os

from .atomicfile import replace_file
from .layout import org_file_name

DIRECTORY = "dead-letter"


def raw_bytes(text: str) -> bytes:
    """The bytes an element's text was decoded from (invalid UTF-8 bytes included): the
    inverse of source.pages.decode_keeping_bytes."""
    return text.encode("utf-8", "surrogateescape")


class DeadLetters:
    def __init__(self, state_dir: str) -> None:
        self.directory = os.path.join(state_dir, DIRECTORY)

    def path_of(self, org: str, data: bytes) -> str:
        stem = org_file_name(org)[: -len(".json")]
        digest = hashlib.sha256(data).hexdigest()
        return os.path.join(self.directory, f"{stem}--{digest}.raw")

    def keep(self, org: str, text: str) -> tuple[str, bool]:
        """(the element's file, whether it is new). Raises OSError."""
        data = raw_bytes(text)
        path = self.path_of(org, data)
        if os.path.exists(path):
            return path, False
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        replace_file(path, data, 0o600, sync=True)
        return path, True
