"""Runs `jdos autoscale-sim` over the fetched traces (scripts/fetch-traces.sh)
and prints the markdown tables of docs/BENCHMARKS.md (autoscaler); with matplotlib
installed it also draws docs/img/autoscaler-timeline.png and
docs/img/autoscaler-frontier.png.

    JDOS=target/release/jdos traces/.venv/bin/python scripts/autoscaler_bench.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JDOS = os.environ.get("JDOS", str(ROOT / "target/release/jdos"))
TR = ROOT / "traces"
OUT = Path(os.environ.get("BENCH_OUT", "/tmp/autoscaler-bench"))

TRACES = {
    "azure": ("azure2019_5min.csv", 300),
    "alibaba": ("alibaba2018_10s.csv", 10),
}
COLUMNS = [
    ("azure", "cpu_usage"),
    ("azure", "assigned_mem"),
    ("alibaba", "cpu_util_percent"),
    ("alibaba", "mem_util_percent"),
    ("alibaba", "net_in"),
    ("alibaba", "disk_io_percent"),
]


def peak(trace, column):
    path, _ = TRACES[trace]
    lines = (TR / path).read_text().splitlines()
    i = lines[0].split(",").index(column)
    return max(float(line.split(",")[i]) for line in lines[1:] if line)


def sim(trace, column, startup, target, peak_replicas=20, timeline=None, capacity=None):
    path, interval = TRACES[trace]
    cmd = [
        JDOS, "autoscale-sim",
        "--trace", str(TR / path), "--column", column, "--interval", str(interval),
        "--startup", str(startup), "--target", str(target),
        "--peak-replicas", str(peak_replicas), "--json",
    ]
    if capacity:
        cmd += ["--capacity", repr(capacity)]
    if timeline:
        cmd += ["--timeline", str(timeline)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def row(label, r):
    h, p = r["reactive"], r["predictive"]
    under = (p["underprovisioned_pct"] / h["underprovisioned_pct"]) if h["underprovisioned_pct"] > 0 else float("nan")
    ih = p["instance_hours"] / h["instance_hours"]
    return (
        f"| {label} | {h['underprovisioned_pct']:.3f} | {p['underprovisioned_pct']:.3f} | {under:.2f} "
        f"| {h['overprovisioned_pct']:.1f} | {p['overprovisioned_pct']:.1f} "
        f"| {h['instance_hours']:.0f} | {p['instance_hours']:.0f} | {ih:.3f} "
        f"| {h['scale_events']} | {p['scale_events']} |"
    )


HEADER = (
    "| trace / column / start-up / target | HPA under % | pred. under % | under ratio "
    "| HPA slack % | pred. slack % | HPA inst-h | pred. inst-h | inst-h ratio | HPA events | pred. events |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    print("## Same policy for both (capacity: peak demand = 20 replicas at the target)\n")
    print(HEADER)
    for trace, column in COLUMNS:
        for startup in (60, 180, 300):
            for target in (0.6, 0.8):
                if column not in ("cpu_usage", "cpu_util_percent") and (startup, target) != (180, 0.8):
                    continue
                r = sim(trace, column, startup, target, 20)
                print(row(f"{trace} {column} {startup}s {target:.0%}", r), flush=True)

    # Fixed instance size (peak demand = 36 instances at 100 %), target swept:
    # the under-provisioning / instance-hours frontier of each policy.
    frontier = {}
    print("\n## Frontier (fixed instance size: peak demand = 36 instances at 100 %)\n")
    print(HEADER)
    targets = (0.5, 0.6, 0.62, 0.65, 0.68, 0.7, 0.72, 0.75, 0.8, 0.88, 0.89, 0.9)
    for trace, column in (("azure", "cpu_usage"), ("alibaba", "cpu_util_percent")):
        capacity = peak(trace, column) / 36
        for startup in (60, 180):
            pts = []
            for target in targets:
                r = sim(trace, column, startup, target, capacity=capacity)
                pts.append((target, r))
                print(row(f"{trace} {column} {startup}s {target:.0%}", r), flush=True)
            frontier[(trace, startup)] = pts

    # Each predictive setting against the HPA setting with the fewest
    # instance-hours that still spends at least as many.
    print("\n## Matched budgets: predictive vs the HPA given at least the same instance-hours\n")
    print("| trace / start-up | pred. target | pred. inst-h | pred. under % | HPA target | HPA inst-h | HPA under % | under ratio | inst-h ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (trace, startup), pts in frontier.items():
        hpa = [(t, r["reactive"]) for t, r in pts]
        for t, r in pts:
            p = r["predictive"]
            richer = [(ht, h) for ht, h in hpa if h["instance_hours"] >= p["instance_hours"]]
            if not richer:
                continue
            ht, h = min(richer, key=lambda x: x[1]["instance_hours"])
            ratio = p["underprovisioned_pct"] / h["underprovisioned_pct"] if h["underprovisioned_pct"] > 0 else float("nan")
            print(
                f"| {trace} {startup}s | {t:.0%} | {p['instance_hours']:.0f} | {p['underprovisioned_pct']:.3f} "
                f"| {ht:.0%} | {h['instance_hours']:.0f} | {h['underprovisioned_pct']:.3f} | {ratio:.2f} "
                f"| {p['instance_hours'] / h['instance_hours']:.3f} |"
            )
    (OUT / "frontier.json").write_text(json.dumps({f"{k[0]}-{k[1]}": v for k, v in frontier.items()}))

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plots)", file=sys.stderr)
        return

    # Timelines: demand (in replicas at the target) vs ready replicas.
    fig, axes = plt.subplots(2, 1, figsize=(11, 6.5))
    for ax, (trace, column, startup, target, hours, title) in zip(axes, [
        ("alibaba", "cpu_util_percent", 180, 0.8, 24, "Alibaba 2018 cpu_util_percent (10 s), day 3, start-up 180 s, target 80 %"),
        ("azure", "cpu_usage", 300, 0.9, 72, "Azure 2019 cpu_usage (5 min), days 8-10, start-up 300 s, target 90 %"),
    ]):
        tl = OUT / f"timeline-{trace}.csv"
        sim(trace, column, startup, target, timeline=tl)
        rows = [line.split(",") for line in tl.read_text().splitlines()]
        head, data = rows[0], rows[1:]
        col = {name: i for i, name in enumerate(head)}
        start = (2 if trace == "alibaba" else 7) * 24 * 12
        data = data[start:start + hours * 12]
        t = [float(r[col["t_s"]]) / 3600 for r in data]
        cap = float(data[0][col["capacity_per_instance"]])
        ax.plot(t, [float(r[col["demand"]]) / cap for r in data], color="black", lw=1, label="demand / instance capacity")
        ax.step(t, [int(r[col["reactive_ready"]]) for r in data], where="post", color="tab:red", lw=1, label="HPA ready replicas")
        ax.step(t, [int(r[col["predictive_ready"]]) for r in data], where="post", color="tab:blue", lw=1, label="predictive ready replicas")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("hours since trace start", fontsize=8)
        ax.set_ylabel("instances", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    img = ROOT / "docs/img"
    img.mkdir(parents=True, exist_ok=True)
    fig.savefig(img / "autoscaler-timeline.png", dpi=80)

    fig, axes = plt.subplots(1, len(frontier), figsize=(13, 3.4))
    for ax, ((trace, startup), pts) in zip(axes, frontier.items()):
        for policy, color in (("reactive", "tab:red"), ("predictive", "tab:blue")):
            xs = [r[policy]["instance_hours"] for _, r in pts]
            ys = [r[policy]["underprovisioned_pct"] for _, r in pts]
            ax.plot(xs, ys, "o-", color=color, label="HPA" if policy == "reactive" else "predictive", ms=3)
            for (target, _), x, y in zip(pts, xs, ys):
                if target in (0.5, 0.6, 0.7, 0.8, 0.9):
                    ax.annotate(f"{target:.0%}", (x, y), fontsize=6, color=color)
        ax.set_title(f"{trace}, start-up {startup} s", fontsize=9)
        ax.set_xlabel("instance-hours", fontsize=8)
        ax.set_ylabel("under-provisioned %", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(img / "autoscaler-frontier.png", dpi=80)


if __name__ == "__main__":
    main()
