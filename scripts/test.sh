#!/usr/bin/env bash
# The project's test command (README): unit, integration and end-to-end tests
# of every crate. End-to-end tests need the Docker engine and the test image
# (scripts/build-test-image.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-test-image.sh
exec cargo test --workspace --locked "$@"
