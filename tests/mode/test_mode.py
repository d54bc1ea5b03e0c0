"""The mode chosen at run time: kept over the configured mode it replaced, dropped once the YAML
names another mode, unreadable files ignored with one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from voicebox import mode


def test_a_chosen_mode_wins_until_the_configured_mode_changes(tmp_path: Path) -> None:
    assert mode.load(tmp_path, "push_to_talk") is None
    mode.store(tmp_path, "wake_word", "push_to_talk")
    assert (tmp_path / "mode").read_text() == "wake_word push_to_talk\n"
    assert mode.load(tmp_path, "push_to_talk") == "wake_word"
    assert mode.load(tmp_path, "always_on") is None  # the file's edit wins
    mode.store(tmp_path, "push_to_talk", "push_to_talk")  # back to the configured one
    assert not (tmp_path / "mode").exists()


def test_an_unreadable_mode_file_is_one_line_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "mode").write_text("party push_to_talk\n")
    with caplog.at_level(logging.WARNING):
        assert mode.load(tmp_path, "push_to_talk") is None
    assert "mode.unreadable" in caplog.text and "party" in caplog.text
