"""Audio engine: ring buffer, capture and playback threads, devices, resampling, file backends."""
