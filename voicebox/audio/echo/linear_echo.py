"""Linear echo cancellation ahead of AEC3: speexdsp's MDF adaptive filter over a 250 ms tail.

AEC3's own linear filter is short and leaves a long or loud echo to its suppressor, which then
takes a user quieter than that echo for more of it and removes their barge-in with it (bench:
half of the bursts lost where the echo is as loud as the user). MDF first takes tens of dB off
the echo, room tail included, so AEC3's suppressor is left a residual well under the user.
libspeexdsp is the library PulseAudio's echo-cancel module uses (Debian and Raspberry Pi OS:
libspeexdsp1); it is reached through ctypes, six functions. Without it, AEC3 runs alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

TAIL_S = 0.25  # longer tails converged slower on the bench and let echo through at times
PACKAGE = "libspeexdsp1"
_SET_SAMPLING_RATE = 24  # SPEEX_ECHO_SET_SAMPLING_RATE (speex/speex_echo.h)


@functools.cache
def _library() -> ctypes.CDLL | None:
    """libspeexdsp with its prototypes declared, or None when it is not installed."""
    name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    state, i16 = ctypes.c_void_p, ctypes.c_void_p  # pointers: the state, int16 sample arrays
    lib.speex_echo_state_init.restype = state
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_state_destroy.argtypes = [state]
    lib.speex_echo_state_reset.argtypes = [state]
    lib.speex_echo_ctl.argtypes = [state, ctypes.c_int, ctypes.c_void_p]
    lib.speex_echo_cancellation.argtypes = [state, i16, i16, i16]
    return lib


def available() -> bool:
    """True when libspeexdsp can be loaded."""
    return _library() is not None


class LinearEchoFilter:
    """Mic minus the echo MDF predicts from the aligned reference, frame by frame (loop side)."""

    def __init__(self, rate: int, frame: int) -> None:
        lib = _library()
        if lib is None:
            raise RuntimeError(f"libspeexdsp not found (install {PACKAGE})")
        self._lib = lib
        self._frame = frame
        self._state = lib.speex_echo_state_init(frame, round(TAIL_S * rate))
        if not self._state:
            raise RuntimeError("speex_echo_state_init failed")
        r = ctypes.c_int(rate)
        lib.speex_echo_ctl(self._state, _SET_SAMPLING_RATE, ctypes.byref(r))
        self._out: Samples = np.zeros(frame * 8, dtype=np.int16)

    def process(self, near: Samples, far: Samples) -> Samples:
        """near and far: equal lengths, whole frames; the result is valid until the next call."""
        n = len(near) - len(near) % self._frame
        near = np.ascontiguousarray(near[:n])
        far = np.ascontiguousarray(far[:n])
        if len(self._out) < n:
            self._out = np.zeros(n, dtype=np.int16)
        out = self._out
        step = self._frame * near.itemsize
        a, b, c = near.ctypes.data, far.ctypes.data, out.ctypes.data
        for i in range(n // self._frame):
            self._lib.speex_echo_cancellation(self._state, a + i * step, b + i * step, c + i * step)
        return out[:n]

    def reset(self) -> None:
        self._lib.speex_echo_state_reset(self._state)

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.speex_echo_state_destroy(state)
