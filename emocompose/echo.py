"""Rhythm that comes back: a generated bar may repeat the onsets of the bar a phrase before it,
with pitches, lengths and dynamics of its own, as composers repeat a rhythmic motif.

Why: one bar in nine of real EMOPIA music repeats an earlier bar's onsets exactly (the realism
test's `bars_repeating_rhythm`, 0.11), and the model's own bars almost never do (0.01): it is what
tells generated pieces from real ones most. Drawing the bars of a phrase from the same latents
did not bring it back (the decoder writes new onsets from the same latents), so the echo holds
the onsets while decoding. `presets.ECHO` is the share of bars that echo.
"""

from __future__ import annotations

import numpy as np

from emocompose.tokenizer import BAR, EOS_KIND, PITCH, POSITION, Vocab


def echo_plan(bars: int, share: float, back: int, rng: np.random.Generator,
              segment: np.ndarray | None = None) -> list[int]:  # fmt: skip
    """Per bar, the earlier bar whose onsets it repeats (`back` bars before it), or -1; never
    across a change of `segment` (per bar: an emotion over time), where a new mood wants a new
    rhythm. One draw per bar whatever the share, so pieces of one batch draw alike."""
    draws = rng.random(bars)
    seg = np.zeros(bars, np.int64) if segment is None else segment
    return [t - back if t >= back and draws[t] < share and seg[t] == seg[t - back] else -1 for t in range(bars)]


class Echo:
    """Holds a bar's onsets to those of an earlier bar of the same sequence while it decodes,
    with at most as many notes at each onset as that bar had there (so the bar has room for
    all of them)."""

    def __init__(self, vocab: Vocab, plan: list[int]):
        self.vocab, self.plan = vocab, plan
        self.notes: dict[int, int] = {}  # onset -> notes the echoed bar struck there

    def start_bar(self, t: int, decoded: list[np.ndarray], positions: list[int]) -> None:
        """Bar t begins; `decoded` holds the sequence's bars so far and `positions` each bar's grid steps."""
        src = self.plan[t] if t < len(self.plan) else -1
        self.notes = {}
        if src >= 0 and positions[src] == positions[t]:  # only within one meter
            self.notes = _notes_at(decoded[src], self.vocab)

    @property
    def active(self) -> bool:
        return bool(self.notes)

    def restrict(self, ids: np.ndarray, pos: int, bar: np.ndarray) -> tuple[np.ndarray, int, int]:
        """The grammar's `ids` with Positions held to the next onset of the echoed bar, no more
        notes at an onset than it had there, and no bar end while an onset is still due (`bar`:
        this bar's tokens so far)."""
        kind, value = self.vocab.kind[ids], self.vocab.value[ids]
        due = [p for p in self.notes if p > pos]
        nxt = min(due) if due else -1
        keep = (kind != POSITION) | (value == nxt)
        if pos >= 0 and _notes_at(bar, self.vocab).get(pos, 0) >= self.notes.get(pos, 0):
            keep &= kind != PITCH  # this onset has its notes
        if ((kind == POSITION) & (value == nxt)).any():
            keep &= (kind != BAR) & (kind != EOS_KIND)
        out = ids[keep] if keep.any() else ids
        is_pitch = self.vocab.kind[out] == PITCH
        a = int(is_pitch.argmax()) if is_pitch.any() else 0
        return out, a, a + int(is_pitch.sum())


def _notes_at(bar: np.ndarray, vocab: Vocab) -> dict[int, int]:
    """Onset -> notes struck there, in a bar's tokens."""
    kind, value = vocab.kind[bar], vocab.value[bar]
    at, out = -1, {}
    for k, v in zip(kind.tolist(), value.tolist()):
        if k == POSITION:
            at = v
        elif k == PITCH and at >= 0:
            out[at] = out.get(at, 0) + 1
    return out
