#!/usr/bin/env bash
# avscene's cached hop beside its peers on the same machine, in one run: PyTorch eager
# and ONNX Runtime on the same architecture (tests/parity/bench_peers.py), then
# `avscene bench` (full model, cached path, batch 1), in float32 (its STFT by the kernel
# convolution, then by FFT) and with OpenL3 in int8 and its STFT by FFT (beside ONNX
# Runtime's int8; that run also prints its accuracy),
# and on a CPU with bf16 instructions in bfloat16 with the FFT (beside PyTorch's), then
# bfloat16 and int8 each with the ResNet image trunk in bfloat16; each avscene run with
# its hop by stage (spectrogram, OpenL3 convolutions, image, head).
# Makes a venv with torch and onnxruntime in .deps/peers-venv on first use (PyPI's torch
# wheel: ~2.7 GB), or uses PYTHON if it names one that has both.
#
#   scripts/bench-peers.sh [THREADS]      (default: all cores)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
threads=${1:-$(nproc)}
python=${PYTHON:-}
if [ -z "$python" ]; then
  venv="$repo/.deps/peers-venv"
  if [ ! -x "$venv/bin/python" ]; then
    echo "[bench-peers] making $venv (torch, onnxruntime, onnx, numpy)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check torch==2.13.0 onnxruntime onnx numpy
  fi
  python="$venv/bin/python"
fi
binary="$repo/target/release/avscene"
[ -x "$binary" ] || { echo "bench-peers: $binary is missing: run scripts/setup.sh" >&2; exit 1; }
echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $threads thread(s)"
(cd "$repo/tests/parity" && "$python" bench_peers.py --threads "$threads")
"$binary" bench --batches 1 --threads "$threads" --no-overload | grep -E '^(avscene bench|float32|encoders|path|cached|  )'
# float32 with the STFT by FFT (inference.fast_stft)
"$binary" bench --fast-stft --batches 1 --threads "$threads" --no-overload | grep -E '^(avscene bench|cached|  )'
"$binary" bench --int8 --fast-stft --batches 1 --threads "$threads" --no-overload | grep -E '^(avscene bench|cached|int8|  )'
if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
  "$binary" bench --bf16 --fast-stft --batches 1 --threads "$threads" --no-overload | grep -E '^(avscene bench|cached|bfloat16|  )'
  # and with the ResNet image trunk in bfloat16 too (inference.image_precision)
  "$binary" bench --bf16 --image-bf16 --fast-stft --batches 1 --threads "$threads" --no-overload | grep -E '^(avscene bench|cached|bfloat16|  )'
  "$binary" bench --int8 --image-bf16 --fast-stft --batches 1 --threads "$threads" --no-overload | grep -E '^(avscene bench|cached|int8|  )'
fi
