"""Where the state lives in ``state_dir``: one file per org, ``orgs/<org>.json`` (the id
percent-encoded), the single ``state.json`` of older versions and its migrated name, the
size bounds that keep reading an org file's memory bounded, and whether
the directory is safe to keep the cursor in.

One file per org: orgs served at the same time (parallel_orgs) write different files, and an
accepted batch rewrites only its own org's file, never everyone's.
"""

from __future__ import annotations

import os
from urllib.parse import quote, unquote

STATE_FILE = "state.json"  # the single file of older versions (format version 1)
MIGRATED_FILE = STATE_FILE + ".v1-migrated"
ORGS_DIR = "orgs"
VERSION = 2
# the part of an org file in front of its recent ids (cursor, floor, run record) is a few
# hundred bytes; a file without recent_ids in its first MiB was not written by di2siem
META_MAX_BYTES = 1024 * 1024
# The largest org file (or state export) that is read: recent_ids_max entries of at most
# ORG_FILE_BYTES_PER_ID each (a JumpCloud id of 24 hex digits takes 41 bytes with its time,
# a blake2b: digest 57) plus ORG_FILE_SLACK_BYTES for the rest. Reading one costs a few times
# its size in memory, so this is what keeps a run's (and an import's) memory bounded
# whatever a file holds.
ORG_FILE_BYTES_PER_ID = 128
ORG_FILE_SLACK_BYTES = 1024 * 1024
DEFAULT_RECENT_IDS_MAX = 100_000


def max_org_file_bytes(recent_ids_max: int) -> int:
    return recent_ids_max * ORG_FILE_BYTES_PER_ID + ORG_FILE_SLACK_BYTES


def missing_parent(path: str) -> tuple[str, str] | None:
    """(problem, fix) when the directory that would hold state_dir does not exist: di2siem
    creates state_dir itself (0700), never the directories above it (a typo in the path would
    otherwise grow a tree of 0755 directories with the state somewhere nobody looks)."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(parent):
        return None
    return (
        f"{parent}, the parent of {path}, does not exist",
        "fix state_dir, or create the parent directory first",
    )


def unsafe_state_dir(path: str) -> tuple[str, str] | None:
    """(problem, fix) when others could plant or swap files where the cursor lives: the
    directory is not owned by this user, or group/others may write to it; else None."""
    st = os.stat(path)
    if st.st_uid != os.geteuid():
        return (
            f"{path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})",
            "run di2siem as the directory's owner, chown the directory, or set state_dir",
        )
    if st.st_mode & 0o022:
        return (
            f"{path} is writable by group or others (mode {st.st_mode & 0o7777:04o})",
            f"chmod 700 {path}",
        )
    return None


def org_file_name(org: str) -> str:
    """The org's file name in orgs/: the id percent-encoded (never a path separator, never a
    leading dot, which temp files use)."""
    name = quote(org, safe="-_.@")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name + ".json"


def org_of_file_name(name: str) -> str | None:
    if name.startswith(".") or not name.endswith(".json"):
        return None
    return unquote(name[: -len(".json")])
