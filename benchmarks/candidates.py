"""What `--candidates` buys and costs: pieces generated per emotion with one decoding each and with
the best of N (the model's own q(y|x) choosing), judged by evaluate's independent classifier,
and the wall time of each, in one run.

    python benchmarks/candidates.py --data data/all [--model PATH] [--pieces 16] [--candidates 4]

The judge is fitted on the dataset's train split exactly as `emocompose evaluate` fits it.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import Timer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a dataset from `emocompose preprocess` (with EMOPIA's labels)")
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--pieces", type=int, default=16, help="pieces per emotion")
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--bars", type=int, default=20)
    ap.add_argument("--seed", type=int, default=100)
    args = ap.parse_args()

    from emocompose import judge
    from emocompose.compose import Composer
    from emocompose.emotions import EMOTIONS
    from emocompose.real_music import fit_judge, load_real

    c = Composer.load(args.model)
    real = load_real(args.data, c.tok, args.bars)
    j, report = fit_judge(real, c.tok.config)
    ceiling = report["test"]
    print(f"model {c.trained.path} (step {c.trained.meta.get('step')}); the judge on real test clips: arousal "
          f"{ceiling['arousal']['accuracy']:.2f}, valence {ceiling['valence']['accuracy']:.2f}")  # fmt: skip
    rows = {}
    for n in (1, args.candidates):
        right, seconds = [], 0.0
        for i, (name, target) in enumerate(EMOTIONS.items()):
            with Timer() as t:
                res = c.generate(name, bars=args.bars, count=args.pieces, seed=args.seed + i, candidates=n)
            seconds += t.seconds
            right.append(j.predict(judge.features_of([r.grid for r in res], c.tok.config)) == np.array(target))
        right = np.concatenate(right)
        rows[n] = (right.mean(0), right.all(1).mean(), seconds)
        print(f"candidates {n}: arousal {rows[n][0][0]:.3f}  valence {rows[n][0][1]:.3f}  quadrant {rows[n][1]:.3f}  "
              f"({4 * args.pieces} pieces, {seconds:.0f} s)")  # fmt: skip
    base, best = rows[1], rows[args.candidates]
    print(f"ratio: best of {args.candidates} takes {best[2] / base[2]:.2f}x the time of one decoding; "
          f"accuracy arousal {base[0][0]:.2f} -> {best[0][0]:.2f}, valence {base[0][1]:.2f} -> {best[0][1]:.2f}, "
          f"quadrant {base[1]:.2f} -> {best[1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
