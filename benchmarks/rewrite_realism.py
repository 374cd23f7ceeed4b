"""What `transform` does to real pieces, at each lambda: EMOPIA `val` clips moved toward their
opposite quadrant (or across one axis, `--toward valence` or `arousal`), measured for what a
composer keeps (melody, onsets, pitch classes, notes and notes per onset against the source's),
how far the rewrite gets (evaluate's emotion judge) and whether it passes for real music (the
realism test against EMOPIA `test` clips; the sources themselves are the floor, rewrites grouped
by their source's song).

    python benchmarks/rewrite_realism.py --data data/all [--model PATH] [--clips 20] \\
        [--lambdas 0 0.25 0.5 1] [--seeds 0 1] [--keep melody] [--toward both]

`evaluate` measures the same on `test` clips (its `rewrites` section); this script keeps the
test split for the final figures and so reads `val`, with more clips and seeds than evaluate
takes the time for. Compare two versions of the code by running it in each checkout.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import Timer

# structure features (`realism.FEATURES`) printed beside the source's
SHOWN = ("notes_per_onset", "chord_share", "onset_steps_per_bar", "mean_log_duration")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a dataset from `emocompose preprocess` (with EMOPIA's labels)")
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--clips", type=int, default=20, help="val clips per quadrant")
    ap.add_argument("--bars", type=int, default=20, help="bars of each clip")
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--keep", default="melody", help="transform's --keep")
    ap.add_argument("--toward", default="both", choices=("both", "arousal", "valence"),
                    help="the levels changed: both (the opposite quadrant), or this axis alone")
    args = ap.parse_args()

    from emocompose import judge, realism
    from emocompose.compose import Composer
    from emocompose.emotions import NAMES, flipped
    from emocompose.evaluate import ACROSS
    from emocompose.likeness import likeness
    from emocompose.real_music import fit_judge, load_real

    c = Composer.load(args.model)
    conf = c.tok.config
    real = load_real(args.data, c.tok, args.bars)
    the_judge, _ = fit_judge(real, conf)
    across = {name: a for a, name in ACROSS.items()}[args.toward]
    target = lambda q: flipped(NAMES[q], across)  # noqa: E731

    val, test = (np.flatnonzero(real.splits == s) for s in ("val", "test"))
    by_q = judge.quadrants(real.labels[val])
    quadrant = {int(i): q for q in range(4) for i in val[by_q == q][: args.clips]}  # clip -> its quadrant
    clips = list(quadrant)
    sources = [real.sources[i] for i in clips]
    test_grids, test_sources = [real.grids[i] for i in test], [real.sources[i] for i in test]
    feature = {name: realism.FEATURES.index(name) for name in SHOWN}

    def shown(grids) -> np.ndarray:
        f = np.stack([realism.structure_features(g, conf) for g in grids])
        return f[:, [feature[n] for n in SHOWN]].mean(0)

    src_grids = [real.grids[i] for i in clips]
    print(f"model {c.trained.path}; {len(clips)} val clips changing {args.toward}, keep {args.keep}, "
          f"seeds {args.seeds}; realism against {len(test)} test clips")
    print("sources: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(SHOWN, shown(src_grids))))
    floor = realism.compare(src_grids, test_grids, test_sources, src_grids, sources, conf, 0, generated_sources=sources)
    print(f"sources against test clips (the floor): {floor['accuracy']:.3f}\n")
    head = f"{'lambda':>6} {'seed':>4} {'realism':>7} {'reached':>7} {'melody':>6} {'onsets':>6} {'pcs':>5} {'notes':>5}  "
    print(head + "  ".join(f"{n:>19}" for n in SHOWN) + "   telling features")
    rows = {lam: [] for lam in args.lambdas}

    def line(lam, seed, row) -> str:
        return (f"{lam:>6} {seed:>4} " + " ".join(f"{x:>{w}.3f}" for x, w in zip(row[:6], (7, 7, 6, 6, 5, 5)))
                + "  " + "  ".join(f"{x:>19.2f}" for x in row[6:]))  # fmt: skip

    for seed in args.seeds:
        with Timer() as t:
            outs = []
            for k in range(0, len(clips), 8):
                part = clips[k : k + 8]
                jobs = [(real.grids[i], [(target(quadrant[i]), lam) for lam in args.lambdas],
                         NAMES[quadrant[i]]) for i in part]  # fmt: skip
                outs += c.transform_pieces(jobs, seed=seed + k, keep=args.keep)
        for j, lam in enumerate(args.lambdas):
            grids = [o[j].grid for o in outs]
            told = realism.compare(grids, test_grids, test_sources, src_grids, sources, conf, seed,
                                   generated_sources=sources)  # fmt: skip
            judged = judge.quadrants((the_judge.prob_high(judge.features_of(grids, conf)) >= 0.5).astype(int))
            reached = np.mean([jq == NAMES.index(target(quadrant[i])) for jq, i in zip(judged, clips)])
            alike = [likeness(s, g, conf) for s, g in zip(src_grids, grids)]
            notes = np.mean([g.n_notes / max(s.n_notes, 1) for s, g in zip(src_grids, grids)])
            row = [told["accuracy"], reached, np.mean([a["melody_kept"] for a in alike]),
                   np.mean([a["onset_similarity"] for a in alike]),
                   np.mean([a["pitch_class_similarity"] for a in alike]), notes, *shown(grids)]  # fmt: skip
            rows[lam].append(row)
            print(line(lam, seed, row) + "   " + ", ".join(told["most_telling"][:3]))
        print(f"  (seed {seed}: {t.seconds:.0f} s)")
    print("\nmean over the seeds")
    for lam, r in rows.items():
        print(line(lam, "", np.mean(r, 0)))


if __name__ == "__main__":
    main()
