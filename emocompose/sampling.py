"""Bar-by-bar decoding with the key/value cache, constrained to the token grammar.

Every sampled token must continue a valid bar (see `tokenizer`): Tempo after Bar, rising
Positions, Pitch -> Velocity -> Duration of one track, and room left for a whole note before
the bar's L tokens run out. Sampling any Bar token (or EOS) ends the bar. So decoding cannot
stall or run on, and every note it writes is complete.

The model runs in torch (`StepCache`); the grammar and the draw run on the host, per sequence:
what a sequence may play next is a short sorted array of token ids (cached per situation), the
logits are computed only over the span those ids cover, and a token is drawn from them in numpy
with one uniform number per sequence and step (`draw`). As masks over the whole vocabulary in
torch, the grammar and the draw were over half of the 2.7 ms a token took at batch 1 (profiled);
a small numpy operation costs about a microsecond where a torch one costs several.

A key still sounding is not struck again while the model likes another pitch (`Held`): the file
would end the sounding note there, and such notes came out cut short. Nor is a pitch far beyond
the range the piece has played so far (`Register`): drawn from the tail, such notes stood apart.
A generated piece's left hand and the steps of its top voice are held near real music's while it
decodes (`bass`, `top_voice`), and its notes sound as long as real music's do (`BarPlan.legato`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from emocompose.bass import Bass
from emocompose.midi import DRUMS, TRACKS
from emocompose.presets import SamplingConfig
from emocompose.top_voice import TopVoice
from emocompose.tokenizer import BAR, DURATION, EOS_KIND, PITCH, POSITION, TEMPO, VELOCITY, Vocab

if TYPE_CHECKING:
    from emocompose.echo import Echo
    from emocompose.grid import Grid
    from emocompose.hold import MelodyHold

# grammar states: what the last token was
AFTER_BAR, AFTER_BAR_TEMPO, AFTER_POSITION, AFTER_MID_TEMPO, AFTER_PITCH, AFTER_VELOCITY, AFTER_DURATION = range(7)
_STATE_AFTER = {POSITION: AFTER_POSITION, PITCH: AFTER_PITCH, VELOCITY: AFTER_VELOCITY}
PLACES = (AFTER_POSITION, AFTER_MID_TEMPO, AFTER_DURATION)  # states after which a pitch may come
ALL_TRACKS = tuple(range(len(TRACKS)))  # the track classes a note may take when a plan names none


@dataclass
class BarPlan:
    """What is fixed about each output bar: meter (grid steps), tempo bin (or -1: the model's
    choice), the track classes allowed (None: all) and a melody to write (`hold.MelodyHold`)."""

    positions: list[int]
    tempo: list[int]
    tracks: list[int] | None = None
    hold: "MelodyHold | None" = None
    echo: "Echo | None" = None  # bars that repeat an earlier bar's onsets (`echo`)
    bass: list[float] | None = None  # per bar, the share of onsets to begin below C3 (`bass`)
    top_steps: list[float] | None = None  # per bar, of onsets whose highest note moves by a step (`top_voice`)
    # How much longer the file's notes are than the lengths the decoder reads (0: the same).
    # The decoder strikes keys still sounding, which ends the notes there (`Grid.playable`): it
    # writes lengths as long as real music's, but 11-19% of its notes are cut and they sound
    # shorter than real ones. So each note's length in the file is drawn with the uniform number
    # of the length the decoder reads, from the odds tilted by steps ** legato: never shorter,
    # longer where the model found a longer one nearly as likely. What the decoder reads, and so
    # every other token, is as drawn: reading longer lengths, it placed its next onsets later and
    # its pieces came out 2-8% sparser (`presets.LEGATO`). Not with a melody held (`hold`), which
    # sets the lengths of its notes and of those under it.
    legato: float = 0.0


class Grammar:
    """The tokens allowed next in a sequence, as an array of token ids (sorted).

    Tokens of one kind are contiguous in the vocabulary (`Vocab`), so what a situation allows is
    a few ranges; the few hundred situations a decoding meets are each built once and cached."""

    def __init__(self, vocab: Vocab, max_bar_tokens: int):
        k = vocab.kind
        self.kind, self.value, self.track, self.L = k, vocab.value, vocab.track, max_bar_tokens
        self.end = (k == BAR) | (k == EOS_KIND)

        def span(kind):
            ids = np.flatnonzero(k == kind)
            return int(ids[0]), int(ids[-1]) + 1

        self.ends = np.flatnonzero(self.end)
        self.pos0, _ = span(POSITION)
        self.tempos, self.pitch0 = np.arange(*span(TEMPO)), span(PITCH)[0]
        self.velocity = [np.flatnonzero((k == VELOCITY) & (vocab.track == t)) for t in ALL_TRACKS]
        self.duration = [np.flatnonzero((k == DURATION) & (vocab.track == t)) for t in ALL_TRACKS]
        # per token id, the log of a Duration's grid steps (0 for other tokens): what `legato` tilts by
        steps = vocab.config.duration_array[np.where(k == DURATION, vocab.value, 0)]
        self.log_steps = np.where(k == DURATION, np.log(steps), 0.0)
        self._cache: dict[tuple, tuple[np.ndarray, int, int]] = {}

    def allowed(self, state: int, pos: int, bar_pos: int, track: int, length: int,
                tracks: tuple[int, ...] = ALL_TRACKS) -> tuple[np.ndarray, int, int]:  # fmt: skip
        """The ids allowed after `state` (pos: the last Position, -1 before any; bar_pos: the
        bar's grid steps; track: of the pending note; length: tokens in the bar so far; tracks:
        the track classes a note may take), and where the pitches among them start and end."""
        room = self.L - length
        key = (state, pos, bar_pos, track, min(room, 4), tracks)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._build(state, pos, bar_pos, track, room, tracks)
        return hit

    def _build(self, state, pos, bar_pos, track, room, tracks):
        # a Position or a tempo change inside the bar needs 4 more tokens (it must carry a note
        # or end), a Pitch 3 (Pitch, Velocity, Duration); Positions rise within the bar
        positions = np.arange(self.pos0 + pos + 1, self.pos0 + bar_pos) if room >= 4 else np.zeros(0, np.int64)
        pitches = [np.arange(self.pitch0 + 128 * t, self.pitch0 + 128 * (t + 1)) for t in tracks] if room >= 3 else []
        parts = {
            AFTER_BAR: [self.tempos],
            AFTER_BAR_TEMPO: [self.ends, positions],
            AFTER_POSITION: pitches + ([self.tempos] if room >= 4 else []),
            AFTER_MID_TEMPO: [self.ends, positions, *pitches],
            AFTER_PITCH: [self.velocity[track]],
            AFTER_VELOCITY: [self.duration[track]],
            AFTER_DURATION: [self.ends, positions, *pitches],
        }[state]
        ids = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        if not len(ids):  # never happens with the rules above; a sequence is never left stuck
            ids = self.ends
        is_pitch = self.kind[ids] == PITCH
        a = int(is_pitch.argmax()) if is_pitch.any() else 0
        return ids, a, a + int(is_pitch.sum())

    @staticmethod
    def next_state(kind: int, state: int) -> int:
        """The state after a token of `kind` in `state`."""
        if kind == TEMPO:
            return AFTER_BAR_TEMPO if state == AFTER_BAR else AFTER_MID_TEMPO
        return _STATE_AFTER.get(kind, AFTER_DURATION)


def weights(logits: np.ndarray, cfg: SamplingConfig, pitches: tuple[int, int] = (0, 0),
            held: np.ndarray | None = None, far: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Unnormalised probabilities of the allowed tokens (their `logits`) at `cfg.temperature`,
    with a nucleus of `cfg.top_p` over the pitch tokens (logits[pitches[0]:pitches[1]]) that
    keeps the pitches' total probability: which pitch is cut to its likely head, whether a note
    comes at all is not. `held` (over those pitches) marks keys still sounding (`Held`), `far`
    pitches beyond the piece's range (`Register`): each leaves the head too, unless it is MEANT."""
    z = logits if cfg.temperature == 1.0 else logits / cfg.temperature
    w = np.exp(z - z.max())
    a, b = pitches
    pp = w[a:b]
    mass = pp.sum()  # 0 where every pitch is far below the likeliest token (at low temperatures)
    if mass > 0 and (cfg.top_p < 1.0 or held is not None or far is not None):
        kept = pp
        if cfg.top_p < 1.0:
            ranked = -np.sort(-pp)
            # the likeliest pitches until they hold top_p of the pitches' mass (the first always)
            n = max(int(np.searchsorted(np.cumsum(ranked) - ranked, cfg.top_p * mass)), 1)
            kept = np.where(pp >= ranked[n - 1], pp, 0)
        kept = _unless_meant(_unless_meant(kept, held), far)
        w[a:b] = kept * (mass / kept.sum())
    return w


# pitches ruled out (a key still sounding, one far beyond the piece's range) that hold at least this
# share of the likely pitches' probability stay: the model means them
MEANT = 0.5


def _unless_meant(kept: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """The likely pitches `kept` without those marked `out`, unless these are MEANT (or all there is)."""
    if out is None:
        return kept
    rest = np.where(out, 0, kept)
    return rest if rest.sum() > 0 and kept[out].sum() < MEANT * kept.sum() else kept


def probabilities(logits: np.ndarray, cfg: SamplingConfig, pitches: tuple[int, int] = (0, 0),
                  held: np.ndarray | None = None, far: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """`weights`, normalised."""
    w = weights(logits, cfg, pitches, held, far)
    return w / w.sum()


def draw(logits: np.ndarray, cfg: SamplingConfig, u: float, pitches: tuple[int, int] = (0, 0),
         held: np.ndarray | None = None, far: np.ndarray | None = None) -> int:  # fmt: skip
    """The index of one token drawn by `probabilities` with the uniform number u in [0, 1):
    the first whose cumulative probability passes u (one of probability 0 never does).
    Temperature 0 takes the most likely token."""
    if cfg.temperature <= 0:
        return int(logits.argmax())
    cdf = np.cumsum(weights(logits, cfg, pitches, held, far))
    return min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(cdf) - 1)


class Held:
    """The keys still sounding in each sequence of a batch, by pitch token (one key per pitch and
    track class). A file keeps one note per key at a time: a key struck again ends the note
    sounding on it (`Grid.playable`, as on a piano). The decoder cannot know, when it writes a
    note's length, whether that key comes again, and it struck held keys so often that its notes
    came out of the file about a fifth shorter than it wrote them (mean log length in beats 0.0
    against 0.25 as written; EMOPIA's is 0.30), the largest difference the realism test saw. So
    the keys held leave the likely pitches until they are released (`weights`), and whether a note
    comes at all stays the model's choice. Unless they hold at least MEANT of those pitches'
    probability: then the model means to strike one again (a repeated note), and given the
    other pitches alone it wrote more notes out of the key (measured: blocking held keys always
    raised the pitch-class entropy of generated pieces from 2.64 to 2.83 bits, real music's is 2.70)."""

    def __init__(self, vocab: Vocab, batch: int, before: "Grid | None" = None):
        """`before`: the piece the decoded bars follow (a continuation's prompt), whose keys
        still sounding at its end stay held into them."""
        self.pitch0, self.steps = vocab.pitch0, vocab.config.duration_array
        self.until = np.zeros((batch, 128 * len(TRACKS)), np.int64)  # the step where each key is released
        if before is not None:
            end = before.ends(vocab.config) - int(before.bar_positions.sum())
            np.maximum.at(self.until[0], (before.track * 128 + before.pitch)[end > 0], end[end > 0])
            self.until[1:] = self.until[0]
        self.start = np.zeros(batch, np.int64)  # each sequence's current bar's first step
        self.key = np.zeros(batch, np.int64)  # the key of each sequence's note being written

    def keys(self, i: int, ids: np.ndarray, a: int, b: int, pos: int) -> np.ndarray | None:
        """Which of the pitches ids[a:b] sound at step `pos` of sequence i's bar (None: none)."""
        if b <= a:
            return None
        down = self.until[i, ids[a:b] - self.pitch0] > self.start[i] + pos
        return down if down.any() else None

    def wrote(self, i: int, kind: int, value: int, token: int, pos: int) -> None:
        if kind == PITCH:
            self.key[i] = token - self.pitch0
        elif kind == DURATION:
            self.until[i, self.key[i]] = self.start[i] + pos + self.steps[value]


# how far, in semitones, a piece's range may widen at a note (`Register`): a fourth
WIDEN = 5
# the notes a piece plays before its range is held to: its first bar's, about
SETTLED = 8


class Register:
    """The lowest and highest pitch each sequence of a batch has played so far (drums' notes are
    sounds, not pitches). Drawn one at a time at temperature 1, a few of a piece's hundreds of
    pitches came from the tail, an octave or more beyond the rest: the shipped model's sad pieces
    spanned 55 semitones against real sad clips' 45, though their middle 90% spanned the same
    (33), and their lowest note lay 14 semitones under their 5th percentile against 7. So once a
    piece has played SETTLED notes, a pitch more than WIDEN beyond its range leaves the likely
    pitches unless the model means it (`weights`): a range still widens, a fourth at a time.
    Measured on three seed sets of 100 pieces, every quadrant's range came within 10% of real
    music's (sad +15 to +23% before), with the judge and the realism test as before."""

    def __init__(self, vocab: Vocab, batch: int, before: "Grid | None" = None):
        """`before`: the piece the decoded bars follow (a continuation's prompt), whose range they continue."""
        self.pitch0 = vocab.pitch0
        self.lo, self.hi = np.full(batch, 128), np.full(batch, -1)
        self.count = np.zeros(batch, np.int64)
        if before is not None and (before.track != DRUMS).any():
            pitched = before.pitch[before.track != DRUMS]
            self.lo[:], self.hi[:], self.count[:] = pitched.min(), pitched.max(), len(pitched)

    def far(self, i: int, ids: np.ndarray, a: int, b: int) -> np.ndarray | None:
        """Which of the pitches ids[a:b] lie beyond sequence i's range by more than WIDEN (None: none)."""
        if b <= a or self.count[i] < SETTLED:
            return None
        key = ids[a:b] - self.pitch0
        pitch = key % 128
        out = ((pitch < self.lo[i] - WIDEN) | (pitch > self.hi[i] + WIDEN)) & (key // 128 != DRUMS)
        return out if out.any() else None

    def wrote(self, i: int, token: int) -> None:
        """Sequence i wrote the pitch token `token`."""
        key = token - self.pitch0
        if key // 128 != DRUMS:
            self.lo[i], self.hi[i] = min(self.lo[i], key % 128), max(self.hi[i], key % 128)
            self.count[i] += 1


# A batch on a CPU decodes as this many parts, each on one thread, side by side in forked
# processes where the threads allow (`forking`). Measured on 2 cores, 20-bar pieces in one process:
# 8 took 2.1-2.5 s against 3.0-3.1 s as one batch on two threads, 25 took 8.8-9.3 against
# 10.7-11.1 s; and two `generate --count 8` started together 6.8-8.2 s against 14.5-19.5 s, since
# threads that wait on each other at every token lose the cores to another process. Two parts, not
# one per core, so that a seed gives the same bytes on any machine of the same CPU kind: a row's
# bytes depend on the rows decoded beside it (measured: one piece alone and in a batch of 8 part
# ways; the attention reads the union of their windows, the logits the span of ids any may play).
PARTS = 2


def decode_bars(model, vocab: Vocab, cond: torch.Tensor, plans: list[BarPlan], cfg: SamplingConfig,
                mems=None, mem_lens=None, on_bar=None, before: "Grid | None" = None) -> list[list[np.ndarray]]:  # fmt: skip
    """Decode bars for a batch: cond (B, T, d) from the latents, one plan per sequence (which
    may have fewer bars than T: cond's rows past them are not read), after the decoder memory
    `mems` of the piece `before` them, if any (its keys still sounding stay held, see `Held`,
    and its range is theirs, see `Register`).
    Each sequence begins its next bar as soon as its bar ends (`StepCache`). On a CPU that can
    fork (Linux) the batch decodes as PARTS parts, in as many processes as torch's thread count
    allows; elsewhere, and on a GPU, as one.

    Returns, per sequence, the token ids of each bar (starting with its Bar token).
    `on_bar(done, total)` is called after each bar of the first part (for progress bars)."""
    from emocompose.forking import can_fork, run_each

    B = cond.shape[0]
    if mems is None:
        mems = [torch.zeros(B, 1, model.config.d, device=cond.device) for _ in model.dec.layers]
        mem_lens = torch.zeros(B, dtype=torch.long, device=cond.device)
    if B < 2 or cond.device.type != "cpu" or not can_fork():
        return _decode(model, vocab, cond, plans, cfg, mems, mem_lens, on_bar, before)
    cuts = [B * k // PARTS for k in range(PARTS + 1)]
    jobs = [partial(_part, model, vocab, cond[a:b], plans[a:b], cfg, [m[a:b] for m in mems], mem_lens[a:b],
                    on_bar if a == 0 else None, before, rows=(a, B))
            for a, b in zip(cuts, cuts[1:]) if b > a]  # fmt: skip
    return [seq for part in run_each(jobs, torch.get_num_threads()) for seq in part]


def _part(*args, **kwargs) -> list[list[np.ndarray]]:
    """A part of a batch, on one thread wherever it runs (here or in a child), so that its bytes
    do not depend on where."""
    from emocompose.hardware import torch_threads

    with torch_threads(1):
        return _decode(*args, **kwargs)


@torch.inference_mode()  # no autograd bookkeeping at all: measured 10% faster per token than no_grad
def _decode(model, vocab: Vocab, cond: torch.Tensor, plans: list[BarPlan], cfg: SamplingConfig, mems, mem_lens,
            on_bar, before: "Grid | None", rows: tuple[int, int] | None = None) -> list[list[np.ndarray]]:  # fmt: skip
    """`decode_bars` for sequences that are the rows from rows[0] on of a batch of rows[1] (whose
    draws they take)."""
    from emocompose.hardware import int8_decoding
    from emocompose.model.step import StepCache, StepWeights

    B, T, _ = cond.shape
    first, total = rows or (0, B)
    device = cond.device
    L = vocab.config.max_bar_tokens
    grammar = Grammar(vocab, L)
    rng = np.random.default_rng(cfg.seed)
    tracks = [tuple(sorted(p.tracks)) if p.tracks is not None else ALL_TRACKS for p in plans]
    out: list[list[np.ndarray]] = [[] for _ in range(B)]
    if T == 0:
        return out
    held, register = Held(vocab, B, before), Register(vocab, B, before)
    first_steered = 0 if before is not None else 1
    bass = Bass(vocab, [p.bass for p in plans], T, first_steered)
    top = TopVoice(vocab, [p.top_steps for p in plans], T, first_steered, before)
    weights = StepWeights(model.dec, (model.dec.memory_bars + 1) * L + 8, int8=int8_decoding(device))
    cache = StepCache(model.dec, mems, mem_lens, capacity=L, weights=weights)
    # each sequence on its own bar: one that ends a bar begins its next at the next step
    bar, state, pos, track, length = [0] * B, [AFTER_BAR] * B, [-1] * B, [-1] * B, [1] * B
    # each bar's tokens as the file gets them: the decoder reads `tok`, whose Durations may be
    # shorter (`BarPlan.legato`); what reads the bar so far (`Echo`) reads its onsets and pitches
    seqs = np.full((B, L + 1), vocab.pad, np.int64)
    tok = np.full(B, vocab.pad, np.int64)
    c = cond[:, 0].clone()  # each sequence's current bar's conditioning

    def begin(i: int) -> None:
        t, p = bar[i], plans[i]
        if p.hold:
            p.hold.start_bar(t)
        if p.echo:
            p.echo.start_bar(t, out[i], p.positions)
        state[i], pos[i], track[i], length[i] = AFTER_BAR, -1, -1, 1
        seqs[i] = vocab.pad
        seqs[i, 0] = tok[i] = vocab.bar_token(p.positions[t])
        if t:
            c[i] = cond[i, t]
            cache.new_bar(i)

    n_bars = [min(len(p.positions), T) for p in plans]
    live, reported = [], 0
    for i in range(B):
        if n_bars[i]:
            begin(i)
            live.append(i)
        else:
            cache.done(i)
    while live:
        rows = cache.seqs  # the sequences the cache still computes, in its order
        now, c_now = (tok, c) if len(rows) == B else (tok[rows], c[rows])
        h = cache.step(F.embedding(torch.from_numpy(now).to(device), model.embed.weight), c_now)
        # what each sequence may play next; the logits of the span of ids that covers them
        # all (a Velocity or Duration is 32 of the 1,074 tokens: 2 of every 3 steps read
        # a thirtieth of the output layer)
        choices = {}
        for i in live:
            hold, t = plans[i].hold, bar[i]
            if (state[i] == AFTER_BAR and plans[i].tempo[t] >= 0) or (hold and hold.forced() is not None):
                continue
            room = hold.reserve(pos[i]) if hold else 0  # tokens kept for the melody still to come
            choices[i] = grammar.allowed(state[i], pos[i], plans[i].positions[t], track[i], length[i] + room,
                                         tracks[i])  # fmt: skip
            if hold:
                choices[i] = hold.restrict(choices[i][0], pos[i], state[i])
            elif plans[i].echo and plans[i].echo.active:
                choices[i] = plans[i].echo.restrict(choices[i][0], pos[i], seqs[i, : length[i]])
        lo = min((ids[0] for ids, _, _ in choices.values()), default=0)
        hi = max((ids[-1] for ids, _, _ in choices.values()), default=0) + 1
        logits = model.logits(h, lo, hi).float().cpu().numpy()
        at = cache.row  # each sequence's row of h (rows may leave during the loop below: `done`)
        # one number per sequence of the whole batch and step, used or not: the draws stay aligned
        u = rng.random(total)[first : first + B]
        still = []
        for i in live:
            hold, longer = plans[i].hold, -1
            if i in choices:
                ids, a, b = choices[i]
                z = logits[at[i], ids - lo]
                keys = far = None
                if state[i] in PLACES:
                    keys, far = held.keys(i, ids, a, b, pos[i]), register.far(i, ids, a, b)
                    z = top.steer(i, bar[i], ids, z, a, b, far)
                onset = state[i] == AFTER_POSITION  # an onset's first pitch is its lowest note
                if onset:
                    z = bass.steer(i, bar[i], ids, z, a, b, far)
                nxt = int(ids[draw(z, cfg, u[i], (a, b), keys, far)])
                if onset and grammar.kind[nxt] == PITCH:
                    bass.wrote(i, bar[i], nxt)
                if state[i] == AFTER_VELOCITY and plans[i].legato:
                    longer = int(ids[draw(z + plans[i].legato * grammar.log_steps[ids], cfg, u[i])])
            elif hold and hold.forced() is not None:
                nxt = hold.forced()
            else:  # a fixed tempo replaces the model's choice
                nxt = vocab.tempo0 + plans[i].tempo[bar[i]]
            if hold:
                nxt, longer = hold.settle(nxt, pos[i], state[i] in PLACES), -1
            if grammar.end[nxt] or length[i] >= L:  # the bar is over
                top.onset_over(i, bar[i])
                out[i].append(seqs[i, : length[i]].copy())
                held.start[i] += plans[i].positions[bar[i]]
                bar[i] += 1
                if bar[i] < n_bars[i]:
                    begin(i)
                    still.append(i)
                else:
                    tok[i] = vocab.pad
                    cache.done(i)
                continue
            kind = int(grammar.kind[nxt])
            held.wrote(i, kind, int(grammar.value[nxt]), nxt, pos[i])
            state[i] = grammar.next_state(kind, state[i])
            if kind == POSITION:
                pos[i] = int(grammar.value[nxt])
                top.onset_over(i, bar[i])
            elif kind == PITCH:
                track[i] = int(grammar.track[nxt])
                register.wrote(i, nxt)
                top.wrote(i, nxt)
            tok[i] = nxt
            seqs[i, length[i]] = nxt if longer < 0 else longer
            length[i] += 1
            still.append(i)
        live = still
        if on_bar:
            finished = min(T if b == n else b for b, n in zip(bar, n_bars))  # bars every sequence has finished
            if finished > reported:
                reported = finished
                on_bar(reported, T)
    return out
