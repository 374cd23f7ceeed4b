"""What `transform` keeps of real scores for other instruments than the piano the model learned:
ten works from the corpus music21 installs with itself (string quartets, a trio sonata, chorales,
songs, a madrigal, a rag), each moved to the opposite of the emotion the model hears in it, at
lambda 0 and 1, with `--keep melody` (the default) and `--keep none` side by side.

    python benchmarks/transform_scores.py [--model PATH] [--bars 32]

Per score and way: the output's notes against the source's, the share of the source melody's
notes kept (same grid step, within a semitone) and still on top, the source's track classes
kept, and any warning transform gives. The model issue's targets: no empty or gutted output,
melody kept >= 0.90.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from _common import Timer

SCORES = [
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
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--bars", type=int, default=32, help="the first bars of each score (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from emocompose.compose import Composer
    from emocompose.emotions import emotion_of, opposite
    from emocompose.likeness import likeness
    from emocompose.melody import piano_view
    from emocompose.midi import DRUMS

    corpus = Path(importlib.util.find_spec("music21").origin).parent / "corpus"
    c = Composer.load(args.model)
    rows = []
    print(f"{'score':38} {'way':6} {'lambda':>6} {'notes':>11} {'melody kept':>11} {'on top':>6} "
          f"{'tracks kept':>11}  warning")  # fmt: skip
    for name in SCORES:
        g = c.tok.grid(c.tok.load(str(corpus / name)))
        g = g.bar_slice(0, args.bars) if args.bars else g
        src_tracks = set(g.track[g.track != DRUMS].tolist())
        q = c.trained.classify(*c.trained.encode(piano_view(g)))
        to = opposite(emotion_of(int(q["arousal"][1] >= 0.5), int(q["valence"][1] >= 0.5)))
        for keep in ("melody", "none"):
            with Timer() as t:
                outs = c.transform_many(g, [(to, 0.0), (to, 1.0)], seed=args.seed, keep=keep)
            for lam, r in zip((0.0, 1.0), outs):
                a = likeness(g, r.grid, c.tok.config)
                kept = len(src_tracks & set(r.grid.track.tolist())) / max(len(src_tracks), 1)
                rows.append((keep, lam, r.grid.n_notes / g.n_notes, a["melody_kept"], a["melody_on_top"], kept,
                             r.info["warning"]))  # fmt: skip
                print(f"{name:38} {keep:6} {lam:>6g} {r.grid.n_notes:>5}/{g.n_notes:<5} {a['melody_kept']:>11.2f} "
                      f"{a['melody_on_top']:>6.2f} {kept:>11.2f}  {r.info['warning'] or ''}  ({t.seconds:.1f} s, to {to})")  # fmt: skip
    print("\nmean over the scores")
    for keep in ("melody", "none"):
        for lam in (0.0, 1.0):
            sel = [r for r in rows if r[0] == keep and r[1] == lam]
            m = np.mean([r[2:6] for r in sel], axis=0)
            print(f"  {keep:6} lambda {lam:g}: notes x{m[0]:.2f}, melody kept {m[1]:.2f}, on top {m[2]:.2f}, "
                  f"tracks kept {m[3]:.2f}, warnings {sum(bool(r[6]) for r in sel)} of {len(sel)}")  # fmt: skip


if __name__ == "__main__":
    main()
