"""Training: semi-supervised, resumable, data-parallel under torchrun.

Everything random in a step (which windows, which noise, which dropout masks) is drawn from
generators seeded by (seed, step): a resumed run needs only the weights, the optimizer state
and the step to continue exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from emocompose.dataset import Dataset, Windows
from emocompose.errors import ModelError, OutputError, UsageError

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")


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

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision takes {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not 0 <= self.transpose <= 12:
            raise UsageError(f"transpose takes 0 to 12 semitones, not {self.transpose}")
        if not (0 <= self.labelled_share <= 1 and 0 <= self.rho <= 1):
            raise UsageError("labelled_share and rho are shares: 0 to 1")
        for name in ("steps", "batch", "bars", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, not {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Distributed


def _dist_env() -> tuple[int, int, int]:
    """rank, local rank, world size from torchrun's environment (1 process without it)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"])
    return 0, 0, 1


def _make_reduction(world: int):
    from emocompose.model.gmvae import Reduction

    if world == 1:
        return Reduction()
    import torch.distributed as dist

    class DistReduction(Reduction):
        def count(self, n):
            n = n.detach().clone().float()
            dist.all_reduce(n)
            return n

        def others_sum(self, x):
            y = x.detach().clone()
            dist.all_reduce(y)
            return y - x.detach()

    r = DistReduction()
    r.world = world
    return r


# ---------------------------------------------------------------------------------------------
# Schedule, precision, peak


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the OS.

    A training step allocates tensors of tens of MB; glibc hands allocations that large back to
    the OS when freed, so every step pays page faults to get them again (measured: the first
    steps ran 1.5x slower). With mmap off and trimming raised, the heap is reused.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: never mmap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GB of freed memory
    except (OSError, AttributeError):
        pass


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    low = min(cfg.min_lr, cfg.lr)  # a peak set below the default floor: the cosine never rises
    return low + 0.5 * (cfg.lr - low) * (1 + math.cos(math.pi * frac))


def _matmul_rate(dtype_name: str, size: int, seconds: float, windows: int) -> float:
    """FLOP/s of a size x size matmul: the best of `windows` windows (each at least one product),
    since a neighbour's load can only make a window slower."""
    import torch

    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 4:  # warm up: the first products run slower
        a @ b
    best = 0.0
    for _ in range(windows):
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < seconds / windows:
            a @ b
            n += 1
        best = max(best, 2 * size**3 * n / (time.perf_counter() - t0))
    return best


def matmul_peak(dtype_name: str = "bf16", seconds: float = 0.5) -> float:
    """FLOP/s of a large square matmul on this machine, the denominator of MFU (so MFU errs low)."""
    return _matmul_rate(dtype_name, 1024, seconds, 5)


def cpu_precision() -> str:
    """bf16 where this CPU multiplies bf16 natively (AMX, AVX512-BF16: training measured 1.2-1.8x
    faster), fp32 where bf16 is emulated (AVX2-only CPUs such as AMD Zen 3 and most laptops:
    matmuls measured over 100x slower, see README). Decided by timing both, not by CPU flags,
    so it holds on any CPU torch runs on."""
    # alternating rounds, best of each: a single round once took fp32 on a CPU where bf16
    # matmuls are 2.2x faster (a resumed run just after the machine booted)
    rates = {"bf16": 0.0, "fp32": 0.0}
    for _ in range(2):
        for d in rates:
            rates[d] = max(rates[d], _matmul_rate(d, 512, 0.2, 2))
    return "bf16" if rates["bf16"] > 1.2 * rates["fp32"] else "fp32"


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _opt_tensors(model, opt) -> dict:
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            n = names[id(p)]
            out[f"opt.exp_avg.{n}"] = st["exp_avg"]
            out[f"opt.exp_avg_sq.{n}"] = st["exp_avg_sq"]
            out[f"opt.step.{n}"] = st["step"].reshape(1).float()
    return out


def _load_opt(model, opt, tensors: dict) -> None:
    for n, p in model.named_parameters():
        if f"opt.exp_avg.{n}" in tensors:
            opt.state[p] = {
                "step": tensors[f"opt.step.{n}"].reshape(()).clone(),
                "exp_avg": tensors[f"opt.exp_avg.{n}"].clone(),
                "exp_avg_sq": tensors[f"opt.exp_avg_sq.{n}"].clone(),
            }


def model_meta(model, vocab, loss_cfg, train_cfg, step: int, extra: dict | None = None) -> dict:
    from emocompose.checkpoint import FORMAT, KIND_MODEL

    return {
        "format": FORMAT,
        "kind": KIND_MODEL,
        "model": model.config.to_dict(),
        "vocab": vocab.to_dict(),
        "loss": loss_cfg.to_dict(),
        "train": train_cfg.to_dict(),
        "step": step,
        **(extra or {}),
    }


def save_run(run: Path, model, opt, vocab, loss_cfg, train_cfg, step: int, extra: dict) -> None:
    """The training state (weights + optimizer, fp32) and the model alone (`stored_weights`),
    each written atomically."""
    from emocompose import checkpoint
    from emocompose.atomic import write_text

    meta = model_meta(model, vocab, loss_cfg, train_cfg, step, extra)
    weights = dict(model.state_dict())
    checkpoint.save(run / "train_state.safetensors", {**weights, **_opt_tensors(model, opt)},
                    {**meta, "kind": checkpoint.KIND_TRAIN})  # fmt: skip
    checkpoint.save(run / "model.safetensors", checkpoint.stored_weights(weights), meta)
    write_text(run / "config.json", json.dumps(meta, indent=1))


def save_best(run: Path, model, vocab, loss_cfg, train_cfg, step: int, extra: dict) -> None:
    """The model at its lowest validation token loss so far (a long run can overfit). What to
    ship is for `evaluate` to say: token loss alone once chose a model that generated worse."""
    from emocompose import checkpoint

    meta = model_meta(model, vocab, loss_cfg, train_cfg, step, extra)
    checkpoint.save(run / "best.safetensors", checkpoint.stored_weights(dict(model.state_dict())), meta)


def best_so_far(run: Path) -> float:
    """The validation token loss of the run's best model (infinite when it has none)."""
    from emocompose import checkpoint

    best = run / "best.safetensors"
    return float(checkpoint.read_meta(best).get("val_rec", math.inf)) if best.exists() else math.inf


def pick_device(name: str):
    """auto: the process's GPU when torch sees one, else the CPU."""
    import torch

    if name not in DEVICES:
        raise UsageError(f"device takes {', '.join(DEVICES)}, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda asked for, but torch sees no CUDA GPU (a CPU build of torch?)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def init_weights(model, path: str, vocab) -> None:
    """Start from a model file's weights (`--init`): same vocabulary and model shape required."""
    from emocompose import checkpoint

    other, meta, other_vocab = checkpoint.load_model(path)
    if other_vocab.fingerprint != vocab.fingerprint:
        raise ModelError("the model was trained on another token vocabulary than this dataset's", path)
    if other.config != model.config:
        raise ModelError(f"the model is preset {meta.get('train', {}).get('preset')}, not this run's", path)
    model.load_state_dict(other.state_dict())


def resolve_configs(run: str | os.PathLike, resume: bool, given: dict):
    """Train and loss configs from the options given; a resumed run keeps its own options
    for whatever is not given again (so `--resume` alone continues exactly)."""
    from emocompose import checkpoint
    from emocompose.model.gmvae import LossConfig

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


def train(
    dataset: str,
    out: str,
    cfg: TrainConfig,
    loss_cfg=None,
    *,
    resume: bool = False,
    on_log: Callable[[dict], None] | None = None,
    threads: int | None = None,
    init: str | None = None,
    device: str = "auto",
) -> dict:
    """Train to `cfg.steps`. `resume` continues the run in `out` exactly; `init` starts a new run
    (fresh optimizer, warm-up) from a model file's weights, e.g. a shipped model."""
    import torch

    from emocompose import checkpoint
    from emocompose.atomic import write_text
    from emocompose.model.config import preset
    from emocompose.model.gmvae import CDGMVAE, LossConfig, param_init_scale

    loss_cfg = loss_cfg or LossConfig()
    rank, local_rank, world = _dist_env()
    if cfg.batch % world:
        raise UsageError(f"--batch {cfg.batch} must divide among {world} processes")
    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()
    ddp = world > 1
    if ddp:
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    device = pick_device(device)
    precision = cfg.precision
    if precision == "auto":
        if device.type == "cpu":
            precision = cpu_precision()
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        if ddp:  # every rank must take rank 0's choice: timings differ between processes
            flag = torch.tensor([precision == "bf16"], dtype=torch.int64, device=device)
            dist.broadcast(flag, 0)
            precision = "bf16" if flag.item() else "fp32"

    ds = Dataset(dataset)
    win = Windows(ds, cfg)
    run = Path(out)
    state_file = run / "train_state.safetensors"
    start_step = 0
    model_cfg = preset(cfg.preset, len(ds.vocab))
    torch.manual_seed(cfg.seed)
    model = CDGMVAE(model_cfg)
    param_init_scale(model)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "prior" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "prior" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8,
    )  # fmt: skip
    if resume and state_file.exists():
        meta = checkpoint.read_meta(state_file)
        if meta.get("kind") != checkpoint.KIND_TRAIN:
            raise ModelError("not a training state (resume needs train_state.safetensors)", str(state_file))
        if meta["vocab"]["fingerprint"] != ds.vocab.fingerprint:
            raise ModelError("the run was trained on another token vocabulary than this dataset's", str(state_file))
        if meta["model"] != model_cfg.to_dict():
            raise ModelError(f"the run is preset {meta['train'].get('preset')}, not {cfg.preset}", str(state_file))
        tensors = checkpoint.load_tensors(state_file)
        weights = {k: v for k, v in tensors.items() if not k.startswith("opt.")}
        weights = checkpoint.check_state(state_file, model.state_dict(), weights)
        model.load_state_dict(weights)
        _load_opt(model, opt, tensors)
        start_step = int(meta["step"])
    elif resume and rank == 0 and (run / "model.safetensors").exists() and not state_file.exists():
        raise ModelError("run folder has no train_state.safetensors to resume from", str(run))
    if init and start_step == 0:
        init_weights(model, init, ds.vocab)
    model.key_share.copy_(torch.from_numpy(win.key_share))  # of this dataset and rho, resumed or not
    model.to(device)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        # every rank starts from rank 0's weights (identical anyway: same seed or same checkpoint)
        ddp_model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    else:
        ddp_model = model
    red = _make_reduction(world)

    if rank == 0:
        try:
            run.mkdir(parents=True, exist_ok=True)
            probe = run / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputError(f"cannot write the run folder: {exc.strerror}", str(run)) from None
        log_path = run / "log.jsonl"
        # a resumed run forgets log lines past its checkpoint (they will be written again)
        kept = []
        if resume and log_path.exists():
            kept = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
        write_text(log_path, "".join(ln + "\n" for ln in kept))

        if on_log:  # which precision `auto` took is worth seeing: it halves or doubles the speed
            on_log({"step": start_step, "precision": precision, "world": world, "device": device.type})

    per_rank = cfg.batch // world
    epoch_steps = max(1, math.ceil(win.train_bars / (cfg.batch * cfg.bars)))
    peak = matmul_peak("bf16" if precision == "bf16" else "fp32", 1.0) if device.type == "cpu" else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    extra = {"supervision_rate": round(win.supervision, 4), "precision": precision, "world": world,
             **({"init": str(init)} if init else {})}  # fmt: skip
    best = best_so_far(run) if resume else math.inf
    t_start = t_last = time.perf_counter()
    tok_since, flops_since = 0, 0.0
    last = {}
    step = start_step
    for step in range(start_step, cfg.steps):
        model.train()
        windows = win.sample(step)[rank * per_rank : (rank + 1) * per_rank]
        batch = win.collate(windows, torch)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        eps = torch.randn(cfg.batch, cfg.bars, 2, model_cfg.latent, generator=gen)
        batch["eps"] = eps[rank * per_rank : (rank + 1) * per_rank, : batch["tokens"].shape[1]]
        batch = {k: v.to(device) for k, v in batch.items()}
        torch.manual_seed(cfg.seed * 7919 + step * 31 + rank)  # dropout masks
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with autocast:
            loss, parts, acc = ddp_model(batch, loss_cfg, step, red)  # forward is `losses`
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        real = int((batch["targets"] >= 0).sum())
        tok_since += real
        flops_since += model.flops_per_token(real / max(int((batch["lens"] > 0).sum()), 1)) * real
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            vals = {k: float(v.detach()) for k, v in parts.items()}
            if ddp:
                vals = _sum_over_ranks(vals, exclude=("cat", "beta"))
            dt = time.perf_counter() - t_last
            rec = {"step": done, **{k: round(v, 5) for k, v in vals.items()}, "lr": lr_at(step, cfg),
                   "grad_norm": round(float(gnorm), 4), "tokens_per_s": round(tok_since * world / dt, 1),
                   "elapsed_s": round(time.perf_counter() - t_start, 2)}  # fmt: skip
            if peak:
                rec["mfu"] = round(flops_since * world / dt / peak, 4)  # real tokens' FLOPs only
            t_last, tok_since, flops_since = time.perf_counter(), 0, 0.0
            last = rec
            if rank == 0:
                _append_log(run / "log.jsonl", rec)
                if on_log:
                    on_log(rec)
        if done % epoch_steps == 0 or done == cfg.steps:
            val = validate(model, win, loss_cfg, done, device, autocast)
            if rank == 0:
                rec = {"step": done, "epoch": round(done / epoch_steps, 2), **val}
                _append_log(run / "log.jsonl", rec)
                if val and val["val_rec"] < best:
                    best = val["val_rec"]
                    save_best(run, model, ds.vocab, loss_cfg, cfg, done, {**extra, **val})
                last.update(val)
                if on_log:
                    on_log(rec)
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            save_run(run, model, opt, ds.vocab, loss_cfg, cfg, done, extra)
    if ddp:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return {"step": max(step + 1, start_step), **last}


def _sum_over_ranks(vals: dict, exclude=()) -> dict:
    import torch
    import torch.distributed as dist

    keys = sorted(k for k in vals if k not in exclude)
    t = torch.tensor([vals[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {**vals, **dict(zip(keys, t.tolist()))}


def _append_log(path: Path, rec: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


def validate(model, win: Windows, loss_cfg, step: int, device, autocast) -> dict:
    """Validation loss on EMOPIA-val windows (labels hidden for the loss, as at test time) and the
    accuracy of q(y|x) per axis on its labelled pieces."""
    import torch

    windows = win.val_windows()
    if not windows:
        return {}
    model.eval()
    out = {"val_rec": 0.0, "val_loss": 0.0}
    right = {"arousal": 0, "valence": 0}
    count = {"arousal": 0, "valence": 0}
    with torch.no_grad(), autocast:
        for i in range(0, len(windows), 8):
            chunk = windows[i : i + 8]
            batch = win.collate(chunk, torch, labels=win.ds.labels)
            true = batch["labels"].clone()
            batch["labels"] = torch.full_like(true, -1)
            batch["eps"] = torch.zeros(len(chunk), batch["tokens"].shape[1], 2, model.config.latent)
            batch = {k: v.to(device) for k, v in batch.items()}
            _, parts, _ = model.losses(batch, replace(loss_cfg, kl_warmup=1), step)
            out["val_rec"] += float(parts["rec"]) * len(chunk)
            out["val_loss"] += float(parts["loss"]) * len(chunk)
            (mu_r, _, mu_k, _), _ = model.encode(batch["tokens"], batch["lens"])
            mask = batch["lens"] > 0
            for axis, (prior, mu) in zip(("arousal", "valence"), ((model.prior_r, mu_r), (model.prior_k, mu_k))):
                lab = true[:, 0 if axis == "arousal" else 1].to(device)
                pred = prior.class_logits(mu, mask).argmax(-1)
                has = lab >= 0
                right[axis] += int(((pred == lab) & has).sum())
                count[axis] += int(has.sum())
    n = len(windows)
    out = {k: round(v / n, 5) for k, v in out.items()}
    for axis in right:
        if count[axis]:
            out[f"val_acc_{axis}"] = round(right[axis] / count[axis], 4)
    return out
