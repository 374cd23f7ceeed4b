"""How much of a source piece a rewrite kept: its melody, its harmony, its rhythm.

`melody_kept`: the share of the source melody's notes (`melody.find_melody`) found in the
output at the same grid step within a semitone (a mode change moves some by one), and the
share of those that are still the highest note sounding there. `pitch_class_similarity` and
`onset_similarity`: the cosine of the two pieces' pitch-class histograms and of their onset
grids, bar by bar, averaged over the bars (a bar silent in both counts as alike).
"""

from __future__ import annotations

import numpy as np

from emocompose.features import pitch_class_histogram, rhythm
from emocompose.grid import Grid
from emocompose.melody import find_melody, on_top, pitched
from emocompose.tokenizer import TokenizerConfig


def melody_kept(source: Grid, out: Grid, config: TokenizerConfig) -> tuple[float, float]:
    """(kept, kept on top) as shares of the source melody's notes; (1, 1) for no melody."""
    mel = find_melody(source, config)
    if not len(mel):
        return 1.0, 1.0
    m = pitched(out)
    on, pitch = out.onsets[m], out.pitch[m]
    top = on_top(on, out.ends(config)[m], pitch)
    found = {}
    for s, p, t in zip(on.tolist(), pitch.tolist(), top.tolist()):
        found[(s, p)] = found.get((s, p), False) or t
    kept = topped = 0
    for s, p in zip(mel.step.tolist(), mel.pitch.tolist()):
        hits = [found[(s, p + d)] for d in (0, -1, 1) if (s, p + d) in found]
        kept += bool(hits)
        topped += any(hits)
    return kept / len(mel), topped / len(mel)


def _bar_cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    cos[(na == 0) & (nb == 0)] = 1.0
    return float(cos.mean()) if len(cos) else 1.0


def pitch_class_similarity(source: Grid, out: Grid, config: TokenizerConfig) -> float:
    n = min(source.n_bars, out.n_bars)
    return _bar_cosine(pitch_class_histogram(source, config)[:n], pitch_class_histogram(out, config)[:n])


def onset_similarity(source: Grid, out: Grid) -> float:
    n = min(source.n_bars, out.n_bars)
    return _bar_cosine(rhythm(source)[:n].astype(np.float64), rhythm(out)[:n].astype(np.float64))


def likeness(source: Grid, out: Grid, config: TokenizerConfig) -> dict:
    kept, topped = melody_kept(source, out, config)
    return {"melody_kept": kept, "melody_on_top": topped,
            "pitch_class_similarity": pitch_class_similarity(source, out, config),
            "onset_similarity": onset_similarity(source, out)}  # fmt: skip
