#!/usr/bin/env bash
# The five-minute demo: builds `jdos`, starts `jdos dev` (API server + a
# simulated topology of 2 datacenters × 2 switches × 2 racks × 2 hosts on an
# embedded store in a temp dir), tours the CLI against it, then keeps the
# server running until Ctrl-C so you can try more commands in another shell.
#
# Usage: scripts/demo.sh [--exit] [--release]
#   --exit     stop the server after the tour (CI uses this)
#   --release  build with optimizations (slower to build, faster to run)
set -euo pipefail
cd "$(dirname "$0")/.."

stay=1 profile=debug flags=()
for arg in "$@"; do
  case "$arg" in
    --exit) stay=0 ;;
    --release) profile=release flags=(--release) ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

cargo build -q -p jdos-cli "${flags[@]}"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
jdos="$target_dir/$profile/jdos"

# The demo keeps its CLI config to itself, so it never overwrites yours.
work=$(mktemp -d -t jdos-demo-XXXXXX)
export JDOS_CONFIG="$work/config.json"
log="$work/dev.log"
"$jdos" dev --listen 127.0.0.1:0 >"$log" 2>&1 &
dev_pid=$!
cleanup() {
  kill "$dev_pid" 2>/dev/null || true
  wait "$dev_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 200); do
  grep -q '^address: ' "$log" 2>/dev/null && break
  kill -0 "$dev_pid" 2>/dev/null || { cat "$log" >&2; echo "demo: jdos dev exited" >&2; exit 1; }
  sleep 0.1
done
grep -q '^address: ' "$log" || { cat "$log" >&2; echo "demo: jdos dev did not start" >&2; exit 1; }
cat "$log"

run() {
  printf '\n$ jdos %s\n' "$*"
  "$jdos" "$@"
}

run whoami
run get datacenters
run get hosts
host=$("$jdos" get hosts -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["name"])')
run cordon host "$host"
run describe host "$host"
run uncordon host "$host"
run net create prod-a --vlan 200 --subnet 10.100.0.0/24 --gateway 10.100.0.1 --zone prod --switch langfang-s1 --switch langfang-s2
run net get
run create token --name alice --role developer --department retail
run apply -f examples/web.yaml --dry-run
run apply -f examples/web.yaml --wait
run get containers --app web
run scale web/production/web-lf --replicas +1 --wait
run get tasks --app web
task=$("$jdos" get tasks --app web -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
run describe task "$task"
run get events
run sim --hosts 600 --containers 15000

if [ "$stay" = 1 ]; then
  addr=$(sed -n 's/^address: //p' "$log")
  printf '\njdos dev is running at %s (config: %s). Try, in another shell:\n' "$addr" "$JDOS_CONFIG"
  printf '  export JDOS_CONFIG=%s\n  %s get hosts -o yaml\n' "$JDOS_CONFIG" "$jdos"
  printf 'Ctrl-C stops it.\n'
  wait "$dev_pid"
fi
