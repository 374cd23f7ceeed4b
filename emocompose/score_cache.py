"""Scores (MusicXML, ABC, kern) converted to MIDI once and kept for the next time they are read
(`midi.midi_bytes`). music21 takes seconds to write a score's MIDI, and the same seconds each
time: 3.4 s for a 350-bar Haydn quartet movement, 19 s for the ten scores `evaluate` rewrites.

The files live in a folder `scores` under $EMOCOMPOSE_CACHE, else $XDG_CACHE_HOME/emocompose,
else ~/.cache/emocompose; EMOCOMPOSE_CACHE=off keeps nothing. A file is named by a hash of the
score's bytes, its kind and music21's version, so an edited score or another music21 is
converted anew. A cache that cannot
be read or written is passed by: it only ever saves time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

CACHE_ENV = "EMOCOMPOSE_CACHE"
OFF = ("off", "0", "no", "none")


def folder() -> Path | None:
    """Where converted scores are kept (None: nowhere)."""
    where = os.environ.get(CACHE_ENV, "").strip()
    if where.lower() in OFF:
        return None
    if where:
        return Path(where) / "scores"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "emocompose" / "scores"


def converted(data: bytes, kind: str, convert: Callable[[], bytes], valid: Callable[[bytes], bool]) -> bytes:
    """`convert()` for a score of these bytes and kind (its suffix), from the cache when it holds
    a `valid` conversion, else converted now and kept."""
    where = folder()
    if where is None:
        return convert()
    path = where / f"{_key(data, kind)}.mid"
    try:
        kept = path.read_bytes()
        if valid(kept):
            return kept
    except OSError:
        pass
    midi = convert()
    try:
        from emocompose.atomic import write_bytes
        from emocompose.errors import EmocomposeError

        write_bytes(path, midi)
    except (OSError, EmocomposeError):  # a read-only home, a full disk: convert every time instead
        pass
    return midi


def _key(data: bytes, kind: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        music21 = version("music21")
    except PackageNotFoundError:
        music21 = "unknown"
    return hashlib.sha256(f"{kind}\0{music21}\0".encode() + data).hexdigest()
