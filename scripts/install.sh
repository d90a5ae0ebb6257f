#!/usr/bin/env bash
# Install avscene as a systemd service, after scripts/setup.sh has built it:
#   /usr/local/bin/avscene              the binary (RUNPATH pointed at the copy below)
#   /usr/local/lib/avscene/             its libtorch (torch/lib, and nvidia/ beside it)
#   /etc/avscene/avscene.toml           configuration (an existing one is kept)
#   /etc/avscene/pipelines/*.toml       pipeline files (existing ones are kept)
#   /var/lib/avscene/                   state: put model files here
#   /etc/systemd/system/avscene.service the unit; user `avscene` in groups video, audio
#
#   scripts/install.sh              install, enable and (re)start the service (as root)
#   scripts/install.sh --no-start   install and enable, do not start
#   scripts/install.sh --root DIR   stage everything under DIR (no user, no systemctl)
#   scripts/install.sh --prefix P   binary and libraries under P (default /usr/local)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=""
prefix=/usr/local
start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=${2:?--root needs a directory}; shift ;;
    --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
    --no-start) start=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
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
etc="$root/etc/avscene"
unitdir="$root/etc/systemd/system"
mkdir -p "$bindir" "$root$libdir/torch" "$etc/pipelines" "$unitdir" "$root/var/lib/avscene"

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

say "configuration → /etc/avscene (existing files kept)"
[ -e "$etc/avscene.toml" ] || install -m 0644 "$repo/config/avscene.toml" "$etc/avscene.toml"
for p in "$repo"/pipelines/*.toml; do
  [ -e "$etc/pipelines/$(basename "$p")" ] || install -m 0644 "$p" "$etc/pipelines/"
done

say "unit → /etc/systemd/system/avscene.service"
sed "s|/usr/local/bin/avscene|$prefix/bin/avscene|" "$repo/systemd/avscene.service" >"$unitdir/avscene.service"
chmod 0644 "$unitdir/avscene.service"

if [ -n "$root" ]; then
  say "staged under $root (no user created, systemd not touched)"
  exit 0
fi

if ! id avscene >/dev/null 2>&1; then
  say "creating the system user avscene"
  useradd --system --home-dir /var/lib/avscene --no-create-home --shell /usr/sbin/nologin avscene
fi
usermod -a -G video,audio avscene
chown avscene:avscene /var/lib/avscene

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable avscene.service
  if [ "$start" = 1 ]; then
    systemctl restart avscene.service
    say "started: systemctl status avscene; journalctl -u avscene -f"
  fi
else
  say "systemd is not running here: start it by hand with"
  say "  sudo -u avscene $prefix/bin/avscene run --config /etc/avscene/avscene.toml"
fi
