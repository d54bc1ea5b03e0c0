#!/usr/bin/env bash
# Build (once) and print the path of the cached Debian 12 root the system test boots.
# usage: system-root.sh ARCH   (amd64 or arm64)
# The root lives in $VOICEBOX_SYSTEM_CACHE (default /var/cache/voicebox-system-test), in a
# directory named by a hash of what it contains (suite, arch, variant, packages, this recipe), so
# a change to the recipe builds a new root and an unchanged one is reused. It is built into a
# temporary directory and renamed when complete: an interrupted build is never used.
set -euo pipefail

ARCH=${1:?usage: system-root.sh amd64|arm64}
CACHE=${VOICEBOX_SYSTEM_CACHE:-/var/cache/voicebox-system-test}
SUITE=bookworm
MIRROR=${VOICEBOX_SYSTEM_MIRROR:-http://deb.debian.org/debian}
# What a Raspberry Pi OS Lite image has that a minbase lacks and the appliance relies on (an init,
# a bus, Python, sudo as the README uses it); nothing voicebox's own installer must provide.
INCLUDE=systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates,sudo
RECIPE=3   # bump when the steps below change what the root contains

key=$(printf '%s\n' "$SUITE" "$ARCH" minbase "$INCLUDE" "$MIRROR" "$RECIPE" | sha256sum | cut -c1-12)
ROOT=$CACHE/debian-$SUITE-$ARCH-$key
if [ -f "$ROOT/.complete" ]; then
    echo "$ROOT"
    exit 0
fi

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.build-$ARCH-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "system-root: building $ROOT (debootstrap $SUITE $ARCH, a few minutes)" >&2
t0=$(date +%s)
debootstrap --variant=minbase --arch="$ARCH" --include="$INCLUDE" "$SUITE" "$tmp" "$MIRROR" \
    >"$tmp.log" 2>&1 || { tail -20 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"
# The same sources a Debian 12 install has; the package lists are fetched per run (apt-get update),
# as a user's machine would.
cat >"$tmp/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
SRC
echo voicebox-test >"$tmp/etc/hostname"
# A machine-id so the journal is persistent and the same across the reboot test.
systemd-machine-id-setup --root="$tmp" >/dev/null 2>&1 || true
mkdir -p "$tmp/var/log/journal"
# No console getty on a container boot.
rm -f "$tmp"/etc/systemd/system/getty.target.wants/* 2>/dev/null || true
apt_clean() { rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_Packages 2>/dev/null || true; }
apt_clean
touch "$tmp/.complete"
mv "$tmp" "$ROOT"
trap - EXIT
echo "system-root: built in $(( $(date +%s) - t0 )) s" >&2
echo "$ROOT"
