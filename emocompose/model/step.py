"""Decoding one token at a time: the key/value cache (`StepCache`) and the stack's weights
laid out for it (`StepWeights`, `Product`, `decoding_layout`). The arithmetic is
`layers.XLStack.forward`'s for one query; a test holds the two equal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from emocompose.model.layers import XLStack


class StepCache:
    """Per-layer keys and values of the tokens being generated and of the memory they start
    from, for decoding one token per sequence at a time.

    Every sequence of the batch writes its next token into the same column, so that one set of
    relative distances serves the whole batch; each reads only its window, the stack's
    `memory_bars` bars before its current one and its current bar (as in training, a bar's memory
    is the previous bars' own keys and values), through an additive bias. A sequence whose bar
    ends starts its next bar at the next column (`new_bar`) instead of waiting for the longest bar
    of the batch (measured, 20 bars: waiting, 8 pieces took 1,708 steps for 1,213 tokens a piece
    and 25 took 2,153 for 1,374; not waiting, 1,469 and 1,872, about a tenth less time). A
    sequence with nothing left to decode reads anything (`done`) until its row leaves the batch;
    its outputs are not used.

    Buffers are allocated once and written in place (growing them by concatenation at every
    token was a quarter of the decoding time, measured); when the columns run out, the ones still
    read move to the front (`_compact`). `step` is the arithmetic of `XLStack.forward` for one
    query, written for it: plain functional calls on the layers' weights (a module call costs as
    much as a small operation), the weights and the projected relative encodings prepared once per
    decoding (`StepWeights`)."""

    def __init__(self, stack: XLStack, mems: list[torch.Tensor], mem_lens: torch.Tensor, capacity: int = 128,
                 weights: "StepWeights | None" = None):  # fmt: skip
        """`mems`: per layer, the memory's inputs (B, m, d), right-aligned by `mem_lens`;
        `capacity`: the longest bar expected (longer ones make room for themselves)."""
        d = mems[0].shape[-1]
        B, m = mems[0].shape[:2]
        self.stack = stack
        bars = stack.memory_bars + 1  # the most bars a window holds
        self.w = weights or StepWeights(stack, bars * (m + capacity) + 8)
        dev = mem_lens.device
        # a quarter more room than a window's bars keeps `_compact` from doubling the buffers for
        # it (a doubling raised a batch of 8 pieces' peak memory by 45 MB, measured)
        self.cap = (m + bars * capacity) * 5 // 4 + 1
        self.k, self.v = [], []
        for layer, mem in zip(stack.layers, mems):
            km, vm = F.linear(layer.ln1(mem), layer.attn.qkv.weight[d:]).split(d, dim=-1)
            h, k = layer.attn.h, layer.attn.k
            # keys stored as values are, (B, h, columns, k), and read transposed by the score product:
            # stored (B, h, k, columns), writing a token's column scattered it (85 against 8 us at
            # batch 40) and the product was no faster (benchmarks/step_ab.py: steps 6-13% faster
            # from batch 8 on, the same at batch 1)
            self.k.append(torch.cat([layer.attn.split(km), km.new_zeros(B, h, self.cap - m, k)], -2))
            self.v.append(torch.cat([layer.attn.split(vm), vm.new_zeros(B, h, self.cap - m, k)], -2))
        # 0 where a sequence may read a column, -inf where not (the memory's padding, at the front)
        self.bias = torch.zeros(B, 1, self.cap, device=dev, dtype=torch.float32)
        self.bias[:, 0, :m].masked_fill_(torch.arange(m, device=dev)[None] < (m - mem_lens)[:, None], float("-inf"))
        self.c = m  # the column of the next token
        self.seqs = list(range(B))  # the sequence in each row (rows of finished ones leave, `done`)
        self.row = {i: i for i in range(B)}  # and the row of each sequence
        self.lo = [0] * B  # each row's first column read
        self.starts = [[m] for _ in range(B)]  # each row's first column of each bar in its window, its own last
        self.reading = set(range(B))  # the sequences still decoding
        self.w0 = 0  # the first column any of them reads

    def new_bar(self, i: int) -> None:
        """Sequence i's next token begins a new bar: the bar it ends joins its memory, and the
        bar more than `memory_bars` back (or the memory it started from) leaves its window."""
        r = self.row[i]
        starts = self.starts[r] = (self.starts[r] + [self.c])[-(self.stack.memory_bars + 1) :]
        self.bias[r, 0, self.lo[r] : starts[0]] = float("-inf")
        self.lo[r] = starts[0]
        self._first_read()

    def done(self, i: int) -> None:
        """Sequence i has nothing more to decode. Its row is still computed until a quarter of
        the rows are such (then they leave the batch together, `step` taking the rows of
        `seqs` only): a batch's pieces end at different steps, and at 25 pieces of 20 bars a
        quarter of the row-steps came after a piece's end (measured)."""
        self.reading.discard(i)
        self.bias[self.row[i]].zero_()
        if self.reading and 4 * (len(self.seqs) - len(self.reading)) >= len(self.seqs):
            keep = [r for r, s in enumerate(self.seqs) if s in self.reading]
            idx = torch.tensor(keep, device=self.bias.device)
            self.k = [k.index_select(0, idx) for k in self.k]
            self.v = [v.index_select(0, idx) for v in self.v]
            self.bias = self.bias.index_select(0, idx)
            self.seqs = [self.seqs[r] for r in keep]
            self.row = {s: r for r, s in enumerate(self.seqs)}
            self.lo, self.starts = [self.lo[r] for r in keep], [self.starts[r] for r in keep]
        self._first_read()

    def _first_read(self) -> None:
        if self.reading:
            self.w0 = min(self.lo[self.row[j]] for j in self.reading)

    def _compact(self) -> None:
        """Move the columns still read to the front (and double the room where that would leave
        less than a quarter of them free, so that moves stay rare)."""
        w0, n = self.w0, self.c - self.w0
        grow = self.cap if 4 * (self.cap - n) < n else 0

        def move(x, dim):
            kept = x.narrow(dim, w0, n).clone()
            if grow:
                shape = list(x.shape)
                shape[dim] = grow
                x = torch.cat([x, x.new_zeros(shape)], dim)
            x.narrow(dim, 0, n).copy_(kept)
            return x

        self.k = [move(k, 2) for k in self.k]
        self.v = [move(v, 2) for v in self.v]
        self.bias = move(self.bias, -1)
        self.bias[..., n:].zero_()  # columns yet to be written: readable by whoever reads them
        self.cap += grow
        self.lo = [max(x - w0, 0) for x in self.lo]
        self.starts = [[x - w0 for x in starts] for starts in self.starts]
        self.c, self.w0 = n, 0

    def step(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """One token per sequence: x (B, d) embedding -> (B, d) output of the stack."""
        if self.c == self.cap:
            self._compact()
        c, w0 = self.c, self.w0
        klen = c - w0 + 1
        if self.w.rels[0].shape[-1] < klen:
            self.w = StepWeights(self.stack, 2 * klen, self.w.int8)
        B, d = x.shape
        # narrow and select rather than indexing: a Python index costs more than the copy it makes
        bias = self.bias.narrow(-1, w0, klen).transpose(0, 1)  # (1, B, klen), added to every head
        for i, w in enumerate(self.w.layers):
            if cond is not None:
                x = x + cond
            # q comes as (q + u), scaled by 1/sqrt(k) (folded into the weights, `StepWeights`)
            qkv = w.qkv(torch.layer_norm(x, (d,), *w.ln1), w.qkv_bias).view(B, 3, w.h, w.k)
            qu = qkv.select(1, 0)  # (B, h, k)
            self.k[i].select(2, c).copy_(qkv.select(1, 1))
            self.v[i].select(2, c).copy_(qkv.select(1, 2))
            # scores: the padding bias + (q + v) . r of the distances klen-1 .. 0 (one product per
            # head, the batch as its rows), + (q + u) . k_j
            r = self.w.rels[i]
            bd = torch.baddbmm(bias, (qu + w.vu).transpose(0, 1), r.narrow(-1, r.shape[-1] - klen, klen))
            scores = torch.baddbmm(bd.transpose(0, 1).reshape(B * w.h, 1, klen), qu.reshape(B * w.h, 1, w.k),
                                   self.k[i].narrow(2, w0, klen).reshape(B * w.h, klen, w.k).transpose(1, 2))  # fmt: skip
            p = torch.softmax(scores, -1, dtype=torch.float32)
            if x.dtype != torch.float32:
                p = p.to(x.dtype)
            y = torch.bmm(p, self.v[i].narrow(2, w0, klen).reshape(B * w.h, klen, w.k)).view(B, d)
            x = w.o(y, x)
            # GELU by erfc: with u = -h / sqrt(2), gelu(h) = h * erfc(-h / sqrt(2)) / 2 = -u * erfc(u) / sqrt(2),
            # the factors -1/sqrt(2) taken by the products. F.gelu cost several times u * erfc(u)
            # on a CPU row (measured: 10.6 against 4.0 us for 1,024 values)
            u = w.ff1(torch.layer_norm(x, (d,), *w.ln2), w.ff1_bias)
            x = w.ff2(u * torch.erfc(u), x + w.ff2_bias)
        self.c += 1
        return torch.layer_norm(x, (d,), *self.w.ln)


_GELU_U = -1 / math.sqrt(2)


class StepWeights:
    """A stack's weights as `StepCache.step` uses them, prepared once per decoding: the score
    scale 1/sqrt(k) folded into the query's rows of the qkv weights, the bias u added to the
    query by the projection and v kept as v - u, and per layer the projected relative encodings
    (h, k, klen) of the distances klen-1 .. 0, transposed for the product with the query.

    `int8`: the products read their weights as int8 (`Product`), on an x86 CPU
    (`hardware.int8_decoding`)."""

    def __init__(self, stack: XLStack, klen: int, int8: bool = False):
        self.layers, self.int8 = [], int8
        for layer in stack.layers:
            a = layer.attn
            w = _LayerWeights()
            w.h, w.k = a.h, a.k
            scale = 1.0 / math.sqrt(a.k)
            d = a.h * a.k
            w.qkv = Product(_rows_in(torch.cat([a.qkv.weight[:d] * scale, a.qkv.weight[d:]])), int8=int8)
            u = a.u.detach().reshape(-1) * scale
            w.qkv_bias = torch.cat([u, u.new_zeros(2 * d)])  # the query comes as q + u
            w.vu = (a.v - a.u).detach() * scale  # q + v = (q + u) + (v - u)
            w.o = Product(_rows_in(a.o.weight), int8=int8)
            w.ln1 = (layer.ln1.weight, layer.ln1.bias, layer.ln1.eps)
            w.ln2 = (layer.ln2.weight, layer.ln2.bias, layer.ln2.eps)
            w.ff1 = Product(_rows_in(layer.ff[0].weight), _GELU_U, int8)
            w.ff1_bias = layer.ff[0].bias.detach() * _GELU_U
            w.ff2 = Product(_rows_in(layer.ff[2].weight), _GELU_U, int8)
            w.ff2_bias = layer.ff[2].bias.detach()
            self.layers.append(w)
        self.ln = (stack.ln.weight, stack.ln.bias, stack.ln.eps)
        device = stack.ln.weight.device
        self.rels = [layer.attn.rel(klen, 1, device).transpose(-1, -2).detach() for layer in stack.layers]


class Product:
    """`plus + alpha * (x @ w)` for a few rows x and a weight w stored (in, out), as decoding
    computes it: in the weight's own precision (one addmm), or with w rounded to int8 per output
    column (`int8`; x rounded to bf16 for the product, the sum in float32). At one row a token's
    time is mostly its weights read from memory (12.6 MB a token for the shipped model at
    float32): int8 reads a quarter of that, and a step took 0.88 against 1.16 ms at batch 1 on
    the 2-core machine; for batches see `hardware.int8_decoding`. The next-token distributions
    it gives differ from float32's by 6e-5 nats of KL divergence per token (measured on the
    shipped model)."""

    def __init__(self, w: torch.Tensor, alpha: float = 1.0, int8: bool = False):
        self.alpha, self.w = alpha, w
        if int8:
            wt = w.T.float() * alpha  # (out, in)
            # the scale as the kernel reads it (bf16), and the weights rounded against that scale
            # (in place: a batch's peak memory is the weights' and these copies')
            self.scale = (wt.abs().amax(1).clamp_min(1e-12) / 127).to(torch.bfloat16)
            self.q = wt.div_(self.scale.float()[:, None]).round_().clamp_(-127, 127).to(torch.int8).contiguous()
            self.w = None

    def __call__(self, x: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
        if self.w is None:
            # plus (float32) + the bf16 product promotes to float32 in the one addition
            return plus + torch._weight_int8pack_mm(x.to(torch.bfloat16), self.q, self.scale)
        return torch.addmm(plus, x, self.w, alpha=self.alpha)


class _LayerWeights:
    pass


def _rows_in(weight: torch.Tensor) -> torch.Tensor:
    """A linear layer's (out, in) weight as a contiguous (in, out) matrix, for `x @ w`: a few rows
    times a matrix stored this way decode faster on a CPU than F.linear's product with the (out,
    in) weight (measured: a step at batch 8 13% faster; at batch 1 the same). No copy for weights
    that `decoding_layout` has stored so."""
    return weight.detach().T.contiguous()


def decoding_layout(stack: XLStack) -> None:
    """Store the stack's output and feed-forward weights (in, out)-major, same values and shapes,
    so that `StepWeights` reads them without a copy (9 MB for the shipped model; the query, key
    and value weights are copied anyway, with the score scale folded in)."""
    for layer in stack.layers:
        for lin in (layer.attn.o, layer.ff[0], layer.ff[2]):
            lin.weight.data = lin.weight.data.T.contiguous().T
