"""Does generated music pass for real? Structure features of a piece, a classifier two-sample
test and per-feature overlapping areas, for `evaluate`.

* Features: what a listener notices before any emotion: density, dynamics, register, note
  lengths, where onsets fall on the grid, the melodic intervals of the top voice, chords,
  repetition between bars, silences. All from the notes on the token grid, drums left out.
* Classifier two-sample test (Lopez-Paz & Oquab, ICLR 2017): a logistic regression learns to tell
  the two sets apart; its cross-validated accuracy is 0.5 when they cannot be told apart. Folds
  are grouped (clips of one song never sit on both sides of a fold), so a song's sound is not
  mistaken for realism. Real-against-real (train clips against test clips) is the floor.
* Overlapping area (Yang & Lerch 2020, "On the evaluation of generative models in music"): per
  feature, the distances between real pieces and the distances from generated to real pieces,
  each smoothed by a Gaussian kernel; their overlap is 1 when generated pieces sit among real
  ones as real ones sit among each other.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from emocompose.features import pitched_notes
from emocompose.judge import fit_logistic
from emocompose.quality import pitch_class_entropy, sounding
from emocompose.grid import Grid
from emocompose.tokenizer import TokenizerConfig
from emocompose.top_voice import STEP, line

FEATURES = (
    "notes_per_beat", "mean_velocity", "velocity_spread", "mean_pitch", "pitch_spread", "pitch_range",
    "mean_log_duration", "log_duration_spread", "onsets_on_beats", "onsets_on_16ths", "onset_steps_per_bar",
    "top_voice_interval", "top_voice_steps", "top_voice_leaps", "notes_per_onset", "chord_share",
    "bars_repeating_rhythm", "adjacent_bar_pitch_similarity", "silent_share", "pitch_class_entropy",
)  # fmt: skip
# Where onsets fall on the 16th grid is partly a trait of the transcription, not of the music:
# EMOPIA is performances written on a nominal grid (half their onsets on odd 16ths), POP909 is
# beat-aligned, and by these two features alone real POP909 clips are told from real EMOPIA ones
# in 0.99 of cases. The test is also reported without them.
GRID_STYLE = ("onsets_on_beats", "onsets_on_16ths")
_TRAILING_NUMBER = re.compile(r"_\d+$")


def song_of(source: str) -> str:
    """The song a clip belongs to: its file name without a trailing clip number
    (EMOPIA's Q1_<song>_<clip> -> Q1_<song>; POP909's 001 stays 001)."""
    return _TRAILING_NUMBER.sub("", Path(source).stem)


def structure_features(grid: Grid, config: TokenizerConfig) -> np.ndarray:
    """The values of FEATURES for one piece (zeros for a piece without pitched notes)."""
    n = pitched_notes(grid, config)
    out = np.zeros(len(FEATURES))
    if not len(n):
        return out
    ppq = config.positions_per_quarter
    pitch, pos, bar = n.pitch, n.pos, n.bar
    log_dur = np.log(n.steps / ppq)
    distinct, per_onset = np.unique(n.onset, return_counts=True)
    top = line(n.onset, pitch)
    jumps = np.abs(np.diff(top)) if len(top) > 1 else np.zeros(1)
    # repetition: bars whose onset pattern (grid steps with an onset) some earlier bar has too
    patterns = [tuple(np.unique(pos[bar == b])) for b in range(grid.n_bars)]
    seen, repeats, filled = set(), 0, 0
    for pat in patterns:
        if pat:
            filled += 1
            repeats += pat in seen
            seen.add(pat)
    pcs = np.zeros((grid.n_bars, 12))
    np.add.at(pcs, (bar, pitch.astype(np.int64) % 12), 1)
    norm = np.linalg.norm(pcs, axis=1)
    both = (norm[1:] > 0) & (norm[:-1] > 0)
    adjacent = (pcs[1:] * pcs[:-1]).sum(1)[both] / (norm[1:] * norm[:-1])[both]
    playing = sounding(grid, config)
    silent = float((playing <= 0).mean()) if len(playing) else 0.0
    out[:] = (
        len(n) / n.beats,
        n.velocity.mean(),
        n.velocity.std(),
        pitch.mean(),
        pitch.std(),
        np.percentile(pitch, 95) - np.percentile(pitch, 5),
        log_dur.mean(),
        log_dur.std(),
        float((pos % ppq == 0).mean()),
        float((pos % max(ppq // 2, 1) != 0).mean()),
        len(distinct) / max(filled, 1),
        jumps.mean(),
        float((jumps <= STEP).mean()),
        float((jumps > 7).mean()),
        per_onset.mean(),
        float((per_onset >= 3).mean()),
        repeats / max(filled - 1, 1),
        adjacent.mean() if len(adjacent) else 0.0,
        silent,
        pitch_class_entropy(pitch.astype(np.int64)),
    )
    return out


def _folds(groups: list[str], k: int, seed: int) -> np.ndarray:
    """A fold number per row; all rows of a group share one fold."""
    names = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[i]: n % k for n, i in enumerate(order)}
    return np.array([fold_of[g] for g in groups])


def two_sample_accuracy(a: np.ndarray, b: np.ndarray, groups_a: list[str], groups_b: list[str],
                        k: int = 5, seed: int = 0, l2: float = 1.0) -> float:  # fmt: skip
    """Grouped k-fold accuracy of a logistic regression telling rows of `a` from rows of `b`
    (two sets of equal size: 0.5 is chance)."""
    x = np.r_[a, b]
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    fold = _folds([f"a:{g}" for g in groups_a] + [f"b:{g}" for g in groups_b], k, seed)
    right = 0
    for f in range(k):
        fit, test = fold != f, fold == f
        if not test.any() or len(np.unique(y[fit])) < 2:
            continue
        mean, std = x[fit].mean(0), x[fit].std(0)
        std = np.where(std > 1e-9, std, 1.0)
        w = fit_logistic((x[fit] - mean) / std, y[fit], l2)
        z = np.c_[(x[test] - mean) / std, np.ones(int(test.sum()))] @ w
        right += int(((z >= 0) == (y[test] == 1)).sum())
    return right / len(x)


def overlapping_area(real: np.ndarray, generated: np.ndarray, points: int = 512) -> float:
    """Yang & Lerch's overlap of the real-to-real and generated-to-real distance distributions of
    one feature (Gaussian kernels, Scott's bandwidth)."""
    intra = np.abs(real[:, None] - real[None])[np.triu_indices(len(real), 1)]
    inter = np.abs(generated[:, None] - real[None]).ravel()
    hi = max(intra.max(initial=0.0), inter.max(initial=0.0))
    if hi <= 0:
        return 1.0
    grid = np.linspace(-0.1 * hi, 1.1 * hi, points)
    step = grid[1] - grid[0]

    def density(d: np.ndarray) -> np.ndarray:
        # binned: each distance shared between its two grid points, the counts convolved with the
        # kernel. The direct sum over every (grid point, distance) pair took 3 of the 4 s of each
        # realism test of 160 rewrites; binned it takes under 1% of that, within 1e-3 of it (a test)
        bw = max(d.std() * len(d) ** -0.2, 1e-3 * hi)
        at = (d - grid[0]) / step
        i = np.minimum(at.astype(np.int64), points - 2)
        counts = np.bincount(i, 1 - (at - i), points) + np.bincount(i + 1, at - i, points)
        half = min(int(np.ceil(6 * bw / step)), points - 1)  # the kernel past 6 bandwidths is under 1e-7
        kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * step / bw) ** 2)
        return np.convolve(counts, kernel)[half : half + points] / (len(d) * bw * np.sqrt(2 * np.pi))

    return float(np.minimum(density(intra), density(inter)).sum() * step)


def compare(generated: list[Grid], real: list[Grid], real_sources: list[str], floor: list[Grid],
            floor_sources: list[str], config: TokenizerConfig, seed: int = 0,
            generated_sources: list[str] | None = None) -> dict:  # fmt: skip
    """The two-sample test of generated against real pieces, real against real beside it, and
    per-feature means, standardised differences and overlapping areas. `generated_sources`: the
    real clip each generated piece was made from (a rewrite), so that the rewrites of one song
    share a fold as its clips do."""
    n = min(len(generated), len(real))
    rng = np.random.default_rng(seed)
    pick_g = np.sort(rng.permutation(len(generated))[:n])
    pick_r = np.sort(rng.permutation(len(real))[:n])
    g = np.stack([structure_features(generated[i], config) for i in pick_g])
    r = np.stack([structure_features(real[i], config) for i in pick_r])
    r_groups = [song_of(real_sources[i]) for i in pick_r]
    g_groups = [f"generated{i}" if generated_sources is None else song_of(generated_sources[i]) for i in pick_g]
    acc = two_sample_accuracy(g, r, g_groups, r_groups, seed=seed)
    music = [j for j, name in enumerate(FEATURES) if name not in GRID_STYLE]
    acc_music = two_sample_accuracy(g[:, music], r[:, music], g_groups, r_groups, seed=seed)
    m = min(len(floor), n)
    pick_f = np.sort(rng.permutation(len(floor))[:m])
    f = np.stack([structure_features(floor[i], config) for i in pick_f])
    floor_acc = two_sample_accuracy(f, r[:m], [song_of(floor_sources[i]) for i in pick_f], r_groups[:m], seed=seed)
    spread = r.std(0)
    per = {}
    for j, name in enumerate(FEATURES):
        d = (g[:, j].mean() - r[:, j].mean()) / spread[j] if spread[j] > 1e-9 else 0.0
        per[name] = {"generated": round(float(g[:, j].mean()), 4), "real": round(float(r[:, j].mean()), 4),
                     "difference_in_stds": round(float(d), 3),
                     "overlapping_area": round(overlapping_area(r[:, j], g[:, j]), 4)}  # fmt: skip
    tells = sorted(per, key=lambda k: -abs(per[k]["difference_in_stds"]))
    return {
        "pieces": n, "accuracy": round(acc, 4), "real_against_real": round(floor_acc, 4), "floor_pieces": m,
        "accuracy_without_grid_style": round(acc_music, 4),
        "mean_overlapping_area": round(float(np.mean([p["overlapping_area"] for p in per.values()])), 4),
        "most_telling": tells[:5], "features": per,
    }  # fmt: skip
