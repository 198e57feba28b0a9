"""Sharding the organisations of a group over its hosts (plugins/filter/shard.py and the role's
tasks/shard.yml): every org on exactly one host, a host added or removed moves only the orgs it
gains or had (about 1/n), pins win, and the assignment does not depend on Python's hash seed,
the order of hosts or orgs, or which hosts a play runs on."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugins" / "filter" / "shard.py"
ORGS = [f"{i:024x}" for i in range(0x5F0A00000000000000001000, 0x5F0A00000000000000001000 + 1000)]


ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


def load_plugin():
    spec = importlib.util.spec_from_file_location("di2siem_shard_plugin", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shard = load_plugin()


def hosts(n: int) -> list[str]:
    return [f"collector-{i:02d}.example.net" for i in range(n)]


def test_every_org_on_exactly_one_host_and_shares_are_balanced() -> None:
    fleet = hosts(5)
    shares = {host: shard.shard(ORGS, fleet, host) for host in fleet}
    assert sorted(org for share in shares.values() for org in share) == sorted(ORGS)
    # each share keeps the list's order
    assert all(share == [o for o in ORGS if o in set(share)] for share in shares.values())
    # 1000 orgs over 5 hosts: 200 each on average; a fair hash stays within +-25%
    assert all(150 <= len(share) <= 250 for share in shares.values()), {
        h: len(s) for h, s in shares.items()
    }


@pytest.mark.parametrize("n", [2, 4, 9])
def test_adding_a_host_moves_only_the_orgs_it_gains(n: int) -> None:
    before = shard.shard_assignment(ORGS, hosts(n))
    after = shard.shard_assignment(ORGS, hosts(n + 1))
    moved = {org for org in ORGS if before[org] != after[org]}
    new_host = hosts(n + 1)[-1]
    assert moved == {org for org in ORGS if after[org] == new_host}
    expected = len(ORGS) / (n + 1)
    assert 0.75 * expected <= len(moved) <= 1.25 * expected, (len(moved), expected)


@pytest.mark.parametrize("gone", [0, 2, 4])
def test_removing_a_host_moves_only_its_orgs(gone: int) -> None:
    fleet = hosts(5)
    before = shard.shard_assignment(ORGS, fleet)
    after = shard.shard_assignment(ORGS, [h for h in fleet if h != fleet[gone]])
    moved = {org for org in ORGS if before[org] != after[org]}
    assert moved == {org for org in ORGS if before[org] == fleet[gone]}
    assert 150 <= len(moved) <= 250
    # the orphans spread over the survivors instead of piling onto one
    assert len({after[org] for org in moved}) == 4


def test_independent_of_the_order_of_hosts_and_orgs() -> None:
    fleet = hosts(6)
    reference = shard.shard_assignment(ORGS, fleet)
    rng = random.Random(7)
    for _ in range(3):
        orgs, members = ORGS[:], fleet[:]
        rng.shuffle(orgs)
        rng.shuffle(members)
        assert shard.shard_assignment(orgs, members) == {o: reference[o] for o in orgs}
    # an org's owner depends on the hosts only, never on the other orgs
    assert shard.shard_assignment(ORGS[:10], fleet) == {o: reference[o] for o in ORGS[:10]}


def test_stable_across_python_hash_seeds() -> None:
    script = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('s', {str(PLUGIN)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(json.dumps(m.shard_assignment(json.loads(sys.argv[1]), json.loads(sys.argv[2]))))\n"
    )
    fleet = hosts(3)
    expected = shard.shard_assignment(ORGS[:200], fleet)
    for seed in ("0", "1", "4242"):
        out = subprocess.run(
            [sys.executable, "-c", script, json.dumps(ORGS[:200]), json.dumps(fleet)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out) == expected, seed


def test_pins_override_the_hashing_and_the_rest_stays_put() -> None:
    fleet = hosts(3)
    hashed = shard.shard_assignment(ORGS[:30], fleet)
    # pin two orgs on a host that the hashing did not give them
    movers = [o for o in ORGS[:30] if hashed[o] != fleet[0]][:2]
    pinned = shard.shard_assignment(ORGS[:30], fleet, {fleet[0]: movers, fleet[1]: []})
    assert [pinned[o] for o in movers] == [fleet[0], fleet[0]]
    assert {o: h for o, h in pinned.items() if o not in movers} == {
        o: h for o, h in hashed.items() if o not in movers
    }
    assert set(movers) <= set(shard.shard(ORGS[:30], fleet, fleet[0], {fleet[0]: movers}))


@pytest.mark.parametrize(
    ("orgs", "fleet", "pins", "message"),
    [
        (["a", "b"], ["h1", "h2"], {"h1": ["a"], "h2": ["a"]}, "a is pinned on both h1 and h2"),
        (["a", "b"], ["h1"], {"h1": ["c"]}, "di2siem_org_pins of h1: c is not in"),
        (["a"], ["h1"], {"gone": ["a"]}, "gone pins a but is not a present host"),
        (["a", "a"], ["h1"], {}, "di2siem_jumpcloud_org_ids lists a more than once"),
        (["a"], [], {}, "the shard group has no present host"),
        ("a,b", ["h1"], {}, "di2siem_jumpcloud_org_ids must be a list"),
        (["a"], ["h1"], {"h1": "a"}, "di2siem_org_pins of h1 must be a list"),
    ],
)
def test_bad_input_names_the_variable(orgs, fleet, pins, message) -> None:
    with pytest.raises(shard.ShardError, match=message):
        shard.shard_assignment(orgs, fleet, pins)


def test_a_host_outside_the_group_has_no_share() -> None:
    with pytest.raises(shard.ShardError, match="h9 is not a present host"):
        shard.shard(["a"], ["h1"], "h9")


# The role's tasks/shard.yml on a local inventory: each "host" computes its own share.
PLAY = """---
- name: Shares
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Compute this host's share with the role
      ansible.builtin.include_role:
        name: {role}
        tasks_from: shard.yml
    - name: Write it down
      ansible.builtin.copy:
        content: >-
          {{{{ {{'orgs': __di2siem_org_ids,
                'provider': __di2siem_serves_provider | bool}} | to_json }}}}
        dest: "{out}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
      delegate_to: localhost
      when: __di2siem_org_ids is defined
"""


def ansible_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        # a checkout: the collection's filters by FQCN through the playbooks' adjacent
        # collections path (playbooks/collections links plugins/), nothing installed
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "playbooks" / "collections"),
        **extra,
    )
    return env


def inventory(tmp_path: Path, members: dict[str, dict], group_vars: dict) -> Path:
    path = tmp_path / "hosts.json"
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
    }
    path.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "fleet": {
                            "hosts": {name: {**host_vars, **v} for name, v in members.items()},
                            "vars": group_vars,
                        }
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    return path


def run_shares(
    tmp_path: Path, hosts_file: Path, role: str = "di2siem", env: dict | None = None, *extra: str
) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    out = tmp_path / "shares"
    out.mkdir(exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    play = tmp_path / "shares.yml"
    play.write_text(PLAY.format(role=role, out=out), encoding="utf-8")
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(hosts_file), str(play), *extra],
        capture_output=True,
        text=True,
        timeout=180,
        env=env or ansible_env(tmp_path),
        check=False,
    )
    shares = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    return result, shares


def test_the_role_gives_each_host_its_share(tmp_path: Path) -> None:
    orgs = ORGS[:40]
    members = {"vm-a": {}, "vm-b": {"di2siem_org_pins": [orgs[0]]}, "vm-c": {}, "vm-d": {}}
    members["vm-d"]["di2siem_state"] = "absent"  # leaving: takes no share
    group_vars = {
        "di2siem_shard_group": "fleet",
        "di2siem_jumpcloud_org_ids": orgs,
        "di2siem_jumpcloud_provider_id": "provider-1",
    }
    result, shares = run_shares(tmp_path, inventory(tmp_path, members, group_vars))
    assert result.returncode == 0, result.stdout + result.stderr
    present = ["vm-a", "vm-b", "vm-c"]
    expected = shard.shard_assignment([*orgs, "provider:provider-1"], present, {"vm-b": [orgs[0]]})
    assert sorted(shares) == present
    for host in present:
        assert shares[host]["orgs"] == [o for o in orgs if expected[o] == host]
        assert shares[host]["provider"] is (expected["provider:provider-1"] == host)
    assert orgs[0] in shares["vm-b"]["orgs"]
    # --limit does not change anyone's share
    result, limited = run_shares(
        tmp_path, inventory(tmp_path, members, group_vars), "di2siem", None, "--limit", "vm-c"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert limited == {"vm-c": shares["vm-c"]}


def test_the_role_refuses_a_per_host_org_list(tmp_path: Path) -> None:
    members = {"vm-a": {"di2siem_jumpcloud_org_ids": ORGS[:3]}, "vm-b": {}}
    group_vars = {"di2siem_shard_group": "fleet", "di2siem_jumpcloud_org_ids": ORGS[:4]}
    result, shares = run_shares(tmp_path, inventory(tmp_path, members, group_vars))
    assert result.returncode == 2 and shares == {}
    assert "set that list once for the group (group_vars/fleet)" in result.stdout


def test_the_role_refuses_an_empty_share(tmp_path: Path) -> None:
    members = {"vm-a": {"di2siem_org_pins": [ORGS[0]]}, "vm-b": {}}
    group_vars = {"di2siem_shard_group": "fleet", "di2siem_jumpcloud_org_ids": ORGS[:1]}
    result, shares = run_shares(tmp_path, inventory(tmp_path, members, group_vars))
    assert result.returncode == 2, result.stdout
    assert shares == {"vm-a": {"orgs": ORGS[:1], "provider": False}}
    assert "gives vm-b no organisation (1 over 2 hosts)" in result.stdout


def test_without_a_shard_group_every_host_serves_the_whole_list(tmp_path: Path) -> None:
    members = {"vm-a": {}, "vm-b": {"di2siem_jumpcloud_org_ids": ORGS[5:7]}}
    group_vars = {"di2siem_jumpcloud_org_ids": ORGS[:3]}
    result, shares = run_shares(tmp_path, inventory(tmp_path, members, group_vars))
    assert result.returncode == 0, result.stdout + result.stderr
    assert shares == {
        "vm-a": {"orgs": ORGS[:3], "provider": False},
        "vm-b": {"orgs": ORGS[5:7], "provider": False},
    }


# The handoff plan (filter di2siem_handoff_plan): what each host stops, gives and takes.
def plan(shard_map: dict[str, str], serving: dict, host: str) -> dict:
    return shard.handoff_plan(shard_map, serving, host)


def test_a_moved_org_goes_from_its_holder_to_its_new_owner() -> None:
    new = {"o1": "a", "o2": "b", "o3": "b"}
    serving = {"a": ["o1", "o2"], "b": ["o3"]}
    assert plan(new, serving, "a") == {"stop": ["o2"], "give": ["o2"], "take": []}
    assert plan(new, serving, "b") == {"stop": [], "give": [], "take": [{"org": "o2", "from": "a"}]}


def test_a_new_host_takes_its_share_from_the_old_owners() -> None:
    orgs = ORGS[:60]
    before = shard.shard_assignment(orgs, ["a", "b"])
    after = shard.shard_assignment(orgs, ["a", "b", "c"])
    serving = {h: [o for o in orgs if before[o] == h] for h in ("a", "b")} | {"c": None}
    plans = {h: plan(after, serving, h) for h in ("a", "b", "c")}
    moved = sorted(o for o in orgs if after[o] == "c")
    assert sorted(t["org"] for t in plans["c"]["take"]) == moved
    assert all(t["from"] == before[t["org"]] for t in plans["c"]["take"])
    assert sorted(plans["a"]["give"] + plans["b"]["give"]) == moved
    assert plans["a"]["stop"] == plans["a"]["give"] and plans["a"]["take"] == []


def test_unsharded_to_sharded_one_export_per_org_and_no_move_for_kept_orgs() -> None:
    # before sharding every host served every org: each keeps its share, stops the rest
    new = {"o1": "a", "o2": "b"}
    serving = {"a": ["o1", "o2"], "b": ["o1", "o2"]}
    assert plan(new, serving, "a") == {"stop": ["o2"], "give": [], "take": []}
    assert plan(new, serving, "b") == {"stop": ["o1"], "give": [], "take": []}


def test_an_org_nobody_reachable_serves_is_taken_from_nobody() -> None:
    new = {"o1": "a", "o2": "a"}
    # o2's old owner is unreachable: not in serving at all
    assert plan(new, {"a": ["o1"]}, "a") == {
        "stop": [],
        "give": [],
        "take": [{"org": "o2", "from": None}],
    }
    # a fresh fleet (nothing deployed anywhere): plain first deploy, no takes
    assert plan(new, {"a": None, "b": None}, "a") == {"stop": [], "give": [], "take": []}


def test_an_org_dropped_from_the_list_is_stopped_not_given() -> None:
    assert plan({"o1": "a"}, {"a": ["o1", "gone"]}, "a") == {
        "stop": ["gone"],
        "give": [],
        "take": [],
    }
