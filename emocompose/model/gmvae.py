"""The category-dispersed Gaussian-mixture VAE (model.md sections 3-4) and its losses.

Two encoders read a piece bar by bar and give each bar a rhythm latent z_r and a key latent z_k;
a causal decoder rebuilds the tokens with z = [z_r, z_k] added to every layer's input; small
local decoders tie z_r to the rhythm feature and z_k to the key feature, and adversaries behind
a gradient-reversal layer keep key out of z_r and rhythm out of z_k.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from emocompose.emotions import AXES
from emocompose.features import N_KEYS, RHYTHM_BINS
from emocompose.model.config import LossConfig, ModelConfig
from emocompose.model.layers import Dropout, XLStack
from emocompose.model.prior import MixturePrior

# The key table's running means forget this share per step: about the last 100 steps (some
# 13,000 bars of 8 x 16) speak, so even keys with 1 bar in 200 have about 60 bars behind them.
KEY_DECAY = 0.99


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.scale * g, None


def mlp(i: int, h: int, o: int) -> nn.Module:
    return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Linear(h, o))


class Reduction:
    """How per-batch sums become means: over one process, or over all ranks of a DDP job.

    Every loss term is  local sum / global count, and the loss is scaled by the world size
    because DDP averages gradients: so two ranks compute exactly the gradient of one process.
    """

    world = 1

    def count(self, n: torch.Tensor) -> torch.Tensor:
        return n.detach()

    def others_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of x over the other ranks (no gradient)."""
        return torch.zeros_like(x)


class CDGMVAE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.enc_r = XLStack(c.enc_layers, c.d, c.heads, c.ff, c.dropout, causal=False)
        self.enc_k = XLStack(c.enc_layers, c.d, c.heads, c.ff, c.dropout, causal=False)
        self.post_r = nn.Linear(c.d, 2 * c.latent)  # mu and log sigma^2
        self.post_k = nn.Linear(c.d, 2 * c.latent)
        for post in (self.post_r, self.post_k):  # start the posterior at the prior's width
            nn.init.constant_(post.bias[c.latent :], 2 * c.prior_log_std)
        self.dec = XLStack(c.dec_layers, c.d, c.heads, c.ff, c.dropout, causal=True, memory_bars=c.dec_memory_bars)
        self.z_in = nn.Linear(2 * c.latent, c.d)
        self.rhythm_head = mlp(c.latent, c.feature_hidden, RHYTHM_BINS)  # D_r(z_r)
        self.key_head = mlp(c.latent, c.feature_hidden, N_KEYS)  # D_k(z_k)
        self.rhythm_adv = mlp(c.latent, c.feature_hidden, RHYTHM_BINS)  # D_r'(z_k)
        self.key_adv = mlp(c.latent, c.feature_hidden, N_KEYS)  # D_k'(z_r)
        self.prior_r = MixturePrior(c.latent, c.prior_log_std)  # arousal
        self.prior_k = MixturePrior(c.latent, c.prior_log_std)  # valence
        self.drop = Dropout(c.dropout)
        # The key table (beyond the paper, used by compose.py): per key, a running mean of the
        # posterior means of z_k over training bars in that key, and how often the labelled
        # training pieces of each valence class are in each key. The mixture component of an
        # emotion says where its bars lie on average; this says where a bar in A minor lies, so
        # generation can pick a key and stay in it.
        self.register_buffer("key_sum", torch.zeros(N_KEYS, c.latent))
        self.register_buffer("key_weight", torch.zeros(N_KEYS))
        self.register_buffer("key_share", torch.zeros(2, N_KEYS))

    # -- pieces of the forward pass, shared by training and the latent operations -------------

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.drop(self.embed(tokens))

    def encode(self, tokens, lens, mems=None, mem_lens=None):
        """Per-bar posteriors. tokens (b, t, n). Returns (mu_r, logvar_r, mu_k, logvar_k), each
        (b, t, latent), and the encoders' memories (per encoder: per-layer states, lengths) for a
        following chunk of bars."""
        x = self.embed_tokens(tokens)
        out, new = [], []
        for i, (enc, post) in enumerate(((self.enc_r, self.post_r), (self.enc_k, self.post_k))):
            h, pk, m = enc(x, lens, None if mems is None else mems[i], mem_lens)
            mu, logvar = post(pk.pool(h)).float().chunk(2, dim=-1)
            out += [mu, logvar.clamp(-12.0, 6.0)]
            new.append(m)
        return tuple(out), new

    def condition(self, z_r: torch.Tensor, z_k: torch.Tensor) -> torch.Tensor:
        return self.z_in(torch.cat([z_r, z_k], dim=-1))

    def logits(self, h: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """Logits of the tokens lo..hi-1 (all by default): tied input and output embeddings."""
        if lo == 0 and hi is None:
            return h @ self.embed.weight.T
        return F.linear(h, self.embed.weight.narrow(0, lo, (hi or self.config.vocab_size) - lo))

    def decode(self, tokens, lens, z_r, z_k, mems=None, mem_lens=None):
        """Teacher-forced decoder states of the real tokens (R, d), their `Packing`, and the
        decoder's memory for what follows. Logits: `self.logits(h)`."""
        return self.dec(self.embed_tokens(tokens), lens, mems, mem_lens, cond=self.condition(z_r, z_k))

    def priors(self):
        return (self.prior_r, self.prior_k)

    def key_means(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The mean z_k of a bar in each key (24, latent) and which keys training has seen (24,),
        or None when it has seen none (a model trained before the table existed)."""
        known = self.key_weight > 0
        if not bool(known.any()):
            return None
        return self.key_sum / self.key_weight.clamp_min(1e-12)[:, None], known

    @torch.no_grad()
    def _update_key_table(self, mu_k: torch.Tensor, key: torch.Tensor, red: Reduction) -> None:
        keep = key >= 0
        k, mu = key[keep], mu_k.detach()[keep].float()
        # sums of mu and (last column) bar counts per key, in one tensor so DDP reduces once
        both = torch.zeros(N_KEYS, mu.shape[-1] + 1, device=mu.device)
        both.index_add_(0, k, torch.cat([mu, torch.ones_like(mu[:, :1])], 1))
        both = both + red.others_sum(both)  # every rank adds the whole (global) batch
        self.key_sum.mul_(KEY_DECAY).add_(both[:, :-1])
        self.key_weight.mul_(KEY_DECAY).add_(both[:, -1])

    # -- training -------------------------------------------------------------------------------

    def losses(self, batch: dict, cfg: LossConfig, step: int, red: Reduction | None = None):
        """The loss to back-propagate, a dict of its parts (floats, for logging), and per axis the
        counts (right, known) of q(y|x) against batch["truth"] (default: the labels)."""
        red = red or Reduction()
        tokens, lens = batch["tokens"], batch["lens"]
        bar_mask = lens > 0
        (mu_r, lv_r, mu_k, lv_k), _ = self.encode(tokens, lens)
        eps = batch["eps"]
        z_r = mu_r + torch.exp(0.5 * lv_r) * eps[:, :, 0]
        z_k = mu_k + torch.exp(0.5 * lv_k) * eps[:, :, 1]
        h, pk, _ = self.decode(tokens, lens, z_r, z_k)
        logits = self.logits(h)  # real tokens only
        targets = batch["targets"].reshape(-1)[pk.rows]
        n_tok = red.count((targets >= 0).sum())
        rec = F.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum") / n_tok

        labels = batch["labels"]  # (b, 2): 1 high, 0 low, -1 unknown
        truth = batch.get("truth", labels)  # what q(y|x) is scored against: validation hides labels from the loss only
        bars = bar_mask.float()
        n_bar = red.count(bars.sum())
        parts = {"rec": rec}
        total = rec
        beta = cfg.kl_weight * min(1.0, (step + 1) / max(cfg.kl_warmup, 1))
        kl_sum, cls_sum, cat_sum = 0.0, 0.0, 0.0
        acc = {}
        for axis, (prior, mu, lv, z) in enumerate(((self.prior_r, mu_r, lv_r, z_r), (self.prior_k, mu_k, lv_k, z_k))):
            lab = labels[:, axis]
            has = lab >= 0
            logq = prior.log_q(z, bar_mask)  # (b, 2)
            q = logq.exp()
            w = torch.where(has[:, None], F.one_hot(lab.clamp_min(0), 2).to(q.dtype), q)
            kl = prior.kl(mu, lv, w, cfg.alpha)  # (b, t, latent)
            kl = torch.clamp(kl, min=cfg.free_bits) * bars[..., None]
            kl_sum = kl_sum + kl.sum() / (n_bar * mu.shape[-1])
            n_lab = red.count(has.sum())
            cls_sum = cls_sum + (F.nll_loss(logq, lab.clamp_min(0), reduction="none") * has).sum() / n_lab.clamp_min(1)
            unl = (~has).to(q.dtype)
            n_unl = red.count(unl.sum())
            if cfg.drop_mi:
                # KL(q_bar || p) over the whole (global) batch of unlabelled pieces
                local = (q * unl[:, None]).sum(0)
                q_bar = (local + red.others_sum(local)) / n_unl.clamp_min(1)
                cat = (q_bar * (torch.log(q_bar.clamp_min(1e-8)) - prior.log_py)).sum() * (n_unl > 0)
                cat_sum = cat_sum + cat  # every rank holds the whole term; its gradient flows to local q
            else:
                per = (q * (logq - prior.log_py)).sum(-1)
                cat_sum = cat_sum + (per * unl).sum() / n_unl.clamp_min(1)
            known = truth[:, axis] >= 0
            acc[AXES[axis]] = ((logq.argmax(-1) == truth[:, axis]) & known).sum().detach(), known.sum().detach()
        parts.update(kl=kl_sum, cls=cls_sum, cat=cat_sum)
        total = total + beta * kl_sum + cfg.cls_weight * cls_sum + cfg.cat_weight * cat_sum

        # local decoders and adversaries, per bar
        target_r = torch.log1p(batch["rhythm"].float())
        key = batch["key"].masked_fill(~bar_mask, -100)
        if self.training:
            self._update_key_table(mu_k, key, red)
        rev_r = _Reverse.apply(z_r, cfg.adv_weight)
        rev_k = _Reverse.apply(z_k, cfg.adv_weight)
        n_rb = n_bar * RHYTHM_BINS

        def rhythm_loss(pred):
            return (((pred - target_r) ** 2).sum(-1) * bars).sum() / n_rb

        def key_loss(pred):
            return F.cross_entropy(pred.reshape(-1, N_KEYS), key.reshape(-1), ignore_index=-100, reduction="sum") / n_bar

        parts["f_r"] = rhythm_loss(self.rhythm_head(z_r))
        parts["f_k"] = key_loss(self.key_head(z_k))
        parts["adv_r"] = rhythm_loss(self.rhythm_adv(rev_k))  # rhythm read from z_k
        parts["adv_k"] = key_loss(self.key_adv(rev_r))  # key read from z_r
        total = total + cfg.feature_weight * (parts["f_r"] + parts["f_k"]) + parts["adv_r"] + parts["adv_k"]
        parts["loss"] = total
        parts["beta"] = torch.tensor(beta)
        return total * red.world, parts, acc

    def forward(self, batch: dict, cfg: LossConfig, step: int, red: Reduction | None = None):
        """The training loss (so that DistributedDataParallel sees the whole computation)."""
        return self.losses(batch, cfg, step, red)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - (self.embed.weight.numel() if non_embedding else 0)

    def flops_per_token(self, bar_tokens: int) -> float:
        """Training FLOPs per token: 6 per weight per token in the transformer stacks and the
        output layer, plus attention over a bar and its memory (`bar_tokens` a bar), forward and
        backward (Kaplan et al. 2020's 6N, PaLM's attention term)."""
        c = self.config
        layers = 2 * c.enc_layers + c.dec_layers
        per_layer = 4 * c.d * c.d + c.d * c.d + 2 * c.d * c.ff  # qkv+o, relative projection, feed-forward

        def attn(memory_bars):  # ac + weights·v over the keys, bd over the distances
            keys = (memory_bars + 1) * bar_tokens
            return 2 * 2 * c.d * keys + 2 * c.d * (keys + bar_tokens)

        attention = 2 * c.enc_layers * attn(1) + c.dec_layers * attn(c.dec_memory_bars)
        return 6.0 * layers * per_layer + 3.0 * attention + 6.0 * c.d * c.vocab_size


def weight_count_mb(model: nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def param_init_scale(model: CDGMVAE) -> None:
    """GPT-2 style: residual projections scaled down with depth so deep stacks start stable."""
    for stack in (model.enc_r, model.enc_k, model.dec):
        n = max(len(stack.layers), 1)
        for layer in stack.layers:
            nn.init.normal_(layer.attn.o.weight, std=0.02 / math.sqrt(2 * n))
            nn.init.normal_(layer.ff[2].weight, std=0.02 / math.sqrt(2 * n))
