"""Bar-by-bar decoding with the key/value cache, constrained to the token grammar.

Every sampled token must continue a valid bar (see `tokenizer`): Tempo after Bar, rising
Positions, Pitch -> Velocity -> Duration of one track, and room left for a whole note before
the bar's L tokens run out. Sampling any Bar token (or EOS) ends the bar. So decoding cannot
stall or run on, and every note it writes is complete.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emocompose.presets import SamplingConfig
from emocompose.tokenizer import BAR, DURATION, EOS_KIND, PITCH, POSITION, TEMPO, VELOCITY, Vocab

# grammar states: what the last token was
AFTER_BAR, AFTER_BAR_TEMPO, AFTER_POSITION, AFTER_MID_TEMPO, AFTER_PITCH, AFTER_VELOCITY, AFTER_DURATION = range(7)


@dataclass
class BarPlan:
    """What is fixed about each output bar: meter (grid steps), tempo bin (or -1: the model's
    choice) and the track classes allowed (None: all)."""

    positions: list[int]
    tempo: list[int]
    tracks: list[int] | None = None


class Grammar:
    """Masks of the tokens allowed next, for a batch of sequences in various states."""

    def __init__(self, vocab: Vocab, max_bar_tokens: int, device):
        k = torch.as_tensor(vocab.kind, device=device)
        self.kind, self.L = k, max_bar_tokens
        self.value = torch.as_tensor(vocab.value, device=device)
        self.track = torch.as_tensor(vocab.track, device=device)
        end = (k == BAR) | (k == EOS_KIND)
        table = torch.zeros(7, len(vocab), dtype=torch.bool, device=device)
        table[AFTER_BAR] = k == TEMPO
        table[AFTER_BAR_TEMPO] = (k == POSITION) | end
        table[AFTER_POSITION] = (k == TEMPO) | (k == PITCH)
        table[AFTER_MID_TEMPO] = (k == PITCH) | (k == POSITION) | end
        table[AFTER_PITCH] = k == VELOCITY
        table[AFTER_VELOCITY] = k == DURATION
        table[AFTER_DURATION] = (k == PITCH) | (k == POSITION) | end
        self.table, self.end, self.pitch = table, end, k == PITCH

    def allowed(self, state, pos, bar_pos, track, length, tracks_ok=None):
        """(B, V) mask. state, pos (last Position, -1 before any), bar_pos (grid steps of the bar),
        track (of the pending note), length (tokens in the bar so far): all (B,) tensors."""
        m = self.table[state].clone()
        k, v = self.kind[None], self.value[None]
        is_pos = k == POSITION
        m &= ~is_pos | ((v > pos[:, None]) & (v < bar_pos[:, None]))
        note_part = (k == VELOCITY) | (k == DURATION)
        m &= ~note_part | (self.track[None] == track[:, None])
        # room: a Position or a tempo change needs 4 more tokens (it must carry a note or end),
        # a Pitch 3 (Pitch, Velocity, Duration); with no room left, the bar ends
        room = self.L - length
        m &= ~(is_pos | ((k == TEMPO) & (state != AFTER_BAR)[:, None])) | (room >= 4)[:, None]
        m &= ~(k == PITCH) | (room >= 3)[:, None]
        if tracks_ok is not None:
            m &= ~(k == PITCH) | tracks_ok[:, self.track.clamp_min(0)]
        # a bar with no allowed continuation may only end (never happens with the rules above,
        # kept so that a state can never be left with nothing to sample)
        stuck = ~m.any(-1)
        m[stuck] = self.end
        return m


def probabilities(logits: torch.Tensor, mask: torch.Tensor, cfg: SamplingConfig, pitch: torch.Tensor) -> torch.Tensor:
    """(B, V) probabilities of the allowed tokens at `cfg.temperature`, with a nucleus of
    `cfg.top_p` over the pitch tokens (`pitch`, a (V,) mask) that keeps the pitches' total
    probability: which pitch is cut to its likely head, whether a note comes at all is not."""
    logits = logits.float().masked_fill(~mask, float("-inf"))
    probs = torch.softmax(logits / cfg.temperature, dim=-1)
    if cfg.top_p < 1.0:
        pp = probs * pitch
        mass = pp.sum(-1, keepdim=True)
        sorted_p, idx = pp.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < cfg.top_p * mass  # always keeps the first
        kept = torch.zeros_like(pp).scatter(-1, idx, sorted_p * keep)
        scale = mass / kept.sum(-1, keepdim=True).clamp_min(1e-30)
        probs = torch.where(pitch, kept * scale, probs)
    return probs


def sample(logits: torch.Tensor, mask: torch.Tensor, cfg: SamplingConfig, gen: torch.Generator,
           pitch: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """One token per row from `probabilities`; temperature 0 takes the most likely one."""
    if cfg.temperature <= 0:
        return logits.float().masked_fill(~mask, float("-inf")).argmax(-1)
    probs = probabilities(logits, mask, cfg, pitch)
    # drawn on the CPU generator wherever the model runs, so a seed means the same on any device
    return torch.multinomial(probs.cpu(), 1, generator=gen)[:, 0].to(probs.device)


@torch.no_grad()
def decode_bars(model, vocab: Vocab, cond: torch.Tensor, plans: list[BarPlan], cfg: SamplingConfig,
                mems=None, mem_lens=None, on_bar=None) -> list[list[np.ndarray]]:  # fmt: skip
    """Decode bars for a batch: cond (B, T, d) from the latents, one plan per sequence.

    Returns, per sequence, the token ids of each bar (starting with its Bar token).
    `on_bar(done, total)` is called after each bar (for progress bars)."""
    from emocompose.model.layers import StepCache

    B, T, _ = cond.shape
    device = cond.device
    L = vocab.config.max_bar_tokens
    grammar = Grammar(vocab, L, device)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    if mems is None:
        d = model.config.d
        mems = [torch.zeros(B, 1, d, device=device) for _ in model.dec.layers]
        mem_lens = torch.zeros(B, dtype=torch.long, device=device)
    tracks_ok = None
    if any(p.tracks is not None for p in plans):
        tracks_ok = torch.ones(B, 5, dtype=torch.bool, device=device)
        for i, p in enumerate(plans):
            if p.tracks is not None:
                tracks_ok[i] = False
                tracks_ok[i, p.tracks] = True
    out: list[list[np.ndarray]] = [[] for _ in range(B)]
    for t in range(T):
        cache = StepCache(model.dec, mems, mem_lens, capacity=L)
        bar_pos = torch.tensor([p.positions[t] for p in plans], device=device)
        forced_tempo = torch.tensor([p.tempo[t] for p in plans], device=device)
        tok = torch.tensor([vocab.bar_token(p.positions[t]) for p in plans], device=device)
        state = torch.full((B,), AFTER_BAR, device=device)
        pos = torch.full((B,), -1, device=device)
        track = torch.full((B,), -1, device=device)
        length = torch.ones(B, dtype=torch.long, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        seqs = [tok]
        c = cond[:, t]
        while True:
            h = cache.step(model.embed(tok), c)
            mask = grammar.allowed(state, pos, bar_pos, track, length, tracks_ok)
            nxt = sample(model.logits(h), mask, cfg, gen, grammar.pitch)
            # a fixed tempo replaces the model's choice
            fix = (state == AFTER_BAR) & (forced_tempo >= 0)
            nxt = torch.where(fix, vocab.tempo0 + forced_tempo.clamp_min(0), nxt)
            ends = grammar.end[nxt] | (length >= L)
            newly = ends & ~done
            done |= newly
            k = grammar.kind[nxt]
            v = grammar.value[nxt]
            live = ~done
            state = torch.where(live, _next_state(k, state), state)
            pos = torch.where(live & (k == POSITION), v, pos)
            track = torch.where(live & (k == PITCH), grammar.track[nxt], track)
            tok = torch.where(live, nxt, torch.full_like(nxt, vocab.pad))
            length = length + live.long()
            if done.all():
                break
            seqs.append(tok)
        ids = torch.stack(seqs, 1).cpu().numpy()
        lens = length.clone()
        for i in range(B):
            out[i].append(ids[i, : int(lens[i])])
        mems, mem_lens = cache.bar_memory(lens.to(device))
        if on_bar:
            on_bar(t + 1, T)
    return out


def _next_state(kind: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    s = torch.full_like(state, AFTER_DURATION)
    s = torch.where(kind == TEMPO, torch.where(state == AFTER_BAR, AFTER_BAR_TEMPO, AFTER_MID_TEMPO), s)
    s = torch.where(kind == POSITION, torch.full_like(s, AFTER_POSITION), s)
    s = torch.where(kind == PITCH, torch.full_like(s, AFTER_PITCH), s)
    s = torch.where(kind == VELOCITY, torch.full_like(s, AFTER_VELOCITY), s)
    return s
