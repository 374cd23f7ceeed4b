"""A piece's melody, found and kept: what `transform` holds fixed while it rewrites the rest.

The melody is one line of notes. A pitched track class that already is one (a single line that
sits on top of the others, as a lead, a first violin or a voice does) is taken whole; otherwise
the top voice: each onset's highest note, unless a higher note is still sounding there. Each
melody note keeps its length: where one rings on under the next (legato, or a pedal written into
the lengths), the rest of the piece stays below the lowest melody note sounding. choice: cutting
each note where the next begins made the held melodies of EMOPIA clips three quarters as long
(mean log length in beats -0.36 against -0.07) and the rewrite sounded detached.

When a rewrite changes the mode, the melody moves into the target mode by scale degree on the
same tonic (major -> natural minor lowers the 3rd, 6th and 7th degrees by a semitone; minor ->
major raises them), read bar by bar in the key the bar is heard in, so a modulating piece keeps
its modulations. Notes off the scale stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from emocompose.features import bar_keys, is_major
from emocompose.grid import Grid
from emocompose.midi import DRUMS, TRACKS
from emocompose.tokenizer import TokenizerConfig

PIANO = TRACKS.index("Piano")  # the track class the model learned: every pitched note is read as piano
TO_MINOR = {4: 3, 9: 8, 11: 10}  # semitones above the tonic: major 3rd, 6th, 7th -> minor
TO_MAJOR = {v: k for k, v in TO_MINOR.items()}
LINE_SHARE = 0.9  # a track class is a melody when this share of its onsets hold one note ...
TOP_SHARE = 0.8  # ... and this share of its notes are the highest sounding at their onset


@dataclass(frozen=True)
class Melody:
    """The melody's notes in time order: index into the source grid's notes, bar, onset in grid
    steps from the piece's start, pitch, velocity bin and duration bin."""

    index: np.ndarray
    bar: np.ndarray
    step: np.ndarray
    pitch: np.ndarray
    vel: np.ndarray
    dur: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def notes_in(self, grid: Grid) -> np.ndarray:
        """Per note of `grid`, whether it is one of the melody's (at its onset, on its pitch)."""
        at = set(zip(self.step.tolist(), self.pitch.tolist()))
        return np.array([k in at for k in zip(grid.onsets.tolist(), grid.pitch.tolist())], bool)

    def ceiling(self, total: int, config: TokenizerConfig) -> np.ndarray:
        """(total,) per grid step the pitch of the lowest melody note sounding there (128 where
        none): what the rest of the piece must stay below."""
        out = np.full(total, 128, np.int64)
        ends = self.step + config.duration_array[self.dur]
        for s, e, p in zip(self.step.tolist(), ends.tolist(), self.pitch.tolist()):
            out[s : min(e, total)] = np.minimum(out[s : min(e, total)], p)
        return out


def pitched(grid: Grid) -> np.ndarray:
    return grid.track != DRUMS


def find_melody(grid: Grid, config: TokenizerConfig) -> Melody:
    """The melody of `grid` (see the module's docstring); empty when it has no pitched notes."""
    on = grid.onsets
    ends = grid.ends(config)
    idx = np.flatnonzero(pitched(grid))
    top = on_top(on[idx], ends[idx], grid.pitch[idx])
    lines = []
    for t in np.unique(grid.track[idx]).tolist():
        mine = grid.track[idx] == t
        steps = on[idx][mine]
        single = len(np.unique(steps)) / max(len(steps), 1)  # 1 when no onset holds two notes
        if mine.sum() >= 8 and single >= LINE_SHARE and top[mine].mean() >= TOP_SHARE and not mine.all():
            lines.append((top[mine].mean(), t))
    if lines:  # a track class that is a line on top of the others: its own top line, rests and all
        t = max(lines)[1]
        keep = idx[grid.track[idx] == t]
        keep = keep[on_top(on[keep], ends[keep], grid.pitch[keep])]
    else:
        keep = idx[top]
    keep = keep[np.argsort(on[keep], kind="stable")]  # one note per onset (on_top): in time order
    return Melody(keep, grid.bar[keep], on[keep], grid.pitch[keep].astype(np.int64), grid.vel[keep].astype(np.int64),
                  grid.dur[keep].astype(np.int64))  # fmt: skip


def on_top(on: np.ndarray, ends: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Whether each note is the highest at its onset and under no higher note still sounding."""
    top = np.zeros(len(on), bool)
    held_end, held_pitch, last_on = -1, -1, -1  # the top note that may still sound
    for i in np.lexsort((-pitch, on)).tolist():
        if on[i] == last_on or (on[i] < held_end and pitch[i] <= held_pitch):
            continue  # below the onset's highest, or under a higher note still sounding
        top[i], last_on = True, on[i]
        held_end, held_pitch = ends[i], pitch[i]
    return top


def to_mode(melody: Melody, grid: Grid, config: TokenizerConfig, major: bool | np.ndarray) -> Melody:
    """The melody moved into `major` (or minor) mode by scale degree, each note in its bar's key;
    `major` for the whole piece or per bar."""
    return replace(melody, pitch=mode_moved(melody.pitch, melody.bar, grid, config, major))


def mode_moved(pitch: np.ndarray, bar: np.ndarray, grid: Grid, config: TokenizerConfig,
               major: bool | np.ndarray) -> np.ndarray:  # fmt: skip
    """Pitches of `grid`'s bars `bar` moved into `major` (or minor) mode by scale degree, each in
    its bar's key; `major` for the whole piece or per bar."""
    keys = bar_keys(grid, config)
    if not len(pitch) or not len(keys):
        return pitch
    key = keys[bar]
    degree = (pitch - key % 12) % 12
    wanted = np.broadcast_to(np.asarray(major, bool), (grid.n_bars,))[bar]
    move = np.array([(TO_MAJOR if m else TO_MINOR).get(d, d) - d for d, m in zip(degree.tolist(), wanted.tolist())],
                    np.int64)  # fmt: skip
    move[is_major(key) == wanted] = 0  # bars already in the target mode stay
    return np.clip(pitch + move, 0, 127)


def piano_view(grid: Grid) -> Grid:
    """The piece as the model reads it: every pitched note on the piano, drums left out."""
    notes = np.flatnonzero(pitched(grid))
    g = grid.take(notes[np.lexsort((grid.pitch[notes], grid.pos[notes], grid.bar[notes]))])
    return replace(g, track=np.full(g.n_notes, PIANO, np.int64))
