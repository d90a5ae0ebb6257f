#!/usr/bin/env bash
# Set up avscene on Debian 12: system packages, libtorch from PyPI, release build.
# Idempotent: every step checks what is already there. Run as root (or with sudo available).
#
#   scripts/setup.sh            CPU libtorch (small extraction) unless a GPU is present
#   scripts/setup.sh --cuda     full PyTorch wheel (CUDA-capable libtorch) in a venv
#   scripts/setup.sh --cpu      force the small CPU route
#   scripts/setup.sh --no-build skip `cargo build --release` (and the demo model)
#   scripts/setup.sh --demo-model  train the demo model again
#
# Writes .deps/env.sh, which every other script sources, so cargo always sees the same
# LIBTORCH* settings (a change would rebuild torch-sys's C++ for minutes).
set -euo pipefail

TORCH_VERSION=2.13.0
# libtorch_cpu.so links these two small CUDA runtime libraries even on CPU.
CUDA_RUNTIME_PKGS=(nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deps=${AVSCENE_DEPS:-$repo/.deps}
route=auto
build=1
demo_model=0
for arg in "$@"; do
  case "$arg" in
    --cuda) route=cuda ;;
    --cpu) route=cpu ;;
    --no-build) build=0 ;;
    --demo-model) demo_model=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$route" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then route=cuda; else route=cpu; fi
fi

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. System packages --------------------------------------------------------------------
apt_pkgs=(
  build-essential pkg-config ca-certificates curl python3 python3-pip python3-venv
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-alsa gstreamer1.0-pulseaudio
  mosquitto mosquitto-clients
  libfontconfig1-dev libfreetype-dev fonts-dejavu-core
  python3-gi gir1.2-gst-rtsp-server-1.0
  chromium patchelf
)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${#missing[@]} Debian packages: ${missing[*]}"
  mkdir -p "$deps"
  log="$deps/apt.log"
  if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
         as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup.sh: apt-get failed (full log: $log)" >&2
    exit 1
  fi
else
  say "Debian packages present"
fi
# python3-gi and the RTSP server's bindings: the tests' IP camera (tests/rtsp/serve.py);
# chromium: the status page's browser tests (tests/browser.rs) and the README's screenshot.
# Debian starts a system-wide mosquitto on :1883 on install where systemd runs; avscene's
# tests start their own broker on a free port and never rely on it.

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  say "installing the Rust toolchain with rustup"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# 2. libtorch from PyPI -----------------------------------------------------------------
mkdir -p "$deps"
if [ "$route" = cpu ]; then
  libtorch="$deps/libtorch-cpu/torch"
  if [ ! -f "$libtorch/lib/libtorch_cpu.so" ] || [ ! -f "$deps/libtorch-cpu/.complete-$TORCH_VERSION" ]; then
    say "fetching torch==$TORCH_VERSION from PyPI (CPU libraries only, ~540 MB)"
    rm -rf "$deps/libtorch-cpu"
    # --target sidesteps Debian's externally-managed Python; --no-deps keeps it small.
    python3 -m pip install -q --no-deps --no-compile --disable-pip-version-check --root-user-action=ignore \
      --target "$deps/libtorch-cpu" "torch==$TORCH_VERSION" "${CUDA_RUNTIME_PKGS[@]}"
    for so in libtorch_cuda.so libtorch_cuda_linalg.so libtorch_nvshmem.so libc10_cuda.so \
              libcaffe2_nvrtc.so libtorch_python.so; do
      rm -f "$libtorch/lib/$so"
    done
    # libtorch_cpu.so finds libcudart/libcupti through its own RUNPATH ($ORIGIN/../../nvidia/…).
    touch "$deps/libtorch-cpu/.complete-$TORCH_VERSION"
  else
    say "CPU libtorch present in $libtorch"
  fi
  env_lines="export LIBTORCH=\"$libtorch\"
unset LIBTORCH_USE_PYTORCH"
else
  venv="$deps/torch-venv"
  if [ ! -f "$venv/.complete-$TORCH_VERSION" ]; then
    say "installing the full torch==$TORCH_VERSION wheel (CUDA) in $venv (~2.7 GB)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION" numpy safetensors
    touch "$venv/.complete-$TORCH_VERSION"
  else
    say "full PyTorch present in $venv"
  fi
  libtorch=$("$venv/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')
  env_lines="export LIBTORCH_USE_PYTORCH=1
export PATH=\"$venv/bin:\$PATH\"
unset LIBTORCH"
fi

cat > "$deps/env.sh" <<ENV
# Written by scripts/setup.sh ($route route). Source it before cargo: a different
# LIBTORCH* environment rebuilds torch-sys's C++ wrappers.
$env_lines
export AVSCENE_LIBTORCH_ROUTE=$route
export AVSCENE_LIBTORCH_DIR="$libtorch"
export PATH="\$HOME/.cargo/bin:\$PATH"
ENV
say "wrote $deps/env.sh ($route route)"

# 3. Build ------------------------------------------------------------------------------
if [ "$build" = 1 ]; then
  # shellcheck source=/dev/null
  . "$deps/env.sh"
  say "cargo build --release (a clean build takes ~3-4 min on 2 cores)"
  (cd "$repo" && cargo build --release --locked)
  say "built $repo/target/release/avscene"

  # 4. Demo model: a small model trained on a generated scene set, so that the demo
  # configuration (config/demo.toml) gives labels that mean something.
  # The marker names the model inputs it was trained on (v2: whole frames stretched, not
  # letterboxed; the authors' recipe): an older demo model is retrained once.
  demo="$deps/demo-model/best.safetensors"
  marker="$deps/demo-model/.inputs-v2"
  if [ ! -f "$demo" ] || [ ! -f "$marker" ] || [ "$demo_model" = 1 ]; then
    say "training the demo model on a generated scene set (~3 min on 2 cores)"
    rm -rf "$deps/demo-data" "$deps/demo-model"
    "$repo/target/release/avscene" --log-level warn synth-dataset --out "$deps/demo-data" \
      --classes 4 --clips-per-class 8 --locations 4
    "$repo/target/release/avscene" --log-level warn train --data "$deps/demo-data" \
      --out "$deps/demo-model" --profile small --device cpu --epochs 12 --lr 1e-3 --batch 4
    touch "$marker"
  else
    say "demo model present ($demo)"
  fi
fi

# 5. A local MQTT broker for the demo: Debian's mosquitto service where systemd runs;
# elsewhere (containers) a mosquitto in the background, listening on 127.0.0.1 only.
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  if [ -d /run/systemd/system ]; then
    as_root systemctl enable --now mosquitto >/dev/null 2>&1 || true
  else
    say "starting mosquitto on 127.0.0.1:1883 (no systemd here)"
    /usr/sbin/mosquitto -d >/dev/null 2>&1 || true
  fi
fi
