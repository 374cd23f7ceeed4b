"""The left hand: how often a generated piece's onsets begin in the bass, held near real music's.

Notes at one onset are written lowest first, so the first pitch after a Position decides whether
the onset has a bass note. Reading real notes, the decoder predicts that as the data has it;
running free on its own notes, sad and tense pieces drift out of the bass bar after bar (sad
onsets 0.16 in the first bar, 0.04 from the fourth on, against real clips' 0.19: README and
`benchmarks/bass_drift.py`), and a piano piece without a left hand sounds like a right hand
alone. So while `generate` decodes, each piece's share of onsets that begin below C3, over its
last WINDOW bars and the bar so far, is held near the share real music of its emotion has
(`presets.BASS_ONSETS`), and a continuation's near its prompt's: at an onset's first pitch the
pitches below C3 are made likelier by target / share where the share has fallen under the
target, and less likely where it has risen above, by at most CAP either way (`share`). Which
bass pitch it is, and whether a note comes at all, stay the model's; a pitch the range rule
holds back (`sampling.Register`) is not raised, so a piece's range still widens a fourth at a time.
"""

from __future__ import annotations

import numpy as np

from emocompose.features import BASS
from emocompose.midi import DRUMS
from emocompose.share import Share, per_bar
from emocompose.tokenizer import PITCH, Vocab

# The most the bass pitches' odds move at one onset. From the fourth bar on the model gives sad
# pieces' bass about a fifth of real music's share, so the cap must be large; measured on 50 sad
# pieces, bars 4-20 (real clips 0.19, the model alone 0.04): 0.09 at 8 as it is, and 0.12 at 8 or
# 0.09 at 4 with the bass exempt from the range rule, which stretched sad pieces' range 17% past
# real music's
CAP = 8.0


class Bass(Share):
    """The onsets of each sequence of a batch, per bar, and how many begin below C3."""

    def __init__(self, vocab: Vocab, targets: list[list[float] | None], bars: int, first: int = 1):
        super().__init__(targets, bars, CAP, first)
        self.low = (vocab.kind == PITCH) & (vocab.value < BASS) & (vocab.track != DRUMS)  # by token id

    def raised(self, i: int, span: np.ndarray) -> np.ndarray:
        """The bass pitches: at an onset's first pitch, they begin it in the bass."""
        return self.low[span]

    def wrote(self, i: int, bar: int, token: int) -> None:
        """Sequence i began an onset of its bar `bar` with the pitch token `token`."""
        self.count(i, bar, self.low[token])


def onset_share(grid, bars: tuple[int, int | None] = (0, None)) -> float:
    """The share of a piece's onsets in `bars` (first, after last; None: to the end), drums left
    out, whose lowest note is below C3 (nan: no such onset)."""
    lo, hi = bars
    keep = (grid.track != DRUMS) & (grid.bar >= lo) & (grid.bar < (grid.n_bars if hi is None else hi))
    if not keep.any():
        return float("nan")
    onsets, which = np.unique(grid.onsets[keep], return_inverse=True)
    lowest = np.full(len(onsets), 128)
    np.minimum.at(lowest, which, grid.pitch[keep])
    return float(np.mean(lowest < BASS))


def targets(segments, transition: int) -> list[float]:
    """Per bar of a piece in `segments`, the share of onsets beginning in the bass that real music
    of its emotion has (`share.per_bar`)."""
    from emocompose.presets import BASS_ONSETS

    return per_bar(BASS_ONSETS, segments, transition)
