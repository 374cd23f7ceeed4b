"""The judge: an emotion classifier independent of the generator, for `evaluate`.

Two logistic regressions (arousal, valence) on eleven note features of a whole piece, trained
on real labelled music (EMOPIA train). It never sees the model's latents or tokens, only notes
on the token grid, so real and generated pieces are read the same way. The choice follows the
EMOPIA paper's logistic-regression baseline and the re-measurement in ../shared/data/README.md
(11 note features, song-level 5-fold CV: arousal 0.900, valence 0.716, quadrants 0.657).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emocompose.emotions import AXES, index_of
from emocompose.features import PROFILES, bar_keys, is_major, pitch_class_histogram, pitched_notes
from emocompose.grid import Grid
from emocompose.tokenizer import TokenizerConfig

FEATURES = (
    "notes_per_beat", "mean_velocity", "velocity_spread", "mean_pitch", "pitch_spread", "pitch_range",
    "mode", "major_bars", "log_duration", "notes_per_onset", "offbeat_share",
)  # fmt: skip


def note_features(grid: Grid, config: TokenizerConfig) -> np.ndarray:
    """The eleven features of FEATURES for one piece (zeros for a piece without pitched notes)."""
    n = pitched_notes(grid, config)
    out = np.zeros(len(FEATURES))
    if not len(n):
        return out
    ppq = config.positions_per_quarter
    hist = pitch_class_histogram(grid, config)
    whole = hist.sum(axis=0)
    score = PROFILES @ (whole - whole.mean())
    out[:] = (
        len(n) / n.beats,
        n.velocity.mean(),
        n.velocity.std(),
        n.pitch.mean(),
        n.pitch.std(),
        np.percentile(n.pitch, 95) - np.percentile(n.pitch, 5),
        (score[:12].max() - score[12:].max()) / max(np.linalg.norm(whole - whole.mean()), 1e-9),
        float(is_major(bar_keys(grid, config, hist)).mean()),
        np.log(n.steps.mean() / ppq),
        len(n) / len(np.unique(n.onset)),
        float(((n.pos % max(ppq // 2, 1)) != 0).mean()),
    )
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 100) -> np.ndarray:
    """Weights (features + bias) of an L2-regularised logistic regression, by Newton's method."""
    xb = np.c_[x, np.ones(len(x))]
    w = np.zeros(xb.shape[1])
    reg = l2 * np.eye(len(w))
    reg[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + reg @ w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


@dataclass(frozen=True)
class Judge:
    mean: np.ndarray  # feature standardisation
    std: np.ndarray
    weights: np.ndarray  # (2, features + 1): arousal, valence

    @classmethod
    def fit(cls, feats: np.ndarray, labels: np.ndarray, l2: float = 1.0) -> "Judge":
        """feats (n, 11), labels (n, 2) in {0, 1} (arousal, valence high)."""
        mean, std = feats.mean(axis=0), feats.std(axis=0)
        std = np.where(std > 1e-9, std, 1.0)
        x = (feats - mean) / std
        w = np.stack([fit_logistic(x, labels[:, a].astype(np.float64), l2) for a in range(2)])
        return cls(mean, std, w)

    def prob_high(self, feats: np.ndarray) -> np.ndarray:
        """(n, 2) probability that arousal / valence is high."""
        x = (np.atleast_2d(feats) - self.mean) / self.std
        return 1 / (1 + np.exp(-(np.c_[x, np.ones(len(x))] @ self.weights.T)))

    def predict(self, feats: np.ndarray) -> np.ndarray:
        return (self.prob_high(feats) >= 0.5).astype(np.int64)

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "mean": self.mean.round(6).tolist(), "std": self.std.round(6).tolist(),
                "weights": {a: self.weights[i].round(6).tolist() for i, a in enumerate(AXES)}}  # fmt: skip


def binary_scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy and macro-averaged precision, recall and F1 over the two levels of one axis."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    p, r, f = [], [], []
    for c in (0, 1):
        tp = float(((pred == c) & (truth == c)).sum())
        prec = tp / max(float((pred == c).sum()), 1.0)
        rec = tp / max(float((truth == c).sum()), 1.0)
        p.append(prec)
        r.append(rec)
        f.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return {"accuracy": round(float((truth == pred).mean()) if len(truth) else 0.0, 4),
            "precision": round(float(np.mean(p)), 4), "recall": round(float(np.mean(r)), 4),
            "f1": round(float(np.mean(f)), 4), "n": int(len(truth))}  # fmt: skip


def features_of(grids: list[Grid], config: TokenizerConfig) -> np.ndarray:
    """(n, len(FEATURES)): `note_features` of each piece."""
    return np.stack([note_features(g, config) for g in grids]) if grids else np.zeros((0, len(FEATURES)))


def quadrants(levels: np.ndarray) -> np.ndarray:
    """The quadrant index (0..3, emotions.NAMES order) of each row of (arousal, valence) levels."""
    return np.array([index_of(int(a), int(v)) for a, v in np.atleast_2d(levels)], np.int64)


def scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    """`binary_scores` per axis of (n, 2) levels, and the share with both axes right."""
    out = {axis: binary_scores(truth[:, i], pred[:, i]) for i, axis in enumerate(AXES)}
    out["quadrant_accuracy"] = round(float((quadrants(truth) == quadrants(pred)).mean()), 4) if len(truth) else 0.0
    return out
