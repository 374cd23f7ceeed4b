"""The Grid: a piece's notes on the token grid, bar by bar. What the tokenizer makes of a file
and of tokens, what features, evaluation and decoding read, and what is written as MIDI
(`grid_to_score`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from emocompose.midi import DRUMS, TRACKS

if TYPE_CHECKING:
    from emocompose.tokenizer import TokenizerConfig

OUTPUT_TPQ = 480  # ticks per quarter of written MIDI: divisible by 3 and 4
DEFAULT_PROGRAMS = {DRUMS: 0, 1: 0, 2: 25, 3: 33, 4: 48}  # piano, steel guitar, finger bass, strings


def cumsum0(x: np.ndarray) -> np.ndarray:
    """Cumulative sum with a leading 0 (n + 1 values)."""
    out = np.zeros(len(x) + 1, np.int64)
    np.cumsum(x, out=out[1:])
    return out


@dataclass
class Grid:
    """Notes on the token grid, bar by bar (all numpy; notes sorted by bar, position, track, pitch)."""

    bar_positions: np.ndarray  # grid steps per bar
    bar_tempo: np.ndarray  # tempo bin at each bar start
    bar: np.ndarray  # per note
    pos: np.ndarray
    track: np.ndarray
    pitch: np.ndarray
    vel: np.ndarray  # velocity bin
    dur: np.ndarray  # duration bin
    tempo_bar: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # mid-bar tempo changes
    tempo_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tempo_bin: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    programs: dict = field(default_factory=dict)

    @property
    def n_bars(self) -> int:
        return len(self.bar_positions)

    @property
    def n_notes(self) -> int:
        return len(self.pitch)

    @property
    def bar_starts(self) -> np.ndarray:
        """The grid step at which each bar starts, and the piece's end (n_bars + 1 entries)."""
        return cumsum0(self.bar_positions)

    @property
    def onsets(self) -> np.ndarray:
        """Each note's start in grid steps from the piece's start."""
        return self.bar_starts[self.bar] + self.pos

    def ends(self, config: "TokenizerConfig") -> np.ndarray:
        """Each note's end (its onset plus its length) in grid steps from the piece's start."""
        return self.onsets + config.duration_array[self.dur]

    def playable(self, config: "TokenizerConfig") -> "Grid":
        """The notes as a MIDI file holds them, so that what is measured is what is written and
        heard: none sounds past the last bar line, a pitch struck again on its track ends the note
        still sounding there (as a key struck again does), and a second note of one pitch on one
        track at one onset is dropped. A decoder can write all three; a MIDI file cannot keep them
        (a reader pairs the note-offs with other note-ons)."""
        bins = config.duration_array
        on = self.onsets
        order = np.lexsort((on, self.pitch, self.track))  # by track, pitch, then time (stable)

        def runs(o):  # where o[i + 1] is the same track and pitch as o[i]
            return (self.track[o][1:] == self.track[o][:-1]) & (self.pitch[o][1:] == self.pitch[o][:-1])

        keep = np.ones(len(on), bool)
        keep[order[1:][runs(order) & (on[order][1:] == on[order][:-1])]] = False
        order = order[keep[order]]
        same = runs(order)
        nxt = np.full(len(on), int(self.bar_positions.sum()))
        nxt[order[:-1][same]] = on[order[1:][same]]
        fit = config.fit_table[np.clip(nxt - on, 0, bins[-1])]  # the largest bin that ends by the next strike
        g = replace(self, dur=np.minimum(self.dur, fit))
        return g if keep.all() else g.take(keep)

    def take(self, index: np.ndarray) -> "Grid":
        """The notes `index` picks (a mask, or positions in the order wanted); bars, tempi and
        programs as they are."""
        return replace(self, bar=self.bar[index], pos=self.pos[index], track=self.track[index],
                       pitch=self.pitch[index], vel=self.vel[index], dur=self.dur[index])  # fmt: skip

    def merged(self, other: "Grid") -> "Grid":
        """These notes and `other`'s (at the bars they name) over this piece's bars, sorted."""
        cat = lambda a, b: np.concatenate([a, b])  # noqa: E731
        g = replace(self, bar=cat(self.bar, other.bar), pos=cat(self.pos, other.pos), track=cat(self.track, other.track),
                    pitch=cat(self.pitch, other.pitch), vel=cat(self.vel, other.vel), dur=cat(self.dur, other.dur))  # fmt: skip
        return g.take(np.lexsort((g.pitch, g.track, g.pos, g.bar)))

    def then(self, other: "Grid") -> "Grid":
        """This piece followed by the bars of `other`."""
        cat, n = np.concatenate, self.n_bars
        head = replace(self, bar_positions=cat([self.bar_positions, other.bar_positions]),
                       bar_tempo=cat([self.bar_tempo, other.bar_tempo]), tempo_bar=cat([self.tempo_bar, other.tempo_bar + n]),
                       tempo_pos=cat([self.tempo_pos, other.tempo_pos]), tempo_bin=cat([self.tempo_bin, other.tempo_bin]),
                       programs={**other.programs, **self.programs})  # fmt: skip
        return head.merged(replace(other, bar=other.bar + n))

    def bar_slice(self, start: int, stop: int) -> "Grid":
        """Bars start..stop-1 as a Grid of their own (bar numbers start again at 0)."""
        n = (self.bar >= start) & (self.bar < stop)
        t = (self.tempo_bar >= start) & (self.tempo_bar < stop)
        return Grid(
            self.bar_positions[start:stop], self.bar_tempo[start:stop], self.bar[n] - start, self.pos[n],
            self.track[n], self.pitch[n], self.vel[n], self.dur[n], self.tempo_bar[t] - start,
            self.tempo_pos[t], self.tempo_bin[t], dict(self.programs),
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Grid -> MIDI


def _meter(positions: int, per_quarter: int) -> tuple[int, int]:
    sixteenths = positions * 4 // per_quarter if (positions * 4) % per_quarter == 0 else positions
    if sixteenths % 4 == 0:
        return sixteenths // 4, 4
    if sixteenths % 2 == 0:
        return sixteenths // 2, 8
    return sixteenths, 16


def grid_to_score(grid: Grid, config: TokenizerConfig):
    """A symusic Score at OUTPUT_TPQ ticks per quarter, one track per track class used."""
    from symusic import Note, Score, Tempo, TextMeta, TimeSignature, Track

    step = OUTPUT_TPQ // config.positions_per_quarter
    starts = grid.bar_starts * step
    score = Score(OUTPUT_TPQ)
    prev_meter, prev_tempo = None, None
    tempo_values = config.tempo_values
    mid = {}
    for b, p, tb in zip(grid.tempo_bar.tolist(), grid.tempo_pos.tolist(), grid.tempo_bin.tolist()):
        mid.setdefault(b, []).append((p, tb))
    for b in range(grid.n_bars):
        meter = _meter(int(grid.bar_positions[b]), config.positions_per_quarter)
        if meter != prev_meter:
            score.time_signatures.append(TimeSignature(int(starts[b]), *meter))
            prev_meter = meter
        tb = int(grid.bar_tempo[b])
        if tb != prev_tempo:
            score.tempos.append(Tempo(int(starts[b]), float(tempo_values[tb])))
            prev_tempo = tb
        for p, tb in mid.get(b, []):
            score.tempos.append(Tempo(int(starts[b] + p * step), float(tempo_values[tb])))
            prev_tempo = tb
    if grid.n_bars == 0:
        score.tempos.append(Tempo(0, 120.0))
    else:  # a marker on the last bar line, so the file lasts all its bars even if they end silent
        score.markers.append(TextMeta(int(starts[-1]), "end"))
    bins = config.duration_array
    for t in np.unique(grid.track).tolist():
        m = grid.track == t
        track = Track(TRACKS[t], grid.programs.get(t, DEFAULT_PROGRAMS[t]), t == DRUMS)
        onset = starts[grid.bar[m]] + grid.pos[m] * step
        track.notes.extend(Note.from_numpy(
            time=onset.astype(np.int32), duration=(bins[grid.dur[m]] * step).astype(np.int32),
            pitch=grid.pitch[m].astype(np.int8), velocity=config.velocity_value(grid.vel[m]).astype(np.int8),
        ))  # fmt: skip
        score.tracks.append(track)
    return score
