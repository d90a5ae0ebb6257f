#!/usr/bin/env bash
# Run avscene's whole test suite. Tests that need a broker start their own mosquitto on
# 127.0.0.1 on a free port (tests/common) and stop it, so `cargo test` alone works too.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test config).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ ! -f .deps/env.sh ]; then
  echo "test.sh: .deps/env.sh is missing: run scripts/setup.sh first" >&2
  exit 2
fi
# shellcheck source=/dev/null
. .deps/env.sh
for tool in /usr/sbin/mosquitto mosquitto_passwd gst-launch-1.0; do
  command -v "$tool" >/dev/null || { echo "test.sh: $tool is missing: run scripts/setup.sh" >&2; exit 2; }
done
# Steps a test cannot run on this machine fail unless skipped on purpose, with the reason:
# say here what the set-up did not install.
skip=${AVSCENE_TEST_SKIP:-}
has_torch() {
  for python in "${AVSCENE_TEST_PYTHON:-}" "$repo/.deps/torch-venv/bin/python"; do
    [ -n "$python" ] && "$python" -c 'import torch, safetensors' >/dev/null 2>&1 && return 0
  done
  return 1
}
if ! has_torch; then
  echo "test.sh: skipping the PyTorch end-to-end import check: no Python with torch (scripts/setup.sh --cuda makes one, or set AVSCENE_TEST_PYTHON)" >&2
  skip="${skip:+$skip,}python-torch"
fi
if ! command -v systemd-analyze >/dev/null; then
  echo "test.sh: skipping the systemd unit check: systemd-analyze is not installed" >&2
  skip="${skip:+$skip,}systemd-analyze"
fi
if ! /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' >/dev/null 2>&1; then
  echo "test.sh: skipping the RTSP camera tests: no GStreamer RTSP server for Python (scripts/setup.sh installs python3-gi gir1.2-gst-rtsp-server-1.0)" >&2
  skip="${skip:+$skip,}rtsp-server"
fi
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "test.sh: skipping the status page's browser tests: Chromium is not installed (scripts/setup.sh installs it)" >&2
  skip="${skip:+$skip,}browser"
fi
export AVSCENE_TEST_SKIP="$skip"
# --release: the tests reuse the release build of torch-sys's C++ (no second compile).
cargo test --release --locked "$@"
