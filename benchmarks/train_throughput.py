"""Training throughput of a preset and its model-FLOPs utilisation against this machine's matmul
peak, both measured in the same run.

    python benchmarks/train_throughput.py [--preset small] [--steps 6] [--dataset DIR] [--precision bf16]

Without --dataset it preprocesses EMOPIA + POP909 from ../shared/data into a temporary folder.
MFU counts the FLOPs of real tokens only (padding is not useful work): 6 per weight per token in
the transformer stacks plus attention over a bar and its memory, forward and backward.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import DATA, dataset_or_preprocess


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=6, help="measured steps (after 2 warm-up steps)")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    args = ap.parse_args()

    import torch

    from emocompose.dataset import Dataset
    from emocompose.model.config import preset
    from emocompose.model.config import LossConfig
    from emocompose.model.gmvae import CDGMVAE
    from emocompose.dataset import Windows
    from emocompose.hardware import keep_freed_memory, matmul_peak
    from emocompose.train import TrainConfig

    keep_freed_memory()
    args.dataset, _tmp = dataset_or_preprocess(args.dataset, args.data)
    ds = Dataset(args.dataset)
    cfg = TrainConfig(preset=args.preset)
    win = Windows(ds, cfg)
    model = CDGMVAE(preset(args.preset, len(ds.vocab)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")
    loss_cfg = LossConfig()
    peak_before = matmul_peak(args.precision, seconds=2.0)
    tokens = flops = 0
    for step in range(args.steps + 2):
        if step == 2:
            tokens = flops = 0
            t0 = time.perf_counter()
        batch = win.collate(win.sample(step), torch)
        batch["eps"] = torch.randn(cfg.batch, cfg.bars, 2, model.config.latent)
        with autocast:
            loss, _, _ = model(batch, loss_cfg, 10_000)
        opt.zero_grad()
        loss.backward()
        opt.step()
        real = int((batch["targets"] >= 0).sum())
        tokens += real
        flops += model.flops_per_token(real / int((batch["lens"] > 0).sum())) * real  # mean bar length
    dt = time.perf_counter() - t0
    peak = max(peak_before, matmul_peak(args.precision, seconds=2.0))  # the best of before and after
    print(f"preset {args.preset}, {args.precision}: {tokens / dt:.0f} tokens/s, {dt / args.steps:.2f} s/step "
          f"({cfg.batch} windows x {cfg.bars} bars)")  # fmt: skip
    print(f"matmul peak ({args.precision}, 1024x1024, same run): {peak / 1e9:.0f} GFLOP/s")
    print(f"ratio: model-FLOPs utilisation {flops / dt / peak:.1%}")


if __name__ == "__main__":
    main()
