"""The mute's state file: atomic, and the private side when it cannot be read."""

from __future__ import annotations

from pathlib import Path

from voicebox import mute


def test_the_mute_is_kept_atomically_and_an_unreadable_file_counts_as_muted(
    tmp_path: Path,
) -> None:
    assert mute.load(tmp_path) is False
    mute.store(tmp_path / "new", True)
    assert mute.load(tmp_path / "new") is True
    mute.store(tmp_path / "new", False)
    assert mute.load(tmp_path / "new") is False
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["muted"]  # no temp file left
    (tmp_path / "muted").mkdir()  # not a file: cannot be read
    assert mute.load(tmp_path) is True
