"""REMI tokens: where a bar of notes becomes token ids, and back.

A bar is  Bar-P  Tempo-b  ( Position-p  [Tempo-b]  (Pitch-T-n  Velocity-T-v  Duration-T-d)* )*
where P is the bar's number of grid steps (16 for 4/4: a Bar token also states the meter),
T one of the five LPD-5 track classes, notes at one position sorted by track then pitch.
Every bar repeats its tempo so that a bar can be decoded (and generated) without its history.
A piece ends with EOS; PAD fills batches.

The path is:  Piece --quantize--> Grid --grid_to_ids--> ids --ids_to_grid--> Grid --grid_to_score--> MIDI
(`grid_to_score` lives with the Grid, in `grid`).
The Grid (notes on the token grid) is also what `features` reads, so features and tokens
always agree on where a note is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from emocompose.errors import ModelError
from emocompose.grid import Grid, cumsum0, grid_to_score
from emocompose.midi import TRACKS, Piece

VOCAB_VERSION = 1
# choice: 32 duration bins in grid steps: every step to a whole note, then coarser to 4 bars
DEFAULT_DURATIONS = tuple(range(1, 17)) + tuple(range(18, 33, 2)) + tuple(range(36, 65, 4))

# token kinds
PAD_KIND, EOS_KIND, BAR, POSITION, TEMPO, PITCH, VELOCITY, DURATION = range(8)


@dataclass(frozen=True)
class TokenizerConfig:
    positions_per_quarter: int = 4  # 16 grid steps in a 4/4 bar
    max_bar_positions: int = 32  # bars up to 8/4; longer meters fall back to 4/4 bars
    tempo_bins: int = 48  # geometric, about 5.7% apart
    tempo_min: float = 24.0
    tempo_max: float = 320.0
    velocity_bins: int = 32
    duration_bins: tuple[int, ...] = DEFAULT_DURATIONS
    max_bar_tokens: int = 128  # L: the model's per-bar segment length (model.md section 2)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["duration_bins"] = list(self.duration_bins)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        d = dict(d)
        d["duration_bins"] = tuple(d["duration_bins"])
        return cls(**d)

    @cached_property
    def tempo_values(self) -> np.ndarray:
        return self.tempo_min * (self.tempo_max / self.tempo_min) ** (np.arange(self.tempo_bins) / (self.tempo_bins - 1))

    def tempo_bin(self, bpm: np.ndarray) -> np.ndarray:
        x = np.log(np.asarray(bpm, np.float64) / self.tempo_min) / np.log(self.tempo_max / self.tempo_min)
        return np.minimum(np.maximum(np.round(x * (self.tempo_bins - 1)), 0), self.tempo_bins - 1).astype(np.int64)

    def velocity_bin(self, velocity: np.ndarray) -> np.ndarray:
        """Bin of MIDI velocities (any ints; clipped to 1..127)."""
        return self._velocity_table[np.minimum(np.maximum(np.asarray(velocity, np.int64), 1), 127)]

    @cached_property
    def _velocity_table(self) -> np.ndarray:
        v = np.maximum(np.arange(128), 1)
        return np.minimum((v - 1) * self.velocity_bins // 127, self.velocity_bins - 1)

    def velocity_value(self, b: np.ndarray) -> np.ndarray:
        return np.clip(np.round(1 + (np.asarray(b) + 0.5) * 127 / self.velocity_bins), 1, 127).astype(np.int64)

    @cached_property
    def duration_array(self) -> np.ndarray:
        return np.asarray(self.duration_bins, np.int64)

    @cached_property
    def _duration_table(self) -> np.ndarray:
        """Bin for each m = ceil(2 * steps): the bin edges are half-integers (midpoints of integer
        bins), so the nearest bin depends on steps only through m, and a table lookup replaces
        a float binary search per note."""
        bins = self.duration_array
        edges2 = bins[1:] + bins[:-1]  # twice each edge
        return np.searchsorted(edges2, np.arange(edges2[-1] + 2), side="left")

    @cached_property
    def fit_table(self) -> np.ndarray:
        """For a gap of g whole grid steps (0..longest bin), the largest bin not longer (0 if none)."""
        g = np.arange(self.duration_array[-1] + 1)
        return np.maximum(np.searchsorted(self.duration_array, g, side="right") - 1, 0)

    def duration_bin(self, steps: np.ndarray) -> np.ndarray:
        """Nearest duration bin to a length in (fractional, positive) grid steps; a tie goes to
        the shorter bin."""
        table = self._duration_table
        m = np.ceil(np.asarray(steps, np.float64) * 2)
        return table[np.minimum(m, len(table) - 1).astype(np.int64)]


class Vocab:
    """Token names and ids. Ids of a kind are contiguous, so encoding is arithmetic."""

    def __init__(self, config: TokenizerConfig | None = None):
        self.config = c = config or TokenizerConfig()
        names = ["PAD", "EOS"]
        kinds, values, tracks = [PAD_KIND, EOS_KIND], [0, 0], [-1, -1]

        def add(kind: int, items: list[tuple[str, int, int]]) -> int:
            start = len(names)
            for name, value, track in items:
                names.append(name)
                kinds.append(kind)
                values.append(value)
                tracks.append(track)
            return start

        self.bar0 = add(BAR, [(f"Bar-{p}", p, -1) for p in range(1, c.max_bar_positions + 1)])
        self.pos0 = add(POSITION, [(f"Position-{p}", p, -1) for p in range(c.max_bar_positions)])
        self.tempo0 = add(TEMPO, [(f"Tempo-{round(v)}", i, -1) for i, v in enumerate(c.tempo_values)])
        self.pitch0 = add(PITCH, [(f"Pitch-{t}-{p}", p, ti) for ti, t in enumerate(TRACKS) for p in range(128)])
        vel = c.velocity_value(np.arange(c.velocity_bins))
        self.vel0 = add(VELOCITY, [(f"Velocity-{t}-{v}", i, ti) for ti, t in enumerate(TRACKS) for i, v in enumerate(vel)])
        self.dur0 = add(
            DURATION, [(f"Duration-{t}-{d}", i, ti) for ti, t in enumerate(TRACKS) for i, d in enumerate(c.duration_bins)]
        )
        self.names = names
        self.ids = {n: i for i, n in enumerate(names)}
        self.kind = np.asarray(kinds, np.int64)
        self.value = np.asarray(values, np.int64)
        self.track = np.asarray(tracks, np.int64)
        self.pad, self.eos = 0, 1

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def fingerprint(self) -> str:
        """Names every token in order: two vocabularies with one fingerprint are the same."""
        payload = json.dumps({"version": VOCAB_VERSION, "tokens": self.names}).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "version": VOCAB_VERSION,
            "fingerprint": self.fingerprint,
            "config": self.config.to_dict(),
            "tokens": self.names,
        }

    @classmethod
    def from_dict(cls, d: dict, what: str = "this file") -> "Vocab":
        """Rebuild a saved vocabulary, refusing one this version of emocompose cannot read."""
        if d.get("version") != VOCAB_VERSION:
            raise ModelError(
                f"{what} uses token vocabulary version {d.get('version')}, this emocompose reads version "
                f"{VOCAB_VERSION}; re-run `emocompose preprocess` (or retrain) with this version"
            )
        vocab = cls(TokenizerConfig.from_dict(d["config"]))
        if vocab.fingerprint != d.get("fingerprint") or vocab.names != d.get("tokens"):
            raise ModelError(
                f"{what} was made with a different token vocabulary ({d.get('fingerprint')}, this one is "
                f"{vocab.fingerprint}); re-run `emocompose preprocess` (or retrain) with this version"
            )
        return vocab

    def bar_token(self, positions: int) -> int:
        return self.bar0 + positions - 1


# ---------------------------------------------------------------------------------------------
# Piece -> Grid (numpy throughout; the helpers avoid np.r_ and np.clip, whose per-call overhead
# was a third of the tokenizer's time on a typical file)


_EMPTY = np.zeros(0, np.int64)


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """True where a run of equal keys begins."""
    out = np.empty(len(sorted_keys), bool)
    out[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=out[1:])
    return out


def quantize(piece: Piece, config: TokenizerConfig) -> Grid:
    """Snap every note onto its bar's grid; notes that land on one (step, track, pitch) merge."""
    bars, P = piece.bars, piece.bar_positions
    n_bars = len(P)
    length = bars[1] - bars[0]
    uniform = bool((P == P[0]).all() and (bars[1:] - bars[:-1] == length).all())
    if uniform:
        # one meter throughout (most files): a bar is a division away, no search per note
        b = np.minimum(np.maximum((piece.onset - bars[0]) // length, 0), n_bars - 1)
        step = length / P[0]
        Pb = P[0]
        pos = np.rint((piece.onset - bars[0] - b * length) / step).astype(np.int64)
    else:
        b = np.minimum(np.maximum(np.searchsorted(bars, piece.onset, side="right") - 1, 0), n_bars - 1)
        start = bars[b]
        Pb = P[b]
        step = (bars[b + 1] - start) / Pb
        pos = np.rint((piece.onset - start) / step).astype(np.int64)
    over = pos >= Pb  # rounds onto the next bar line
    if over.any():
        nxt = over & (b + 1 < n_bars)
        b = np.where(nxt, b + 1, b)
        pos = np.where(nxt, 0, np.where(over, P[b] - 1, pos))
    dur = config.duration_bin(piece.duration / step)
    vel = config.velocity_bin(piece.velocity)
    at = (b * P[0] if uniform else cumsum0(P)[b]) + pos  # grid steps from the start
    # de-duplicate (step, track, pitch), keeping the loudest: one composite sort key
    cell = (at * 8 + piece.track) * 128 + piece.pitch
    order = np.argsort(cell * 128 + (127 - vel), kind="stable")
    o = order[_run_starts(cell[order])]
    b, pos, track, pitch, vel, at = b[o], pos[o], piece.track[o], piece.pitch[o], vel[o], at[o]
    dur = _fit_durations(config, at, track, pitch, dur[o])

    if piece.bar_bpm is not None:
        bar_tempo = config.tempo_bin(piece.bar_bpm)
        t_bar = t_pos = t_bin = np.zeros(0, np.int64)
    else:
        ti = np.searchsorted(piece.tempo_ticks, bars[:-1], side="right") - 1
        bar_tempo = config.tempo_bin(piece.tempo_bpm)[ti]  # bin the few tempos, not every bar
        t_bar, t_pos, t_bin = _mid_bar_tempos(piece, config, bar_tempo)
    return Grid(P.copy(), bar_tempo, b, pos, track, pitch, vel, dur, t_bar, t_pos, t_bin, dict(piece.programs))


def _fit_durations(config, at, track, pitch, dur):
    """Shorten a note that would sound into the next onset of its own pitch and track.

    MIDI cannot hold two overlapping notes of one pitch on one channel: a player (and any
    parser) cuts the first at the second's onset. Cutting here keeps tokens -> MIDI -> tokens exact.
    """
    bins = config.duration_array
    voice = (track * 128 + pitch).astype(np.int16)
    order = np.argsort(voice, kind="stable")  # notes come sorted by time: a radix sort keeps that
    v, a = voice[order], at[order]
    gap = np.full(len(v), bins[-1])
    np.copyto(gap[:-1], np.minimum(a[1:] - a[:-1], bins[-1]), where=v[1:] == v[:-1])
    out = dur.copy()
    out[order] = np.minimum(dur[order], config.fit_table[gap])  # largest bin <= gap
    return out


def _mid_bar_tempos(piece: Piece, config: TokenizerConfig, bar_tempo: np.ndarray):
    """Tempo changes inside bars, on the grid, kept only where the tempo bin changes.

    Several changes that round onto one grid step: the last wins. A change is kept when its bin
    differs from the one before it in its bar (the bar's own tempo for the first)."""
    bars, P = piece.bars, piece.bar_positions
    ticks = piece.tempo_ticks
    if len(ticks) == 1:  # one tempo for the whole piece: nothing inside bars
        return _EMPTY, _EMPTY, _EMPTY
    inside = (ticks > bars[0]) & (ticks < bars[-1])
    t, bpm = ticks[inside], piece.tempo_bpm[inside]
    b = np.searchsorted(bars, t, side="right") - 1
    p = np.rint((t - bars[b]) * P[b] / (bars[b + 1] - bars[b])).astype(np.int64)
    on_grid = (p > 0) & (p < P[b])  # p = 0 or P: on a bar line, where the bar's tempo says it
    b, p, tb = b[on_grid], p[on_grid], config.tempo_bin(bpm[on_grid])
    if not len(b):
        return _EMPTY, _EMPTY, _EMPTY
    key = cumsum0(P)[b] + p  # grid steps from the start
    last = np.append(key[1:] != key[:-1], True)
    b, p, tb = b[last], p[last], tb[last]
    before = np.where(np.append(True, b[1:] != b[:-1]), bar_tempo[b], np.append(-1, tb[:-1]))
    keep = tb != before
    return b[keep], p[keep], tb[keep]


# ---------------------------------------------------------------------------------------------
# Grid <-> ids


def grid_to_ids(grid: Grid, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of all bars (no EOS) and the offset of each bar (n_bars + 1 entries).

    No sort: every token's index follows from counts. A bar costs 2 tokens (Bar, Tempo), an
    occupied grid step 1 (Position) + 1 if the tempo changes there + 3 per note.
    """
    c = vocab.config
    nb, n = grid.n_bars, grid.n_notes
    note_key = grid.onsets  # notes are sorted by bar, step, track, pitch
    runs = _run_starts(note_key)  # a note that opens a grid step
    bars_before = 2 * np.arange(nb)
    notes_before = np.searchsorted(grid.bar, np.arange(nb))  # notes in earlier bars
    if not len(grid.tempo_bar):
        # the usual case, no tempo change inside a bar: a note's index is 2 per bar up to its
        # own, 1 per grid step up to its own (its Position), 3 per earlier note
        steps_upto = cumsum0(runs)
        note_off = 2 * (grid.bar + 1) + steps_upto[1:] + 3 * np.arange(n)
        pos_off, step_pos = note_off[runs] - 1, grid.pos[runs]
        bar_off = bars_before + steps_upto[notes_before] + 3 * notes_before
        out = np.empty(2 * nb + int(steps_upto[-1]) + 3 * n, np.int64)
    else:
        starts = grid.bar_starts
        tempo_key = starts[grid.tempo_bar] + grid.tempo_pos
        steps = np.concatenate((note_key[runs], tempo_key))
        steps.sort(kind="stable")  # two sorted runs: a merge
        steps = steps[_run_starts(steps)]
        first_note = np.searchsorted(note_key, steps)  # each step's first note
        n_notes = np.searchsorted(note_key, steps, side="right") - first_note
        has_tempo = tempo_key[np.minimum(np.searchsorted(tempo_key, steps), len(tempo_key) - 1)] == steps
        before = cumsum0(1 + has_tempo + 3 * n_notes)  # tokens of all steps before each step
        step_bar = np.searchsorted(starts, steps, side="right") - 1
        pos_off, step_pos = 2 * (step_bar + 1) + before[:-1], steps - starts[step_bar]
        bar_off = bars_before + before[np.searchsorted(step_bar, np.arange(nb))]
        out = np.empty(2 * nb + int(before[-1]), np.int64)
        k = np.searchsorted(steps, note_key)  # each note's step
        note_off = pos_off[k] + 1 + has_tempo[k] + 3 * (np.arange(n) - first_note[k])
        out[pos_off[has_tempo] + 1] = vocab.tempo0 + grid.tempo_bin[np.searchsorted(tempo_key, steps[has_tempo])]
    out[bar_off] = vocab.bar0 + grid.bar_positions - 1
    out[bar_off + 1] = vocab.tempo0 + grid.bar_tempo
    out[pos_off] = vocab.pos0 + step_pos
    out[note_off] = vocab.pitch0 + grid.track * 128 + grid.pitch
    out[note_off + 1] = vocab.vel0 + grid.track * c.velocity_bins + grid.vel
    out[note_off + 2] = vocab.dur0 + grid.track * len(c.duration_bins) + grid.dur
    offsets = np.empty(nb + 1, np.int64)
    offsets[:-1], offsets[-1] = bar_off, len(out)
    return out, offsets


def ids_to_grid(ids: np.ndarray, vocab: Vocab) -> Grid:
    """Read tokens back into a Grid. Tokens out of the grammar are skipped, never guessed."""
    c = vocab.config
    kinds, values, tracks = vocab.kind, vocab.value, vocab.track
    bar_positions: list[int] = []
    bar_tempo: list[int] = []
    notes: list[tuple[int, int, int, int, int, int]] = []
    tempos: list[tuple[int, int, int]] = []
    pos = -1
    pending: list[int] = []  # [track, pitch] then velocity
    for t in np.asarray(ids, np.int64).tolist():
        k = kinds[t] if 0 <= t < len(kinds) else PAD_KIND
        if k == EOS_KIND:
            break
        if k == BAR:
            bar_positions.append(int(values[t]))
            bar_tempo.append(-1)
            pos, pending = -1, []
        elif not bar_positions or k == PAD_KIND:
            continue
        elif k == TEMPO:
            if pos < 0:
                bar_tempo[-1] = int(values[t])
            else:
                tempos.append((len(bar_positions) - 1, pos, int(values[t])))
        elif k == POSITION:
            if values[t] < bar_positions[-1] and values[t] > pos:
                pos = int(values[t])
            pending = []
        elif pos < 0:
            continue
        elif k == PITCH:
            pending = [int(tracks[t]), int(values[t])]
        elif k == VELOCITY and len(pending) == 2 and tracks[t] == pending[0]:
            pending.append(int(values[t]))
        elif k == DURATION and len(pending) == 3 and tracks[t] == pending[0]:
            notes.append((len(bar_positions) - 1, pos, pending[0], pending[1], pending[2], int(values[t])))
            pending = []
        else:
            pending = []
    # a bar without a Tempo token keeps the tempo before it (120 BPM at the start)
    default = int(c.tempo_bin(120.0))
    for i, tb in enumerate(bar_tempo):
        if tb < 0:
            bar_tempo[i] = bar_tempo[i - 1] if i else default
    n = np.asarray(notes, np.int64).reshape(-1, 6)
    order = np.lexsort((n[:, 3], n[:, 2], n[:, 1], n[:, 0]))
    n = n[order]
    tp = np.asarray(tempos, np.int64).reshape(-1, 3)
    return Grid(np.asarray(bar_positions, np.int64), np.asarray(bar_tempo, np.int64),
                n[:, 0], n[:, 1], n[:, 2], n[:, 3], n[:, 4], n[:, 5], tp[:, 0], tp[:, 1], tp[:, 2])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The public face: a Tokenizer bundling config and vocabulary


class Tokenizer:
    """Piece <-> token ids with one config and vocabulary. Callable from Python as the CLI uses it."""

    def __init__(self, config: TokenizerConfig | None = None):
        self.config = config or TokenizerConfig()
        self.vocab = Vocab(self.config)

    def load(self, path, *, data: bytes | None = None, beats: str = "auto") -> Piece:
        from emocompose.midi import load_piece

        return load_piece(path, data=data, beats=beats, per_quarter=self.config.positions_per_quarter,
                          max_positions=self.config.max_bar_positions)  # fmt: skip

    def grid(self, piece: Piece) -> Grid:
        return quantize(piece, self.config)

    def encode(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        return grid_to_ids(grid, self.vocab)

    def decode(self, ids: np.ndarray) -> Grid:
        return ids_to_grid(ids, self.vocab)

    def to_midi(self, grid: Grid) -> bytes:
        return grid_to_score(grid, self.config).dumps_midi()

    def names(self, ids: np.ndarray) -> list[str]:
        return [self.vocab.names[i] for i in np.asarray(ids).tolist()]

    def to_json(self, ids: np.ndarray, offsets: np.ndarray, source: str = "") -> str:
        """The tokens file of `emocompose tokenize`: names and ids (ending with EOS), bar offsets,
        and the vocabulary's version and fingerprint, so another vocabulary can refuse it."""
        ids = np.append(ids, self.vocab.eos)
        return json.dumps({
            "source": source, "vocab_version": VOCAB_VERSION, "vocab_fingerprint": self.vocab.fingerprint,
            "bars": len(offsets) - 1, "bar_offsets": np.asarray(offsets).tolist(),
            "tokens": self.names(ids), "ids": ids.tolist(),
        }) + "\n"  # fmt: skip

    def from_json(self, text: str, name: str = "tokens") -> np.ndarray:
        """Token ids from a tokens file; a file of another vocabulary is refused.

        Names win over ids when both are present (they survive edits by hand)."""
        from emocompose.errors import InputError

        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not a tokens JSON file ({exc.msg} at line {exc.lineno})", name) from None
        if not isinstance(d, dict) or not ("tokens" in d or "ids" in d):
            raise InputError("not a tokens JSON file (no `tokens` or `ids`)", name)
        if d.get("vocab_version", VOCAB_VERSION) != VOCAB_VERSION or d.get(
            "vocab_fingerprint", self.vocab.fingerprint
        ) != self.vocab.fingerprint:
            raise InputError(
                f"tokens made with vocabulary {d.get('vocab_version')}/{d.get('vocab_fingerprint')}, this emocompose "
                f"uses {VOCAB_VERSION}/{self.vocab.fingerprint}; tokenize the MIDI again",
                name,
            )
        if "tokens" in d:
            unknown = [t for t in d["tokens"] if t not in self.vocab.ids]
            if unknown:
                raise InputError(f"unknown token {unknown[0]!r}", name)
            return np.asarray([self.vocab.ids[t] for t in d["tokens"]], np.int64)
        ids = np.asarray(d["ids"], np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self.vocab)):
            raise InputError("token id out of the vocabulary's range", name)
        return ids
