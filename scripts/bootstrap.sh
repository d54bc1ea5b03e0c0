#!/usr/bin/env bash
# Set up a development machine: system packages a fresh Debian 12 / Raspberry Pi OS lacks, then
# .venv with voicebox and its dev extras. Idempotent, and quiet when everything is present.
# --system-test[=arm64] also installs what `make system-test` needs (nspawn, debootstrap, qemu-user).
set -euo pipefail
cd "$(dirname "$0")/.."

# procps: the unit runs /bin/kill (ExecReload), which `systemd-analyze verify` checks exists.
# pulseaudio, pulseaudio-utils, libasound2-plugins: the paced PulseAudio room of the echo tests.
# libspeexdsp1: the linear echo filter ahead of AEC3 (voicebox/audio/echo/linear_echo.py).
# espeak-ng: real speech rendered offline for the wake-word tests and bench (tests/wake/speech.py).
# mosquitto, mosquitto-clients: the real broker of the MQTT tests (tests/mqtt/broker.py); openssl
# makes their test CA.
PKGS=(libportaudio2 libsystemd-dev pkg-config gcc python3-dev python3-venv alsa-utils systemd stress-ng procps
    pulseaudio pulseaudio-utils libasound2-plugins libspeexdsp1 espeak-ng mosquitto mosquitto-clients openssl)
case "${1:-}" in
    --system-test) PKGS+=(systemd-container debootstrap) ;;
    --system-test=arm64) PKGS+=(systemd-container debootstrap qemu-user-static binfmt-support) ;;
    "") ;;
    *) echo "bootstrap: unknown option $1" >&2; exit 2 ;;
esac

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "bootstrap: installing ${missing[*]}" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: voicebox needs Python >= 3.11, $PY is $("$PY" --version 2>&1)" >&2
    exit 1
fi

# Reinstall only when the project definition changed since the last install.
stamp=.venv/.stamp-install
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi

# On a Raspberry Pi, gpiozero needs lgpio in the venv, or it silently falls back to RPi.GPIO,
# which fails on a Pi 5 (gpiozero#1172). PyPI has aarch64 wheels; a PC needs none.
if grep -qs "Raspberry Pi" /proc/device-tree/model \
    && ! .venv/bin/python -c "import lgpio" 2>/dev/null; then
    .venv/bin/python -m pip install -q --disable-pip-version-check lgpio
fi
