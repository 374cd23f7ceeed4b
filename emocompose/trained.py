"""A trained model with its tokenizer: load it, read a piece into per-bar latents, hear the
emotion of latents (q(y|x)), decode latents into a piece. The latent operations (`latents`),
`compose` and `evaluate` build on it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from emocompose.emotions import AXES
from emocompose.errors import ModelError
from emocompose.presets import SamplingConfig
from emocompose.grid import Grid
from emocompose.tokenizer import Tokenizer

MODEL_ENV = "EMOCOMPOSE_MODEL"
DEFAULT_NAME = "default.safetensors"


def default_model_path() -> Path:
    """$EMOCOMPOSE_MODEL, else the model shipped in the repository's checkpoints/ (editable or
    source installs), else the copy a wheel installs under <prefix>/share/emocompose."""
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    for base in (Path(__file__).resolve().parents[1] / "checkpoints", Path(sys.prefix) / "share" / "emocompose"):
        if (base / DEFAULT_NAME).is_file():
            return base / DEFAULT_NAME
    raise ModelError(
        "no model found: checkpoints/default.safetensors is not installed; pass --model PATH or set EMOCOMPOSE_MODEL"
    )


class TrainedModel:
    def __init__(self, model, tokenizer: Tokenizer, meta: dict, path: Path):
        self.model, self.tok, self.meta, self.path = model, tokenizer, meta, path
        self.on_bar = None  # called with (bars done, bars in all) while decoding

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str | None = None) -> "TrainedModel":
        """A model file (default: `default_model_path`), on `device` (default: the GPU if any)."""
        import torch

        from emocompose import checkpoint
        from emocompose.model.step import decoding_layout

        p = Path(path) if path else default_model_path()
        model, meta, vocab = checkpoint.load_model(p)
        model.requires_grad_(False)
        model.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))).eval()
        decoding_layout(model.dec)
        return cls(model, Tokenizer(vocab.config), meta, p)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def component_means(self, axis: int):
        """(low, high) means of the mixture on z_r (axis 0, arousal) or z_k (axis 1, valence)."""
        prior = self.model.priors()[axis]
        return prior.means[0].detach(), prior.means[1].detach()

    def encode(self, grid: Grid, window: int = 16):
        """Per-bar posterior means (T, latent) of z_r and z_k; pieces of any length are read in
        windows of `window` bars, the encoders' memory carried across windows."""
        import torch

        mu_r, mu_k = [], []
        mems = mem_lens = None
        with torch.no_grad():
            for tokens, lens in self._windows(grid, window):
                (mr, _, mk, _), new = self.model.encode(tokens, lens, mems, mem_lens)
                mems, mem_lens = [m for m, _ in new], new[0][1]
                mu_r.append(mr[0])
                mu_k.append(mk[0])
        return torch.cat(mu_r), torch.cat(mu_k)

    def memory(self, grid: Grid, mu_r, mu_k, window: int = 16):
        """The decoder's memory after reading `grid` on its own tokens, conditioned on its
        per-bar latents (T, latent): what decoding the bars that follow it starts from."""
        import torch

        mems = mem_lens = None
        with torch.no_grad():
            for s, (tokens, lens) in zip(range(0, grid.n_bars, window), self._windows(grid, window)):
                z_r, z_k = mu_r[None, s : s + window], mu_k[None, s : s + window]
                _, _, (mems, mem_lens) = self.model.decode(tokens, lens, z_r, z_k, mems, mem_lens)
        return mems, mem_lens

    def _windows(self, grid: Grid, window: int):
        """The piece's bars as the model reads them (each cut to L tokens), `window` bars at a
        time: padded tokens (1, t, n) and real lengths (1, t), on the model's device."""
        import torch

        ids, offsets = self.tok.encode(grid)
        L = self.tok.config.max_bar_tokens
        bars = [ids[offsets[i] : min(offsets[i + 1], offsets[i] + L)] for i in range(grid.n_bars)]
        for s in range(0, len(bars), window):
            chunk = bars[s : s + window]
            tokens = torch.zeros(1, len(chunk), max(len(b) for b in chunk), dtype=torch.long)
            for j, b in enumerate(chunk):
                tokens[0, j, : len(b)] = torch.as_tensor(b)
            yield tokens.to(self.device), torch.tensor([[len(b) for b in chunk]], device=self.device)

    def log_q(self, mu_r, mu_k, per_bar: bool = False) -> list:
        """log q(y|x) per axis (arousal, valence) from the per-bar means: two tensors (low, high)
        for the whole piece, or with `per_bar` two (bars, 2), each bar heard on its own."""
        import torch

        out = []
        for axis, mu in enumerate((mu_r, mu_k)):
            z = mu[:, None] if per_bar else mu[None]  # (pieces, bars, latent)
            mask = torch.ones(z.shape[:2], dtype=torch.bool, device=self.device)
            lq = self.model.priors()[axis].log_q(z, mask)
            out.append(lq if per_bar else lq[0])
        return out

    def classify(self, mu_r, mu_k) -> dict:
        """q(y|x) per axis from the per-bar means: {'arousal': [p_low, p_high], 'valence': [...]}."""
        return rounded_q(self.log_q(mu_r, mu_k))

    def plan(self, grid: Grid, n: int):
        """Decode `n` bars with the meter, tempo and track classes of `grid`'s bars (a shorter
        piece loops from its start)."""
        from emocompose.sampling import BarPlan

        idx = np.arange(n) % grid.n_bars
        tracks = sorted(set(grid.track.tolist())) or None
        return BarPlan(grid.bar_positions[idx].tolist(), grid.bar_tempo[idx].tolist(), tracks)

    def decode(self, z_r, z_k, plans, sampling: SamplingConfig, memory=None, before: Grid | None = None) -> list[Grid]:
        """One piece per row of z_r, z_k (count, bars, latent), or per item of lists of (bars,
        latent) latents of pieces of any lengths (decoded as one batch), each bar as its plan
        says, after the decoder `memory` of the piece `before` them (`memory`; None: nothing);
        every note playable as written to MIDI (`Grid.playable`)."""
        import torch

        from emocompose.sampling import decode_bars

        if not len(plans):  # nothing asked (e.g. evaluate with --scores 0)
            return []
        if isinstance(z_r, (list, tuple)):  # rows past a piece's end are never read
            z_r, z_k = (torch.nn.utils.rnn.pad_sequence(list(z), batch_first=True) for z in (z_r, z_k))
        mems, mem_lens = memory or (None, None)
        if mems is not None:  # one context for every piece of the batch
            mems, mem_lens = [m.expand(len(z_r), -1, -1) for m in mems], mem_lens.expand(len(z_r))
        with torch.no_grad():
            cond = self.model.condition(z_r, z_k)
            bars = decode_bars(self.model, self.tok.vocab, cond, plans, sampling, mems, mem_lens, on_bar=self.on_bar,
                               before=before)  # fmt: skip
        return [self.tok.decode(np.concatenate(b)).playable(self.tok.config) for b in bars]


def rounded_q(logq) -> dict:
    return {name: [round(float(x), 4) for x in lq.exp()] for name, lq in zip(AXES, logq)}
