#!/usr/bin/env bash
# Run avscene's whole test suite. Starts what the tests need — a mosquitto broker on
# 127.0.0.1 on a free port (AVSCENE_TEST_MQTT_PORT) — and stops it afterwards.
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

work=$(mktemp -d)
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
CONF
/usr/sbin/mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
broker_pid=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "test.sh: mosquitto did not start:" >&2; cat "$work/mosquitto.log" >&2; exit 1; }
export AVSCENE_TEST_MQTT_PORT=$port
echo "[test] mosquitto on 127.0.0.1:$port (pid $broker_pid)"

# --release: the tests reuse the release build of torch-sys's C++ (no second compile).
cargo test --release --locked "$@"
