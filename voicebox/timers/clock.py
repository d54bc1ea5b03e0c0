"""Whether the wall clock can be trusted yet: the kernel's NTP status (adjtimex), or time.

A Pi has no RTC: it boots with the clock it saved at shutdown (fake-hwclock, systemd-timesyncd's
clock file) until NTP steps it. While the kernel reports the clock unsynchronized (adjtimex
returns TIME_ERROR) and the system has been up less than BOOT_TRUST_S, alarms and timers loaded
from disk are held rather than rung or declared missed; after that an offline box trusts the
clock it has. Where adjtimex cannot be asked, the clock is trusted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time

BOOT_TRUST_S = 900.0
TIME_ERROR = 5  # adjtimex: the clock is not synchronized
_TIMEX_SIZE = 512  # larger than struct timex on every Linux ABI; modes = 0 only reads


@functools.cache
def _libc() -> ctypes.CDLL:
    """Found once: find_library runs ldconfig in a subprocess."""
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def synchronized() -> bool | None:
    """The kernel's view (None: cannot tell)."""
    try:
        libc = _libc()
        buf = ctypes.create_string_buffer(_TIMEX_SIZE)  # zeroed: modes = 0, nothing is set
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


def uptime_s() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def trusted() -> bool:
    return uptime_s() >= BOOT_TRUST_S or synchronized() is not False
