#!/usr/bin/env bash
# Remove what scripts/install.sh installed: the service (stopped and disabled), the unit,
# the binary, its libtorch and the shipped pipelines. The configuration (/etc/avscene)
# and the state (/var/lib/avscene: models, recordings, fetched weights) are kept unless
# --purge is given; so is the user avscene (removed with --purge).
#
#   scripts/uninstall.sh              remove the program, keep configuration and data (as root)
#   scripts/uninstall.sh --purge      remove configuration, data, cache and the user too
#   scripts/uninstall.sh --root DIR   the same under a staged DIR (no systemctl, no user)
#   scripts/uninstall.sh --prefix P   where install.sh put the binary (default /usr/local)
set -euo pipefail

root=""
prefix=/usr/local
purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=${2:?--root needs a directory}; shift ;;
    --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
    --purge) purge=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\033[1m[uninstall]\033[0m %s\n' "$*"; }
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run as root (or --root DIR for a staged tree)" >&2
  exit 1
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  if systemctl list-unit-files avscene.service >/dev/null 2>&1; then
    say "stopping and disabling avscene.service"
    systemctl disable --now avscene.service 2>/dev/null || true
  fi
fi
say "removing the unit, $prefix/bin/avscene, $prefix/lib/avscene, $prefix/share/avscene"
rm -f "$root/etc/systemd/system/avscene.service"
rm -f "$root$prefix/bin/avscene"
rm -rf "$root$prefix/lib/avscene" "$root$prefix/share/avscene"
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi

if [ "$purge" = 1 ]; then
  say "--purge: removing /etc/avscene, /var/lib/avscene, /var/cache/avscene"
  rm -rf "$root/etc/avscene" "$root/var/lib/avscene" "$root/var/cache/avscene"
  if [ -z "$root" ] && id avscene >/dev/null 2>&1; then
    say "--purge: removing the user avscene"
    userdel avscene
  fi
else
  say "kept: /etc/avscene (configuration) and /var/lib/avscene (models, recordings); --purge removes them"
fi
