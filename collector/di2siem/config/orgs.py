"""Org keys: the default org, the MSP portal's own stream, and what an org id may be."""

from __future__ import annotations

import re

DEFAULT_ORG = "_default"
PROVIDER_PREFIX = "provider:"  # state key prefix of the MSP portal's own stream
# what an org id may be: JumpCloud's are 24 hex digits; this also takes shorter test and
# sandbox ids, and keeps every org file name (orgs/<id>.json) short and free of path characters
ORG_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
ORG_ID_FORM = "1 to 64 characters of A-Z a-z 0-9 _ - (JumpCloud's are 24 hex digits)"
PROVIDER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
# what jumpcloud.org_ids may list: JumpCloud's organization ids are 24 lower-case hex digits
# (JumpCloud's own tools refuse an org id that is not 24 characters long); a state key keeps
# the looser ORG_ID_PATTERN, so an export of an older version still imports
JUMPCLOUD_ORG_ID_PATTERN = re.compile(r"[0-9a-f]{24}")
JUMPCLOUD_ORG_ID_FORM = "24 hex digits 0-9 a-f, e.g. 5f1b0c2e8d3a4b0012340001"


def org_key_problem(org: str) -> str | None:
    """Why ``org`` cannot be an org key (a state file's, an import's), or None: the default org
    ``_default``, ``provider:<provider id>``, or an org id of ORG_ID_FORM."""
    if org == DEFAULT_ORG or ORG_ID_PATTERN.fullmatch(org):
        return None
    if org.startswith(PROVIDER_PREFIX) and PROVIDER_ID_PATTERN.fullmatch(
        org[len(PROVIDER_PREFIX) :]
    ):
        return None
    return f"must be {DEFAULT_ORG}, {PROVIDER_PREFIX}<provider id> or an org id of {ORG_ID_FORM}"
