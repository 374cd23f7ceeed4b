"""Hostile variants of MIDI files for the fuzz tests and benchmarks/fuzz.py.

Each mutator takes valid MIDI bytes and a numpy Generator and returns broken bytes, aimed at
one weakness of readers: flipped bytes, truncation, lying chunk lengths, running-status abuse,
absurd delta times, huge track counts, absurd meta events, and splices of two files.
"""

from __future__ import annotations

import struct

import numpy as np


def _tracks(data: bytes) -> list[tuple[int, int]]:
    """(start of data, length) of each MTrk chunk found by walking the chunks."""
    out, pos = [], 14
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        if data[pos : pos + 4] == b"MTrk":
            out.append((pos + 8, min(length, len(data) - pos - 8)))
        pos += 8 + length
    return out


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _insert_in_track(data: bytes, rng, payload: bytes) -> bytes:
    """Insert bytes inside a track and fix the track's length, so the chunk walk still holds."""
    tracks = _tracks(data)
    if not tracks:
        return data + payload
    start, length = tracks[int(rng.integers(len(tracks)))]
    # half the time where an event starts (the track's first delta time), else anywhere
    at = start if rng.random() < 0.5 else start + int(rng.integers(0, max(length, 1)))
    out = bytearray(data[:at] + payload + data[at:])
    out[start - 4 : start] = struct.pack(">I", length + len(payload))
    return bytes(out)


def flip_bytes(data, rng):
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 24))):
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
    return bytes(b)


def truncate(data, rng):
    return data[: int(rng.integers(0, len(data)))]


def chunk_length(data, rng):
    tracks = _tracks(data)
    if not tracks:
        return data
    start, length = tracks[int(rng.integers(len(tracks)))]
    new = int(rng.choice([0, 1, length - 1, length + 1, length * 2, 2**31 - 1, 2**32 - 1]))
    b = bytearray(data)
    b[start - 4 : start] = struct.pack(">I", max(new, 0) % 2**32)
    return bytes(b)


def running_status(data, rng):
    """Data bytes with no status before them, or a status byte replaced by data."""
    if rng.random() < 0.5:
        return _insert_in_track(data, rng, bytes([0x00]) + bytes(rng.integers(0, 128, int(rng.integers(1, 40)), dtype=np.uint8)))
    b = bytearray(data)
    status = [i for i in range(14, len(b)) if 0x80 <= b[i] <= 0xEF]
    for i in rng.choice(status, size=min(len(status), 8), replace=False) if status else []:
        b[int(i)] &= 0x7F
    return bytes(b)


def delta_times(data, rng):
    """Huge or maximal variable-length delta times before a note or in place of one."""
    delta = _vlq(int(rng.choice([0x0FFFFFFF, 2**27, 10**7, 480 * 10**5])))
    if rng.random() < 0.3:
        delta = b"\xff\xff\xff\xff\x7f"  # longer than the 4 bytes the standard allows
    note = bytes([0x90, int(rng.integers(128)), 100]) + delta + bytes([0x80, 60, 0])
    return _insert_in_track(data, rng, delta + note)


def track_count(data, rng):
    b = bytearray(data)
    b[10:12] = struct.pack(">H", int(rng.choice([0, 2, 255, 4096, 65535])))
    if rng.random() < 0.5 and _tracks(data):  # and really repeat a track many times
        start, length = _tracks(data)[0]
        chunk = data[start - 8 : start + length]
        b += chunk * int(rng.integers(50, 400))
    return bytes(b)


def header(data, rng):
    b = bytearray(data)
    field = int(rng.integers(3))
    if field == 0:
        b[8:10] = struct.pack(">H", int(rng.choice([2, 3, 255])))  # format
    elif field == 1:
        b[12:14] = struct.pack(">H", int(rng.choice([0, 1, 0x7FFF, 0xE728])))  # division, SMPTE
    else:
        b[4:8] = struct.pack(">I", int(rng.choice([0, 5, 7, 1000, 2**32 - 1])))  # header length
    return bytes(b)


def meta_events(data, rng):
    """Tempo 0 or absurd, time signatures with 0 or 255 beats, metas claiming huge lengths."""
    choice = int(rng.integers(4))
    if choice == 0:
        ev = b"\x00\xff\x51\x03" + bytes(rng.choice([[0, 0, 0], [0, 0, 1], [255, 255, 255]]).astype(np.uint8))
    elif choice == 1:
        ev = b"\x00\xff\x58\x04" + bytes([int(rng.choice([0, 1, 255])), int(rng.choice([0, 2, 31, 255])), 24, 8])
    elif choice == 2:
        ev = b"\x00\xff\x01" + _vlq(2**27) + b"text"
    else:
        ev = b"\x00\xf0" + _vlq(int(rng.integers(0, 2**20))) + b"\xf7"
    return _insert_in_track(data, rng, ev)


def splice(data, rng, other: bytes | None = None):
    other = other or data
    a, b = int(rng.integers(len(data))), int(rng.integers(len(other)))
    return data[:a] + other[b:]


def garbage(data, rng):
    """The header kept, random bytes after it."""
    return data[:14] + bytes(rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8))


MUTATORS = (flip_bytes, truncate, chunk_length, running_status, delta_times, track_count, header, meta_events,
            splice, garbage)  # fmt: skip


def mutate(data: bytes, rng: np.random.Generator, n: int = 1) -> tuple[str, bytes]:
    """Apply `n` random mutators in turn; returns their names and the bytes."""
    names = []
    for _ in range(n):
        m = MUTATORS[int(rng.integers(len(MUTATORS)))]
        names.append(m.__name__)
        data = m(data, rng) if data else data
    return "+".join(names), data


def outcome(data: bytes, name: str = "fuzz.mid") -> str:
    """Run the whole reading path (parse, bars, quantise, tokens, features, back to MIDI) on
    one input: "ok", or "refused" for a clean EmocomposeError. Any other exception propagates."""
    from emocompose.errors import EmocomposeError
    from emocompose.features import describe
    from emocompose.tokenizer import Tokenizer

    tok = _TOK.setdefault("tok", Tokenizer())
    try:
        piece = tok.load(name, data=data)
        grid = tok.grid(piece)
        ids, _ = tok.encode(grid)
        describe(grid, tok.config, piece)
        tok.to_midi(tok.decode(ids))
        return "ok"
    except EmocomposeError as exc:
        msg = str(exc)
        assert "\n" not in msg and name in msg, msg
        return "refused"


_TOK: dict = {}
