"""Training: semi-supervised, resumable, data-parallel under torchrun.

Everything random in a step (which windows, which noise, which dropout masks) is drawn from
generators seeded by (seed, step): a resumed run needs only the weights, the optimizer state
and the step to continue exactly as if it had never stopped. The run's files are written by
`checkpoint`, devices and precision chosen by `hardware`, ranks joined by `distributed`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from emocompose.errors import ModelError, OutputError, UsageError
from emocompose.hardware import PRECISIONS


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "small"
    steps: int = 8_000  # total to reach (a resumed run stops there too)
    batch: int = 8  # windows per step, over all ranks
    bars: int = 16  # T: bars per window
    lr: float = 5e-4  # peak; small models take a higher rate than the paper's 1e-4
    min_lr: float = 5e-5  # end of the cosine
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    rho: float = 1.0  # supervision rate: labels kept until labelled bars / all bars <= rho
    labelled_share: float = 0.4  # share of each batch drawn from labelled pieces (oversampling)
    checkpoint_every: int = 100
    log_every: int = 10
    val_windows: int = 64
    precision: str = "auto"  # auto: bf16 autocast on GPUs and on CPUs that multiply bf16 natively
    # each window moves by a random number of semitones in [-transpose, transpose] (as far as its
    # pitches allow), the key labels with the notes. Off by default: at 6 it cost valence control
    # on both runs measured (README, "Train your own")
    transpose: int = 0
    # bars before its own that each decoder layer reads (`ModelConfig.dec_memory_bars`, set for
    # the run's model whatever its preset); a model file of 1 starts a run of 2 with `--init`
    memory_bars: int = 1

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision takes {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not 0 <= self.transpose <= 12:
            raise UsageError(f"transpose takes 0 to 12 semitones, not {self.transpose}")
        if not (0 <= self.labelled_share <= 1 and 0 <= self.rho <= 1):
            raise UsageError("labelled_share and rho are shares: 0 to 1")
        for name in ("steps", "batch", "bars", "checkpoint_every", "log_every", "memory_bars"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, not {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to the peak, then a cosine down to min_lr at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    low = min(cfg.min_lr, cfg.lr)  # a peak set below the default floor: the cosine never rises
    return low + 0.5 * (cfg.lr - low) * (1 + math.cos(math.pi * frac))


def resolve_configs(run: str | os.PathLike, resume: bool, given: dict):
    """Train and loss configs from the options given; a resumed run keeps its own options
    for whatever is not given again (so `--resume` alone continues exactly)."""
    from emocompose import checkpoint
    from emocompose.model.config import LossConfig

    train_names = set(TrainConfig.__dataclass_fields__)
    loss_names = set(LossConfig.__dataclass_fields__)
    unknown = set(given) - train_names - loss_names
    if unknown:
        raise UsageError(f"unknown training options: {', '.join(sorted(unknown))}")
    saved_train, saved_loss = {}, {}
    state = Path(run) / "train_state.safetensors"
    if resume and state.exists():
        meta = checkpoint.read_meta(state)
        saved_train, saved_loss = meta.get("train", {}), meta.get("loss", {})
    t = {**TrainConfig().to_dict(), **{k: v for k, v in saved_train.items() if k in train_names}}
    lo = {**LossConfig().to_dict(), **{k: v for k, v in saved_loss.items() if k in loss_names}}
    t.update({k: v for k, v in given.items() if k in train_names})
    lo.update({k: v for k, v in given.items() if k in loss_names})
    return TrainConfig(**t), LossConfig(**lo)


# ---------------------------------------------------------------------------------------------
# The loop


def train(dataset: str, out: str, cfg: TrainConfig, loss_cfg=None, *, resume: bool = False,
          on_log: Callable[[dict], None] | None = None, threads: int | None = None, init: str | None = None,
          device: str = "auto") -> dict:  # fmt: skip
    """Train to `cfg.steps`. `resume` continues the run in `out` exactly; `init` starts a new run
    (fresh optimizer, warm-up) from a model file's weights, e.g. a shipped model."""
    import torch

    from emocompose import checkpoint, distributed, hardware
    from emocompose.dataset import Dataset, Windows
    from emocompose.model.config import LossConfig, preset
    from emocompose.model.gmvae import CDGMVAE, param_init_scale

    loss_cfg = loss_cfg or LossConfig()
    rank, local_rank, world = distributed.dist_env()
    if cfg.batch % world:
        raise UsageError(f"batch {cfg.batch} must divide among {world} processes")
    if threads:
        torch.set_num_threads(threads)
    hardware.keep_freed_memory()
    distributed.start(world)
    device = hardware.pick_device(device)
    precision = hardware.resolve_precision(cfg.precision, device, world > 1)

    ds = Dataset(dataset)
    win = Windows(ds, cfg)
    run = Path(out)
    torch.manual_seed(cfg.seed)
    model = CDGMVAE(replace(preset(cfg.preset, len(ds.vocab)), dec_memory_bars=cfg.memory_bars))
    param_init_scale(model)
    opt = _optimizer(model, cfg)
    start_step = 0
    state_file = run / "train_state.safetensors"
    if resume and state_file.exists():
        start_step = checkpoint.resume_run(state_file, model, opt, ds.vocab, cfg.preset)
    elif resume and rank == 0 and (run / "model.safetensors").exists():
        raise ModelError("run folder has no train_state.safetensors to resume from", str(run))
    if init and start_step == 0:
        checkpoint.init_weights(model, init, ds.vocab)
    model.key_share.copy_(torch.from_numpy(win.key_share))  # of this dataset and rho, resumed or not
    model.to(device)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # every rank starts from rank 0's weights (identical anyway: same seed or same checkpoint)
        ddp_model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    else:
        ddp_model = model
    red = distributed.make_reduction(world)
    if rank == 0:
        _open_run(run, start_step if resume else 0)
        if on_log:  # which precision `auto` took is worth seeing: it halves or doubles the speed
            on_log({"step": start_step, "precision": precision, "world": world, "device": device.type})

    per_rank = cfg.batch // world
    epoch_steps = max(1, math.ceil(win.train_bars / (cfg.batch * cfg.bars)))
    peak = hardware.matmul_peak(precision, 1.0) if device.type == "cpu" else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    extra = {"supervision_rate": round(win.supervision, 4), "precision": precision, "world": world,
             **({"init": str(init)} if init else {})}  # fmt: skip
    best = checkpoint.best_so_far(run) if resume else math.inf
    meter = _Meter(world, peak)
    last, step = {}, start_step
    for step in range(start_step, cfg.steps):
        model.train()
        batch = _batch(win, cfg, model.config.latent, step, rank, per_rank, device)
        torch.manual_seed(cfg.seed * 7919 + step * 31 + rank)  # dropout masks
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with autocast:
            loss, parts, _ = ddp_model(batch, loss_cfg, step, red)  # forward is `losses`
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        meter.add(model, batch)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            vals = {k: float(v.detach()) for k, v in parts.items()}
            if world > 1:
                vals = distributed.sum_over_ranks(vals, exclude=("cat", "beta"))
            last = {"step": done, **{k: round(v, 5) for k, v in vals.items()}, "lr": lr_at(step, cfg),
                    "grad_norm": round(float(gnorm), 4), **meter.read()}  # fmt: skip
            if rank == 0:
                _log(run, last, on_log)
        if done % epoch_steps == 0 or done == cfg.steps:
            val = validate(model, win, loss_cfg, done, device, autocast)
            if rank == 0:
                _log(run, {"step": done, "epoch": round(done / epoch_steps, 2), **val}, on_log)
                if val and val["val_rec"] < best:
                    best = val["val_rec"]
                    checkpoint.save_best(run, model, ds.vocab, loss_cfg, cfg, done, {**extra, **val})
                last.update(val)
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            checkpoint.save_run(run, model, opt, ds.vocab, loss_cfg, cfg, done, extra)
    distributed.finish(world)
    return {"step": max(step + 1, start_step), **last}


def _optimizer(model, cfg: TrainConfig):
    """AdamW, with weight decay on the weight matrices outside the priors only."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "prior" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "prior" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8,
    )  # fmt: skip


def _batch(win, cfg: TrainConfig, latent: int, step: int, rank: int, per_rank: int, device) -> dict:
    """This rank's share of the step's windows, with the step's noise for the latents."""
    import torch

    batch = win.collate(win.sample(step)[rank * per_rank : (rank + 1) * per_rank], torch)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    eps = torch.randn(cfg.batch, cfg.bars, 2, latent, generator=gen)
    batch["eps"] = eps[rank * per_rank : (rank + 1) * per_rank, : batch["tokens"].shape[1]]
    return {k: v.to(device) for k, v in batch.items()}


def _open_run(run: Path, resumed_at: int) -> None:
    """Check the run folder is writable, and keep the log lines up to the step resumed from
    (later ones will be written again)."""
    from emocompose.atomic import write_text

    try:
        run.mkdir(parents=True, exist_ok=True)
        probe = run / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write the run folder: {exc.strerror}", str(run)) from None
    log_path = run / "log.jsonl"
    kept = []
    if resumed_at and log_path.exists():
        kept = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= resumed_at]
    write_text(log_path, "".join(ln + "\n" for ln in kept))


class _Meter:
    """Tokens per second and model FLOPs utilisation since the last reading."""

    def __init__(self, world: int, peak: float | None):
        self.world, self.peak = world, peak
        self.t_start = self.t_last = time.perf_counter()
        self.tokens, self.flops = 0, 0.0

    def add(self, model, batch: dict) -> None:
        real = int((batch["targets"] >= 0).sum())
        self.tokens += real
        self.flops += model.flops_per_token(real / max(int((batch["lens"] > 0).sum()), 1)) * real

    def read(self) -> dict:
        now = time.perf_counter()
        dt = now - self.t_last
        rec = {"tokens_per_s": round(self.tokens * self.world / dt, 1), "elapsed_s": round(now - self.t_start, 2)}
        if self.peak:
            rec["mfu"] = round(self.flops * self.world / dt / self.peak, 4)  # real tokens' FLOPs only
        self.t_last, self.tokens, self.flops = now, 0, 0.0
        return rec


def _log(run: Path, rec: dict, on_log: Callable[[dict], None] | None) -> None:
    with open(run / "log.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    if on_log:
        on_log(rec)


def validate(model, win, loss_cfg, step: int, device, autocast) -> dict:
    """Validation loss on EMOPIA-val windows (labels hidden for the loss, as at test time) and the
    accuracy of q(y|x) per axis on its labelled pieces (noise off: q reads the posterior means)."""
    import torch

    windows = win.val_windows()
    if not windows:
        return {}
    model.eval()
    out = {"val_rec": 0.0, "val_loss": 0.0}
    right, known = {}, {}
    with torch.no_grad(), autocast:
        for i in range(0, len(windows), 8):
            chunk = windows[i : i + 8]
            batch = win.collate(chunk, torch, labels=win.ds.labels)
            batch["truth"] = batch["labels"]
            batch["labels"] = torch.full_like(batch["truth"], -1)
            batch["eps"] = torch.zeros(len(chunk), batch["tokens"].shape[1], 2, model.config.latent)
            batch = {k: v.to(device) for k, v in batch.items()}
            _, parts, acc = model.losses(batch, replace(loss_cfg, kl_warmup=1), step)
            out["val_rec"] += float(parts["rec"]) * len(chunk)
            out["val_loss"] += float(parts["loss"]) * len(chunk)
            for axis, (r, n) in acc.items():
                right[axis] = right.get(axis, 0) + int(r)
                known[axis] = known.get(axis, 0) + int(n)
    out = {k: round(v / len(windows), 5) for k, v in out.items()}
    for axis in right:
        if known[axis]:
            out[f"val_acc_{axis}"] = round(right[axis] / known[axis], 4)
    return out
