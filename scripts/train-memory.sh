#!/usr/bin/env bash
# Training memory against dataset size (a benchmark, not a test): trains on two generated
# sets, one four times the other, and prints each run's peak resident memory and the
# epoch time per 1 000 clips. Each set trains twice: the first run also decodes and
# embeds every clip into the feature cache, the second reads the cache only. Features
# are read from the cache a batch at a time, so the peak should not grow with the set.
#   scripts/train-memory.sh [CLIPS_PER_CLASS] [EPOCHS] [PROFILE]
# Defaults 16, 3, small: 4 classes → 32 and 128 training clips, 16 and 64 validation clips
# (validation reads 16 clips at a time, so both sets have full validation batches).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
per_class=${1:-16}
epochs=${2:-3}
profile=${3:-small}
avscene=target/release/avscene
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-4s %-14s %14s %10s %14s %16s\n' set run "train clips" epochs "peak RSS (MB)" "s / 1000 clips"
for scale in 1 4; do
  data="$work/data-$scale"
  "$avscene" --log-level warn synth-dataset --out "$data" --classes 4 \
    --clips-per-class "$((per_class * scale))" --locations 4 >/dev/null
  for run in "decode + train" "from cache"; do
    out="$work/run-$scale"
    rm -rf "$out"
    said=$("$avscene" --log-level warn train --data "$data" --out "$out" --cache "$work/cache-$scale" \
      --profile "$profile" --device cpu --epochs "$epochs" --lr 1e-3 --batch 4)
    peak=$(sed -n 's/.*peak resident memory \([0-9]*\) MB.*/\1/p' <<<"$said")
    clips=$("$avscene" model info --model "$out/last.safetensors" --json |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["provenance"]["details"]["train_clips"])')
    per_1000=$(awk -F'"clips_per_s":' '{split($2, a, ","); s += 1000 / a[1]; n++} END {printf "%.0f", s / n}' \
      "$out/train-log.jsonl")
    printf '%-4s %-14s %14s %10s %14s %16s\n' "${scale}x" "$run" "$clips" "$epochs" "$peak" "$per_1000"
  done
done
