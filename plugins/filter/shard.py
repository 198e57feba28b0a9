"""Rendezvous (highest-random-weight) sharding of JumpCloud organisations over hosts.

Every organisation goes to the host with the highest weight sha256(host NUL org); a pin
(an org listed in a host's di2siem_org_pins) overrides the hashing. The weights depend only
on the two names, never on Python's hash seed, the order of the hosts or the other orgs, so
every host computes the same assignment on its own, and adding or removing a host moves only
the orgs that host gains or had (about 1/n of them).

Filters, one copy, always called by FQCN (di2siem.di2siem.<name>): from the installed collection,
or from a checkout through playbooks/collections, which links this plugins/ directory:
  org_ids | di2siem_shard_assignment(hosts, pins)  -> {org: host}, in org_ids order
  org_ids | di2siem_shard(hosts, host, pins)       -> the orgs of host, in org_ids order
  shard_map | di2siem_handoff_plan(serving, host)  -> what host stops, gives and takes
pins: {host: [org, ...]}; hosts without pins may be left out.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence

try:
    from ansible.errors import AnsibleFilterError as ShardError
except ImportError:  # pragma: no cover - the role always runs under Ansible

    class ShardError(ValueError):  # type: ignore[no-redef]
        """Bad sharding input."""


def weight(host: str, org: str) -> int:
    """The stable weight of host for org: the first 8 bytes of sha256(host NUL org)."""
    digest = hashlib.sha256(f"{host}\0{org}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _names(value: object, what: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ShardError(f"{what} must be a list of strings, not {type(value).__name__}")
    names = [str(v) for v in value]
    if [n for n in names if not n]:
        raise ShardError(f"{what} holds an empty name: remove it")
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ShardError(f"{what} lists {', '.join(repeated)} more than once: list each once")
    return names


def _pinned_hosts(
    pins: Mapping[str, Sequence[str]] | None, hosts: list[str], orgs: list[str]
) -> dict[str, str]:
    """{org: host} from {host: [org, ...]}, every pin checked against the hosts and orgs."""
    pinned: dict[str, str] = {}
    known_orgs = set(orgs)
    for host, pinned_orgs in (pins or {}).items():
        names = _names(pinned_orgs, f"di2siem_org_pins of {host}")
        if names and host not in hosts:
            raise ShardError(
                f"di2siem_org_pins: {host} pins {', '.join(names)} but is not a present host of"
                " the shard group: pin them on a host of di2siem_shard_group"
            )
        for org in names:
            if org not in known_orgs:
                raise ShardError(
                    f"di2siem_org_pins of {host}: {org} is not in di2siem_jumpcloud_org_ids:"
                    " add it there or remove the pin"
                )
            if org in pinned:
                raise ShardError(
                    f"di2siem_org_pins: {org} is pinned on both {pinned[org]} and {host}:"
                    " pin it on one host"
                )
            pinned[org] = host
    return pinned


def shard_assignment(
    org_ids: Sequence[str],
    hosts: Sequence[str],
    pins: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, str]:
    """{org: host} for every org of org_ids: its pinned host, else the highest weight."""
    orgs = _names(org_ids, "di2siem_jumpcloud_org_ids")
    members = _names(hosts, "the shard group's hosts")
    if not members:
        raise ShardError(
            "the shard group has no present host: add hosts to di2siem_shard_group"
            " (hosts with di2siem_state=absent do not count)"
        )
    pinned = _pinned_hosts(pins, members, orgs)
    return {
        org: pinned.get(org) or max(members, key=lambda host: (weight(host, org), host))
        for org in orgs
    }


def shard(
    org_ids: Sequence[str],
    hosts: Sequence[str],
    host: str,
    pins: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """The orgs of org_ids that host serves, in org_ids order."""
    host = str(host)
    if host not in [str(h) for h in hosts]:
        raise ShardError(f"{host} is not a present host of di2siem_shard_group")
    return [org for org, owner in shard_assignment(org_ids, hosts, pins).items() if owner == host]


def handoff_plan(
    shard_map: Mapping[str, str],
    serving: Mapping[str, Sequence[str] | None],
    host: str,
) -> dict[str, list]:
    """What host does in a handoff: {"stop": [...], "give": [...], "take": [{"org", "from"}]}.

    shard_map: the new {org: host}; serving: {host: the org keys its deployed config lists, or
    None when nothing is deployed there} for the reachable hosts of the group. An org moves
    from its first current holder (by name) unless its new owner already serves it; "from" is
    None when no reachable host serves it (its old owner is gone, or the org is new). On a
    fresh group (nothing deployed anywhere) nothing is taken: every org starts as configured.
    """
    host = str(host)
    current = {str(h): list(orgs) for h, orgs in serving.items() if orgs is not None}
    mine = [org for org, owner in shard_map.items() if owner == host]
    here = current.get(host, [])

    def first_holder(org: str) -> str | None:
        holders = sorted(h for h, orgs in current.items() if org in orgs)
        return holders[0] if holders else None

    take = [{"org": org, "from": first_holder(org)} for org in mine if org not in here and current]
    stop = [org for org in here if shard_map.get(org) != host]
    give = [
        org
        for org in stop
        if org in shard_map
        and org not in current.get(shard_map[org], [])
        and first_holder(org) == host
    ]
    return {"stop": stop, "give": give, "take": take}


class FilterModule:
    """di2siem_shard, di2siem_shard_assignment, di2siem_handoff_plan."""

    def filters(self) -> dict[str, object]:
        return {
            "di2siem_shard": shard,
            "di2siem_shard_assignment": shard_assignment,
            "di2siem_handoff_plan": handoff_plan,
        }
