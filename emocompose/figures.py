"""PNG figures of `evaluate`, drawn with matplotlib (imported here only, headless) and written
atomically. Each function takes plain numbers, so a report can be redrawn from report.json."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from emocompose.atomic import write_bytes
from emocompose.midi import TRACKS
from emocompose.grid import Grid
from emocompose.tokenizer import TokenizerConfig

COLOURS = {"happy": "#e69f00", "tense": "#d55e00", "sad": "#0072b2", "calm": "#009e73"}
TRACK_COLOURS = ("#777777", "#222222", "#aa7722", "#6633aa", "#228833")  # by midi.TRACKS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _save(fig, path: Path) -> None:
    write_bytes(path, _png(fig))


def _notes(ax, g: Grid, config: TokenizerConfig, colours) -> None:
    """Notes as bars over beats (velocity as opacity), dotted bar lines, the pitch range fitted."""
    plt = _plt()
    ppq = config.positions_per_quarter
    onset = g.onsets / ppq
    length = config.duration_array[g.dur] / ppq
    alpha = 0.3 + 0.7 * g.vel / max(config.velocity_bins - 1, 1)
    for x, w, p, a, c in zip(onset, length, g.pitch, alpha, colours):
        ax.add_patch(plt.Rectangle((x, p - 0.4), w, 0.8, color=c, alpha=float(a), lw=0))
    for s in g.bar_starts / ppq:
        ax.axvline(s, color="0.8", lw=0.5, ls=":")
    lo, hi = (int(g.pitch.min()) - 2, int(g.pitch.max()) + 2) if g.n_notes else (48, 84)
    ax.set_xlim(0, g.bar_starts[-1] / ppq)
    ax.set_ylim(lo, hi)
    ax.set_ylabel("pitch")


def piano_roll(grids: dict[str, Grid], config: TokenizerConfig, path: Path) -> None:
    """One piano roll per emotion, stacked; bar lines dotted, velocity as opacity."""
    plt = _plt()
    fig, axes = plt.subplots(len(grids), 1, figsize=(11, 2.3 * len(grids)), squeeze=False)
    for ax, (name, g) in zip(axes[:, 0], grids.items()):
        _notes(ax, g, config, [COLOURS.get(name, "k")] * g.n_notes)
        tracks = ", ".join(sorted({TRACKS[t] for t in g.track.tolist()}))
        ax.set_title(f"{name}: {g.n_bars} bars, {g.n_notes} notes ({tracks})", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("beats")
    fig.subplots_adjust(hspace=0.45)
    _save(fig, path)


def piece(g: Grid, config: TokenizerConfig, keys: list[str], heard: np.ndarray, title: str) -> bytes:
    """PNG of one piece: its piano roll, coloured by track class, with each bar's key written
    where it changes; under it, per bar, the chance the model hears high arousal and high
    valence, over a band coloured by the emotion heard."""
    from emocompose.emotions import EMOTIONS, emotion_of

    plt = _plt()
    width = min(max(6.0, 0.55 * g.n_bars), 24.0)
    fig, (roll, q) = plt.subplots(2, 1, figsize=(width, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    _notes(roll, g, config, [TRACK_COLOURS[t] for t in g.track.tolist()])
    starts = g.bar_starts / config.positions_per_quarter
    for i, name in enumerate(keys):
        if i == 0 or name != keys[i - 1]:
            roll.text(starts[i], 1.01, name, transform=roll.get_xaxis_transform(), fontsize=7, rotation=30)
    present = sorted(set(g.track.tolist()))
    if present:  # a silent piece has nothing to name
        roll.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=TRACK_COLOURS[t]) for t in present],
                    labels=[TRACKS[t] for t in present], fontsize=7, loc="upper right")  # fmt: skip
    roll.set_title(title, fontsize=9, loc="left", pad=18)
    for i, (a, v) in enumerate(heard):
        q.axvspan(starts[i], starts[i + 1], color=COLOURS[emotion_of(int(a > 0.5), int(v > 0.5))], alpha=0.18, lw=0)
    mid = (starts[:-1] + starts[1:]) / 2
    q.plot(mid, heard[:, 0], marker="o", ms=3, color="#cc3311", label="arousal high")
    q.plot(mid, heard[:, 1], marker="s", ms=3, color="#0077bb", label="valence high")
    q.axhline(0.5, color="0.5", lw=0.6, ls=":")
    q.set_ylim(0, 1)
    q.set_ylabel("heard")
    q.set_xlabel("beats")
    q.legend(handles=q.get_legend_handles_labels()[0] + [plt.Rectangle((0, 0), 1, 1, color=COLOURS[e], alpha=0.3)
                                                         for e in EMOTIONS],  # fmt: skip
             labels=q.get_legend_handles_labels()[1] + list(EMOTIONS), fontsize=7, ncol=6, loc="upper left",
             bbox_to_anchor=(0, -0.45))  # fmt: skip
    return _png(fig)


def latent_scatter(panels: list[tuple[str, np.ndarray, np.ndarray, tuple[str, str]]], path: Path) -> None:
    """2-D projections side by side: (title, points (n, 2), labels 0/1, (low name, high name))."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    for ax, (title, pts, lab, names) in zip(axes[0], panels):
        for level, colour in ((0, "#0072b2"), (1, "#d55e00")):
            m = lab == level
            ax.scatter(pts[m, 0], pts[m, 1], s=9, alpha=0.6, color=colour, label=names[level])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(fontsize=8)
    _save(fig, path)


def confusion(matrix: np.ndarray, rows: list[str], cols: list[str], title: str, path: Path,
              row_label: str = "target", col_label: str = "judged") -> None:  # fmt: skip
    """A heat map of shares (each row sums to one), the share printed in each cell."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = matrix[i, j]
            ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center",
                    color="white" if v > 0.6 else "black", fontsize=9)  # fmt: skip
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def curves(x: list[float], series: dict[str, list[float]], xlabel: str, ylabel: str, title: str, path: Path,
           ceiling: dict[str, float] | None = None, log_x: bool = False) -> None:  # fmt: skip
    """Lines over x (a sweep), with optional dashed horizontal references."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}" for v in x])
    for i, (name, ys) in enumerate(series.items()):
        ax.plot(x, ys, marker="o", label=name, color=f"C{i}")
        if ceiling and name in ceiling:
            ax.axhline(ceiling[name], color=f"C{i}", ls="--", lw=0.8)
    _finish(fig, ax, xlabel, ylabel, title, path)


def tradeoff(ways: dict[str, tuple[list[float], list[float]]], labels: list[float], xlabel: str, ylabel: str,
             title: str, path: Path) -> None:  # fmt: skip
    """One line per way through its (x, y) points, each point labelled (lambda)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (name, (xs, ys)) in enumerate(ways.items()):
        ax.plot(xs, ys, marker="o", label=name, color=f"C{i}")
        for x, y, lab in zip(xs, ys, labels):
            ax.annotate(f"{lab:g}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color=f"C{i}")
    ax.set_xlim(0, 1.02)
    _finish(fig, ax, xlabel, ylabel, title, path)


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """Shares on the y axis (0 to 1), labels, legend and grid; then the file."""
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
