#!/usr/bin/env bash
# Install (or upgrade, or remove) voicebox as a systemd service on a Raspberry Pi. Run as root from
# the checkout: sudo scripts/install.sh [--api-key-file FILE | --api-key-stdin] [--with-phone].
#
# Lays out: /opt/voicebox/venv (a venv with system site packages, for apt's python3-lgpio and
# python3-systemd), /etc/voicebox/config.yaml (only if absent: a user's config is never
# overwritten), /etc/voicebox/credentials/elevenlabs_api_key (root, 0600, read by the unit's
# LoadCredential=), /etc/default/voicebox and /etc/systemd/system/voicebox.service.
# The venv gets voicebox with its setup extra (ruamel.yaml: `voicebox setup` is how a box is
# configured); --with-phone adds the phone extra (twilio, aiohttp) for `voicebox phone` and
# `voicebox call`. A re-run without --with-phone keeps what an earlier one installed.
# --root DIR installs under DIR instead and only prints the system changes (apt, users, pip,
# systemctl) it would make; the tests use it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install.sh [options]
  --api-key-file FILE  store the ElevenLabs API key from FILE as the service credential
  --api-key-stdin      read the API key from standard input
  --mqtt-password-file FILE  store the MQTT broker's password (mqtt.username's) from FILE
  --with-phone         also install the phone extra (twilio, aiohttp): voicebox phone, voicebox call
  --prefix DIR         install the application in DIR (default /opt/voicebox)
  --root DIR           install into DIR as a root filesystem: no apt, users, pip or systemctl
  --no-start           install and enable, but do not (re)start the service
  --uninstall          remove the service, the venv, the user and the cache; keep /etc/voicebox
  -h, --help           this text
EOF
}

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
PREFIX=/opt/voicebox
KEY_FILE=""
KEY_STDIN=0
MQTT_PW_FILE=""
UNINSTALL=0
START=1
EXTRAS=setup  # `voicebox setup` configures the box: always installed
USER_NAME=voicebox

while [ $# -gt 0 ]; do
    case "$1" in
        --api-key-file) KEY_FILE=${2:?--api-key-file needs a file}; shift 2 ;;
        --api-key-stdin) KEY_STDIN=1; shift ;;
        --mqtt-password-file) MQTT_PW_FILE=${2:?--mqtt-password-file needs a file}; shift 2 ;;
        --with-phone) EXTRAS=setup,phone; shift ;;
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --no-start) START=0; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*"; }
warn() { echo "install.sh: warning: $*" >&2; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

# System changes run for real, or are only printed under --root.
sys() {
    if [ -n "$ROOT" ]; then
        echo "install.sh: would run: $*"
    else
        "$@"
    fi
}

if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
elif [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...), or use --root DIR for a trial install"
fi
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path" ;; esac

ETC=$ROOT/etc/voicebox
CRED_DIR=$ETC/credentials
CRED=$CRED_DIR/elevenlabs_api_key
UNIT=$ROOT/etc/systemd/system/voicebox.service
PHONE_UNIT=$ROOT/etc/systemd/system/voicebox-phone.service
APP=$ROOT$PREFIX
VENV=$APP/venv
STATE=$ROOT/var/lib/voicebox

systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

# --- uninstall ---------------------------------------------------------------------------------

if [ $UNINSTALL -eq 1 ]; then
    if systemd_running; then
        systemctl disable --now voicebox.service 2>/dev/null || true
        systemctl disable --now voicebox-phone.service 2>/dev/null || true
    fi
    rm -f "$UNIT" "$PHONE_UNIT"
    rm -rf "$ROOT/etc/systemd/system/voicebox.service.d"
    [ -L "$ROOT/usr/local/bin/voicebox" ] && rm -f "$ROOT/usr/local/bin/voicebox"
    systemd_running && systemctl daemon-reload
    rm -rf "$APP" "$STATE"
    if [ -n "$ROOT" ] || getent passwd "$USER_NAME" >/dev/null; then
        sys userdel "$USER_NAME"
    fi
    say "removed the service, $PREFIX, /var/lib/voicebox and the $USER_NAME user"
    say "kept /etc/voicebox (config and credentials) and /etc/default/voicebox: delete them yourself if unwanted"
    exit 0
fi

# --- the API key (read first, so a bad file fails before anything changes) ------------------------

KEY=""
if [ -n "$KEY_FILE" ]; then
    [ -r "$KEY_FILE" ] || die "cannot read the API key file $KEY_FILE"
    KEY=$(tr -d ' \t\r\n' <"$KEY_FILE")
    [ -n "$KEY" ] || die "the API key file $KEY_FILE is empty"
elif [ $KEY_STDIN -eq 1 ]; then
    [ -t 0 ] && echo "Paste the ElevenLabs API key, then Enter:" >&2
    IFS= read -r KEY || true
    KEY=$(printf '%s' "$KEY" | tr -d ' \t\r\n')
    [ -n "$KEY" ] || die "no API key on standard input"
fi

MQTT_PW=""
if [ -n "$MQTT_PW_FILE" ]; then
    [ -r "$MQTT_PW_FILE" ] || die "cannot read the MQTT password file $MQTT_PW_FILE"
    MQTT_PW=$(head -n 1 "$MQTT_PW_FILE" | tr -d '\r')
    [ -n "$MQTT_PW" ] || die "the MQTT password file $MQTT_PW_FILE is empty"
fi

# --- system packages, group and user -----------------------------------------------------------

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "voicebox needs Python >= 3.11; $PY is $("$PY" --version 2>&1)"

# procps: the unit's ExecReload runs /bin/kill, which a minimal Debian does not have (203/EXEC).
# libspeexdsp1: the linear echo filter ahead of AEC3 (barge-in over a loud echo).
APT_PKGS=(libportaudio2 python3-venv python3-lgpio python3-systemd procps libspeexdsp1)
if [ -n "$ROOT" ]; then
    sys apt-get install -y "${APT_PKGS[@]}"
elif command -v apt-get >/dev/null; then
    pkgs=()
    for p in "${APT_PKGS[@]}"; do
        # only what this distribution has (python3-lgpio is Raspberry Pi OS / newer Debian)
        apt-cache show "$p" >/dev/null 2>&1 && pkgs+=("$p")
    done
    say "apt: ${pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null ||
        warn "apt-get install failed; continuing with what is installed"
else
    warn "no apt-get: install PortAudio (libportaudio2) and lgpio yourself"
fi

# The unit asks for the gpio group, which only Raspberry Pi OS has: create it elsewhere so the
# service can start (216/GROUP otherwise).
if [ -n "$ROOT" ] || ! getent group gpio >/dev/null; then
    [ -n "$ROOT" ] || say "creating the gpio group (this system has none)"
    sys groupadd --system gpio
fi
if [ -n "$ROOT" ] || ! getent passwd "$USER_NAME" >/dev/null; then
    sys useradd --system --user-group --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin --groups audio,gpio "$USER_NAME"
else
    sys usermod --append --groups audio,gpio "$USER_NAME"
fi

# --- the application ---------------------------------------------------------------------------

mkdir -p "$APP"
if [ ! -x "$VENV/bin/python" ]; then
    if [ -n "$ROOT" ]; then
        "$PY" -m venv --system-site-packages --without-pip "$VENV"
    else
        "$PY" -m venv --system-site-packages "$VENV"
    fi
fi
# pip only inside the venv, never system-wide; --upgrade makes a re-run an upgrade. A real install
# builds from a copy, so the checkout gets no root-owned build/ or egg-info.
if [ -n "$ROOT" ]; then
    sys "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$SRC[$EXTRAS]"
else
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    cp -r "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/voicebox" "$stage/"
    find "$stage" -name __pycache__ -prune -exec rm -rf {} +
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$stage[$EXTRAS]"
    # gpiozero needs lgpio on a Pi 5, and apt has python3-lgpio only on Raspberry Pi OS; on
    # another arm64 Debian PyPI's wheel does it (>= 0.2.2: 0.0.0.x is an empty placeholder).
    case "$(uname -m)" in
        aarch64 | armv7l)
            "$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(not importlib.util.find_spec("lgpio"))' ||
                "$VENV/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
                    'lgpio>=0.2.2' || warn "could not install lgpio: the button and LED will not work"
            ;;
    esac
fi
sys "$VENV/bin/python" -m compileall -q "$VENV/lib"
install -m 0644 "$SRC/README.md" "$APP/README.md"
chmod 0755 "$APP"

# --- configuration, credential, environment file ----------------------------------------------------

install -d -m 0755 "$ETC"
install -m 0644 "$SRC/config/voicebox.yaml" "$ETC/config.yaml.example"
if [ -e "$ETC/config.yaml" ]; then
    say "kept your /etc/voicebox/config.yaml (the current sample is config.yaml.example)"
else
    install -m 0640 "$SRC/config/voicebox.yaml" "$ETC/config.yaml"
    sys chown "root:$USER_NAME" /etc/voicebox/config.yaml
    say "installed /etc/voicebox/config.yaml: set agent.agent_id in it"
fi

if [ -n "$KEY" ]; then
    # the same code `voicebox setup` stores the key with (stdlib only: runs from the checkout)
    printf '%s\n' "$KEY" | PYTHONPATH="$SRC" "$PY" -m voicebox.credentials "$CRED" ||
        die "could not store the API key in $CRED"
    say "stored the API key in /etc/voicebox/credentials/elevenlabs_api_key (root only, 0600)"
elif [ ! -s "$CRED" ]; then
    warn "no API key given: store one with --api-key-file FILE or --api-key-stdin"
fi

# The unit loads every file of credentials/mqtt/ (LoadCredential=mqtt:DIR): the directory must
# exist even without a broker; its file `password` becomes the credential mqtt_password.
install -d -m 0700 "$CRED_DIR/mqtt"
if [ -n "$MQTT_PW" ]; then
    (umask 077 && printf '%s\n' "$MQTT_PW" >"$CRED_DIR/mqtt/.password.new" &&
        mv -f "$CRED_DIR/mqtt/.password.new" "$CRED_DIR/mqtt/password") ||
        die "could not store the MQTT password in $CRED_DIR/mqtt/password"
    say "stored the MQTT password in /etc/voicebox/credentials/mqtt/password (root only, 0600)"
fi

if [ ! -e "$ROOT/etc/default/voicebox" ]; then
    install -d -m 0755 "$ROOT/etc/default"
    cat >"$ROOT/etc/default/voicebox" <<'EOF'
# Environment for voicebox.service: non-secret settings only (the API key is a credential).
# GPIOZERO_PIN_FACTORY=lgpio
EOF
    chmod 0644 "$ROOT/etc/default/voicebox"
fi

install -d -m 0755 "$STATE"
sys chown "$USER_NAME:$USER_NAME" /var/lib/voicebox

# --- the unit ----------------------------------------------------------------------------------

install -d -m 0755 "$(dirname "$UNIT")"
sed -e "s#/opt/voicebox#$PREFIX#g" "$SRC/systemd/voicebox.service" >"$UNIT.tmp"
chmod 0644 "$UNIT.tmp"
mv -f "$UNIT.tmp" "$UNIT"
say "installed /etc/systemd/system/voicebox.service"
# Phone calls (Twilio) run in their own unit, installed but not enabled: see README "Phone calls"
# (its Python packages come with --with-phone).
sed -e "s#/opt/voicebox#$PREFIX#g" "$SRC/systemd/voicebox-phone.service" >"$PHONE_UNIT.tmp"
chmod 0644 "$PHONE_UNIT.tmp"
mv -f "$PHONE_UNIT.tmp" "$PHONE_UNIT"

agent_set() {
    "$VENV/bin/python" - "$ETC/config.yaml" <<'PY' 2>/dev/null
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1], encoding="utf-8")) or {}
sys.exit(0 if (cfg.get("agent") or {}).get("agent_id") else 1)
PY
}

if systemd_running; then
    systemctl daemon-reload
    systemctl enable voicebox.service
    if [ $START -eq 0 ]; then
        :
    elif ! agent_set; then
        say "not starting yet: set agent.agent_id in /etc/voicebox/config.yaml, then: systemctl start voicebox"
    else
        # restart, not start: a re-run is an upgrade and must load the new code
        systemctl restart voicebox.service || warn "voicebox did not start: journalctl -u voicebox -b"
    fi
else
    sys systemctl daemon-reload
    sys systemctl enable voicebox.service
    [ -n "$ROOT" ] || say "systemd is not running here: enable the service after booting with it"
fi

# --- cached announcements ----------------------------------------------------------------------

if [ -s "$CRED" ]; then
    if [ -n "$ROOT" ]; then
        sys runuser -u "$USER_NAME" -- "$PREFIX/venv/bin/python" -m voicebox announcements --prefetch
    elif ! ELEVENLABS_API_KEY=$(cat "$CRED") runuser -u "$USER_NAME" -- \
        "$VENV/bin/python" -m voicebox announcements --prefetch --config /etc/voicebox/config.yaml; then
        warn "could not prefetch the announcements (they are fetched on first use instead)"
    fi
fi

# --- the command on PATH, then setup or a check ---------------------------------------------

install -d -m 0755 "$ROOT/usr/local/bin"
ln -sfn "$PREFIX/venv/bin/voicebox" "$ROOT/usr/local/bin/voicebox"

if agent_set; then
    # a configured box (an upgrade, or a config brought along): look at everything once
    say "checking it: voicebox doctor"
    sys "$VENV/bin/python" -m voicebox doctor --quiet --config /etc/voicebox/config.yaml ||
        warn "voicebox doctor found problems (above): each FAIL line says how to fix it"
else
    say "next: sudo voicebox setup (microphone, speaker, agent id, API key, button)"
fi
say "done. Check it any time: sudo voicebox doctor; status: voicebox status; logs: journalctl -u voicebox -f"
