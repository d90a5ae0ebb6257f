#!/usr/bin/env bash
# Soak benchmark (not a test): `avscene run` on the shipped configuration (test pipeline)
# against a private mosquitto for MINUTES (default 30), reading its own /metrics every
# minute: resident memory, labels published, windows dropped, MQTT messages.
#   scripts/soak.sh [MINUTES] [PROFILE]     PROFILE: small (default) or full
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
minutes=${1:-30}
profile=${2:-small}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
metrics=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
broker=$!
AVSCENE__MQTT__PORT=$port AVSCENE__METRICS__LISTEN=127.0.0.1:$metrics AVSCENE__MODEL__PROFILE=$profile \
  target/release/avscene --log-level warn run --config config/avscene.toml 2>"$work/daemon.log" &
daemon=$!
trap 'kill "$daemon" "$broker" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

sample() {
  curl -s "http://127.0.0.1:$metrics/metrics" | awk -v m="$1" '
    $1=="process_resident_memory_bytes" {rss=$2}
    $1=="avscene_windows_classified_total{stream=\"demo\"}" {labels=$2}
    $1=="avscene_inference_stale_total" {stale=$2}
    $1=="avscene_queue_dropped_total" {dropped=$2}
    $1=="avscene_mqtt_published_total" {mqtt=$2}
    END {printf "minute %3d: rss %6.1f MB, labels %6d, stale %5d, dropped %5d, mqtt messages %6d\n", m, rss/1048576, labels, stale, dropped, mqtt}'
}
sleep 30
echo "avscene run, profile $profile, $minutes min ($(nproc) cores)"
sample 0
for m in $(seq 1 "$minutes"); do
  sleep 60
  kill -0 "$daemon" 2>/dev/null || { echo "the daemon died:"; tail "$work/daemon.log"; exit 1; }
  sample "$m"
done
kill -TERM "$daemon"
wait "$daemon" && echo "stopped cleanly (exit 0)"
