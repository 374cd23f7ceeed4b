"""Transformer-XL layers with one bar per segment (Dai et al. 2019), pre-LayerNorm.

Shape legend: b pieces, t bars, n tokens of a bar (padded), m memory tokens, d model width,
h heads, k head width, p relative distances.

Memory. Layer l of bar tau attends to its own bar and to the input of layer l for bar tau-1
(stop-gradient). Because that memory is itself computed with the memory of bar tau-2, the
whole recurrence can run for all bars at once, layer by layer: at layer l every bar's memory is
the previous bar's layer-l input, which the layer below has already produced. Training therefore
runs all bars of a batch in parallel and is exactly the bar-by-bar recurrence; `step` runs the
same arithmetic one token at a time with a key/value cache for generation.

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

        The position term (q + v) . r is computed here and handed to the fused attention kernel
        as an additive bias, with -inf where the mask forbids; the content term (q + u) . k is
        the kernel's own product. No dropout on attention weights: on a CPU drawing that mask
        cost more than the attention itself (measured), and residual dropout remains.
        """
        scale = 1.0 / math.sqrt(self.k)
        bd = skew((q + self.v[:, None]) @ r.transpose(-1, -2), k.shape[-2]) * scale
        bias = bd.masked_fill(~mask, float("-inf"))
        return F.scaled_dot_product_attention(q + self.u[:, None], k, v, attn_mask=bias.to(q.dtype), scale=scale)

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
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mem, mask):
        """x (B, n, d) layer input; mem (B, m, d) right-aligned memory; mask (B, n, m+n)."""
        a = self.attn
        d = x.shape[-1]
        hx, hm = self.ln1(x), self.ln1(mem)
        q, kx, vx = self.qkv_split(hx)
        km, vm = F.linear(hm, a.qkv.weight[d:]).split(d, dim=-1)
        k = torch.cat([km, kx], dim=1)
        v = torch.cat([vm, vx], dim=1)
        r = a.rel(k.shape[1], x.shape[1], x.device)
        y = a.merge(a.attend(a.split(q), a.split(k), a.split(v), r, mask[:, None]))
        x = x + self.drop(a.o(y))
        return x + self.drop(self.ff(self.ln2(x)))

    def qkv_split(self, hx):
        return self.attn.qkv(hx).split(hx.shape[-1], dim=-1)


def right_align(h: torch.Tensor, lens: torch.Tensor, m: int) -> torch.Tensor:
    """(N, n, d) bars with `lens` real tokens at the front -> (N, m, d) with them at the end."""
    N, n, d = h.shape
    j = torch.arange(m, device=h.device)
    src = (j[None] - (m - lens[:, None])).clamp(0, n - 1)  # (N, m)
    flat = (torch.arange(N, device=h.device)[:, None] * n + src).reshape(-1)
    return h.reshape(N * n, d).index_select(0, flat).view(N, m, d)


class XLStack(nn.Module):
    """A stack of XL layers over bars: encoder (bidirectional within a bar) or decoder (causal)."""

    def __init__(self, layers: int, d: int, heads: int, ff: int, dropout: float, causal: bool):
        super().__init__()
        self.layers = nn.ModuleList([XLLayer(d, heads, ff, dropout) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.causal = causal

    def forward(self, x, lens, mems=None, mem_lens=None, cond=None):
        """All bars at once.

        x (b, t, n, d) embeddings; lens (b, t) real tokens per bar (0 for a missing bar);
        mems: per layer (b, m0, d) right-aligned memory for bar 0 (or None), with mem_lens (b,);
        cond (b, t, d) added to every layer's input (the decoder's "in-attention").
        Returns the output (b, t, n, d) and, per layer, the input of the last bar, right-aligned,
        with its length: the memory for whatever bar comes next.
        """
        b, t, n, d = x.shape
        m = n if mems is None else max(n, mems[0].shape[1])
        dev = x.device
        lens_prev = torch.cat([mem_lens[:, None] if mems is not None else lens.new_zeros(b, 1), lens[:, :-1]], 1)
        mask = self._mask(lens, lens_prev, n, m, dev).view(b * t, n, m + n)
        new_mems = []
        for i, layer in enumerate(self.layers):
            if cond is not None:
                x = x + cond[:, :, None]
            prev = torch.cat([x.new_zeros(b, 1, n, d), x[:, :-1]], 1).detach()
            mem = right_align(prev.reshape(b * t, n, d), lens_prev.reshape(-1), m).view(b, t, m, d)
            if mems is not None:  # bar 0 remembers the bar before this chunk
                m0 = mems[i].detach()
                mem[:, 0] = F.pad(m0, (0, 0, m - m0.shape[1], 0))
            last = lens[:, -1]
            new_mems.append(right_align(x[:, -1], last, n).detach())
            x = layer(x.reshape(b * t, n, d), mem.reshape(b * t, m, d), mask).view(b, t, n, d)
        return self.ln(x), new_mems

    def _mask(self, lens, lens_prev, n, m, dev):
        """(b, t, n, m+n): memory keys that are real, own-bar keys that are real (and not ahead)."""
        j = torch.arange(m, device=dev)
        mem_ok = j[None, None] >= (m - lens_prev)[..., None]  # (b, t, m)
        jj = torch.arange(n, device=dev)
        cur_ok = jj[None, None] < lens[..., None]  # (b, t, n)
        mask = torch.cat([mem_ok[:, :, None].expand(-1, -1, n, -1), cur_ok[:, :, None].expand(-1, -1, n, -1)], -1)
        if self.causal:
            ahead = jj[None, :] > jj[:, None]  # (n, n) key after query
            mask[..., m:] &= ~ahead
        # a padding query with nothing to see attends to itself, so softmax stays finite
        eye = torch.eye(n, dtype=torch.bool, device=dev)
        mask[..., m:] |= eye
        return mask


class StepCache:
    """Per-layer keys, values and inputs of the bar being generated, plus the memory's keys/values."""

    def __init__(self, stack: XLStack, mems: list[torch.Tensor], mem_lens: torch.Tensor):
        self.stack, self.mem_lens = stack, mem_lens
        B, m, d = mems[0].shape
        self.m = m
        self.mem_ok = torch.arange(m, device=mems[0].device)[None] >= (m - mem_lens)[:, None]  # (B, m)
        self.k, self.v, self.inputs = [], [], [[] for _ in stack.layers]
        for layer, mem in zip(stack.layers, mems):
            km, vm = F.linear(layer.ln1(mem), layer.attn.qkv.weight[d:]).split(d, dim=-1)
            self.k.append([layer.attn.split(km)])
            self.v.append([layer.attn.split(vm)])
        self.rels = [None] * len(stack.layers)

    def _rel(self, i: int, klen: int, device):
        layer = self.stack.layers[i]
        if self.rels[i] is None or self.rels[i].shape[1] < klen:
            self.rels[i] = layer.attn.rel(max(klen, 2 * self.m + 8), 1, device)  # distances from far to 0
        r = self.rels[i]
        return r[:, r.shape[1] - klen :]

    def step(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """One token per sequence: x (B, d) embedding -> (B, d) output of the stack."""
        B, d = x.shape
        x = x[:, None]
        t = len(self.inputs[0])
        mask = torch.cat([self.mem_ok, torch.ones(B, t + 1, dtype=torch.bool, device=x.device)], 1)[:, None, None]
        for i, layer in enumerate(self.stack.layers):
            if cond is not None:
                x = x + cond[:, None]
            self.inputs[i].append(x)
            a = layer.attn
            q, k, v = layer.qkv_split(layer.ln1(x))
            self.k[i].append(a.split(k))
            self.v[i].append(a.split(v))
            K = torch.cat(self.k[i], dim=-2)
            V = torch.cat(self.v[i], dim=-2)
            y = a.merge(a.attend(a.split(q), K, V, self._rel(i, K.shape[-2], x.device), mask))
            x = x + layer.drop(a.o(y))
            x = x + layer.drop(layer.ff(layer.ln2(x)))
        return self.stack.ln(x)[:, 0]

    def bar_memory(self, lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The finished bar's per-layer inputs, right-aligned by each sequence's length `lens`."""
        out = []
        for inputs in self.inputs:
            h = torch.cat(inputs, dim=1)  # (B, n, d)
            out.append(right_align(h, lens, h.shape[1]))
        return out, lens
