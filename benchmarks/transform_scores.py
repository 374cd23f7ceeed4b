"""What `transform` keeps of real scores for other instruments than the piano the model learned:
the ten works of `emocompose.corpus` (string quartets, a trio sonata, chorales, songs, a
madrigal, a rag; music21's corpus), each moved to the opposite of the emotion the model hears in
it, at lambda 0 and 1, with `--keep melody` (the default) and `--keep none` side by side
(`evaluate` reports the same as its `scores` section).

    python benchmarks/transform_scores.py [--model PATH] [--bars 32]

The model issue's targets: no empty or gutted output, melody kept >= 0.90.
"""

from __future__ import annotations

import argparse

from _common import Timer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--bars", type=int, default=32, help="the first bars of each score (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from emocompose.compose import Composer
    from emocompose.corpus import transform_kept

    with Timer() as t:
        r = transform_kept(Composer.load(args.model), bars=args.bars, seed=args.seed)
    print(f"{'score':38} {'way':6} {'lambda':>6} {'notes':>6} {'melody kept':>11} {'on top':>6} {'tracks kept':>11}  warning")
    for way, by in r["each"].items():
        for lam, rows in by.items():
            for x in rows:
                print(f"{x['score']:38} {way:6} {lam:>6} {x['notes_ratio']:>6.2f} {x['melody_kept']:>11.2f} "
                      f"{x['melody_on_top']:>6.2f} {x['tracks_kept']:>11.2f}  {x['warning'] or ''} (to {x['to']})")  # fmt: skip
    print(f"\nmean over the scores ({t.seconds:.0f} s)")
    for way, by in r["means"].items():
        for lam, m in by.items():
            print(f"  {way:6} lambda {lam}: notes x{m['notes_ratio']:.2f}, melody kept {m['melody_kept']:.2f}, "
                  f"on top {m['melody_on_top']:.2f}, tracks kept {m['tracks_kept']:.2f}, "
                  f"warnings {m['warnings']} of {len(r['scores'])}")  # fmt: skip


if __name__ == "__main__":
    main()
