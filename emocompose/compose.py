"""The latent operations (model.md section 5) behind `generate`, `transform` and `swap`, as a
Python API: `Composer.load()` then `.generate(...)`, `.transform(...)`, `.swap(...)`.

Per bar, z_r carries rhythm (arousal) and z_k key (valence). Generation samples each bar's
latents from the target mixture components (z_k around the mean of a key, see `prior_latents`);
transform moves a piece's latents by lambda toward where generate centres a piece of the target
(the paper's lambda (mu_target - mu_source) with `paper`); swap takes one latent from each of
two pieces. Decoding is bar by bar with the memory (`sampling`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocompose.errors import ModelError, UsageError
from emocompose.features import KEY_NAMES, global_key, is_major, parallel_key, parse_key
from emocompose.tokenizer import Grid, Tokenizer

# name -> (arousal, valence), 1 = high (Russell's quadrants, model.md section 1)
EMOTIONS = {"happy": (1, 1), "tense": (1, 0), "sad": (0, 0), "calm": (0, 1)}
QUADRANT = {"happy": "Q1", "tense": "Q2", "sad": "Q3", "calm": "Q4"}
MODEL_ENV = "EMOCOMPOSE_MODEL"
DEFAULT_NAME = "default.safetensors"
# Correlation of one piece's bar latents when generating. Measured: in 40 EMOPIA val clips the
# bars' posterior means share 62% (z_r) and 66% (z_k) of their variance with their piece's mean.
DEFAULT_COHERENCE = 0.6
# Pieces decoded per output, of which the one the model's own encoder hears as most like the
# target is kept (`--candidates`). Measured with evaluate's judge: best of 4 helped the step-3,000
# model (valence 0.68 -> 0.84, 32 pieces per emotion) but not the step-4,900 one (0.75 -> 0.62
# over 16 per emotion, benchmarks/candidates.py; 0.60 -> 0.65 over 10 in evaluate; transform
# 0.60 -> 0.58) and cost 3.2x the time, so one decoding is the default.
DEFAULT_CANDIDATES = 1


def emotion_of(arousal: int, valence: int) -> str:
    return next(k for k, v in EMOTIONS.items() if v == (arousal, valence))


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


def check_key(key: str | None, paper: bool = False) -> int | None:
    """The key index of a `--key` option (None for none), or a usage error: shared by the CLI,
    which checks before the model loads, and `Composer.prior_latents`."""
    if key is None:
        return None
    if paper:
        raise UsageError("--key needs the key table, which --paper leaves out")
    try:
        return parse_key(key)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_candidates(candidates: int | None, paper: bool = False) -> int:
    """How many pieces to decode per output: the default, 1 with `paper`, or a usage error."""
    if candidates is None:
        return 1 if paper else DEFAULT_CANDIDATES
    if candidates < 1:
        raise UsageError(f"--candidates must be at least 1, got {candidates}")
    if paper and candidates > 1:
        raise UsageError("--candidates picks among decodings, which --paper leaves out")
    return candidates


def parse_emotion(name: str) -> tuple[int, int]:
    key = name.strip().lower()
    by_quadrant = {v.lower(): k for k, v in QUADRANT.items()}
    key = by_quadrant.get(key, key)
    if key not in EMOTIONS:
        raise UsageError(f"unknown emotion {name!r}; choose happy, tense, sad or calm (or Q1-Q4)")
    return EMOTIONS[key]


@dataclass
class Result:
    grid: Grid
    emotion: str
    seed: int
    info: dict


class Composer:
    """A trained model with its tokenizer, ready for the latent operations."""

    def __init__(self, model, tokenizer: Tokenizer, meta: dict, path: Path):
        self.model, self.tok, self.meta, self.path = model, tokenizer, meta, path
        self.on_bar = None  # called with (bars done, bars in all) while decoding

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str | None = None) -> "Composer":
        import torch

        from emocompose import checkpoint

        p = Path(path) if path else default_model_path()
        model, meta, vocab = checkpoint.load_model(p)
        model.requires_grad_(False)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model.to(dev).eval()
        tok = Tokenizer(vocab.config)
        return cls(model, tok, meta, p)

    @property
    def device(self):
        return next(self.model.parameters()).device

    # -- latents -------------------------------------------------------------------------------

    def component_means(self, axis: int):
        """(low, high) means of the mixture on z_r (axis 0, arousal) or z_k (axis 1, valence)."""
        prior = self.model.priors()[axis]
        return prior.means[0].detach(), prior.means[1].detach()

    def axis_mean(self, axis: int, level: float):
        """The point at `level` in [-1, 1] on the segment from the low to the high component mean."""
        lo, hi = self.component_means(axis)
        return lo + (level + 1) / 2 * (hi - lo)

    def centre(self, axis: int, level: float, keys=None):
        """Where a piece at `level` in [-1, 1] is centred on one axis: `axis_mean`, or on z_k
        (axis 1) in given `keys` (model with a key table) the mean z_k of training bars in each
        key, moved by the valence level's offset from the middle of the two components (one row
        per key). z_r ignores `keys`."""
        mean = self.axis_mean(axis, level)
        if axis == 0 or keys is None:
            return mean
        lo, hi = self.component_means(1)
        return self.model.key_means()[0][keys] + (mean - (lo + hi) / 2)

    def encode(self, grid: Grid, window: int = 16):
        """Per-bar posterior means (T, latent) of z_r and z_k; pieces of any length are read in
        windows of `window` bars, the encoders' memory carried across windows."""
        import torch

        ids, offsets = self.tok.encode(grid)
        L = self.tok.config.max_bar_tokens
        bars = [ids[offsets[i] : min(offsets[i + 1], offsets[i] + L)] for i in range(grid.n_bars)]
        mu_r, mu_k = [], []
        mems = mem_lens = None
        with torch.no_grad():
            for s in range(0, len(bars), window):
                chunk = bars[s : s + window]
                n = max(len(b) for b in chunk)
                tokens = torch.zeros(1, len(chunk), n, dtype=torch.long)
                for j, b in enumerate(chunk):
                    tokens[0, j, : len(b)] = torch.as_tensor(b)
                lens = torch.tensor([[len(b) for b in chunk]])
                (mr, _, mk, _), new = self.model.encode(tokens.to(self.device), lens.to(self.device), mems, mem_lens)
                mems, mem_lens = [m for m, _ in new], new[0][1]
                mu_r.append(mr[0])
                mu_k.append(mk[0])
        return torch.cat(mu_r), torch.cat(mu_k)

    def best_of(self, grids: list[Grid], levels: list[tuple[float, float]], n: int) -> tuple[list[int], list[dict]]:
        """For outputs decoded n at a time (grids[i * n : (i + 1) * n] are the candidates for
        levels[i], a point in [-1, 1]^2), the index of the candidate whose own encoding q(y|x)
        gives the target the highest log-probability (each axis weighted by how far its level is
        from the middle), and the q of each one kept. choice (beyond the paper): the decoder does
        not always follow the latents; this makes the model check its own work. With n = 1 there
        is nothing to choose: the outputs as they are, no q."""
        if n == 1:
            return list(range(len(levels))), [None] * len(levels)
        picks, qs = [], []
        for i, lv in enumerate(levels):
            scored = []
            for j in range(i * n, (i + 1) * n):
                logq = self.log_q(*self.encode(grids[j]))
                scored.append((sum(abs(lv[a]) * float(logq[a][int(lv[a] >= 0)]) for a in range(2)), j, logq))
            _, best, logq = max(scored, key=lambda x: (x[0], -x[1]))  # ties: the first
            picks.append(best)
            qs.append(self._rounded(logq))
        return picks, qs

    def log_q(self, mu_r, mu_k) -> list:
        """log q(y|x) per axis (arousal, valence) from the per-bar means: two tensors (low, high)."""
        import torch

        out = []
        for axis, mu in enumerate((mu_r, mu_k)):
            mask = torch.ones(1, len(mu), dtype=torch.bool, device=self.device)
            out.append(torch.log_softmax(self.model.priors()[axis].class_logits(mu[None], mask), -1)[0])
        return out

    @staticmethod
    def _rounded(logq) -> dict:
        return {name: [round(float(x), 4) for x in lq.exp()] for name, lq in zip(("arousal", "valence"), logq)}

    def classify(self, mu_r, mu_k) -> dict:
        """q(y|x) per axis from the per-bar means: {'arousal': [p_low, p_high], 'valence': [...]}."""
        return self._rounded(self.log_q(mu_r, mu_k))

    # -- decoding -------------------------------------------------------------------------------

    def _decode(self, z_r, z_k, plans, temperature: float, top_p: float, seed: int) -> list[Grid]:
        import torch

        from emocompose.sampling import SamplingConfig, decode_bars

        with torch.no_grad():
            cond = self.model.condition(z_r, z_k)
            bars = decode_bars(self.model, self.tok.vocab, cond, plans, SamplingConfig(temperature, top_p, seed),
                               on_bar=self.on_bar)  # fmt: skip
        return [self.tok.decode(np.concatenate(b)).playable(self.tok.config) for b in bars]

    def generate(self, emotion: str | None = None, *, arousal: float | None = None, valence: float | None = None,
                 bars: int = 20, count: int = 1, seed: int = 0, temperature: float = 1.0, top_p: float = 0.95,
                 latent_temperature: float = 1.0, coherence: float = DEFAULT_COHERENCE, key: str | None = None,
                 tempo: float | None = None, paper: bool = False, candidates: int | None = None) -> list[Result]:  # fmt: skip
        """`count` pieces of `bars` bars, decoded as one batch. Either a named emotion, or a point
        (arousal, valence) in [-1, 1]^2 between the component means. See `prior_latents` for
        `coherence`, `key` and `paper`, `best_of` for `candidates` (default DEFAULT_CANDIDATES,
        1 with `paper`)."""
        from emocompose.sampling import BarPlan

        if emotion is not None:
            a, v = parse_emotion(emotion)
            levels = (2.0 * a - 1, 2.0 * v - 1)
            label = emotion.lower()
        else:
            if arousal is None or valence is None:
                raise UsageError("give --emotion, or both --arousal and --valence")
            for name, x in (("arousal", arousal), ("valence", valence)):
                if not -1.0 <= x <= 1.0:
                    raise UsageError(f"--{name} must be in [-1, 1], got {x}")
            levels = (arousal, valence)
            label = emotion_of(int(arousal >= 0), int(valence >= 0))
        n = check_candidates(candidates, paper)
        z_r, z_k, keys = self.prior_latents(levels, count * n, bars, seed, latent_temperature, coherence, key, paper)
        tempo_bin = -1 if tempo is None else int(self.tok.config.tempo_bin(tempo))
        plan = BarPlan([4 * self.tok.config.positions_per_quarter] * bars, [tempo_bin] * bars)
        grids = self._decode(z_r, z_k, [plan] * (count * n), temperature, top_p, seed)
        picks, qs = self.best_of(grids, [levels] * count, n)
        return [Result(grids[j], label, seed, {"arousal": levels[0], "valence": levels[1], "index": i,
                                               "key": None if keys is None else KEY_NAMES[keys[j]],
                                               "candidates": n, "q": q})
                for i, (j, q) in enumerate(zip(picks, qs))]  # fmt: skip

    def prior_latents(self, levels: tuple[float, float], count: int, bars: int, seed: int = 0,
                      latent_temperature: float = 1.0, coherence: float = DEFAULT_COHERENCE,
                      key: str | None = None, paper: bool = False):  # fmt: skip
        """Per-bar z_r and z_k, each (count, bars, latent), for the point `levels` (arousal,
        valence in [-1, 1]), and the key index each piece was given (None without a key table).

        Each bar's draw is sqrt(coherence) of a draw shared by the piece plus sqrt(1 - coherence)
        of its own: every bar is still a sample of N(mean, sigma^2) as in the paper, but the bars
        of a piece agree as real bars do. choice (beyond model.md section 5): with the model's key
        table, z_k's mean is the mean z_k of bars in one key (`key`, or drawn per piece from the
        keys of the labelled training pieces of that valence), moved by the valence component's
        offset from the middle of the two components; without a table, the component mean.
        `paper`: exactly model.md section 5 (bars drawn alone, z_k around the component mean)."""
        import torch

        if not 0.0 <= coherence <= 1.0:
            raise UsageError(f"--coherence must be in [0, 1], got {coherence}")
        key_index = check_key(key, paper)
        coherence = 0.0 if paper else coherence
        g = torch.Generator().manual_seed(seed)
        table, keys, zs = None if paper else self.model.key_means(), None, []
        if key_index is not None and (table is None or not table[1][key_index]):
            why = "has no key table (trained by an older emocompose)" if table is None else \
                f"saw no training bars in {KEY_NAMES[key_index]}"  # fmt: skip
            raise ModelError(f"this model {why}, so it cannot write in a chosen key", str(self.path))
        for axis, level in enumerate(levels):
            prior = self.model.priors()[axis]
            if axis == 1 and table is not None:
                keys = self._pick_keys(level, count, key_index, table[1], g)
            centre = self.centre(axis, level, keys)  # keys are drawn for z_k only (axis 1)
            mean = centre.reshape(-1, 1, centre.shape[-1]).expand(count, 1, -1)
            eps = torch.randn(count, bars, mean.shape[-1], generator=g)
            shared = torch.randn(count, 1, mean.shape[-1], generator=g)
            eps = coherence**0.5 * shared + (1 - coherence) ** 0.5 * eps
            zs.append(mean + latent_temperature * torch.exp(prior.log_std.detach()) * eps.to(self.device))
        return zs[0], zs[1], None if keys is None else keys.tolist()

    def _pick_keys(self, level: float, count: int, key_index: int | None, known, g):
        """One key per piece: the given one, or drawn from the keys of the labelled training
        pieces, mixed by `level` (-1 low, 1 high): the minor keys of the low-valence pieces and
        the major keys of the high-valence ones, as often as those pieces are in each; only keys
        whose bars the table has seen. choice: the data's own mix (a third of low-valence
        EMOPIA pieces are in major keys) gave pieces whose mode hardly followed the asked
        valence; keeping the mode that matches it raised the judge's valence accuracy over 100
        pieces at step 7,500 from 0.49 to 0.79 (evaluate's seeds) and 0.60 to 0.77 (seeds 200-203)."""
        import torch

        if key_index is not None:
            return torch.full((count,), key_index, dtype=torch.long)
        major = torch.from_numpy(is_major(np.arange(len(known))))
        share = self.model.key_share.cpu() * known.cpu() * torch.stack([~major, major])
        w = (level + 1) / 2
        p = (1 - w) * share[0] / share[0].sum().clamp_min(1) + w * share[1] / share[1].sum().clamp_min(1)
        if float(p.sum()) <= 0:  # trained without labels: keys as often as in the training bars
            p = self.model.key_weight.cpu()
        return torch.multinomial(p, count, replacement=True, generator=g)

    def _plan(self, grid: Grid, n: int):
        from emocompose.sampling import BarPlan

        idx = np.arange(n) % grid.n_bars  # loops a shorter piece
        tracks = sorted(set(grid.track.tolist())) or None
        return BarPlan(grid.bar_positions[idx].tolist(), grid.bar_tempo[idx].tolist(), tracks)

    def transform(self, grid: Grid, to: str, lam: float, *, source: str | None = None, seed: int = 0,
                  temperature: float = 0.8, top_p: float = 0.9, paper: bool = False,
                  candidates: int | None = None) -> Result:  # fmt: skip
        """Shift the piece's latents toward emotion `to` by lam in [0, 1]; meter, tempo and
        track layout are kept. lam = 0 re-decodes the piece from its own latents."""
        return self.transform_many(grid, [(to, lam)], source=source, seed=seed, temperature=temperature,
                                   top_p=top_p, paper=paper, candidates=candidates)[0]  # fmt: skip

    def transform_many(self, grid: Grid, targets: list[tuple[str, float]], *, source: str | None = None,
                       seed: int = 0, temperature: float = 0.8, top_p: float = 0.9,
                       paper: bool = False, candidates: int | None = None) -> list[Result]:  # fmt: skip
        """Several (emotion, lambda) targets for one piece: encoded once, decoded as one batch,
        `candidates` decodings of each (the same latents, other token draws; see `best_of`)."""
        import torch

        for _, lam in targets:
            if not 0.0 <= lam <= 1.0:
                raise UsageError(f"--lambda must be in [0, 1], got {lam}")
        encoded = self.encode(grid)
        n = check_candidates(candidates, paper) if any(lam > 0 for _, lam in targets) else 1
        shifted = [self.shifted_latents(grid, to, lam, source, encoded, paper) for to, lam in targets]
        z_r = torch.stack([z[0] for z, _ in shifted for _ in range(n)])
        z_k = torch.stack([z[1] for z, _ in shifted for _ in range(n)])
        outs = self._decode(z_r, z_k, [self._plan(grid, grid.n_bars)] * (len(targets) * n), temperature, top_p, seed)
        # the target's levels, weighted by lambda: at lambda 0 every candidate is as good
        levels = [tuple(lam * (2.0 * x - 1) for x in parse_emotion(to)) for to, lam in targets]
        picks = self.best_of(outs, levels, n)[0]
        return [Result(outs[j], to.lower(), seed, {**info, "candidates": n})
                for j, (to, _), (_, info) in zip(picks, targets, shifted)]  # fmt: skip

    def shifted_latents(self, grid: Grid, to: str, lam: float, source: str | None = None, encoded=None,
                        paper: bool = False):  # fmt: skip
        """The per-bar means of the piece (`encoded`, if already computed) moved toward emotion
        `to` by lam, and what was inferred about the piece.

        `paper`: each axis whose level changes moves by lam (mu_target - mu_source), model.md
        section 5. Otherwise, choice (beyond the paper): each axis moves by lam (c - the piece's
        mean over its bars), c being where `generate` centres a piece of the target (`centre`):
        on z_k in the piece's key, or in its parallel key when that key's mode is not the
        target's (minor for low valence). The bars keep their own movement around the piece's
        mean. Why: a piece's latents sit anywhere in their component, so the paper's shift left
        many on the source's side, and a third of low-valence pieces are in major keys. Measured
        by `evaluate` at step 8,000 on 96 EMOPIA test transforms at lambda 1: the judge heard
        the target in 0.75 of them against 0.49 with the shift used before (the paper's plus a
        move to the parallel key when valence changed), the outputs' rhythm as close to the
        source's."""
        target = parse_emotion(to)
        mu_r, mu_k = self.encode(grid) if encoded is None else encoded
        q = self.classify(mu_r, mu_k)
        src = parse_emotion(source) if source else (int(q["arousal"][1] >= 0.5), int(q["valence"][1] >= 0.5))
        info = {"source_emotion": emotion_of(*src), "q": q, "lambda": lam, "source_inferred": source is None}
        z = [mu_r.clone(), mu_k.clone()]
        if paper:
            for axis in range(2):
                if src[axis] != target[axis]:
                    means = self.component_means(axis)
                    z[axis] = z[axis] + lam * (means[target[axis]] - means[src[axis]])
            return z, info
        table, keys = self.model.key_means(), None
        if table is not None:
            k = global_key(grid, self.tok.config)
            want = k if bool(is_major(k)) == bool(target[1]) else parallel_key(k)
            keys = next((x for x in (want, k) if table[1][x]), None)  # only keys training has seen
            if keys is not None:
                info["key"] = [KEY_NAMES[k], KEY_NAMES[keys]]
        for axis in range(2):
            goal = self.centre(axis, 2.0 * target[axis] - 1, keys)
            z[axis] = z[axis] + lam * (goal - z[axis].mean(0))
        return z, info

    def swap(self, a: Grid, b: Grid, feature: str, *, seed: int = 0, temperature: float = 0.8,
             top_p: float = 0.9) -> Result:  # fmt: skip
        """Rhythm: z_r from B, z_k from A; key: z_k from B, z_r from A. The output has A's bars
        (meter, tempo, tracks); when B is shorter its bars repeat from its start."""
        if feature not in ("rhythm", "key"):
            raise UsageError(f"--feature must be rhythm or key, got {feature!r}")
        ar, ak = self.encode(a)
        br, bk = self.encode(b)
        idx = np.arange(a.n_bars) % b.n_bars
        z_r, z_k = (br[idx], ak) if feature == "rhythm" else (ar, bk[idx])
        out = self._decode(z_r[None], z_k[None], [self._plan(a, a.n_bars)], temperature, top_p, seed)[0]
        return Result(out, feature, seed, {"feature": feature, "bars_a": a.n_bars, "bars_b": b.n_bars})
