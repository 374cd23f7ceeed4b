"""Checkpoints: one safetensors file, its configuration as JSON in the file's own metadata; and
the files of a training run (`save_run`, `save_best`, `resume_run`, `init_weights`).

Only safetensors is ever loaded: no pickle, so no code from a file can run. A file is checked
before use: that it is safetensors at all, that it was made with this vocabulary, and that every
tensor the model needs is there with the right shape.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

from emocompose.errors import ModelError

KIND_MODEL = "emocompose-model"
KIND_TRAIN = "emocompose-train-state"
FORMAT = 1


def _sniff(path: Path) -> None:
    """Refuse what is not safetensors before any parser looks at it, and name the problem:
    pickle, a cut file, a header that is not JSON."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            size = path.stat().st_size
            n = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
            header = fh.seek(8) and fh.read(n) if 1 < n <= min(size - 8, 100 * 2**20) else b""
    except OSError as exc:
        raise ModelError(f"cannot read checkpoint: {exc.strerror}", str(path)) from None
    looks_safetensors = bool(header) and head[8:9] == b"{"
    # a pickle starts with PROTO (0x80, protocol 2-5), torch.save's zip with PK: checked only when
    # the bytes are not a safetensors header, whose length's first byte can be 0x80 too
    if not looks_safetensors and (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
                                  or head[:4] == b"PK\x03\x04"):  # fmt: skip
        raise ModelError("is a pickle/zip file (e.g. torch.save); emocompose loads only safetensors", str(path))
    if len(head) < 8:
        raise ModelError("not a safetensors checkpoint (too short)", str(path))
    if not looks_safetensors:
        raise ModelError("not a safetensors checkpoint (bad header)", str(path))
    try:
        entries = json.loads(header)
        end = max((v["data_offsets"][1] for k, v in entries.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise ModelError("corrupt safetensors header (not the JSON a safetensors file starts with)", str(path)) from None
    if 8 + n + end != size:
        raise ModelError(
            f"truncated or tampered: the header describes {8 + n + end} bytes, the file has {size}", str(path)
        )


def save(path: str | os.PathLike, tensors: dict, meta: dict) -> None:
    """Write tensors and metadata atomically (temporary file, then rename)."""
    from safetensors.torch import save_file

    from emocompose.atomic import atomic_path

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"emocompose": json.dumps(meta)})


def stored_weights(state: dict) -> dict:
    """A model's tensors as a model file stores them: weight matrices in fp16, which halves the
    file (they are nearly all of its bytes), vectors and the key table's buffers in fp32. Loading
    casts back to fp32. Training states keep everything in fp32, so a resumed run is exact."""
    import torch

    return {k: v.half() if v.dtype == torch.float32 and v.dim() >= 2 and "key_" not in k else v
            for k, v in state.items()}  # fmt: skip


def load_model(path: str | os.PathLike):
    """A checked model from a model file or a training state (the CDGMVAE in fp32 on the CPU),
    its metadata and its vocabulary."""
    from emocompose.model.config import ModelConfig
    from emocompose.model.gmvae import CDGMVAE
    from emocompose.tokenizer import Vocab

    path = Path(path)
    meta = read_meta(path)
    if meta.get("kind") not in (KIND_MODEL, KIND_TRAIN):
        raise ModelError(f"not an emocompose model (kind {meta.get('kind')!r})", str(path))
    vocab = Vocab.from_dict(meta.get("vocab", {}), what=f"model {path}")
    try:
        cfg = ModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError):
        raise ModelError("checkpoint metadata lacks a valid model configuration", str(path)) from None
    if cfg.vocab_size != len(vocab):
        raise ModelError("model and vocabulary sizes disagree", str(path))
    model = CDGMVAE(cfg)
    tensors = {k: v for k, v in load_tensors(path).items() if not k.startswith("opt.")}
    tensors = check_state(path, model.state_dict(), tensors)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model, meta, vocab


def read_meta(path: str | os.PathLike) -> dict:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelError("no such checkpoint file", str(path))
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("emocompose")
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ModelError(f"corrupt safetensors file ({str(exc).splitlines()[0][:120]})", str(path)) from None
    if raw is None:
        raise ModelError("safetensors file without emocompose metadata (not an emocompose checkpoint)", str(path))
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelError("corrupt checkpoint metadata", str(path)) from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"checkpoint format {meta.get('format')}, this emocompose reads {FORMAT}", str(path))
    return meta


def load_tensors(path: str | os.PathLike) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise ModelError(f"corrupt or truncated safetensors file ({str(exc).splitlines()[0][:120]})", str(path)) from None


# Tensors added after the first release: a checkpoint without them still loads, and gets them
# from the model as built (the key table: empty, so generation falls back to the components).
ADDED_LATER = ("key_sum", "key_weight", "key_share")


def check_state(path, expected: dict, got: dict) -> dict:
    """Every expected tensor present with its shape and dtype, nothing unknown. Returns `got`
    with tensors of ADDED_LATER it lacks taken from `expected`."""
    got = {**{k: expected[k] for k in ADDED_LATER if k in expected and k not in got}, **got}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        raise ModelError(f"checkpoint lacks {len(missing)} tensors (first: {missing[0]})", str(path))
    if extra:
        raise ModelError(f"checkpoint has {len(extra)} unknown tensors (first: {extra[0]})", str(path))
    for k, v in expected.items():
        if tuple(got[k].shape) != tuple(v.shape):
            raise ModelError(
                f"tensor {k} has shape {tuple(got[k].shape)}, the model needs {tuple(v.shape)} "
                "(a checkpoint of another preset?)",
                str(path),
            )
        if not got[k].dtype.is_floating_point and v.dtype.is_floating_point:
            raise ModelError(f"tensor {k} has dtype {got[k].dtype}, expected floating point", str(path))
    return got


# ---------------------------------------------------------------------------------------------
# Training runs: the state to resume (weights and optimizer, fp32), the model, the best model


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
    from emocompose.atomic import write_text

    meta = model_meta(model, vocab, loss_cfg, train_cfg, step, extra)
    weights = dict(model.state_dict())
    save(run / "train_state.safetensors", {**weights, **_opt_tensors(model, opt)},
                    {**meta, "kind": KIND_TRAIN})  # fmt: skip
    save(run / "model.safetensors", stored_weights(weights), meta)
    write_text(run / "config.json", json.dumps(meta, indent=1))


def save_best(run: Path, model, vocab, loss_cfg, train_cfg, step: int, extra: dict) -> None:
    """The model at its lowest validation token loss so far (a long run can overfit). What to
    ship is for `evaluate` to say: token loss alone once chose a model that generated worse."""
    meta = model_meta(model, vocab, loss_cfg, train_cfg, step, extra)
    save(run / "best.safetensors", stored_weights(dict(model.state_dict())), meta)


def best_so_far(run: Path) -> float:
    """The validation token loss of the run's best model (infinite when it has none)."""
    best = run / "best.safetensors"
    return float(read_meta(best).get("val_rec", math.inf)) if best.exists() else math.inf


def init_weights(model, path: str, vocab) -> None:
    """Start from a model file's weights (`--init`): same vocabulary and model shape required."""
    other, meta, other_vocab = load_model(path)
    if other_vocab.fingerprint != vocab.fingerprint:
        raise ModelError("the model was trained on another token vocabulary than this dataset's", path)
    # the decoder's memory may differ: it reads more or fewer bars with the same weights
    if replace(other.config, dec_memory_bars=model.config.dec_memory_bars) != model.config:
        raise ModelError(f"the model is preset {meta.get('train', {}).get('preset')}, not this run's", path)
    model.load_state_dict(other.state_dict())




def resume_run(state_file: Path, model, opt, vocab, preset: str) -> int:
    """Load a training state into `model` and `opt` (same vocabulary and preset required);
    returns the step it was saved at."""
    from emocompose.model.config import ModelConfig

    meta = read_meta(state_file)
    if meta.get("kind") != KIND_TRAIN:
        raise ModelError("not a training state (resume needs train_state.safetensors)", str(state_file))
    if meta["vocab"]["fingerprint"] != vocab.fingerprint:
        raise ModelError("the run was trained on another token vocabulary than this dataset's", str(state_file))
    if ModelConfig.from_dict(meta["model"]) != model.config:  # a field newer than the state: its default
        raise ModelError(f"the run is preset {meta['train'].get('preset')}, not {preset}", str(state_file))
    tensors = load_tensors(state_file)
    weights = check_state(state_file, model.state_dict(), {k: v for k, v in tensors.items() if not k.startswith("opt.")})
    model.load_state_dict(weights)
    _load_opt(model, opt, tensors)
    return int(meta["step"])
