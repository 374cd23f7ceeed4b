"""Musical-quality measures of a piece on the token grid, for `evaluate`.

They barely change between emotions on real music (../shared/data/README.md measures EMOPIA:
pitch-class entropy 2.71 +- 0.24 bits, scale consistency 0.957, groove consistency 0.984,
polyphony 5.9), so they say whether generated music looks like music, not which emotion it has.
Definitions follow MusPy's (Dong et al., ISMIR 2020 demo), written for the Grid: entropy of the
whole piece's pitch-class counts (on EMOPIA here: 2.707 +- 0.242, the README's figure), share of
notes in the best major/minor scale, notes sounding per sounding time step. One difference:
groove consistency compares adjacent bars' onsets on the token grid (16 steps a 4/4 bar), where
MusPy counts ticks (1,536 a bar in EMOPIA), so its values are lower than the README's 0.984;
`evaluate` therefore measures real music with the same function in the same run.
"""

from __future__ import annotations

import numpy as np

from emocompose.midi import DRUMS
from emocompose.grid import Grid
from emocompose.tokenizer import TokenizerConfig

MEASURES = ("pitch_class_entropy", "scale_consistency", "groove_consistency", "polyphony", "notes_per_beat")
_MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
_SCALES = np.stack([np.roll(_MAJOR_SCALE, k) for k in range(12)])  # a natural minor shares a major's notes


def pitch_class_entropy(pitch: np.ndarray) -> float:
    """Entropy in bits of the pitch-class counts of some notes."""
    counts = np.bincount(np.asarray(pitch) % 12, minlength=12)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def sounding(grid: Grid, config: TokenizerConfig) -> np.ndarray:
    """How many pitched notes sound at each grid step of the piece (drums left out)."""
    m = grid.track != DRUMS
    total = int(grid.bar_positions.sum())
    starts = grid.onsets[m]
    count = np.zeros(total + 1, np.int64)
    np.add.at(count, np.minimum(starts, total), 1)
    np.add.at(count, np.minimum(grid.ends(config)[m], total), -1)
    return np.cumsum(count)[:total]


def measure(grid: Grid, config: TokenizerConfig) -> dict:
    """The five measures of one piece (NaN where a piece has too little to measure)."""
    m = grid.track != DRUMS
    pitch, bar, pos = grid.pitch[m], grid.bar[m], grid.pos[m]
    nan = float("nan")
    if not len(pitch):
        return dict.fromkeys(MEASURES, nan) | {"notes_per_beat": 0.0}
    counts = np.bincount(pitch % 12, minlength=12)
    scale = float((_SCALES.astype(np.int64) @ counts).max() / counts.sum())
    # groove: 1 - Hamming distance of adjacent bars' onset patterns over the grid steps
    onset = np.zeros((grid.n_bars, config.max_bar_positions), bool)
    onset[bar, pos] = True
    size = np.maximum(grid.bar_positions[:-1], 1)
    groove = 1 - (onset[1:] != onset[:-1]).sum(axis=1) / size if grid.n_bars > 1 else np.array([nan])
    # polyphony: notes sounding at each grid step where any note sounds
    playing = sounding(grid, config)
    beats = max(len(playing) / config.positions_per_quarter, 1.0)
    return {
        "pitch_class_entropy": pitch_class_entropy(pitch),
        "scale_consistency": scale,
        "groove_consistency": float(np.mean(groove)),
        "polyphony": float(playing[playing > 0].mean()) if (playing > 0).any() else 0.0,
        "notes_per_beat": float(len(pitch) / beats),
    }


def summarise(rows: list[dict]) -> dict:
    """Mean and standard deviation of each measure over pieces (NaNs left out)."""
    out = {}
    for k in MEASURES:
        v = np.array([r[k] for r in rows], np.float64)
        v = v[np.isfinite(v)]
        out[k] = {"mean": round(float(v.mean()), 4) if len(v) else None,
                  "std": round(float(v.std()), 4) if len(v) else None}  # fmt: skip
    return out
