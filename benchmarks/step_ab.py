"""One decoding step (`model.step.StepCache.step`) of this checkout against another checkout's,
alternated in one process on the same model, at several batch sizes.

    python benchmarks/step_ab.py --baseline /tmp/wt [--model PATH] [--batch 1 8 40] [--rounds 6]

Whole processes on a shared 2-core machine move by 15-30% between runs, more than a change to
the step usually makes; steps alternated in one process see the same machine. The rows of a
batch begin their bars at staggered steps, as in a decoding (`StepCache.new_bar`), so each reads
its own window of the cache. The baseline needs a `StepCache` with `new_bar` (session 13 on;
before session 15 it lived in `model/layers.py`, which is then read instead). Batch 1 runs on one thread with float32 weights, as the int8
choice (`hardware.int8_decoding`) is made outside the step. Prints ms per step, best and median
of the rounds, and the ratio of medians (below 1: this checkout is faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="another checkout (e.g. `git worktree add /tmp/wt REV`)")
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 40])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=400, help="steps per round")
    ap.add_argument("--bar", type=int, default=64, help="tokens per bar")
    args = ap.parse_args()

    import torch

    import emocompose.model.step as this
    from emocompose.trained import TrainedModel

    model_dir = Path(args.baseline) / "emocompose" / "model"
    # before session 15 the step lived in layers.py
    step_file = model_dir / "step.py" if (model_dir / "step.py").exists() else model_dir / "layers.py"
    spec = importlib.util.spec_from_file_location("baseline_step", step_file)
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    dec = TrainedModel.load(args.model).model.dec
    d = dec.ln.weight.shape[0]
    threads = torch.get_num_threads()
    print(f"{'batch':>5} {'baseline best / median':>24} {'this best / median':>20} {'ratio':>6}")
    for B in args.batch:
        torch.set_num_threads(1 if B == 1 else threads)
        times = {"baseline": [], "this": []}
        with torch.inference_mode():
            for r in range(args.rounds):
                order = [("baseline", base), ("this", this)]
                for name, mod in order if r % 2 == 0 else order[::-1]:
                    g = torch.Generator().manual_seed(r)
                    x, cond = torch.randn(B, d, generator=g), torch.randn(B, d, generator=g)
                    cache = mod.StepCache(dec, [torch.zeros(B, 1, d) for _ in dec.layers],
                                          torch.zeros(B, dtype=torch.long), capacity=2 * args.bar)  # fmt: skip
                    t = time.perf_counter()
                    for s in range(args.steps):
                        for i in range(B):
                            if (s + 7 * i) % args.bar == 0:
                                cache.new_bar(i)
                        cache.step(x, cond)
                    times[name].append((time.perf_counter() - t) / args.steps * 1e3)
        b, n = times["baseline"], times["this"]
        print(f"{B:>5} {min(b):>11.3f} / {statistics.median(b):.3f} ms {min(n):>7.3f} / {statistics.median(n):.3f} ms "
              f"{statistics.median(n) / statistics.median(b):>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
