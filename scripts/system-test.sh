#!/usr/bin/env bash
# `make system-test [ARCH=arm64]`: boot a Debian 12 root under a real systemd 252 (systemd-nspawn),
# install voicebox in it with scripts/install.sh as the README says, and run tests/system.
#
# usage: system-test.sh [amd64|arm64] [--unit-suite]    system-test.sh --check [ARCH] (can it run?)
#   --unit-suite: instead, run the unit test suite (pytest, no lint) inside that root's userland.
# Environment: VOICEBOX_SYSTEM_CACHE   the cached roots (default /var/cache/voicebox-system-test)
#              VOICEBOX_SYSTEM_SIM_PORT the simulator's port on 127.0.0.1 (default 28765)
#              VOICEBOX_SYSTEM_TIMEOUT  seconds before the whole run is killed
# Every run boots a fresh overlay of the cached root (the cache is never written), and leaves no
# container, mount or nspawn process behind, whatever happens. Artefacts (the container's journal,
# install log, figures) go to build/system-test/ARCH/.
set -euo pipefail
cd "$(dirname "$0")/.."

# One line saying why this machine cannot boot a container (of arch $1), or nothing.
why_not() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root (systemd-nspawn and debootstrap need root)"
    elif [ -e /run/.containerenv ] || grep -qs container= /proc/1/environ; then
        echo "this machine is itself a container (nspawn needs a VM or bare metal)"
    elif ! unshare --mount --pid --uts --ipc --fork true 2>/dev/null; then
        echo "the kernel refuses new namespaces (no CAP_SYS_ADMIN)"
    elif ! command -v apt-get >/dev/null && ! command -v systemd-nspawn >/dev/null; then
        echo "no systemd-nspawn and no apt-get to install it"
    elif [ "${1:-amd64}" = arm64 ] && [ "$(uname -m)" != aarch64 ] &&
        [ ! -e /proc/sys/fs/binfmt_misc/status ] &&
        ! mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null; then
        echo "no binfmt_misc for qemu-user (arm64 emulation)"
    fi
}

main() {

ARCH=${1:-${ARCH:-amd64}}
MODE=${2:-system}
if [ "$ARCH" = --check ]; then  # --check [ARCH]
    reason=$(why_not "${2:-amd64}")
    [ -z "$reason" ] || { echo "$reason"; exit 1; }
    exit 0
fi
case "$MODE" in system | --unit-suite) ;; *) echo "system-test: unknown option $MODE" >&2; exit 2 ;; esac
case "$ARCH" in
    amd64 | x86 | x86_64 | "") ARCH=amd64 ;;
    arm64 | aarch64) ARCH=arm64 ;;
    *) echo "system-test: unknown ARCH $ARCH (amd64 or arm64)" >&2; exit 2 ;;
esac

reason=$(why_not "$ARCH")
if [ -n "$reason" ]; then
    echo "system-test: cannot run here: $reason" >&2
    exit 1
fi

if [ "$ARCH" = arm64 ]; then bash scripts/bootstrap.sh --system-test=arm64; else bash scripts/bootstrap.sh --system-test; fi

if [ "$ARCH" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/status ] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
    grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || {
        echo "system-test: qemu-aarch64 is registered without the F flag; a container cannot use it" >&2
        exit 1
    }
fi

PORT=${VOICEBOX_SYSTEM_SIM_PORT:-28765}
if ! .venv/bin/python -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$PORT" 2>/dev/null; then
    echo "system-test: port $PORT on 127.0.0.1 is in use; set VOICEBOX_SYSTEM_SIM_PORT" >&2
    exit 1
fi

t0=$(date +%s)
ROOT=$(bash scripts/system-root.sh "$ARCH")
t_root=$(( $(date +%s) - t0 ))

RUN=$(mktemp -d /var/tmp/voicebox-system-test.XXXXXX)
ART=build/system-test/$ARCH
rm -rf "$ART"
mkdir -p "$ART"
PIDFILE=$RUN/nspawn.pid
TESTS_PID=""
cleanup() {
    set +e
    # the test runner first (timeout made its own process group), so it cannot boot again
    [ -n "$TESTS_PID" ] && kill -KILL -- -"$TESTS_PID" 2>/dev/null
    if [ -s "$PIDFILE" ]; then
        pid=$(cat "$PIDFILE")
        if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = systemd-nspawn ]; then
            echo "system-test: stopping the container left running (nspawn $pid)" >&2
            kill -TERM "$pid"
            for _ in $(seq 60); do [ -d /proc/"$pid" ] || break; sleep 0.5; done
            [ -d /proc/"$pid" ] && kill -KILL -- -"$pid" "$pid" 2>/dev/null
        fi
    fi
    mountpoint -q "$RUN/root" && umount "$RUN/root"
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RUN/upper" "$RUN/work" "$RUN/root"
if ! mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$RUN/upper,workdir=$RUN/work" "$RUN/root" 2>/dev/null; then
    cp -a --reflink=auto "$ROOT/." "$RUN/root/"   # no overlayfs: a full copy, still per run
fi
# The checkout as committed plus uncommitted changes to tracked files, as `git clone` would give.
rev=$(git stash create 2>/dev/null || true)
mkdir -p "$RUN/root/root/voicebox"
git archive --format=tar "${rev:-HEAD}" | tar -x -C "$RUN/root/root/voicebox"
# The registries are reached through a TLS chain the container's own bundle does not trust.
cp /etc/ssl/certs/ca-certificates.crt "$RUN/root/etc/ssl/certs/ca-certificates.crt"
# As on an installed system, the host name resolves (else sudo warns on every call).
printf '127.0.0.1 localhost\n127.0.1.1 voicebox-test\n::1 localhost ip6-localhost\n' >"$RUN/root/etc/hosts"
if [ "$ARCH" = arm64 ]; then
    # qemu-user rejects clone() with namespace flags, so systemd cannot set up a unit's
    # credentials (243/CREDENTIALS, "Failed to fork off '(sd-mkdcreds)'"). A limit of the
    # emulator, not of the Pi: these units run without LoadCredential under it. The arm64 subset
    # needs no API key (the simulator takes any).
    for unit in systemd-sysusers systemd-tmpfiles-setup systemd-tmpfiles-setup-dev voicebox; do
        mkdir -p "$RUN/root/etc/systemd/system/$unit.service.d"
        printf '[Service]\nLoadCredential=\n' >"$RUN/root/etc/systemd/system/$unit.service.d/qemu-user.conf"
    done
fi

if [ "$MODE" = --unit-suite ]; then
    # The Pi's userland running `make test`'s pytest stage: bootstrap.sh (apt, the venv, wheels or
    # sdists for this architecture), then the suite. Not booted: a plain container is enough.
    limit=${VOICEBOX_SYSTEM_TIMEOUT:-5400}
    # What emulation breaks, not the Pi: qemu-user fakes /proc/self/stat with zero CPU times, and
    # runs 5-10x slower than the tests' waits allow.
    deselect=()
    if [ "$ARCH" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
        deselect=(
            --deselect tests/monitor/test_monitor.py::test_first_cpu_sample_is_primed
            --deselect tests/daemon/test_daemon.py::test_lifecycle_ready_reload_and_sigterm_mid_reply
            --deselect tests/convai/test_memory.py::test_rollovers_leave_no_sessions_links_sockets_or_tasks_behind
        )
        echo "system-test: not run under qemu-user (zero CPU times in its /proc/self/stat; timing):"
        printf '  %s\n' "${deselect[@]}" | grep -v -- --deselect
    fi
    echo "system-test: unit suite in the $ARCH root $ROOT, run in $RUN"
    rc=0
    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0 timeout --kill-after=30 "$limit" \
        systemd-nspawn --quiet --register=no --keep-unit -D "$RUN/root" --chdir=/root/voicebox \
        --machine="voicebox-units-$$" \
        --setenv=DEBIAN_FRONTEND=noninteractive --setenv=LANG=C.UTF-8 \
        bash -c "apt-get update -qq && bash scripts/bootstrap.sh && uname -m &&
                 .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=1800 ${deselect[*]}" \
        </dev/null 2>&1 | tee "$ART/unit-suite.log" || rc=$?
    echo "system-test: $ARCH unit suite finished in $(( $(date +%s) - t0 )) s, exit $rc"
    exit "$rc"
fi

args=(tests/system -p no:cacheprovider -o addopts= -rA)
if [ "$ARCH" = amd64 ]; then
    limit=${VOICEBOX_SYSTEM_TIMEOUT:-1800}
    args+=(--timeout=1200)
else
    limit=${VOICEBOX_SYSTEM_TIMEOUT:-5400}
    args+=(--timeout=4000 -m pi_userland)
fi
echo "system-test: $ARCH root $ROOT (ready in ${t_root} s), run in $RUN, artefacts in $ART"
rc=0
VOICEBOX_SYSTEM_ROOT=$RUN/root VOICEBOX_SYSTEM_ARTEFACTS=$ART VOICEBOX_SYSTEM_ARCH=$ARCH \
    VOICEBOX_SYSTEM_SIM_PORT=$PORT VOICEBOX_SYSTEM_NSPAWN_PIDFILE=$PIDFILE \
    timeout --kill-after=30 "$limit" .venv/bin/python -m pytest "${args[@]}" &
TESTS_PID=$!
wait "$TESTS_PID" || rc=$?   # in the background, so a signal to this script runs cleanup at once
TESTS_PID=""
[ $rc -eq 124 ] && echo "system-test: killed after $limit s" >&2
echo "system-test: $ARCH finished in $(( $(date +%s) - t0 )) s (root ${t_root} s), exit $rc"
exit $rc
}

# All of it is parsed before it runs: editing or checking out this file mid-run changes nothing.
main "$@"
