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
# --release: the tests reuse the release build of torch-sys's C++ (no second compile).
cargo test --release --locked "$@"
