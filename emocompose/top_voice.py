"""The top voice: how often the highest note of a generated piece's onsets moves by a step from
the one before, held near real music's.

In EMOPIA's `train` clips the highest note of an onset lies within a whole tone of the previous
onset's (the same note, a half step or a whole step) at 0.21-0.30 of onsets (`presets.TOP_STEPS`);
in the shipped model's generated pieces at 0.15-0.21, with more thirds, fourths and fifths in
their place: a line that arpeggiates where real melodies walk, which a listener hears as notes
scattered without a tune, and the feature that told them from real music best (journal, session
26). So while `generate` decodes, each piece's share of such onsets, over its last few bars, is
held near its emotion's, and a continuation's near its prompt's (`share`): at each pitch of an
onset, the pitches within STEP of the previous onset's highest note are made likelier by a gain
that grows once a bar by the square root of target / share (RATE), up to CAP. Notes at an onset
are written lowest first, so the pitch drawn is the onset's highest so far; whether more notes
follow, and which, stay the model's. A pitch the range rule holds back (`sampling.Register`) is
not raised.
"""

from __future__ import annotations

import numpy as np

from emocompose.midi import DRUMS
from emocompose.share import Share, per_bar
from emocompose.tokenizer import PITCH, Vocab

STEP = 2  # semitones: the same note, a half step or a whole step
# The most the near pitches' odds move. With odds moved by target / share, caps of 3 and 8 gave the
# same share and realism (0.24 against 0.20 alone); with the gain, shares reach the targets
CAP = 3.0
# How fast the gain moves: by the square root of target / share a bar. Measured over six seed sets
# of 100 pieces (50 a quadrant for the shares): steps 0.29 / 0.28 / 0.28 / 0.21 against the targets'
# 0.30 / 0.28 / 0.27 / 0.21, realism 0.693 against 0.715 with odds moved by target / share; at 1,
# the same shares
RATE = 0.5


class TopVoice(Share):
    """The onsets of each sequence of a batch, per bar, and how many move their highest note by
    at most STEP from the onset before."""

    def __init__(self, vocab: Vocab, targets: list[list[float] | None], bars: int, first: int = 1,
                 before=None):  # fmt: skip
        """`before`: the piece the decoded bars follow (a continuation's prompt), whose last onset
        the first new one moves from."""
        super().__init__(targets, bars, CAP, first, RATE)
        self.pitched = (vocab.kind == PITCH) & (vocab.track != DRUMS)  # by token id
        self.value = vocab.value
        self.last = np.full(len(targets), -1)  # the previous onset's highest pitch (-1: none yet)
        self.top = np.full(len(targets), -1)  # the current onset's highest pitch so far
        if before is not None and (before.track != DRUMS).any():
            keep = before.track != DRUMS
            self.last[:] = line(before.onsets[keep], before.pitch[keep])[-1]

    def raised(self, i: int, span: np.ndarray) -> np.ndarray | None:
        """The pitches within STEP of the previous onset's highest (None before any onset)."""
        if self.last[i] < 0:
            return None
        return self.pitched[span] & (np.abs(self.value[span] - self.last[i]) <= STEP)

    def wrote(self, i: int, token: int) -> None:
        """Sequence i wrote the pitch token `token` at its current onset."""
        if self.pitched[token]:
            self.top[i] = max(self.top[i], self.value[token])

    def onset_over(self, i: int, bar: int) -> None:
        """Sequence i's onset in its bar `bar` is over (a new Position, or the bar's end)."""
        if self.top[i] < 0:
            return
        if self.last[i] >= 0:
            self.count(i, bar, abs(self.top[i] - self.last[i]) <= STEP)
        self.last[i], self.top[i] = self.top[i], -1


def line(onset: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """The highest pitch at each distinct onset, in time order."""
    pitch = np.asarray(pitch, np.int64)  # negated below: not in an unsigned type
    order = np.lexsort((-pitch, onset))
    o, p = onset[order], pitch[order]
    first = np.r_[True, o[1:] != o[:-1]]
    return p[first]


def step_share(grid) -> float:
    """The share of a piece's onsets, drums left out, whose highest note lies within STEP of the
    previous onset's (nan: fewer than two onsets)."""
    keep = grid.track != DRUMS
    top = line(grid.onsets[keep], grid.pitch[keep])
    return float(np.mean(np.abs(np.diff(top)) <= STEP)) if len(top) > 1 else float("nan")


def targets(segments, transition: int) -> list[float]:
    """Per bar of a piece in `segments`, the share of onsets whose highest note moves by a step
    that real music of its emotion has (`share.per_bar`)."""
    from emocompose.presets import TOP_STEPS

    return per_bar(TOP_STEPS, segments, transition)
