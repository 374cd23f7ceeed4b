"""Transformer-XL layers with one bar per segment (Dai et al. 2019), pre-LayerNorm.

Shape legend: b pieces, t bars, n tokens of a bar (padded), m memory tokens, d model width,
h heads, k head width, p relative distances.

Memory. Layer l of bar tau attends to its own bar and to the input of layer l for bar tau-1
(for bars tau-M .. tau-1 with `memory_bars` M; the paper's is 1). Because that memory is itself
computed with the memory of the bars before, the whole recurrence can run for all bars at once,
layer by layer: at layer l every bar's memory is the previous bars' layer-l input, which the
layer below has already produced. A memory carried in from outside (`mems`, one bar) is read by
the first bar only. Training therefore runs all bars of a batch in parallel and is exactly the
bar-by-bar recurrence (in values; the stop-gradient is on the memory's keys and values, so they
are computed once with the bar's own); `step.StepCache` runs the same arithmetic one token at a
time with a key/value cache for generation.

Packing. Only real tokens go through the layers, as rows of one (R, d) array (see `Packing`).

Relative positions. Bars are right-padded, but a memory is right-aligned (its padding moved to
the front), so that the distance between a token and the previous bar's last token is always 1,
whatever the padding. Scores are  (q + u) . k_j  +  (q + v) . r_(i-j)  with r the projected
sinusoid of the distance and u, v the learned global biases of the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoid(distances: torch.Tensor, d: int) -> torch.Tensor:
    """(p,) distances -> (p, d) sinusoidal encodings, as in Vaswani et al. / Dai et al."""
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, device=distances.device, dtype=torch.float32) / d))
    ang = distances.float()[:, None] * inv[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


def skew(x: torch.Tensor, klen: int) -> torch.Tensor:
    """(..., q, q+klen-1) scores against distances klen-1 .. -(q-1)  ->  (..., q, klen) per key.

    Query i sits at index klen-q+i of the key sequence, so key j is at distance klen-q+i-j,
    which is column q-1-i+j: each row is read at an offset one less than the row above.
    """
    q, p = x.shape[-2], x.shape[-1]
    if q == 1:
        return x[..., :klen]
    flat = x.reshape(*x.shape[:-2], q * p)[..., q - 1 : q - 1 + q * (p - 1)]
    return flat.reshape(*x.shape[:-2], q, p - 1)[..., :klen]


class Dropout(nn.Module):
    """Inverted dropout with masks cut from random bytes: eight bytes per 64-bit draw, a byte
    below round(256 p) drops its element. 3.4x faster on a CPU than nn.Dropout, whose
    per-element Bernoulli draws were 9% of a training step (measured). The rate is rounded to a
    multiple of 1/256 (0.1 acts as 26/256 = 0.102)."""

    def __init__(self, p: float):
        super().__init__()
        self.cut = round(256 * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cut == 0:
            return x
        n = x.numel()
        r = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        keep = r.view(torch.uint8)[:n].view(x.shape) >= self.cut
        return torch.where(keep, x * (256 / (256 - self.cut)), 0)


class RelAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        assert d % heads == 0, "width must divide into heads"
        self.h, self.k = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.r = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.u = nn.Parameter(torch.zeros(heads, self.k))
        self.v = nn.Parameter(torch.zeros(heads, self.k))

    def rel(self, klen: int, qlen: int, device) -> torch.Tensor:
        """(h, p, k) projected encodings of distances klen-1 down to -(qlen-1)."""
        d = self.h * self.k
        pos = torch.arange(klen - 1, -qlen, -1, device=device)
        return self.r(sinusoid(pos, d).to(self.r.weight.dtype)).view(-1, self.h, self.k).transpose(0, 1)

    def attend(self, q, k, v, r, mask):
        """q (B,h,i,k); k, v (B,h,j,k); r (h,p,k); mask (B,1|h,i,j) True where allowed.

        Scores are the content term (q + u) . k plus the position term (q + v) . r, read per key
        by `skew`, in one batched multiply-add; softmax in float32. Written out rather than
        handed to scaled_dot_product_attention: with a position term that needs a gradient the
        fused CPU kernel does not apply, and torch's fallback was 1.7x slower than this (measured
        on the training shapes, forward and backward). No dropout on attention weights: on a CPU
        drawing that mask cost more than the attention itself (measured); residual dropout remains.
        """
        scale = 1.0 / math.sqrt(self.k)
        bd = skew((q + self.v[:, None]).to(q.dtype) @ r.transpose(-1, -2), k.shape[-2])

        def flat(x):
            return x.reshape(-1, *x.shape[-2:])

        scores = torch.baddbmm(flat(bd), flat((q + self.u[:, None]).to(q.dtype)), flat(k).transpose(-1, -2))
        scores = (scores.view(bd.shape) * scale).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, -1, dtype=torch.float32).to(v.dtype) @ v

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.h, self.k).transpose(-2, -3)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(-2, -3)
        return x.reshape(*x.shape[:-2], self.h * self.k)


class XLLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = RelAttention(d, heads, dropout)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.drop = Dropout(dropout)

    def qkv_split(self, hx):
        return self.attn.qkv(hx).split(hx.shape[-1], dim=-1)


def _gather(src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """src[idx] for row indices of any shape, by index_select: its backward adds rows with
    index_add_, several times faster on a CPU than the accumulating index_put_ of src[idx]."""
    return src.index_select(0, idx.reshape(-1)).view(*idx.shape, src.shape[-1])


class Packing:
    """Where the real tokens of a padded (b, t, n) batch of bars are, and how to group bars.

    The stack keeps only real tokens, R rows of a flat (R, d) array, so projections and
    feed-forward layers never touch padding (about half of a batch of real bars). Attention
    needs rectangles: bars are sorted by length and cut into `groups` groups, each padded only
    to its own longest bar. Padding points at row 0: attention masks it out, so its value never
    counts, and no zero row has to be appended to every layer's keys and values (measured: those
    copies were 2% of a step).
    """

    def __init__(self, lens: torch.Tensor, n: int, mem_lens: torch.Tensor | None, groups: int = 3,
                 memory_bars: int = 1):  # fmt: skip
        b, t = lens.shape
        dev = lens.device
        self.b, self.t, self.n = b, t, n
        flat_lens = lens.reshape(-1)
        self.R = int(flat_lens.sum())
        self.start = torch.cumsum(flat_lens, 0) - flat_lens  # first row of each bar
        j = torch.arange(n, device=dev)
        real = j[None] < flat_lens[:, None]  # (N, n)
        self.rows = (torch.arange(b * t, device=dev)[:, None] * n + j[None])[real]  # padded positions
        self.bar_of_row = torch.arange(b * t, device=dev).repeat_interleave(flat_lens)
        self.lens = flat_lens
        # the first of the memory_bars bars before each bar: -1 for a sequence's first bar (which
        # reads the external memory, if any). A sequence's bars are consecutive rows, so a bar's
        # memory is the rows from that bar's first to its own first
        tau = torch.arange(b * t, device=dev) % t
        bar = torch.arange(b * t, device=dev)
        self.prev = torch.where(tau > 0, bar - torch.clamp(tau, max=memory_bars), -1)
        ext = mem_lens if mem_lens is not None else torch.zeros(b, dtype=torch.long, device=dev)
        self.ext_lens = ext
        self.prev_len = torch.where(tau > 0, self.start - self.start[self.prev.clamp_min(0)], ext.repeat_interleave(t))
        live = torch.nonzero(flat_lens > 0)[:, 0]
        order = live[torch.argsort(flat_lens[live], stable=True)]
        self.groups = [g for g in torch.tensor_split(order, min(groups, max(len(order), 1))) if len(g)]

    def index(self, bars: torch.Tensor, m0: int | None = None):
        """Row indices (into [X; ext]) for a group: own tokens (G, n_g), memory (G, m_g)
        right-aligned, and their masks (padding points at row 0)."""
        lens = self.lens[bars]
        n_g = int(lens.max())
        j = torch.arange(n_g, device=bars.device)
        own_ok = j[None] < lens[:, None]
        own = torch.where(own_ok, self.start[bars, None] + j[None], 0)
        plen = self.prev_len[bars]
        m_g = max(int(plen.max()), 1)
        jm = torch.arange(m_g, device=bars.device)
        mem_ok = jm[None] >= (m_g - plen)[:, None]
        src = jm[None] - (m_g - plen)[:, None]
        prev = self.prev[bars]
        mem = torch.where(prev[:, None] >= 0, self.start[prev.clamp_min(0), None] + src, 0)
        if m0 is not None:  # first bars read the external memory rows, right-aligned at m0
            seq = bars // self.t
            ext = self.R + seq[:, None] * m0 + (m0 - plen[:, None]) + src
            mem = torch.where(prev[:, None] < 0, ext, mem)
        mem = torch.where(mem_ok, mem, 0)
        return own, own_ok, mem, mem_ok

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(R, ...) real rows -> (b, t, n, ...) with zeros in the padding."""
        out = x.new_zeros(self.b * self.t * self.n, *x.shape[1:])
        out[self.rows] = x
        return out.view(self.b, self.t, self.n, *x.shape[1:])

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of each bar's rows: (R, d) -> (b, t, d) (zeros for empty bars)."""
        out = x.new_zeros(self.b * self.t, x.shape[-1]).index_add_(0, self.bar_of_row, x)
        return (out / self.lens.clamp_min(1)[:, None].to(x.dtype)).view(self.b, self.t, -1)

    def last_bar_rows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sequence's last bar from flat rows, right-aligned (b, n, d), and its length."""
        last = torch.arange(self.b, device=x.device) * self.t + self.t - 1
        lens = self.lens[last]
        j = torch.arange(self.n, device=x.device)
        src = j[None] - (self.n - lens[:, None])
        ok = src >= 0
        rows = torch.where(ok, self.start[last, None] + src.clamp_min(0), 0)
        return _gather(x, rows) * ok[..., None].to(x.dtype), lens


class XLStack(nn.Module):
    """A stack of XL layers over bars: encoder (bidirectional within a bar) or decoder (causal)."""

    def __init__(self, layers: int, d: int, heads: int, ff: int, dropout: float, causal: bool,
                 memory_bars: int = 1):  # fmt: skip
        super().__init__()
        self.layers = nn.ModuleList([XLLayer(d, heads, ff, dropout) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.causal = causal
        self.memory_bars = memory_bars

    def forward(self, x, lens, mems=None, mem_lens=None, cond=None):
        """All bars at once, on real tokens only.

        x (b, t, n, d) embeddings; lens (b, t) real tokens per bar (0 for a missing bar);
        mems: per layer (b, m0, d) right-aligned memory for bar 0 (or None), with mem_lens (b,);
        cond (b, t, d) added to every layer's input (the decoder's "in-attention").
        Returns the output as (R, d) rows with the `Packing` that places them, and, per layer,
        the input of the last bar, right-aligned (b, n, d), with its length (b,): the memory for
        whatever bar comes next.
        """
        b, t, n, d = x.shape
        pk = Packing(lens, n, mem_lens if mems is not None else None, memory_bars=self.memory_bars)
        m0 = mems[0].shape[1] if mems is not None else None
        idx = [pk.index(g, m0) for g in pk.groups]
        real = [own_ok.reshape(-1).nonzero()[:, 0] for _, own_ok, _, _ in idx]  # real rows of each group
        inverse = self._inverse(idx, x.device)
        X = x.reshape(b * t * n, d).index_select(0, pk.rows)
        cond_rows = cond.reshape(b * t, d).index_select(0, pk.bar_of_row) if cond is not None else None
        new_mems = []
        for i, layer in enumerate(self.layers):
            if cond_rows is not None:
                X = X + cond_rows
            mem_x, last_len = pk.last_bar_rows(X)
            new_mems.append(mem_x.detach())
            a = layer.attn
            qkv = a.qkv(layer.ln1(X))
            q_src, kv_src = qkv[:, :d], qkv[:, d:]
            # the memory is the previous bar's keys and values, with stop-gradient
            mem_src = kv_src.detach()
            if mems is not None:
                ext = F.linear(layer.ln1(mems[i].detach()), a.qkv.weight[d:]).reshape(-1, 2 * d)
                mem_src = torch.cat([mem_src, ext.detach()])
            outs = []
            for (own, own_ok, mem, mem_ok), rows in zip(idx, real):
                G, n_g = own.shape
                q = a.split(_gather(q_src, own))
                kc, vc = _gather(kv_src, own).split(d, dim=-1)
                km, vm = _gather(mem_src, mem).split(d, dim=-1)
                k = torch.cat([a.split(km), a.split(kc)], dim=-2)
                v = torch.cat([a.split(vm), a.split(vc)], dim=-2)
                mask = self._mask(own_ok, mem_ok)
                r = a.rel(k.shape[-2], n_g, X.device)
                y = a.merge(a.attend(q, k, v, r, mask[:, None]))
                outs.append(y.reshape(-1, d).index_select(0, rows))
            y = torch.cat(outs).index_select(0, inverse)
            X = X + layer.drop(a.o(y))
            X = X + layer.drop(layer.ff(layer.ln2(X)))
        return self.ln(X), pk, (new_mems, last_len)

    @staticmethod
    def _inverse(idx, device) -> torch.Tensor:
        """Where each real row landed in the group-by-group concatenation."""
        order = torch.cat([own[ok] for own, ok, _, _ in idx])
        inv = torch.empty_like(order)
        inv[order] = torch.arange(len(order), device=device)
        return inv

    def _mask(self, own_ok, mem_ok):
        """(G, n, m+n): real memory keys, real own keys (not ahead, for the decoder)."""
        n = own_ok.shape[1]
        cur = own_ok[:, None, :].expand(-1, n, -1)
        if self.causal:
            cur = cur & torch.ones(n, n, dtype=torch.bool, device=own_ok.device).tril()
        # a padding query with nothing to see attends to itself, so softmax stays finite
        cur = cur | torch.eye(n, dtype=torch.bool, device=own_ok.device)
        return torch.cat([mem_ok[:, None, :].expand(-1, n, -1), cur], -1)
