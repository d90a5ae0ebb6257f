#!/usr/bin/env bash
# Install avscene as a systemd service, after scripts/setup.sh has built it:
#   /usr/local/bin/avscene              the binary (RUNPATH pointed at the copy below)
#   /usr/local/lib/avscene/             its libtorch (torch/lib, and nvidia/ beside it)
#   /usr/local/share/avscene/pipelines/ the shipped pipeline files (replaced on upgrade)
#   /etc/avscene/avscene.toml           configuration (an existing one is kept)
#   /etc/avscene/pipelines/*.toml       pipeline files to edit (existing ones are kept)
#   /var/lib/avscene/                   state: models, recordings, fetched weights
#   /etc/systemd/system/avscene.service the unit; user `avscene` in groups video, audio
#
# The service is enabled and started only when its configuration names a model that is
# there: a fresh install (no model yet) leaves it off and says what to do next. --demo
# installs the demo instead (two synthetic cameras, the demo model) for a first look.
#
#   scripts/install.sh              install; enable and (re)start if it has a model (as root)
#   scripts/install.sh --demo       install the demo model and configuration, and start it
#   scripts/install.sh --no-start   install, do not enable or start
#   scripts/install.sh --root DIR   stage everything under DIR (no user, no systemctl)
#   scripts/install.sh --prefix P   binary and libraries under P (default /usr/local)
# scripts/uninstall.sh removes it again (keeping /var/lib/avscene and /etc/avscene).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=""
prefix=/usr/local
start=1
demo=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=${2:?--root needs a directory}; shift ;;
    --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
    --no-start) start=0 ;;
    --demo) demo=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

binary="$repo/target/release/avscene"
[ -x "$binary" ] || die "$binary is missing: run scripts/setup.sh first"
[ -f "$repo/.deps/env.sh" ] || die "$repo/.deps/env.sh is missing: run scripts/setup.sh first"
# shellcheck source=/dev/null
. "$repo/.deps/env.sh"
torch_dir=${AVSCENE_LIBTORCH_DIR:?.deps/env.sh does not name AVSCENE_LIBTORCH_DIR}
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || die "no libtorch in $torch_dir/lib: run scripts/setup.sh again"
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (or stage with --root DIR)"
fi
if ! command -v patchelf >/dev/null 2>&1; then
  [ -z "$root" ] || die "patchelf is needed (apt-get install patchelf)"
  say "installing patchelf"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q patchelf >/dev/null
fi

bindir="$root$prefix/bin"
libdir="$prefix/lib/avscene"
share="$root$prefix/share/avscene"
etc="$root/etc/avscene"
state="$root/var/lib/avscene"
unitdir="$root/etc/systemd/system"
demo_model="$repo/.deps/demo-model/best.safetensors"
if [ "$demo" = 1 ]; then
  [ -f "$demo_model" ] || die "$demo_model is missing: run scripts/setup.sh (it trains the demo model)"
  [ ! -e "$etc/avscene.toml" ] || die "--demo: $etc/avscene.toml exists and is kept; remove it first, or install without --demo"
fi
mkdir -p "$bindir" "$root$libdir/torch" "$share/pipelines" "$etc/pipelines" "$unitdir" "$state"

say "libtorch → $libdir ($(du -sh "$torch_dir/lib" | cut -f1))"
rm -rf "$root$libdir/torch/lib"
cp -a "$torch_dir/lib" "$root$libdir/torch/lib"
# libtorch finds the CUDA runtime libraries through $ORIGIN/../../nvidia.
if [ -d "$torch_dir/../nvidia" ]; then
  rm -rf "$root$libdir/nvidia"
  cp -a "$torch_dir/../nvidia" "$root$libdir/nvidia"
fi

say "binary → $prefix/bin/avscene"
install -m 0755 "$binary" "$bindir/avscene.new"
patchelf --set-rpath "$libdir/torch/lib" "$bindir/avscene.new"
mv "$bindir/avscene.new" "$bindir/avscene"

say "pipelines → $prefix/share/avscene/pipelines"
install -m 0644 "$repo"/pipelines/*.toml "$share/pipelines/"

say "configuration → /etc/avscene (existing files kept)"
if [ "$demo" = 1 ]; then
  say "the demo: model → /var/lib/avscene/demo-model.safetensors, streams lobby and platform"
  install -m 0644 "$demo_model" "$state/demo-model.safetensors"
  sed 's|^path = .*|path = "/var/lib/avscene/demo-model.safetensors"|' "$repo/config/demo.toml" >"$etc/avscene.toml"
  chmod 0644 "$etc/avscene.toml"
fi
[ -e "$etc/avscene.toml" ] || install -m 0644 "$repo/config/avscene.toml" "$etc/avscene.toml"
for p in "$repo"/pipelines/*.toml; do
  [ -e "$etc/pipelines/$(basename "$p")" ] || install -m 0644 "$p" "$etc/pipelines/"
done

say "unit → /etc/systemd/system/avscene.service"
sed "s|/usr/local/bin/avscene|$prefix/bin/avscene|" "$repo/systemd/avscene.service" >"$unitdir/avscene.service"
chmod 0644 "$unitdir/avscene.service"

# Whether the configuration can run: valid, and naming a model that is there (a fresh
# model's labels mean nothing, and it pegs a small CPU). The staged binary's RUNPATH
# points at the final place, so a staging run asks the repository's binary.
checker="$bindir/avscene"
check_env=()
if [ -n "$root" ]; then
  checker="$binary"
  # The demo's model path names its final place; staged, it is under DIR.
  [ "$demo" = 0 ] || check_env=("AVSCENE__MODEL__PATH=$state/demo-model.safetensors")
fi
ready=0
if report=$(env "${check_env[@]}" "$checker" check-config --config "$etc/avscene.toml" 2>&1); then
  if printf '%s\n' "$report" | grep -q "model: *none"; then
    why="$etc/avscene.toml names no model (model.path)"
  else
    ready=1
  fi
else
  why="$etc/avscene.toml does not check: $(printf '%s\n' "$report" | tail -n 3)"
fi
next_steps() {
  say "not enabled: $why. Next:"
  say "  1. avscene devices                        find the camera and microphone (params to paste)"
  say "  2. sudoedit /etc/avscene/avscene.toml     a [[stream]] per camera, the [mqtt] broker"
  say "  3. sudo -u avscene avscene fetch-weights   pretrained encoders → /var/lib/avscene/base-model.safetensors"
  say "     then record and fine-tune (README: Teach it your scenes), and set model.path"
  say "  4. sudo systemctl enable --now avscene"
  say "  (for a first look instead: sudo scripts/install.sh --demo, after removing /etc/avscene/avscene.toml)"
}

if [ -n "$root" ]; then
  say "staged under $root (no user created, systemd not touched)"
  [ "$ready" = 1 ] || next_steps
  exit 0
fi

if ! id avscene >/dev/null 2>&1; then
  say "creating the system user avscene"
  useradd --system --home-dir /var/lib/avscene --no-create-home --shell /usr/sbin/nologin avscene
fi
usermod -a -G video,audio avscene
chown -R avscene:avscene /var/lib/avscene

if [ "$ready" != 1 ]; then
  [ -d /run/systemd/system ] && systemctl daemon-reload
  next_steps
elif [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$start" = 1 ]; then
    systemctl enable avscene.service
    systemctl restart avscene.service
    say "started: systemctl status avscene; journalctl -u avscene -f"
    if [ "$demo" = 1 ]; then say "the status page: http://127.0.0.1:9464/ (on this machine)"; fi
  else
    say "installed; start it with: sudo systemctl enable --now avscene"
  fi
else
  say "systemd is not running here: start it by hand with"
  say "  sudo -u avscene $prefix/bin/avscene run --config /etc/avscene/avscene.toml"
fi
