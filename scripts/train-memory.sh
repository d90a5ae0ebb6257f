#!/usr/bin/env bash
# Training memory against dataset size (a benchmark, not a test): trains the small
# profile on two generated sets, one four times the other, and prints each run's peak
# resident memory and the epoch time per 1 000 clips. Features are read from the on-disk
# cache a batch at a time, so the peak should not grow with the set.
#   scripts/train-memory.sh [CLIPS_PER_CLASS] [EPOCHS]   (default 8 and 3: 4 classes →
#   24 and 96 training clips; the first run of a set also decodes and embeds every clip)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
per_class=${1:-8}
epochs=${2:-3}
avscene=target/release/avscene
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-10s %8s %8s %16s %16s\n' set clips epochs "peak RSS (MB)" "s / 1000 clips"
for scale in 1 4; do
  clips=$((per_class * scale))
  data="$work/data-$scale"
  "$avscene" --log-level warn synth-dataset --out "$data" --classes 4 \
    --clips-per-class "$clips" --locations 4 >/dev/null
  out=$("$avscene" --log-level warn train --data "$data" --out "$work/run-$scale" \
    --profile small --device cpu --epochs "$epochs" --lr 1e-3 --batch 4)
  peak=$(sed -n 's/.*peak resident memory \([0-9]*\) MB.*/\1/p' <<<"$out")
  train_clips=$("$avscene" model info --model "$work/run-$scale/last.safetensors" --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["provenance"]["details"]["train_clips"])')
  per_1000=$(awk -F'"clips_per_s":' '{split($2, a, ","); s += 1000 / a[1]; n++} END {printf "%.1f", s / n}' \
    "$work/run-$scale/train-log.jsonl")
  printf '%-10s %8s %8s %16s %16s\n' "${scale}x" "${train_clips:-?}" "$epochs" "$peak" "$per_1000"
done
