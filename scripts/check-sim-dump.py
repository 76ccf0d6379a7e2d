#!/usr/bin/env python3
"""Check a `jdos sim --dump FILE` placement from outside, independently of jdos.

Reads the JSON lines (host, network, group, container records) and checks:
  - every container's host exists, is ready and uncordoned, is in the group's
    datacenter, and the container's switch/rack match the host's;
  - no host's cpu, memory or any disk tier is overcommitted;
  - the group's zone, network and label constraints hold;
  - no group exceeds its per-host, per-rack or per-switch cap (as dumped);
  - the dumped caps are the documented defaults (1 per host; ceil(replicas/2)
    per switch when two or more switches fit the group) unless the group set
    its own.

Prints one JSON summary line; exits 1 when any violation is found.
Usage: scripts/check-sim-dump.py DUMP.jsonl
"""

import json
import math
import sys
from collections import Counter, defaultdict


def main(path):
    hosts, networks, groups, containers = {}, [], {}, []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            t = r["type"]
            if t == "host":
                hosts[r["name"]] = r
            elif t == "network":
                networks.append(r)
            elif t == "group":
                groups[r["group"]] = r
            elif t == "container":
                containers.append(r)
            else:
                raise SystemExit(f"unknown record type {t!r}")

    v = Counter()
    used = defaultdict(Counter)
    per = defaultdict(Counter)  # (group, level) -> Counter(place -> n)
    for c in containers:
        h = hosts.get(c["host"])
        g = groups.get(c["group"])
        if h is None or g is None:
            v["unknown_host_or_group"] += 1
            continue
        if h["state"] != "ready" or h["cordoned"]:
            v["host.unschedulable"] += 1
        if h["datacenter"] != c["datacenter"] or h["datacenter"] != g["datacenter"]:
            v["datacenter"] += 1
        if h["switch"] != c["switch"] or h["rack"] != c["rack"]:
            v["topology_mismatch"] += 1
        if h["zone"] not in g["zones"]:
            v["resource_zone"] += 1
        if g["network_zone"] is not None and not any(
            n["zone"] == g["network_zone"] and h["switch"] in n["switches"] for n in networks
        ):
            v["network_unreachable"] += 1
        if any(h["labels"].get(k) != val for k, val in g["required_labels"].items()):
            v["labels"] += 1
        for dim in ("cpu", "memory", "disk_l0", "disk_l1", "disk_l2", "disk_l3"):
            used[c["host"]][dim] += c[dim]
        dc = h["datacenter"]
        per[(c["group"], "host")][c["host"]] += 1
        per[(c["group"], "rack")][(dc, h["rack"])] += 1
        per[(c["group"], "switch")][(dc, h["switch"])] += 1

    for name, u in used.items():
        for dim, n in u.items():
            if n > hosts[name][dim]:
                v[f"capacity.{dim}"] += 1

    for gname, g in groups.items():
        for level in ("host", "rack", "switch"):
            cap = g[f"max_per_{level}"]
            if cap is None:
                continue
            for n in per[(gname, level)].values():
                if n > cap:
                    v[f"cap.{level}"] += n - cap
        # The caps themselves must be the documented defaults unless the
        # group set its own: one per host, ceil(replicas / 2) per switch when
        # two or more switches have a host that passes the group's static
        # filters and could hold one container when empty.
        fits = {
            h["switch"]
            for h in hosts.values()
            if h["datacenter"] == g["datacenter"]
            and h["state"] == "ready"
            and not h["cordoned"]
            and h["zone"] in g["zones"]
            and (
                g["network_zone"] is None
                or any(n["zone"] == g["network_zone"] and h["switch"] in n["switches"] for n in networks)
            )
            and all(h["labels"].get(k) == val for k, val in g["required_labels"].items())
            and all(h[d] >= g[d] for d in ("cpu", "memory", "disk_l0", "disk_l1", "disk_l2", "disk_l3"))
        }
        req = g["requested"]
        want = {
            "host": req["max_per_host"] if req["max_per_host"] is not None else 1,
            "rack": req["max_per_rack"],
            "switch": req["max_per_switch"]
            if req["max_per_switch"] is not None
            else (max(1, math.ceil(g["replicas"] / 2)) if len(fits) >= 2 else None),
        }
        for level, cap in want.items():
            if g[f"max_per_{level}"] != cap:
                v[f"cap.{level}_not_default"] += 1

    out = {
        "hosts": len(hosts),
        "groups": len(groups),
        "containers": len(containers),
        "violations": sum(v.values()),
        "kinds": dict(v),
    }
    print(json.dumps(out))
    return 1 if out["violations"] else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
