"""Real scores for other instruments than the piano the model learned, from the corpus music21
installs with itself, and what `transform` keeps of them: `evaluate`'s `scores` section and
`benchmarks/transform_scores.py`.

Each score (its first bars) is moved to the opposite of the emotion the model hears in it, at
lambda 0 and 1, with each way of rewriting; per output: its notes against the source's, the
source melody kept and still on top (`likeness`), the share of the source's pitched track
classes still there, and transform's warning if it gave one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCORES = (
    "mozart/k155/movement1.mxl",  # string quartet
    "beethoven/opus18no1/movement2.krn",  # string quartet
    "haydn/opus74no1/movement2.mxl",  # string quartet
    "corelli/opus3no1/1grave.xml",  # trio sonata: two violins and continuo
    "bach/bwv66.6.mxl",  # chorale, four voices
    "bach/bwv4.8.mxl",  # chorale
    "schubert/Lindenbaum.xml",  # song: voice and piano
    "schumann_robert/dichterliebe_no2.xml",  # song: voice and piano
    "monteverdi/madrigal.3.1.mxl",  # madrigal, five voices
    "joplin/maple_leaf_rag.mxl",  # piano
)
WAYS = ("melody", "none")
LAMBDAS = (0.0, 1.0)


def path(name: str) -> Path:
    return Path(importlib.util.find_spec("music21").origin).parent / "corpus" / name


def transform_kept(composer, count: int = len(SCORES), bars: int = 32, seed: int = 0, on_done=None) -> dict:
    """Per way, lambda and score, what the rewrite kept (see the module's docstring), and each
    way's means over the scores. `on_done(n)` is called as each way's n rewrites are done."""
    from emocompose.emotions import heard, opposite
    from emocompose.likeness import likeness
    from emocompose.melody import piano_view, pitched

    c = composer
    scores = []  # per score: its name, its first bars, its pitched track classes, the emotion it goes to
    for name in SCORES[:count]:
        g = c.tok.grid(c.tok.load(str(path(name))))
        g = g.bar_slice(0, bars) if bars else g
        q = c.trained.classify(*c.trained.encode(piano_view(g)))
        scores.append((name, g, set(g.track[pitched(g)].tolist()), opposite(heard(q))))
    rows = {way: {lam: [] for lam in LAMBDAS} for way in WAYS}
    for way in WAYS:  # every score's rewrites of one way as one batch
        outs = c.transform_pieces([(g, [(to, lam) for lam in LAMBDAS], None) for _, g, _, to in scores],
                                  seed=seed, keep=way)  # fmt: skip
        for (name, g, tracks, to), results in zip(scores, outs):
            for lam, r in zip(LAMBDAS, results):
                alike = likeness(g, r.grid, c.tok.config)
                rows[way][lam].append({
                    "score": name, "to": to, "notes_ratio": round(r.grid.n_notes / max(g.n_notes, 1), 4),
                    "melody_kept": round(alike["melody_kept"], 4), "melody_on_top": round(alike["melody_on_top"], 4),
                    "tracks_kept": round(len(tracks & set(r.grid.track.tolist())) / max(len(tracks), 1), 4),
                    "warning": r.info["warning"],
                })  # fmt: skip
        if on_done:
            on_done(len(scores) * len(LAMBDAS))
    means = {way: {f"{lam:g}": {k: round(float(np.mean([x[k] for x in rs])), 4) if rs else None
                                for k in ("notes_ratio", "melody_kept", "melody_on_top", "tracks_kept")}
                   | {"warnings": sum(bool(x["warning"]) for x in rs)} for lam, rs in by.items()}
             for way, by in rows.items()}  # fmt: skip
    return {"scores": list(SCORES[:count]), "bars": bars, "means": means,
            "each": {way: {f"{lam:g}": rs for lam, rs in by.items()} for way, by in rows.items()}}  # fmt: skip
