"""What the sampling settings do to realism and to emotion, measured together: for each setting,
pieces generated per emotion, judged by evaluate's emotion judge and by its realism test against
the real test clips, with the figures the model issue targets per quadrant beside real music.

    python benchmarks/sampling_realism.py --data data/all [--model PATH] [--pieces 25] \\
        [--settings 1.0/0.95/1.0/0.6 1.0/1.0/1.0/0.6 ...]

A setting is temperature/top_p/latent_temperature/coherence[/echo[/key_spread]] (generate's
options; top_p is the nucleus over pitches; echo and key_spread default to generate's). The first
setting is the baseline the others are read against; all run on the same seeds. Beside the judge
and the realism test it prints how often a piece is heard in the key it was written toward
(`features.global_key`), and in that key's mode.

Against the 86 test clips the realism test moves by about 0.03 between seed sets of 100 pieces,
as much as most settings move it: read a setting over several seeds, or with `--against val+test
--pieces 71` (284 pieces against 284 clips), where the classifier also has more to learn from and
reads higher.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from _common import Timer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a dataset from `emocompose preprocess` (with EMOPIA's labels)")
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--pieces", type=int, default=25, help="pieces per emotion")
    ap.add_argument("--bars", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--against", choices=("test", "val", "val+test"), default="test",
                    help="the real clips of the realism test (val: to choose between models without the test split; "
                         "val+test with --pieces 71: 284 pieces against 284 clips, for differences under 0.03)")
    ap.add_argument("--settings", nargs="+", default=["1.0/0.95/1.0/0.6", "1.0/1.0/1.0/0.6", "1.0/0.9/1.0/0.6",
                                                      "1.0/0.85/1.0/0.6", "1.0/1.0/1.0/0.85"])  # fmt: skip
    args = ap.parse_args()

    from emocompose import presets
    from emocompose.compose import Composer
    from emocompose.emotions import EMOTIONS
    from emocompose.evaluate import NAMES, EvalConfig, Evaluation, keys_heard
    from emocompose.features import describe_pieces
    from emocompose.real_music import load_real
    from emocompose.judge import quadrants

    c = Composer.load(args.model)
    real = load_real(args.data, c.tok, args.bars)

    print(f"model {c.trained.path} (step {c.trained.meta.get('step')}), {args.pieces} pieces of {args.bars} bars per emotion")
    quadrant = quadrants(real.labels)
    real_q = {name: describe_pieces([g for g, q in zip(real.grids, quadrant) if q == k], c.tok.config)
              for k, name in enumerate(NAMES)}  # fmt: skip
    print("real EMOPIA per quadrant (notes per beat / velocity / pitch range): " + ", ".join(
        f"{n} {d['notes_per_beat']:.2f}/{d['mean_velocity']:.0f}/{d['pitch_range']:.0f}" for n, d in real_q.items()))
    print(f"{'T/top_p/latent T/coherence[/echo[/key spread]]':>46} {'arousal':>8} {'valence':>8} {'key / mode':>11} "
          f"{'realism':>8} {'floor':>6} {'overlap':>8}  worst per-quadrant gap to real   telling features   seconds")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:  # only the judge and the realism test are used: nothing is written
        ev = Evaluation(c, real, Path(tmp), EvalConfig(pieces=args.pieces, bars=args.bars, seed=args.seed))
        for setting in args.settings:
            given = list(map(float, setting.split("/")))
            t, p, lt, coh, echo, spread = given + [presets.ECHO, presets.KEY_SPREAD][len(given) - 4 :]
            grids, right, results = {}, [], []
            with Timer() as timer:
                for i, name in enumerate(NAMES):
                    res = c.generate(name, bars=args.bars, count=args.pieces, seed=args.seed + i, temperature=t,
                                     top_p=p, latent_temperature=lt, coherence=coh, echo=echo, key_spread=spread)  # fmt: skip
                    grids[name] = [r.grid for r in res]
                    results += res
            for name in NAMES:
                right.append(ev.judge.predict(ev.feats(grids[name])) == np.array(EMOTIONS[name]))
            acc = np.concatenate(right).mean(0)
            rl = ev.realism(grids, args.against)
            gaps = []
            for name in NAMES:
                d = describe_pieces(grids[name], c.tok.config)
                for k in ("notes_per_beat", "mean_velocity", "pitch_range"):
                    gaps.append((d[k] / real_q[name][k] - 1, f"{name} {k} {d[k]:.1f} (real {real_q[name][k]:.1f})"))
            worst = max(gaps, key=lambda gap: abs(gap[0]))
            heard = keys_heard(results)
            on_key = "-" if heard["key_heard_as_asked"] is None else \
                f"{heard['key_heard_as_asked']:.2f} / {heard['mode_heard_as_asked']:.2f}"  # fmt: skip
            print(f"{setting:>46} {acc[0]:>8.2f} {acc[1]:>8.2f} {on_key:>11} {rl['accuracy']:>8.2f} {rl['real_against_real']:>6.2f} "
                  f"{rl['mean_overlapping_area']:>8.2f}  {worst[1]} {worst[0]:+.0%}   {', '.join(rl['most_telling'][:3])}"
                  f"   {timer.seconds:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
