"""Reading music files into a `Piece`: notes, tempo map and bar lines, checked against the limits.

symusic parses MIDI (measured 170x faster than mido here; see README "Why symusic"), but it is
a C++ parser that trusts the file, so every file first passes a structural check of its chunks
in Python: a broken file gets a one-line reason instead of a crash or a silent half-parse.
MusicXML, ABC and kern files are converted through music21 (imported only for them).
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emocompose.errors import InputError, LimitError

# Limits that protect the machine. Each can be lifted by an environment variable of the same name.
LIMITS = {
    "EMOCOMPOSE_MAX_FILE_MB": 16,  # a 16 MB MIDI holds millions of notes; bigger is almost surely junk
    "EMOCOMPOSE_MAX_NOTES": 200_000,
    "EMOCOMPOSE_MAX_BARS": 4_000,  # about two hours of 4/4 at 120 BPM
    "EMOCOMPOSE_MAX_TRACKS": 512,
    "EMOCOMPOSE_MAX_AUDIO_MINUTES": 20,  # rendering holds the whole mix in memory: 20 minutes is 0.5 GB
}
MIN_BPM, MAX_BPM = 4.0, 1000.0  # tempos outside are corrupt files, not music
MAX_TPQ = 32_767  # the largest tick resolution a standard MIDI header can state

SCORE_SUFFIXES = {".musicxml", ".xml", ".mxl", ".abc", ".krn"}
MIDI_SUFFIXES = {".mid", ".midi", ".smf", ".kar"}

# LPD-5 track classes (Dong et al., MuseGAN, 2018). Programs are General MIDI (0-based).
# choice: organ and chromatic percussion count as piano, and every family after ensemble
# (brass, reed, pipe, synth, ethnic, effects) as strings, LPD-5's "merge the rest" track.
TRACKS = ("Drums", "Piano", "Guitar", "Bass", "Strings")
DRUMS, PIANO, GUITAR, BASS, STRINGS = range(5)


def limit(name: str) -> int:
    return int(os.environ.get(name, LIMITS[name]))


def track_class(program: int, is_drum: bool) -> int:
    if is_drum:
        return DRUMS
    if program < 24:
        return PIANO
    if program < 32:
        return GUITAR
    if program < 40:
        return BASS
    return STRINGS


@dataclass
class Piece:
    """Notes in ticks (numpy, in the file's order) with the file's tempo map and bar lines."""

    tpq: int
    onset: np.ndarray  # int64 ticks
    duration: np.ndarray  # int64 ticks, >= 1
    pitch: np.ndarray  # int64 0..127
    velocity: np.ndarray  # int64 1..127
    track: np.ndarray  # int64 index into TRACKS
    tempo_ticks: np.ndarray  # int64, first is 0
    tempo_bpm: np.ndarray  # float64 quarter notes per minute
    bars: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # n_bars + 1 boundaries
    bar_positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # grid steps per bar
    bar_bpm: np.ndarray | None = None  # tempo of each bar when bars come from a beat file
    source: str = ""
    programs: dict = field(default_factory=dict)  # track class -> first GM program seen

    @property
    def n_bars(self) -> int:
        return len(self.bar_positions)

    def seconds(self, ticks: np.ndarray) -> np.ndarray:
        """Tick positions to seconds through the tempo map."""
        ticks = np.asarray(ticks, dtype=np.float64)
        sec_per_tick = 60.0 / (self.tempo_bpm * self.tpq)
        starts = np.concatenate([[0.0], np.cumsum(np.diff(self.tempo_ticks) * sec_per_tick[:-1])])
        i = np.searchsorted(self.tempo_ticks, ticks, side="right") - 1
        i = np.minimum(np.maximum(i, 0), len(self.tempo_ticks) - 1)
        return starts[i] + (ticks - self.tempo_ticks[i]) * sec_per_tick[i]

    def ticks(self, seconds: np.ndarray) -> np.ndarray:
        """Seconds to (fractional) ticks: the inverse of `seconds`."""
        seconds = np.asarray(seconds, dtype=np.float64)
        starts = self.seconds(self.tempo_ticks)
        i = np.minimum(np.maximum(np.searchsorted(starts, seconds, side="right") - 1, 0), len(starts) - 1)
        return self.tempo_ticks[i] + (seconds - starts[i]) * self.tempo_bpm[i] * self.tpq / 60.0


# ---------------------------------------------------------------------------------------------
# Reading bytes


def read_input(path: str | os.PathLike) -> bytes:
    """Read a file (or stdin for '-') within the size limit."""
    max_bytes = limit("EMOCOMPOSE_MAX_FILE_MB") * 1024 * 1024
    name = str(path)
    if name == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
    else:
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > max_bytes:
                    raise LimitError(
                        f"file is {size / 2**20:.1f} MB, over the {max_bytes // 2**20} MB limit "
                        "(raise it with EMOCOMPOSE_MAX_FILE_MB)",
                        name,
                    )
                # read what fstat promised (plus one byte, to see a file growing past the limit):
                # asking for the limit itself allocates 16 MB per file and costs more than parsing
                data = fh.read(min(size, max_bytes) + 1 if size else max_bytes + 1)  # size 0: a pipe
        except FileNotFoundError:
            raise InputError("no such file", name) from None
        except IsADirectoryError:
            raise InputError("is a folder, not a file", name) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", name) from None
    if len(data) > max_bytes:
        raise LimitError(
            f"input is over the {max_bytes // 2**20} MB limit (raise it with EMOCOMPOSE_MAX_FILE_MB)", name
        )
    return data


def check_midi_structure(data: bytes, name: str) -> None:
    """Walk the chunk structure of a Standard MIDI File and refuse what symusic must not see."""
    if len(data) == 0:
        raise InputError("empty file", name)
    if data[:4] != b"MThd":
        if data[:4] == b"RIFF":
            raise InputError("RIFF-wrapped MIDI (.rmi) is not supported; extract the MIDI data first", name)
        raise InputError("not a MIDI file (no MThd header)", name)
    if len(data) < 14:
        raise InputError("truncated MIDI header", name)
    hlen, fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    if hlen < 6:
        raise InputError(f"corrupt MIDI header (length {hlen})", name)
    if fmt == 2:
        raise InputError("MIDI format 2 (independent sequences) is not supported; save it as format 0 or 1", name)
    if fmt > 2:
        raise InputError(f"unknown MIDI format {fmt}", name)
    if division & 0x8000:
        raise InputError("SMPTE time division is not supported; save the file with ticks per beat", name)
    if division == 0:
        raise InputError("corrupt MIDI header: 0 ticks per beat", name)
    if ntracks == 0:
        raise InputError("MIDI file declares no tracks", name)
    if ntracks > limit("EMOCOMPOSE_MAX_TRACKS"):
        raise LimitError(
            f"{ntracks} tracks, over the limit of {limit('EMOCOMPOSE_MAX_TRACKS')} "
            "(raise it with EMOCOMPOSE_MAX_TRACKS)",
            name,
        )
    pos, found = 8 + hlen, 0
    while pos < len(data) and found < ntracks:
        if len(data) - pos < 8:
            break  # trailing garbage shorter than a chunk header is tolerated
        kind, length = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        if pos + 8 + length > len(data):
            if kind == b"MTrk":
                raise InputError(
                    f"truncated: track {found + 1} declares {length} bytes but only "
                    f"{len(data) - pos - 8} remain",
                    name,
                )
            break
        if kind == b"MTrk":
            found += 1
        elif not all(32 <= c < 127 for c in kind):
            raise InputError(f"corrupt chunk at byte {pos}", name)
        pos += 8 + length
    if found < ntracks:
        raise InputError(f"truncated: header declares {ntracks} tracks, {found} found", name)


def midi_bytes(path: str | os.PathLike, data: bytes | None = None) -> bytes:
    """A file's MIDI, read within the size limit (unless `data` holds it already), a score
    converted through music21 (or its conversion kept from before, `score_cache`), and its
    chunks checked."""
    name = str(path)
    if data is None:
        data = read_input(path)
    suffix = os.path.splitext(name)[1].lower()
    if suffix in SCORE_SUFFIXES:
        from emocompose.score_cache import converted

        score = data
        data = converted(score, suffix, lambda: _score_to_midi_bytes(score, name), lambda midi: _valid(midi, name))
    check_midi_structure(data, name)
    return data


def _valid(data: bytes, name: str) -> bool:
    """Whether a kept conversion is whole (a damaged one is converted again)."""
    try:
        check_midi_structure(data, name)
        return True
    except InputError:
        return False


def _score_to_midi_bytes(data: bytes, name: str) -> bytes:
    """MusicXML, ABC or kern to MIDI bytes through music21 (a convenience; slow but thorough)."""
    import tempfile

    try:
        import music21
    except ImportError:  # pragma: no cover - music21 is a dependency
        raise InputError("reading scores needs music21 (pip install music21)", name) from None
    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"score{suffix}"
        src.write_bytes(data)
        try:
            score = music21.converter.parse(str(src))
            out = Path(tmp) / "score.mid"
            score.write("midi", fp=str(out))
            return out.read_bytes()
        except Exception as exc:  # music21 raises many unrelated types for bad scores
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"music21 could not read this score: {reason[:200]}", name) from None


# ---------------------------------------------------------------------------------------------
# Building a Piece


def load_piece(
    path: str | os.PathLike,
    *,
    data: bytes | None = None,
    beats: str = "auto",
    per_quarter: int = 4,
    max_positions: int = 32,
) -> Piece:
    """Read a MIDI (or score) file, check it and compute its bar lines.

    `beats`: "auto" uses a `beat_midi.txt` beside the file when there is one (POP909's layout,
    whose downbeats give the real bars where the file declares 1/4), "ignore" never does.
    """
    name = str(path)
    data = midi_bytes(path, data)
    from symusic import Score

    try:
        score = Score.from_midi(data)
    except Exception as exc:  # symusic raises RuntimeError/ValueError with a C++ message
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"unreadable MIDI: {reason[:200]}", name) from None
    piece = piece_from_score(score, name)
    beat_file = Path(name).with_name("beat_midi.txt") if beats == "auto" and name != "-" else None
    if beat_file is not None and beat_file.is_file():
        bars_from_beat_file(piece, beat_file, per_quarter, max_positions)
    else:
        bars_from_meter(piece, score, per_quarter, max_positions)
    # bars after the one holding the last onset carry nothing (a beat file may run on)
    k = int(np.searchsorted(piece.bars, piece.onset.max(), side="right"))
    k = min(max(k, 1), piece.n_bars)
    piece.bars, piece.bar_positions = piece.bars[: k + 1], piece.bar_positions[:k]
    if piece.bar_bpm is not None:
        piece.bar_bpm = piece.bar_bpm[:k]
    if piece.n_bars > limit("EMOCOMPOSE_MAX_BARS"):
        raise LimitError(
            f"{piece.n_bars} bars, over the limit of {limit('EMOCOMPOSE_MAX_BARS')} "
            "(raise it with EMOCOMPOSE_MAX_BARS)",
            name,
        )
    return piece


def piece_from_score(score, name: str) -> Piece:
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0 or tpq > MAX_TPQ:
        raise InputError(f"absurd resolution: {tpq} ticks per beat", name)
    arrays, classes, counts = [], [], []
    programs: dict[int, int] = {}
    n_notes, max_notes = 0, limit("EMOCOMPOSE_MAX_NOTES")
    for tr in score.tracks:
        arr = tr.notes.numpy()
        n = len(arr["time"])
        if n == 0:
            continue
        n_notes += n
        if n_notes > max_notes:
            raise LimitError(f"over {max_notes} notes (raise the limit with EMOCOMPOSE_MAX_NOTES)", name)
        cls = track_class(int(tr.program), bool(tr.is_drum))
        programs.setdefault(cls, int(tr.program))
        arrays.append(arr)
        classes.append(cls)
        counts.append(n)
    if n_notes == 0:
        raise InputError("contains no notes", name)
    if len(arrays) == 1:
        time, dur, pitch, vel = (arrays[0][k].astype(np.int64) for k in ("time", "duration", "pitch", "velocity"))
    else:
        time, dur, pitch, vel = (np.concatenate([a[k] for a in arrays]).astype(np.int64)
                                 for k in ("time", "duration", "pitch", "velocity"))  # fmt: skip
    track = np.repeat(np.asarray(classes, np.int64), counts)
    if vel.min() <= 0 or time.min() < 0 or pitch.min() < 0:  # three reductions cost less than a mask
        keep = (vel > 0) & (time >= 0) & (pitch >= 0)
        time, dur, pitch, vel, track = time[keep], dur[keep], pitch[keep], vel[keep], track[keep]
    if len(time) == 0:
        raise InputError("contains no sounding notes", name)
    if (track == DRUMS).all():
        raise InputError("contains only drum notes; emocompose needs pitched music", name)
    tempos = score.tempos.numpy()
    t_ticks = tempos["time"].astype(np.int64)
    t_bpm = 60_000_000.0 / np.maximum(tempos["mspq"].astype(np.float64), 1.0)
    bad = (t_bpm < MIN_BPM) | (t_bpm > MAX_BPM)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"absurd tempo {t_bpm[i]:.3g} BPM at tick {t_ticks[i]}", name)
    if len(t_ticks) == 0 or t_ticks[0] > 0:  # MIDI's default tempo until the first tempo event
        t_ticks = np.concatenate([[0], t_ticks])
        t_bpm = np.concatenate([[120.0], t_bpm])
    # several tempo events on one tick: the last one wins
    last = np.ones(len(t_ticks), bool)
    np.not_equal(t_ticks[1:], t_ticks[:-1], out=last[:-1])
    return Piece(
        tpq=tpq,
        onset=time,
        duration=np.maximum(dur, 1),
        pitch=pitch,
        velocity=np.minimum(np.maximum(vel, 1), 127),
        track=track,
        tempo_ticks=t_ticks[last],
        tempo_bpm=t_bpm[last],
        source=name,
        programs=programs,
    )


def _positions_for(quarters, per_quarter: int = 4, max_positions: int = 32):
    """Grid steps of bars lasting `quarters` quarter notes (scalar or array)."""
    q = np.round(np.asarray(quarters, np.float64) * per_quarter)
    return np.minimum(np.maximum(q, 1), max_positions).astype(np.int64)


def _end_tick(piece: Piece) -> int:
    """Bars must cover every onset; a final note's tail does not open new bars."""
    return int(piece.onset.max()) + 1


def _set_bars(piece: Piece, starts: np.ndarray, positions: np.ndarray, bpm: np.ndarray | None) -> None:
    """Bar lines from bar starts (n_bars + 1 values), dropping zero-length bars."""
    b = np.round(starts).astype(np.int64)
    ok = np.diff(b) > 0
    piece.bars = np.concatenate([b[:-1][ok], b[-1:]])
    piece.bar_positions = np.asarray(positions, np.int64)[ok]
    piece.bar_bpm = None if bpm is None else np.asarray(bpm, np.float64)[ok]


def bars_from_meter(piece: Piece, score, per_quarter: int = 4, max_positions: int = 32) -> None:
    """Bar lines from the time signatures (4/4 until the first one).

    A bar has `per_quarter` grid steps per quarter note (16 for 4/4, 12 for 3/4 and 6/8).
    Fallback: a meter longer than `max_positions` steps (longer than 8/4) is cut into 4/4 bars,
    and a time signature that falls inside a bar ends that bar early.
    """
    ts = score.time_signatures.numpy()
    changes = [(0, 4, 4)] + [
        (int(t), int(n), int(d)) for t, n, d in zip(ts["time"], ts["numerator"], ts["denominator"]) if n > 0 and d > 0
    ]
    changes.sort(key=lambda c: c[0])
    end = _end_tick(piece)
    max_bars = limit("EMOCOMPOSE_MAX_BARS")
    starts, positions = [], []
    for i, (start, num, den) in enumerate(changes):
        stop = changes[i + 1][0] if i + 1 < len(changes) else None
        if stop is not None and (stop <= start or start >= end):
            continue
        quarters = num * 4.0 / den
        if quarters * per_quarter > max_positions or quarters * piece.tpq < 1:
            quarters = 4.0
        length = quarters * piece.tpq
        until = end if stop is None else min(stop, end)
        count = int(np.ceil((until - start) / length))
        if sum(map(len, starts)) + count > max_bars:
            raise LimitError(f"over {max_bars} bars (raise the limit with EMOCOMPOSE_MAX_BARS)", piece.source)
        seg = start + np.arange(count) * length
        pos = np.full(count, min(max(round(quarters * per_quarter), 1), max_positions), np.int64)
        if stop is not None and stop < end and count and seg[-1] + length > stop:  # cut short
            pos[-1] = min(max(round((stop - seg[-1]) / piece.tpq * per_quarter), 1), max_positions)
        starts.append(seg)
        positions.append(pos)
        if stop is None or stop >= end:
            starts.append(np.array([seg[-1] + length if count else start]))
            break
    if len(positions) == 1:
        piece.bars = np.round(np.concatenate(starts)).astype(np.int64)  # one meter: nothing to merge
        piece.bar_positions = positions[0]
        piece.bar_bpm = None
    else:
        _set_bars(piece, np.concatenate(starts), np.concatenate(positions), None)


def bars_from_beat_file(piece: Piece, beat_file: Path, per_quarter: int = 4, max_positions: int = 32) -> None:
    """Bar lines at the downbeats of a POP909-style beat file (seconds, beat flag, downbeat flag).

    Each bar gets 4 grid steps per beat between its downbeats and its own tempo, measured from
    the beat times, so that a decoded file keeps the performance's timing bar by bar.
    """
    try:
        rows = np.array(beat_file.read_bytes().split(), dtype=np.float64).reshape(-1, 3)
    except (ValueError, OSError) as exc:
        raise InputError(f"unreadable beat file {beat_file.name} (needs 3 columns: seconds, beat, downbeat): "
                         f"{str(exc)[:80]}", piece.source) from None  # fmt: skip
    beat_sec = rows[:, 0]
    down_idx = np.flatnonzero(rows[:, 2] > 0.5)
    if len(down_idx) < 2:
        return bars_from_meter_fallback(piece, per_quarter)
    beat_ticks = piece.ticks(beat_sec)
    n_beats = np.diff(down_idx)
    starts = [beat_ticks[down_idx[:-1]]]
    positions = [_positions_for(n_beats, per_quarter, max_positions)]
    bpm = [60.0 * n_beats / np.maximum(np.diff(beat_sec[down_idx]), 1e-3)]
    if piece.onset.min() < beat_ticks[down_idx[0]] - 0.5:  # notes before the first downbeat: a pickup bar
        period = (beat_sec[down_idx[1]] - beat_sec[down_idx[0]]) / n_beats[0]
        first = beat_sec[down_idx[0]]
        n = max(int(down_idx[0]), int(round(first / max(period, 1e-3))), 1)
        starts.insert(0, np.array([0.0]))
        positions.insert(0, _positions_for([n], per_quarter, max_positions))
        bpm.insert(0, np.array([60.0 * n / first if first > 0 else float(piece.tempo_bpm[0])]))
    # after the last downbeat, keep the last bar's length until every onset is covered
    last_len = beat_ticks[down_idx[-1]] - beat_ticks[down_idx[-2]]
    t0, end = beat_ticks[down_idx[-1]], _end_tick(piece)
    extra = max(int(np.ceil((end - t0) / max(last_len, 1.0))), 0)
    if extra > limit("EMOCOMPOSE_MAX_BARS"):
        raise LimitError("notes run far past the beat file's last downbeat", piece.source)
    starts.append(t0 + np.arange(extra + 1) * last_len)
    positions.append(np.full(extra, positions[-1][-1]))
    bpm.append(np.full(extra, bpm[-1][-1]))
    _set_bars(piece, np.concatenate(starts), np.concatenate(positions), np.concatenate(bpm))


def bars_from_meter_fallback(piece: Piece, per_quarter: int = 4) -> None:
    """4/4 bars when no meter information can be used."""
    length = 4 * piece.tpq
    n = _end_tick(piece) // length + 1
    piece.bars = np.arange(n + 1, dtype=np.int64) * length
    piece.bar_positions = np.full(n, 4 * per_quarter, np.int64)
    piece.bar_bpm = None
