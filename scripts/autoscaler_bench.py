"""Runs `jdos autoscale-sim` over the fetched traces (scripts/fetch-traces.sh)
and prints the markdown tables of docs/BENCHMARKS.md (autoscaler); with matplotlib
installed it also draws docs/img/autoscaler-timeline.png and
docs/img/autoscaler-frontier.png.

    JDOS=target/release/jdos traces/.venv/bin/python scripts/autoscaler_bench.py

Matched budgets: the HPA is run on a fine grid of targets (0.50-1.00 by 0.01) and
each predictive setting is compared with the HPA setting that spends the fewest
instance-hours still >= its own, so the HPA never has the smaller budget. The
same comparison is repeated on each half of each trace on its own (the second
half starts with no history: a held-out check that nothing was fitted to the
whole trace). PAR=N runs N simulations at once (default 2).
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JDOS = os.environ.get("JDOS", str(ROOT / "target/release/jdos"))
TR = ROOT / "traces"
OUT = Path(os.environ.get("BENCH_OUT", "/tmp/autoscaler-bench"))
PAR = int(os.environ.get("PAR", "2"))

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


def peak(trace, column, path=None):
    path = path or TR / TRACES[trace][0]
    lines = Path(path).read_text().splitlines()
    i = lines[0].split(",").index(column)
    return max(float(line.split(",")[i]) for line in lines[1:] if line)


def sim(trace, column, startup, target, peak_replicas=20, timeline=None, capacity=None,
        policy="both", path=None):
    default_path, interval = TRACES[trace]
    cmd = [
        JDOS, "autoscale-sim",
        "--trace", str(path or TR / default_path), "--column", column, "--interval", str(interval),
        "--startup", str(startup), "--target", str(target),
        "--peak-replicas", str(peak_replicas), "--policy", policy, "--json",
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


PRED_TARGETS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.95, 1.0)
HPA_GRID = tuple(i / 100 for i in range(50, 101))
HALF_TARGETS = (0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
HALF_GRID = tuple(i / 100 for i in range(50, 101, 2))
MATCH_HEADER = (
    "| trace / start-up | pred. target | pred. inst-h | pred. under % | HPA target | HPA inst-h | HPA under % | under ratio | inst-h ratio |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def frontier_runs(trace, column, startup, capacity, pred_targets, hpa_grid, path=None):
    """Predictive at `pred_targets`, the HPA at every target of `hpa_grid`."""
    jobs = [("predictive", t) for t in pred_targets] + [("reactive", t) for t in hpa_grid]

    def one(job):
        policy, t = job
        return job, sim(trace, column, startup, t, capacity=capacity, policy=policy, path=path)[policy]

    with ThreadPoolExecutor(PAR) as ex:
        out = list(ex.map(one, jobs))
    res = {"pred": {}, "hpa": {}}
    for (policy, t), r in out:
        res["pred" if policy == "predictive" else "hpa"][t] = r
    # The same-target HPA run for the frontier rows.
    for t in pred_targets:
        if t not in res["hpa"]:
            res["hpa"][t] = sim(trace, column, startup, t, capacity=capacity, policy="reactive", path=path)["reactive"]
    return res


def matched(label, res):
    """Prints the matched-budget rows of one frontier; returns its summary row."""
    met, best = [], None
    for t, p in sorted(res["pred"].items()):
        richer = [(ht, h) for ht, h in res["hpa"].items() if h["instance_hours"] >= p["instance_hours"]]
        if not richer:
            print(f"| {label} | {t:.0%} | {p['instance_hours']:.0f} | {p['underprovisioned_pct']:.3f} | (none richer) | | | | |")
            continue
        ht, h = min(richer, key=lambda x: x[1]["instance_hours"])
        hu, pu = h["underprovisioned_pct"], p["underprovisioned_pct"]
        ratio = pu / hu if hu > 0 else (0.0 if pu == 0 else float("inf"))
        shown = "n/a (both 0)" if hu == 0 and pu == 0 else f"{ratio:.2f}"
        print(
            f"| {label} | {t:.0%} | {p['instance_hours']:.0f} | {pu:.3f} "
            f"| {ht:.0%} | {h['instance_hours']:.0f} | {hu:.3f} | {shown} "
            f"| {p['instance_hours'] / h['instance_hours']:.3f} |",
            flush=True,
        )
        if hu > 0 and ratio <= 1 / 3:
            met.append(f"{t:.0%} ({ratio:.2f})")
        if hu > 0 and (best is None or ratio < best[0]):
            best = (ratio, t)
    best_s = f"{best[0]:.2f} ({best[1]:.0%})" if best else "n/a (HPA never under-provisioned)"
    return f"| {label} | {', '.join(met) if met else '**not met**'} | {best_s} |"


def split_halves(trace):
    """Writes the two halves of a trace to OUT; returns their paths."""
    path, _ = TRACES[trace]
    lines = (TR / path).read_text().splitlines()
    head, rows = lines[0], [line for line in lines[1:] if line]
    mid = len(rows) // 2
    out = []
    for i, part in enumerate((rows[:mid], rows[mid:]), start=1):
        p = OUT / f"{trace}-half{i}.csv"
        p.write_text("\n".join([head, *part]) + "\n")
        out.append(p)
    return out


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
    frontier, summary = {}, []
    print("\n## Frontier (fixed instance size: peak demand = 36 instances at 100 %)\n")
    print(HEADER)
    for trace, column in (("azure", "cpu_usage"), ("alibaba", "cpu_util_percent")):
        capacity = peak(trace, column) / 36
        for startup in (60, 180, 300):
            res = frontier_runs(trace, column, startup, capacity, PRED_TARGETS, HPA_GRID)
            for t in PRED_TARGETS:
                print(row(f"{trace} {column} {startup}s {t:.0%}", {"reactive": res["hpa"][t], "predictive": res["pred"][t]}), flush=True)
            frontier[(trace, startup)] = res

    print("\n## Matched budgets: predictive vs the HPA (fine target grid) given at least the same instance-hours\n")
    print(MATCH_HEADER)
    for (trace, startup), res in frontier.items():
        summary.append(matched(f"{trace} {startup}s", res))

    # Held out: each half of each trace on its own, coarser HPA grid.
    print("\n## Matched budgets on each half of each trace on its own\n")
    print(MATCH_HEADER)
    for trace, column in (("azure", "cpu_usage"), ("alibaba", "cpu_util_percent")):
        capacity = peak(trace, column) / 36
        for half, path in enumerate(split_halves(trace), start=1):
            for startup in (60, 180, 300):
                res = frontier_runs(trace, column, startup, capacity, HALF_TARGETS, HALF_GRID, path)
                summary.append(matched(f"{trace} half {half} {startup}s", res))

    print("\n## Target met (under ratio <= 0.33 at inst-h ratio <= 1) per trace / start-up\n")
    print("| trace / start-up | predictive targets where met | best under ratio (at target) |")
    print("|---|---|---:|")
    for line in summary:
        print(line)
    (OUT / "frontier.json").write_text(json.dumps(
        {f"{k[0]}-{k[1]}": {p: {str(t): r for t, r in v.items()} for p, v in res.items()} for k, res in frontier.items()}))

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

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.8))
    for ax, ((trace, startup), res) in zip(axes.flat, frontier.items()):
        for key, color, label in (("hpa", "tab:red", "HPA"), ("pred", "tab:blue", "predictive")):
            pts = sorted(res[key].items())
            xs = [r["instance_hours"] for _, r in pts]
            ys = [r["underprovisioned_pct"] for _, r in pts]
            ax.plot(xs, ys, "o-", color=color, label=label, ms=2 if key == "hpa" else 3, lw=1)
            for t, x, y in zip([t for t, _ in pts], xs, ys):
                if key == "pred" and t in (0.6, 0.7, 0.8, 0.9, 1.0):
                    ax.annotate(f"{t:.0%}", (x, y), fontsize=6, color=color)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_title(f"{trace}, start-up {startup} s", fontsize=9)
        ax.set_xlabel("instance-hours", fontsize=8)
        ax.set_ylabel("under-provisioned % (symlog)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(img / "autoscaler-frontier.png", dpi=80)


if __name__ == "__main__":
    main()
