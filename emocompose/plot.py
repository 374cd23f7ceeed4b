"""A picture of one piece (`plot`, `--plot`): its piano roll with each bar's key, and what the
model hears in each bar (q(y|x) of the bar alone, arousal and valence), drawn by `figures.piece`."""

from __future__ import annotations

import os

import numpy as np

from emocompose.features import KEY_NAMES, bar_keys
from emocompose.grid import Grid
from emocompose.trained import TrainedModel


def heard_bars(trained: TrainedModel, grid: Grid) -> dict:
    """Per bar: its key, the chance of high arousal and of high valence the model hears in it
    (q(y|x) of the bar alone), and the emotion those make."""
    from emocompose.emotions import emotion_of
    from emocompose.melody import piano_view

    q = trained.log_q(*trained.encode(piano_view(grid)), per_bar=True)
    high = np.stack([lq[:, 1].exp().cpu().numpy() for lq in q], axis=1)
    return {"keys": [KEY_NAMES[k] for k in bar_keys(grid, trained.tok.config).tolist()],
            "high": high, "emotions": [emotion_of(int(a > 0.5), int(v > 0.5)) for a, v in high]}  # fmt: skip


class PlotOut:
    """Pictures of a command's outputs (`--plot`), named as the MIDI with .png."""

    def __init__(self, out: str | None, many: bool):
        from emocompose.outputs import Destination

        self.dest = Destination(out, many=many)

    def write(self, name: str, grid: Grid, trained: TrainedModel, title: str | None = None) -> tuple[str, dict]:
        """Draw `grid` into the output `name` with .png; returns where it went and what was heard."""
        from emocompose import figures

        heard = heard_bars(trained, grid)
        png = figures.piece(grid, trained.tok.config, heard["keys"], heard["high"], title or name)
        return self.dest.write(os.path.splitext(name)[0] + ".png", png), heard
