"""A/B of bf16 autocast against fp32 training on this CPU: the same model, seed and batches,
trained N steps each way; prints both loss curves, their largest gap, and the speed ratio.

    python benchmarks/precision_ab.py [--steps 30] [--preset small] [--dataset DIR]

`emocompose train --precision auto` uses bf16 on CPUs that multiply it natively because of this
comparison (same curve, faster); on CPUs that emulate bf16 it takes fp32 (see `hardware.cpu_precision`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import DATA, dataset_or_preprocess


def run(precision: str, args) -> tuple[list[float], float]:
    from emocompose.model.config import LossConfig
    from emocompose.train import TrainConfig, train

    losses: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(str(args.dataset), str(Path(tmp) / "run"),
              TrainConfig(preset=args.preset, steps=args.steps, precision=precision, log_every=1, checkpoint_every=10**9,
                          warmup=10),
              LossConfig(), on_log=lambda r: losses.append(r["rec"]) if "rec" in r else None)  # fmt: skip
        return losses, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    args.dataset, _tmp = dataset_or_preprocess(args.dataset, args.data)
    bf, t_bf = run("bf16", args)
    fp, t_fp = run("fp32", args)
    print("step  fp32 token loss  bf16 token loss")
    for i, (a, b) in enumerate(zip(fp, bf), 1):
        if i % max(1, args.steps // 10) == 0 or i == len(fp):
            print(f"{i:4d}  {a:15.4f}  {b:15.4f}")
    gap = max(abs(a - b) / a for a, b in zip(fp, bf))
    print(f"largest relative gap between the curves: {gap:.2%}; bf16 trains {t_fp / t_bf:.2f}x as fast")


if __name__ == "__main__":
    main()
