#!/usr/bin/env bash
# Benchmark (not a test): CPU and memory of capture + windowing for one live stream
# (1 fps video, 48 kHz audio from the shipped test pipeline) over a long run.
#   scripts/bench-capture.sh [SECONDS]   (default 600)
# Prints the first and last window lines (with resident memory) and the totals.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
seconds=${1:-600}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
target/release/avscene --log-level warn capture --config config/avscene.toml --stream demo --seconds "$seconds" >"$out" 2>&1
grep '^window' "$out" | head -n 1
grep '^window' "$out" | tail -n 1
grep -E '^stream|^resources' "$out"
