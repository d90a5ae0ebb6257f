#!/usr/bin/env bash
# Soak benchmark (not a test): `avscene run` on the demo configuration (two synthetic
# cameras with microphones, the demo model) against a private mosquitto for MINUTES
# (default 60), writing the daemon's resident memory and counters every 10 s as CSV, then
# a summary: memory after warm-up (5 min), at the end, its peak, and the drift per hour
# after warm-up.
#
#   scripts/soak.sh [MINUTES] [CONFIG] [CSV]
#     CONFIG  default config/demo.toml;  CSV  default soak-<date>.csv in the current dir
#   AVSCENE_BIN=path  another build of avscene (e.g. a copy, while the tree is rebuilt)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
minutes=${1:-60}
config=${2:-$repo/config/demo.toml}
csv=${3:-$PWD/soak-$(date +%Y%m%d-%H%M).csv}
case "$minutes" in ''|*[!0-9]*) echo "soak.sh: MINUTES must be a whole number, not '$minutes'" >&2; exit 2 ;; esac
[ -f "$config" ] || { echo "soak.sh: $config: no such configuration file" >&2; exit 2; }
config=$(realpath "$config")
bin=${AVSCENE_BIN:-$repo/target/release/avscene}
[ -x "$bin" ] || { echo "soak.sh: build first (scripts/setup.sh)" >&2; exit 2; }

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker=$!
(cd "$repo" && AVSCENE__MQTT__PORT=$port AVSCENE__METRICS__LISTEN=127.0.0.1:$metrics \
  exec "$bin" --log-level warn run --config "$config") 2>"$work/daemon.log" &
daemon=$!
trap 'kill "$daemon" "$broker" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

# One CSV row: seconds since start, RSS (MB, from /proc), and the daemon's own counters.
sample() {
  local rss
  rss=$(awk '/^VmRSS:/ {print $2 / 1024}' "/proc/$daemon/status")
  curl -s "http://127.0.0.1:$metrics/metrics" | awk -v t="$1" -v rss="$rss" '
    $1 ~ /^avscene_windows_classified_total/ {labels += $2}
    $1 ~ /^avscene_stream_windows_dropped_total/ {dropped += $2}
    $1 == "avscene_inference_stale_total" {stale = $2}
    $1 == "avscene_mqtt_published_total" {mqtt = $2}
    $1 == "avscene_mqtt_outbox_messages" {outbox = $2}
    END {printf "%d,%.1f,%d,%d,%d,%d,%d\n", t, rss, labels, dropped, stale, mqtt, outbox}'
}

echo "seconds,rss_mb,labels,windows_dropped,stale,mqtt_published,outbox" >"$csv"
echo "avscene run --config $config for $minutes min ($(nproc) cores); samples every 10 s in $csv"
start=$(date +%s)
end=$((start + minutes * 60))
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 10
  kill -0 "$daemon" 2>/dev/null || { echo "the daemon died:"; tail "$work/daemon.log"; exit 1; }
  sample $(($(date +%s) - start)) >>"$csv"
done
kill -TERM "$daemon"
wait "$daemon" && echo "stopped cleanly (exit 0)"

awk -F, 'NR > 1 {
    if (!warm && $1 >= 300) {warm = 1; warm_t = $1; warm_rss = $2}
    if ($2 > peak) peak = $2
    last_t = $1; last = $2; labels = $3; dropped = $4; mqtt = $6
  }
  END {
    if (!warm) {printf "shorter than the 5-minute warm-up: peak %.1f MB, last %.1f MB\n", peak, last; exit}
    drift = (last_t > warm_t) ? (last - warm_rss) / ((last_t - warm_t) / 3600) : 0
    printf "RSS %.1f MB after warm-up (%d s), %.1f MB at the end (%d s), peak %.1f MB: %+.1f MB/h after warm-up\n", warm_rss, warm_t, last, last_t, peak, drift
    printf "%d labels, %d windows dropped, %d MQTT messages acknowledged\n", labels, dropped, mqtt
  }' "$csv"
