"""A share of a piece's choices held near real music's while it decodes: what `bass` (onsets that
begin below C3) and `top_voice` (onsets whose highest note moves by a step) build on.

Reading real notes, the decoder predicts such shares as the data has them; running free on its
own notes, it drifts from them bar after bar (journal, sessions 21-26). So each sequence counts,
per bar, the times the choice came up and how often it went the way counted, and while the share
over its last WINDOW bars and the bar so far lies off the target, the tokens that make it go that
way are made likelier (less likely where the share lies above), by at most a cap either way. What
is played stays the model's: only the odds of the tokens counted move.

By how much: target / share (proportional), or a gain that, once a bar, is multiplied by (target /
share) ** rate and so keeps growing while the share stays off the target (integral). Odds moved by
target / share settle part of the way: the top voice's share of steps came to 0.24 against a
target of 0.28 and the model's own 0.20, and reached it with the gain. The left hand stays
proportional: with a gain, sad pieces' bass walked down a fourth at a time and their range grew
12-20% past real music's (journal, session 26).
"""

from __future__ import annotations

import numpy as np

WINDOW = 4  # bars before the current one that a share is read over
MIN_EVENTS = 4  # fewer choices than this say too little to steer by


class Share:
    """Per sequence of a batch and bar, how often a choice came up and how often it went the way
    counted; what to multiply the odds of the tokens counted by."""

    def __init__(self, targets: list[list[float] | None], bars: int, cap: float, first: int = 1,
                 rate: float | None = None):  # fmt: skip
        """`targets`: per sequence, the share to hold each bar to (None: leave it to the model);
        `cap`: the most the odds move; `first`: the first bar steered (1: a piece's opening bar is
        the model's own; 0 after a prompt); `rate`: None for odds moved by target / share, else the
        power of target / share that multiplies a gain once a bar."""
        self.targets, self.cap, self.first, self.rate = targets, cap, first, rate
        self.events = np.zeros((len(targets), bars + 1))
        self.hits = np.zeros((len(targets), bars + 1))
        self.gain = np.ones(len(targets))
        self.gained = np.full(len(targets), -1)  # the bar each sequence's gain last moved in

    def factor(self, i: int, bar: int) -> float | None:
        """What sequence i's odds of the tokens counted are multiplied by in `bar` (None: left alone)."""
        target = self.targets[i]
        if target is None or bar < self.first:
            return None
        start = max(0, bar - WINDOW)
        n, hit = self.events[i, start : bar + 1].sum(), self.hits[i, start : bar + 1].sum()
        if n < MIN_EVENTS:
            return None
        ratio = min(self.cap, max(1 / self.cap, target[bar] * n / max(hit, 1e-9)))
        if self.rate is None:
            return ratio
        if self.gained[i] != bar:  # once a bar, at the first choice steered in it
            self.gained[i] = bar
            self.gain[i] = min(self.cap, max(1 / self.cap, self.gain[i] * ratio**self.rate))
        return float(self.gain[i])

    def raised(self, i: int, span: np.ndarray) -> np.ndarray | None:
        """Which of the pitch tokens `span` make sequence i's choice go the way counted (None: none)."""
        raise NotImplementedError

    def steer(self, i: int, bar: int, ids: np.ndarray, logits: np.ndarray, a: int, b: int,
              far: np.ndarray | None) -> np.ndarray:  # fmt: skip
        """The `logits` of the tokens `ids` of sequence i, with the pitches among ids[a:b] that
        are `raised` (those not `far`: the range rule's, `sampling.Register`) moved toward the
        bar's target."""
        factor = self.factor(i, bar) if b > a else None
        raised = None if factor is None else self.raised(i, ids[a:b])
        if raised is None:
            return logits
        if far is not None:
            raised = raised & ~far
        out = logits.copy()
        out[a:b] += np.where(raised, np.log(factor), 0.0)
        return out

    def count(self, i: int, bar: int, hit: bool) -> None:
        """The choice came up in sequence i's bar `bar` and went the way counted if `hit`."""
        self.events[i, bar] += 1
        self.hits[i, bar] += hit


def per_bar(table: dict[str, float], segments, transition: int) -> list[float]:
    """Per bar of a piece in `segments` (`trajectory`), the share that real music of its emotion
    has, by the emotions' `table`: between the quadrants' shares by the segment's arousal and
    valence levels (bilinearly, for levels between -1 and 1), gliding from one segment to the next
    as their latents do (`trajectory.weights`)."""
    from emocompose.emotions import EMOTIONS
    from emocompose.trajectory import weights

    def share(arousal: float, valence: float) -> float:
        return sum(table[name] * (1 + (2 * a - 1) * arousal) / 2 * (1 + (2 * v - 1) * valence) / 2
                   for name, (a, v) in EMOTIONS.items())  # fmt: skip

    per_segment = np.array([share(*s.levels) for s in segments])
    return [float(row @ per_segment) for row in np.asarray(weights(segments, transition))]
