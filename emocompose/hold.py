"""Decoding held to a melody: the melody's notes are written at their places, and the model
writes the rest of each bar around them, never at or above the melody where it sounds.

Per sequence, `MelodyHold` narrows what the grammar (`sampling.Grammar`) allows at each step:
pitches only below the melody note sounding there (and, when the source is held, only on the
pitch classes of its notes struck there), an accompaniment note only as long as it
stays below every melody note it would sound under (one drawn longer is held until the melody
comes down to it), room kept in the bar's L tokens for the melody notes still to come. When the
source's rhythm is held, its texture is too: each onset gets as many notes as the source struck
there, with the source's lengths there, near the source's register and on keys not still sounding
(`_voicing`). What the model draws to move on is moved, not forbidden, so that forcing the melody
adds no notes of its own: a Position or bar end past the next melody onset becomes that onset, and
with the source's rhythm held, any becomes the source's next onset. At a melody onset the model
may first add notes below the melody; whatever else it draws there (a higher pitch, the next
Position, the bar's end) becomes the melody note, whose velocity and duration follow as fixed
tokens. So every melody note is placed by construction. A budget can cap the other notes per bar;
once it is spent only the melody is left to write. Where the model writes the rhythm, a bar that
repeats an earlier one in the source (its onsets and its melody's) repeats the onsets the rewrite
wrote there, with as many notes at each: a phrase played twice is rewritten to the same rhythm
twice.
"""

from __future__ import annotations

import numpy as np

from emocompose.errors import InputError
from emocompose.grid import Grid
from emocompose.melody import PIANO, Melody
from emocompose.sampling import AFTER_POSITION, AFTER_VELOCITY, PLACES
from emocompose.tokenizer import BAR, DURATION, EOS_KIND, PITCH, POSITION, TEMPO, Vocab

# how far (semitones) a re-voiced note may lie beyond the source's notes at its onset
REACH = 5
NOTE_TOKENS = 4  # Position, Pitch, Velocity, Duration: the most a melody note needs


def check_room(melody: Melody, n_bars: int, max_bar_tokens: int) -> None:
    """An InputError naming the first bar whose melody notes cannot fit in a bar's tokens."""
    per_bar = np.bincount(melody.bar, minlength=n_bars)
    over = np.flatnonzero(per_bar * NOTE_TOKENS + 2 > max_bar_tokens)  # + the Bar and Tempo tokens
    if len(over):
        b = int(over[0])
        raise InputError(f"bar {b + 1} has {per_bar[b]} melody notes, more than a bar of "
                         f"{max_bar_tokens} tokens can hold around them")  # fmt: skip


class MelodyHold:
    """One sequence's melody, bar by bar, and where it stands in writing it."""

    def __init__(self, vocab: Vocab, melody: Melody, bar_starts: np.ndarray, source: Grid | None = None,
                 budget: np.ndarray | None = None, repeats: list[int] | None = None):  # fmt: skip
        """`source`: if given, its rhythm is held too (the other notes begin only where the
        source's notes begin, each of its onsets gets as many as the source's while the bar has
        room, each with one of the lengths of the source's notes there) and its harmony (only on
        the pitch classes of the source's notes that begin there): a rewrite in another mode or
        key gives the source carried there (`rewrite.held_source`, `rewrite.view_in_key`).
        `budget`: per bar, the most notes besides the melody's. `repeats`: per bar, the earlier
        bar whose onsets it repeats in the source (`repeated_bars`), or -1; without the source's
        rhythm held, such a bar takes the onsets the rewrite wrote in that bar, and as many notes
        at each. choice: 10 POP909 songs (their first 24 bars) rewritten toward sad at lambda 0.5
        and 1 kept few of their repeats (bars repeating an earlier bar's onsets: 0.05, the songs
        0.34); so, 0.18: 35 of the 36 bars found here repeat (the songs' other repeats differ in
        their melody's onsets, whose notes are held where they are)."""
        self.budget = budget
        c = vocab.config
        self.vocab, self.starts = vocab, bar_starts
        total = int(bar_starts[-1])
        self.ceiling = np.r_[melody.ceiling(total, c), np.full(int(c.duration_array[-1]) + 1, 128)]
        self.harmony = np.ones((total + 1, 12), bool)  # per grid step, the pitch classes allowed
        if source is not None:
            self.harmony[:] = False
            on = source.onsets
            self.harmony[on, source.pitch % 12] = True
            self.free = np.zeros(total + 1, bool)
            self.free[on] = True
            self.chord = np.bincount(on, minlength=total + 1)
            self.low, self.high = np.full(total + 1, 128), np.full(total + 1, -1)
            np.minimum.at(self.low, on, source.pitch)
            np.maximum.at(self.high, on, source.pitch)
            self.lengths = np.zeros((total + 1, len(c.duration_bins)), np.int64)
            np.add.at(self.lengths, (on, source.dur), 1)
            np.subtract.at(self.lengths, (melody.step, melody.dur), 1)  # the melody's own are its
            np.maximum(self.lengths, 0, out=self.lengths)
        else:
            self.free = np.ones(total + 1, bool)
            self.chord, self.lengths, self.low = np.zeros(total + 1, np.int64), None, None
        # per key, the step where the note last written on it begins, and where it ends
        self.struck, self.until = np.full(128, -1, np.int64), np.zeros(128, np.int64)
        self.held_rhythm, self.room = source is not None, True
        self.repeats = repeats or []
        self.wrote_at: list[dict[int, int]] = []  # per bar decoded, notes written at each position
        self.bars = [np.flatnonzero(melody.bar == t) for t in range(len(bar_starts) - 1)]
        self.melody = melody
        self.steps, self.fit = c.duration_array, c.fit_table
        self.vel_id = vocab.vel0 + PIANO * c.velocity_bins
        self.dur_id = vocab.dur0 + PIANO * len(c.duration_bins)
        self.start_bar(0)

    def start_bar(self, t: int) -> None:
        self.t, self.j, self.fixed, self.last_pitch, self.written = t, 0, [], -1, 0
        self.here = 0  # notes written at the current position
        self.todo = self.bars[t] if t < len(self.bars) else np.zeros(0, np.int64)
        self.wrote_at = self.wrote_at[:t] + [{}]
        self.every_onset = self.held_rhythm
        back = self.repeats[t] if t < len(self.repeats) else -1
        if not self.held_rhythm and 0 <= back < t:  # the onsets of the rewrite's bar `back`, and the melody's
            base, end = int(self.starts[t]), int(self.starts[t + 1])
            self.free[base:end] = False
            self.chord[base:end] = 0
            for pos, n in self.wrote_at[back].items():
                if base + pos < end:
                    self.free[base + pos], self.chord[base + pos] = True, n
            steps = self.melody.step[self.todo]
            self.free[steps] = True
            self.chord[steps] = np.maximum(self.chord[steps], 1)
            self.every_onset = True

    def _pending(self):
        """(position, pitch) of the next melody note of the bar, or None."""
        if self.j >= len(self.todo):
            return None
        k = self.todo[self.j]
        return int(self.melody.step[k] - self.starts[self.t]), int(self.melody.pitch[k])

    def forced(self) -> int | None:
        """The token that must come next (a melody note's velocity or duration), or None."""
        return self.fixed[0] if self.fixed else None

    def reserve(self, pos: int) -> int:
        """Tokens the melody notes still to come need (the next one's Position may stand)."""
        left = len(self.todo) - self.j
        p = self._pending()
        return NOTE_TOKENS * left - (1 if p is not None and p[0] == pos else 0)

    def restrict(self, ids: np.ndarray, pos: int, state: int) -> tuple[np.ndarray, int, int]:
        """The grammar's `ids` after `state`, without the pitches and lengths the module rules
        out (the model draws among the rest); the pitch span of what is left. Positions and bar
        ends stay: `settle` moves a drawn one to where a note may begin."""
        v = self.vocab
        kind, value = v.kind[ids], v.value[ids]
        keep = np.ones(len(ids), bool)
        p = self._pending()
        base = int(self.starts[self.t])
        if pos >= 0:
            pitches = kind == PITCH
            keep &= ~(pitches & ((value >= self.ceiling[base + pos]) | ~self.harmony[base + pos][value % 12]))
        if self.every_onset and state == AFTER_POSITION:  # the onset's note, not a tempo change in its place
            keep &= kind != TEMPO
        if self.every_onset and state in PLACES and not self._spent():
            keep = self._voicing(keep, kind, value, base + pos, p is not None and p[0] == pos)
        # an accompaniment note's length must stay below the melody: one drawn longer is cut in
        # `settle`; with the source's lengths held, one of theirs here not yet taken, if one fits
        if state == AFTER_VELOCITY and self.lengths is not None:
            s = base + pos
            dur = np.flatnonzero((kind == DURATION) & (value > 0))  # the shortest is always allowed
            keep[dur[self.steps[value[dur]] > self._longest(s)]] = False
            durs = keep & (kind == DURATION)
            theirs = durs.copy()
            theirs[durs] = self.lengths[s, value[durs]] > 0
            if theirs.any():
                keep = theirs
            elif durs.any():  # none fits: as long as it may sound below the melody
                keep = durs & (value == value[durs].max())
        if self._spent():  # the bar's other notes are written: only the melody is left
            keep &= (kind != PITCH) & ~((kind == POSITION) & (value != (p[0] if p is not None else -1)))
        self.room = bool((kind == POSITION).any())  # a Position may come here: room for one more note
        out = ids[keep]
        if state in PLACES and p is not None and p[0] == pos:
            out = np.union1d(out, [self.pitch_id(p[1])])
        elif not len(out) and state == AFTER_POSITION:  # a note must come: any below the melody
            below = ids[(kind == PITCH) & (value < self.ceiling[base + pos])]
            out = below if len(below) else ids[:1]
        elif not len(out):  # no room left for other notes: on to the next melody onset
            out = np.array([v.pos0 + p[0]]) if p is not None else ids[_ends(v, ids)][:1]
        is_pitch = v.kind[out] == PITCH
        a = int(is_pitch.argmax()) if is_pitch.any() else 0
        return out, a, a + int(is_pitch.sum())

    def _voicing(self, keep: np.ndarray, kind: np.ndarray, value: np.ndarray, s: int, melody_here: bool) -> np.ndarray:
        """With the onsets held (the source's, or those of a repeated bar), at grid step s:
        pitches until the onset has as many notes as are held there (the melody's among them),
        then none. Among the pitches, each rule in turn narrows them while any is left: not struck
        here already (a file keeps one), within an octave of the source's notes here, not still
        sounding (struck again, the sounding note would end there, `Grid.playable`), within REACH
        of them, low enough to sound the shortest of the source's lengths left here below the
        melody. A chord with a note already and no key left within an octave of the source's
        ends short: left to the cascade, 1.6% of the notes of a POP909 song re-voiced at lambda 0
        lay one to two octaves below the source's lowest at their onset.
        choice: left to the model, re-voiced EMOPIA clips had a sixth fewer notes than their
        sources, shorter and lower, and the realism test told them from real music in 0.79 of
        cases; held so, 0.44, where the sources themselves score 0.35 (80 val clips, lambda 0 and
        0.25, two seeds; benchmarks/rewrite_realism.py)."""
        if self.chord[s] - self.here - melody_here <= 0:
            return keep & (kind != PITCH)
        idx = np.flatnonzero(keep & (kind == PITCH))
        if not len(idx):
            return keep
        pitch = value[idx]
        left = np.flatnonzero(self.lengths[s]) if self.lengths is not None else ()
        shortest = int(self.steps[left[0]]) if len(left) else 1
        chosen = np.ones(len(idx), bool)
        near = lambda reach: (pitch >= self.low[s] - reach) & (pitch <= self.high[s] + reach)  # noqa: E731
        not_here, not_sounding = self.struck[pitch] != s, self.until[pitch] <= s
        if self.low is None:  # a repeated bar's onsets, without the source's notes to stay near
            rules = (not_here, not_sounding)
        elif (self.here or melody_here) and not (not_here & near(12)).any():
            return keep & (kind != PITCH)  # the chord one note short rather than a key far from the source's
        else:
            rules = (not_here, near(12), not_sounding, near(REACH), pitch < self.ceiling[s : s + shortest].min())
        for rule in rules:
            if (chosen & rule).any():
                chosen &= rule
        out = np.zeros_like(keep)
        out[idx[chosen]] = True
        return out

    def _spent(self) -> bool:
        return self.budget is not None and self.written >= self.budget[min(self.t, len(self.budget) - 1)]

    def pitch_id(self, pitch: int) -> int:
        return self.vocab.pitch0 + 128 * PIANO + pitch

    def _move_on(self, token: int, pos: int) -> int:
        """A drawn Position or bar end, moved to where a note may begin: with the source's
        rhythm held, the source's next onset; else the first step from the one drawn; never past
        the next melody onset (the melody's own onset then), the bar's end only when no melody
        note is left. choice: a Position drawn past several held onsets would leave them empty,
        and re-voiced EMOPIA clips kept 0.78 of their notes, their onsets 0.85 alike; each onset
        visited, 0.88 and 0.91 (160 val clips, lambda 0)."""
        v = self.vocab
        p = self._pending()
        want = int(v.value[token]) if v.kind[token] == POSITION else 1 << 30
        base = int(self.starts[self.t])
        # the steps before the next melody onset, or to the bar's end
        end = p[0] if p is not None else int(self.starts[self.t + 1]) - base
        if self.every_onset and self.room and not self._spent():  # the source's next onset, even if later was drawn
            want = pos + 1
        elif p is not None and (want >= p[0] or self._spent()):
            return v.pos0 + p[0]
        elif self._spent():
            return v.eos
        open_ = np.flatnonzero(self.free[base + max(want, pos + 1) : base + end]) + max(want, pos + 1)
        if len(open_):
            return v.pos0 + int(open_[0])
        return v.pos0 + p[0] if p is not None else v.eos

    def settle(self, token: int, pos: int, may_place: bool) -> int:
        """The token written after `token` was drawn at position `pos` (`may_place`: a pitch
        could come here): at a melody onset anything but a lower pitch becomes the melody note;
        a Position or bar end moves on as `_move_on` says."""
        v = self.vocab
        if self.fixed:
            self.fixed.pop(0)
            if not self.fixed:
                self.j += 1
            return token
        p = self._pending()
        is_pitch = v.kind[token] == PITCH
        if may_place and p is not None and p[0] == pos and not (is_pitch and v.value[token] < p[1]):
            k = self.todo[self.j]
            self.fixed = [self.vel_id + int(self.melody.vel[k]), self.dur_id + int(self.melody.dur[k])]
            self._wrote(pos)
            self.struck[p[1]] = self.melody.step[k]
            self.until[p[1]] = int(self.melody.step[k] + self.steps[self.melody.dur[k]])
            return self.pitch_id(p[1])
        if is_pitch:
            self.last_pitch = int(v.value[token])
            self.struck[self.last_pitch] = int(self.starts[self.t]) + pos
            self._wrote(pos)
            self.written += 1
        elif v.kind[token] == DURATION:
            s, drawn = int(self.starts[self.t]) + pos, int(v.value[token])
            dur = min(drawn, int(self.fit[self._longest(s)]))  # held until the melody comes down to it
            token = int(token - drawn + dur)
            self.until[self.last_pitch] = s + int(self.steps[dur])
            if self.lengths is not None:
                self.lengths[s, dur] = max(self.lengths[s, dur] - 1, 0)
        elif v.kind[token] == POSITION or _ends(v, np.array([token]))[0]:
            token = self._move_on(token, pos)
            self.here = 0
        return token

    def _longest(self, s: int) -> int:
        """The most grid steps the note just pitched at step s may sound below the melody."""
        under = np.flatnonzero(self.ceiling[s + 1 : s + 1 + int(self.steps[-1])] <= self.last_pitch)
        return int(under[0]) + 1 if len(under) else int(self.steps[-1])

    def _wrote(self, pos: int) -> None:
        self.here += 1
        self.wrote_at[self.t][pos] = self.wrote_at[self.t].get(pos, 0) + 1


def repeated_bars(grid: Grid, melody: Melody) -> list[int]:
    """Per bar, the latest earlier bar with exactly its onsets (some) and its melody's onsets, or -1."""
    seen: dict[tuple, int] = {}
    out = []
    mel_pos = melody.step - grid.bar_starts[melody.bar]
    for t in range(grid.n_bars):
        onsets = tuple(np.unique(grid.pos[grid.bar == t]).tolist())
        key = (onsets, tuple(mel_pos[melody.bar == t].tolist()))
        out.append(seen.get(key, -1) if onsets else -1)
        if onsets:
            seen[key] = t
    return out


def _ends(vocab: Vocab, ids: np.ndarray) -> np.ndarray:
    return (vocab.kind[ids] == BAR) | (vocab.kind[ids] == EOS_KIND)
