"""How much a continuation (`generate --prompt`) sounds like what it continues, beside how much
real music's next bars sound like its previous ones: EMOPIA clips cut after --prompt bars, each
continued for as many bars by the model; the first 4 new bars against the prompt's last 4, and
the clip's own next 4 bars against the same 4.

    python benchmarks/continuation_likeness.py [--clips 10] [--prompt 8] [--model PATH]

Per way: pitch-class similarity (cosine of the bars' duration-weighted pitch-class histograms)
and onset similarity (of their onset patterns), `emocompose.likeness`, and the continuation's
notes against the prompt's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _common import DATA, Timer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--prompt", type=int, default=8, help="bars of each clip given as the prompt")
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    from emocompose.compose import Composer
    from emocompose.likeness import onset_similarity, pitch_class_similarity

    c = Composer.load(args.model)
    files = sorted((args.data / "emopia" / "midis").glob("*.mid"))
    if not files:
        raise SystemExit(f"no EMOPIA clips under {args.data} (give --data)")
    k = args.prompt
    rows = {"model": [], "real": []}
    with Timer() as t:
        for f in files[:: max(1, len(files) // (3 * args.clips))]:
            g = c.tok.grid(c.tok.load(str(f)))
            if g.n_bars < k + 4:
                continue
            prompt, last = g.bar_slice(0, k), g.bar_slice(k - 4, k)
            new = c.continuation(prompt, k, seed=0)[0].grid.bar_slice(k, k + 4)
            for way, nxt in (("model", new), ("real", g.bar_slice(k, k + 4))):
                rows[way].append((pitch_class_similarity(last, nxt, c.tok.config), onset_similarity(last, nxt),
                                  nxt.n_notes / max(last.n_notes, 1)))  # fmt: skip
            if len(rows["model"]) == args.clips:
                break
    print(f"{len(rows['model'])} clips, {k} bars of prompt ({t.seconds:.0f} s)")
    print(f"{'next 4 bars':12} {'pitch classes':>13} {'onsets':>7} {'notes':>6}  (against the prompt's last 4)")
    for way, r in rows.items():
        pc, on, notes = np.mean(r, axis=0)
        print(f"{way:12} {pc:13.2f} {on:7.2f} {notes:5.2f}x")


if __name__ == "__main__":
    main()
