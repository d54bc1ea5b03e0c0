"""The echo canceller on the capture path: the agent's voice taken out of the mic.

One job per module:
  history.py      the stamped history of a device stream (written by its callback) and the
                  alignment of the far end with the mic from the two streams' stamps
  processor.py    CaptureProcessor (WebRTC AEC3, noise suppression, AGC2, high-pass) and its
                  settings, resolved from the config by `processing_settings`
  linear_echo.py  speexdsp's MDF filter ahead of AEC3
  double_talk.py  the per-frame verdict: is the user talking over the agent?
  gate.py         the mic muted while the canceller is not yet trusted
  leak.py         the leak check: echo the canceller lost, or the user?
  meters.py       ERLE, the echo and voice levels, and the stats reported
  frames.py       the processing rate, its 10 ms frame, per-frame arithmetic
"""
