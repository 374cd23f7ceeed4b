"""Scores converted to MIDI once and read back after (`score_cache`): the same bytes as a
conversion, a new one for other bytes, and a cache that fails never failing a command."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from emocompose import midi, score_cache

CORPUS = Path(importlib.util.find_spec("music21").origin).parent / "corpus"
BACH, CORELLI = CORPUS / "bach" / "bwv66.6.mxl", CORPUS / "corelli" / "opus3no1" / "1grave.xml"


def _no_conversion(data, name):
    raise AssertionError(f"{name} was converted again")


def test_a_score_is_converted_once_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv(score_cache.CACHE_ENV, str(tmp_path))
    first = midi.midi_bytes(BACH)
    assert len(list((tmp_path / "scores").iterdir())) == 1
    monkeypatch.setattr(midi, "_score_to_midi_bytes", _no_conversion)
    assert midi.midi_bytes(BACH) == first
    with pytest.raises(AssertionError, match="converted again"):  # other bytes under the same name: converted
        midi.midi_bytes(BACH, data=CORELLI.read_bytes())


def test_a_damaged_cache_file_is_converted_again_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv(score_cache.CACHE_ENV, str(tmp_path))
    first = midi.midi_bytes(BACH)
    (kept,) = (tmp_path / "scores").iterdir()
    kept.write_bytes(first[: len(first) // 2])
    assert midi.midi_bytes(BACH) == first and kept.read_bytes() == first


def test_a_cache_that_cannot_be_written_is_passed_by(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache's folder should be")  # refused even to root
    monkeypatch.setenv(score_cache.CACHE_ENV, str(blocker))
    assert midi.midi_bytes(BACH)[:4] == b"MThd"


def test_off_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(score_cache.CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert midi.midi_bytes(BACH)[:4] == b"MThd"
    assert not any(tmp_path.iterdir())
