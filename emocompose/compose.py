"""`generate`, `transform` and `swap` as a Python API: `Composer.load()` then `.generate(...)`,
`.transform(...)`, `.swap(...)`. Each checks its inputs here, once, draws or moves latents
(`latents`) and decodes them (`TrainedModel.decode`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from emocompose import emotions, latents, rewrite, trajectory
from emocompose.errors import InputError, UsageError, check_share
from emocompose.features import KEY_NAMES, global_key, parse_key
from emocompose.presets import (BARS, CANDIDATES, COHERENCE, ECHO, ECHO_BACK, GENERATE, KEY_SPREAD, LEGATO,
                                SWAP, TRANSFORM, SamplingConfig)
from emocompose.grid import Grid
from emocompose.trained import TrainedModel
from emocompose.trajectory import TRANSITION, Segment

FEATURES = ("rhythm", "key")  # what swap can take from piece B


def check_key(key: str | None, paper: bool = False) -> int | None:
    """The key index of a key name (None for none), or a usage error."""
    if key is None:
        return None
    if paper:
        raise UsageError("a chosen key needs the key table, which the paper's operations leave out")
    try:
        return parse_key(key)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_candidates(candidates: int | None, paper: bool = False) -> int:
    """How many pieces to decode per output: the default, 1 with `paper`, or a usage error."""
    if candidates is None:
        return 1 if paper else CANDIDATES
    if candidates < 1:
        raise UsageError(f"candidates must be at least 1, got {candidates}")
    if paper and candidates > 1:
        raise UsageError("candidates picks among decodings, which the paper's operations leave out")
    return candidates


def check_lambda(lam: float) -> float:
    return check_share("lambda", lam)


def check_keep(keep: str) -> str:
    if keep not in rewrite.KEEP:
        raise UsageError(f"keep must be {', '.join(rewrite.KEEP[:-1])} or {rewrite.KEEP[-1]}, got {keep!r}")
    return keep


def check_feature(feature: str) -> str:
    if feature not in FEATURES:
        raise UsageError(f"the feature to swap must be rhythm or key, got {feature!r}")
    return feature


def check_prompt(emotion: str | None, arousal=None, valence=None, key=None, tempo=None, paper: bool = False,
                 echo=None, transition=None, key_spread=None) -> None:  # fmt: skip
    """What a continuation takes besides its prompt: one emotion at most; the prompt sets the
    key and the tempo, and the paper has no continuation. Echo, transition and the key spread
    shape new pieces only (None: not asked for)."""
    if emotion is not None:
        if "," in emotion or ":" in emotion:
            raise UsageError("a continuation carries one emotion; emotions over time are for new pieces")
        emotions.parse_emotion(emotion)
    for what, value in (("arousal and valence", arousal if arousal is not None else valence), ("a key", key),
                        ("a tempo", tempo)):  # fmt: skip
        if value is not None:
            raise UsageError(f"a continuation takes {what} from its prompt; give --emotion or nothing")
    if paper:
        raise UsageError("the paper's operations have no continuation of a prompt")
    if echo is not None or transition is not None or key_spread is not None:
        raise UsageError("a continuation takes no echo, no transition and no key spread: they shape new pieces")


def key_path(names) -> str:
    """Keys in order of their turn, one name where one is kept ("A minor -> A major")."""
    return " -> ".join(dict.fromkeys(names))


def check_target(to: str, bars: int) -> list[Segment]:
    """transform's target: one emotion for the whole piece, or emotions over time whose bars add
    up to the piece's."""
    segments = trajectory.plan(to, None, None, None, bars)
    if sum(s.bars for s in segments) != bars:
        raise InputError(f"the emotions over time add up to {sum(s.bars for s in segments)} bars but the piece "
                         f"has {bars}")  # fmt: skip
    return segments


@dataclass
class Result:
    """One piece written, the emotion it was written toward and what was decided on the way
    (`info`; its `heard_key` is the key heard in the piece as `analyze` hears it, which the key
    the latents were centred on, `key`, does not always give)."""

    grid: Grid
    emotion: str
    seed: int
    info: dict


class Composer:
    """The latent operations on one trained model."""

    def __init__(self, trained: TrainedModel):
        self.trained = trained

    def _result(self, grid: Grid, emotion: str, seed: int, info: dict) -> Result:
        return Result(grid, emotion, seed, {**info, "heard_key": KEY_NAMES[global_key(grid, self.tok.config)]})

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str | None = None) -> "Composer":
        return cls(TrainedModel.load(path, device))

    @property
    def tok(self):
        return self.trained.tok

    def best_of(self, grids: list[Grid], targets: list[list[Segment]], n: int) -> tuple[list[int], list[dict]]:
        """For outputs decoded n at a time (grids[i * n : (i + 1) * n] are the candidates for
        targets[i], its segments of bars each at a point in [-1, 1]^2), the index of the
        candidate whose own encoding q(y|x), taken over each segment's bars, gives the targets
        the highest log-probability (each axis weighted by how far its level is from the middle),
        and the whole piece's q of each one kept. choice (beyond the paper): the decoder does not
        always follow the latents; this makes the model check its own work. With n = 1 there is
        nothing to choose: the outputs as they are, no q."""
        from emocompose.trained import rounded_q

        if n == 1:
            return list(range(len(targets))), [None] * len(targets)
        picks, qs = [], []
        for i, segments in enumerate(targets):
            scored = []
            for j in range(i * n, (i + 1) * n):
                mu_r, mu_k = self.trained.encode(grids[j])
                score = 0.0
                for seg, (a, b) in zip(segments, trajectory.spans(segments)):
                    logq = self.trained.log_q(mu_r[a:b], mu_k[a:b])
                    score += sum(abs(seg.levels[x]) * float(logq[x][int(seg.levels[x] >= 0)]) for x in range(2))
                scored.append((score, j, (mu_r, mu_k)))
            _, best, mu = max(scored, key=lambda x: (x[0], -x[1]))  # ties: the first
            picks.append(best)
            qs.append(rounded_q(self.trained.log_q(*mu)))
        return picks, qs

    def generate(self, emotion: str | None = None, *, arousal: float | str | None = None,
                 valence: float | str | None = None, bars: int | None = None, count: int = 1, seed: int = 0,
                 temperature: float = GENERATE.temperature, top_p: float = GENERATE.top_p,
                 latent_temperature: float = 1.0, coherence: float = COHERENCE, key: str | None = None,
                 key_spread: float = KEY_SPREAD,
                 tempo: float | None = None, paper: bool = False, candidates: int | None = None,
                 transition: int = TRANSITION, echo: float = ECHO) -> list[Result]:  # fmt: skip
        """`count` pieces, decoded as one batch, of `bars` bars (default presets.BARS). Either a
        named emotion, or a point (arousal, valence) in [-1, 1]^2 between the component means;
        either may be a trajectory of segments ('calm:8,tense:8', '0.5:8,-0.5:8': see
        `trajectory`), whose bars add up to the piece's, the latents gliding over `transition`
        bars at each change. See `latents.prior_latents` for `coherence`, `key` and `paper`,
        `best_of` for `candidates` (default presets.CANDIDATES, 1 with `paper`), `echo` for the
        share of bars that repeat the onsets of the bar ECHO_BACK before them (within a segment;
        none with `paper`); each piece's left hand and top voice are held near real music's (`bass`,
        `top_voice`; not with `paper`)."""
        import numpy as np

        from emocompose import bass, top_voice
        from emocompose.echo import Echo, echo_plan
        from emocompose.sampling import BarPlan

        spec = lambda x: None if x is None else str(x)  # noqa: E731
        segments = trajectory.plan(emotion, spec(arousal), spec(valence), bars, BARS)
        bars, label = sum(s.bars for s in segments), trajectory.label(segments)
        n = check_candidates(candidates, paper)
        check_share("echo", echo)
        z_r, z_k, keys = latents.prior_latents(self.trained, segments, count * n, seed, latent_temperature,
                                               coherence, check_key(key, paper), paper, transition, key_spread)  # fmt: skip
        tempo_bin = -1 if tempo is None else int(self.tok.config.tempo_bin(tempo))
        rng, segment = np.random.default_rng(seed), np.repeat(np.arange(len(segments)), [s.bars for s in segments])
        left_hand = None if paper else bass.targets(segments, transition)
        steps = None if paper else top_voice.targets(segments, transition)
        plans = []
        for _ in range(count * n):
            back = echo_plan(bars, 0.0 if paper else echo, ECHO_BACK, rng, segment)
            plans.append(BarPlan([4 * self.tok.config.positions_per_quarter] * bars, [tempo_bin] * bars,
                                 echo=Echo(self.tok.vocab, back) if max(back, default=-1) >= 0 else None,
                                 bass=left_hand, top_steps=steps, legato=0.0 if paper else LEGATO))  # fmt: skip
        grids = self.trained.decode(z_r, z_k, plans, SamplingConfig(temperature, top_p, seed))
        picks, qs = self.best_of(grids, [segments] * count, n)
        results = []
        for i, (j, q) in enumerate(zip(picks, qs)):
            names = None if keys is None else [KEY_NAMES[k] for k in keys[j]]
            info = {"arousal": segments[0].levels[0], "valence": segments[0].levels[1], "index": i,
                    "key": None if names is None else key_path(names), "candidates": n, "q": q}  # fmt: skip
            if len(segments) > 1:
                info["segments"] = [{"bars": s.bars, "emotion": s.emotion, "arousal": s.levels[0],
                                     "valence": s.levels[1], "key": None if names is None else names[k]}
                                    for k, s in enumerate(segments)]  # fmt: skip
            results.append(self._result(grids[j], label, seed, info))
        return results

    def continuation(self, prompt: Grid, bars: int, emotion: str | None = None, *, count: int = 1, seed: int = 0,
                     temperature: float = GENERATE.temperature, top_p: float = GENERATE.top_p,
                     coherence: float = COHERENCE, prompt_bars: int | None = None,
                     candidates: int | None = None) -> list[Result]:  # fmt: skip
        """`count` continuations of `prompt`: its bars as they are, then `bars` new ones decoded
        after the decoder's memory of it (of its last `prompt_bars` bars; default all), in the
        emotion the model hears in those bars or in `emotion` (`latents.continued_latents`).
        The new bars keep the meter and tempo of the prompt's last bar, its instruments by
        register, its last bar's drums (`rewrite.continued_instruments`), the share of its
        onsets that begin in the bass (`bass`) and of those whose highest note moves by a step
        (`top_voice`)."""
        from emocompose import bass, top_voice
        from emocompose.melody import piano_view
        from emocompose.midi import PIANO
        from emocompose.sampling import BarPlan

        if prompt_bars is not None and prompt_bars < 1:
            raise UsageError(f"prompt bars must be at least 1, got {prompt_bars}")
        target = None if emotion is None else emotions.parse_emotion(emotion)
        n = check_candidates(candidates)
        view = piano_view(prompt)
        if not view.n_notes:
            raise InputError("the prompt has no pitched notes to continue")
        k = view.n_bars if prompt_bars is None else min(prompt_bars, view.n_bars)
        context = view.bar_slice(view.n_bars - k, view.n_bars)
        encoded = self.trained.encode(context)
        z_r, z_k, info = latents.continued_latents(self.trained, context, encoded, count * n, bars, seed,
                                                   None if target is None else emotions.EMOTIONS[target], coherence)  # fmt: skip
        name = target or info["source_emotion"]
        if "key" in info:
            info["key"] = key_path(info["key"])
        last = prompt.n_bars - 1
        # the new bars keep the left hand and the steps of the top voice the prompt has (`bass`,
        # `top_voice`); a prompt without either is left to the model there
        left_hand, steps = bass.onset_share(context), top_voice.step_share(context)
        plan = BarPlan([int(prompt.bar_positions[last])] * bars, [int(prompt.bar_tempo[last])] * bars, [PIANO],
                       bass=[left_hand] * bars if left_hand > 0 else None,
                       top_steps=[steps] * bars if steps > 0 else None, legato=LEGATO)
        grids = self.trained.decode(z_r, z_k, [plan] * (count * n), SamplingConfig(temperature, top_p, seed),
                                    self.trained.memory(context, *encoded), before=view)  # fmt: skip
        picks, qs = self.best_of(grids, [[Segment(bars, emotions.levels(name))]] * count, n)
        # the prompt's notes still sounding end where a new note strikes their key, as in the file
        return [self._result(prompt.then(rewrite.continued_instruments(grids[j], prompt)).playable(self.tok.config),
                             name, seed, {**info, "prompt_bars": prompt.n_bars, "context_bars": k, "new_bars": bars,
                                          "index": i, "candidates": n, **({"q_new": q} if q else {})})
                for i, (j, q) in enumerate(zip(picks, qs))]  # fmt: skip

    def transform(self, grid: Grid, to: str, lam: float, *, source: str | None = None, seed: int = 0,
                  temperature: float = TRANSFORM.temperature, top_p: float = TRANSFORM.top_p, paper: bool = False,
                  candidates: int | None = None, keep: str = "melody") -> Result:  # fmt: skip
        """Shift the piece's latents toward emotion `to` by lam in [0, 1] and decode the piece
        again around its melody (`keep="melody"`, see `rewrite`), around its melody and its
        texture (`keep="texture"`, `rewrite.retimed`) or from the latents alone (`keep="none"`);
        meter and instruments are kept, tempo follows the target's arousal.
        With the melody kept, lam below 0.5 holds the source's rhythm and harmony too: lam = 0
        gives the piece back re-voiced from its own latents; from 0.5 a target of the piece's
        arousal holds its rhythm and its harmony moved into the target's mode
        (`rewrite.holds_rhythm`)."""
        return self.transform_many(grid, [(to, lam)], source=source, seed=seed, temperature=temperature,
                                   top_p=top_p, paper=paper, candidates=candidates, keep=keep)[0]  # fmt: skip

    def transform_many(self, grid: Grid, targets: list[tuple[str, float]], *, source: str | None = None,
                       seed: int = 0, temperature: float = TRANSFORM.temperature, top_p: float = TRANSFORM.top_p,
                       paper: bool = False, candidates: int | None = None, keep: str = "melody") -> list[Result]:  # fmt: skip
        """Several (emotion, lambda) targets for one piece: see `transform_pieces`."""
        return self.transform_pieces([(grid, targets, source)], seed=seed, temperature=temperature, top_p=top_p,
                                     paper=paper, candidates=candidates, keep=keep)[0]  # fmt: skip

    def transform_pieces(self, pieces: list[tuple[Grid, list[tuple[str, float]], str | None]], *, seed: int = 0,
                         temperature: float = TRANSFORM.temperature, top_p: float = TRANSFORM.top_p, paper: bool = False,
                         candidates: int | None = None, keep: str = "melody") -> list[list[Result]]:  # fmt: skip
        """Several pieces, each with its (emotion, lambda) targets and its emotion if known (else
        None): each piece encoded once, `candidates` decodings of each target (the same latents,
        other token draws; see `best_of`), all decoded as one batch.
        `paper` is the paper's operation alone: it keeps nothing but the latents."""
        from emocompose.hold import MelodyHold, check_room, repeated_bars
        from emocompose.melody import piano_view

        keep = "none" if paper else check_keep(keep)
        config = self.tok.config
        prepared = []  # per piece: its grid, the piano view, per target: latents, info, melody, tempo
        for grid, targets, source in pieces:
            targets = [(check_target(to, grid.n_bars), check_lambda(lam)) for to, lam in targets]
            src = emotions.EMOTIONS[emotions.parse_emotion(source)] if source else None
            view = piano_view(grid)
            if not view.n_notes:
                raise InputError("no pitched notes to rewrite")
            encoded = self.trained.encode(view)
            n = check_candidates(candidates, paper) if any(lam > 0 for _, lam in targets) else 1
            rows = []
            for segments, lam in targets:
                z, info = latents.shifted_over_time(self.trained, view, segments, lam, src, encoded, paper)
                heard = emotions.EMOTIONS[info["source_emotion"]]
                target = trajectory.bar_levels(segments)  # per bar, (arousal, valence) in {0, 1}
                mel = rewrite.held_melody(grid, config, target, lam) if keep != "none" else None
                # the source whose rhythm and harmony are held, if any (else the model writes them)
                held = None
                if rewrite.holds_rhythm(target, heard, lam):
                    held = rewrite.held_source(view, config, target, lam)
                elif keep == "texture":
                    held = rewrite.retimed(rewrite.held_source(view, config, target, lam), config, mel,
                                           target[:, 0] - heard[0], lam)  # fmt: skip
                budget = None
                if mel is not None:
                    check_room(mel, grid.n_bars, config.max_bar_tokens)
                    if held is None:  # a held rhythm bounds the notes already
                        budget = rewrite.note_budget(grid, mel, target, lam)
                # the paper's operation moves the latents alone: tempo and dynamics stay
                tempo = grid.bar_tempo if paper else rewrite.tempo_bins(grid, config, target, heard, lam)
                rows.append((z, info, mel, tempo, budget, held))
            prepared.append((grid, view, targets, rows, n))
        # every candidate of every target of every piece as one batch, whatever their lengths
        batch = [(k, r) for k, p in enumerate(prepared) for r in p[3] for _ in range(p[4])]
        plans = []
        for k, (_, info, mel, tempo, budget, held) in batch:
            view = prepared[k][1]
            plan = self.trained.plan(replace(view, bar_tempo=tempo), view.n_bars)
            if mel is not None:
                plan.hold = MelodyHold(self.tok.vocab, mel, view.bar_starts, held, budget=budget,
                                       repeats=repeated_bars(view, mel))  # fmt: skip
            plans.append(plan)
        grids = self.trained.decode([r[0][0] for _, r in batch], [r[0][1] for _, r in batch], plans,
                                    SamplingConfig(temperature, top_p, seed))  # fmt: skip
        decoded: list[list[Grid]] = [[] for _ in prepared]
        for (k, _), g in zip(batch, grids):
            decoded[k].append(g)
        results = []
        for (grid, _, targets, rows, n), outs in zip(prepared, decoded):
            # the target's levels, weighted by lambda: at lambda 0 every candidate is as good
            levels = [[Segment(s.bars, tuple(lam * x for x in s.levels)) for s in segs] for segs, lam in targets]
            picks = self.best_of(outs, levels, n)[0]
            kept = [rewrite.restore_instruments(outs[j] if paper else rewrite.dynamics(
                        outs[j], config, row[2], trajectory.bar_levels(segs)[:, 0], lam), grid, row[2])
                    for j, row, (segs, lam) in zip(picks, rows, targets)]  # fmt: skip
            results.append([self._result(out, trajectory.label(segs), seed, {**info, "candidates": n, "keep": keep,
                                                                             "warning": rewrite.gutted(out, grid)})
                            for out, (segs, _), (_, info, *_) in zip(kept, targets, rows)])  # fmt: skip
        return results

    def swap(self, a: Grid, b: Grid, feature: str, *, seed: int = 0, temperature: float = SWAP.temperature,
             top_p: float = SWAP.top_p, keep: str = "melody") -> Result:  # fmt: skip
        """Rhythm: z_r from B, z_k from A; key: z_k from B, z_r from A. The output has A's bars
        (meter, tempo, instruments); when B is shorter its bars repeat from its start. With
        `keep="melody"` a key swap also carries A's melody into B's key and mode, note for note
        on A's rhythm (`rewrite.melody_in_key`), and the model re-voices the rest around it on A's
        rhythm and texture, its harmony carried there too (`rewrite.view_in_key`)."""
        return self.swap_many(a, b, [feature], seed=seed, temperature=temperature, top_p=top_p, keep=keep)[0]

    def swap_many(self, a: Grid, b: Grid, features: list[str], *, seed: int = 0,
                  temperature: float = SWAP.temperature, top_p: float = SWAP.top_p,
                  keep: str = "melody") -> list[Result]:  # fmt: skip
        """`swap` for several features of one pair: see `swap_pairs`."""
        return self.swap_pairs([(a, b)], features, seed=seed, temperature=temperature, top_p=top_p, keep=keep)[0]

    def swap_pairs(self, pairs: list[tuple[Grid, Grid]], features: list[str], *, seed: int = 0,
                   temperature: float = SWAP.temperature, top_p: float = SWAP.top_p,
                   keep: str = "melody") -> list[list[Result]]:  # fmt: skip
        """`swap` for several features of several pairs (A, B): each piece encoded once, every
        output decoded as one batch, whatever the pieces' lengths. Per pair, a result per feature."""
        from emocompose.features import KEY_NAMES, global_key
        from emocompose.hold import MelodyHold, check_room
        from emocompose.melody import piano_view

        for feature in features:
            check_feature(feature)
        check_keep(keep)
        z_r, z_k, plans, jobs = [], [], [], []  # jobs: per output, its pair's A, its feature, the melody held, B's key
        for a, b in pairs:
            va, vb = piano_view(a), piano_view(b)
            for name, v in (("A", va), ("B", vb)):
                if not v.n_notes:
                    raise InputError(f"piece {name} has no pitched notes")
            ea, eb = self.trained.encode(va), self.trained.encode(vb)
            key_b = global_key(b, self.tok.config)
            for feature in features:
                zr, zk = latents.swapped_latents(ea, eb, feature)
                plan = self.trained.plan(va, va.n_bars)
                mel = None
                if feature == "key" and keep != "none":  # A's texture is held either way
                    mel = rewrite.melody_in_key(a, self.tok.config, key_b)
                    check_room(mel, va.n_bars, self.tok.config.max_bar_tokens)
                    held = rewrite.view_in_key(va, self.tok.config, key_b)
                    plan.hold = MelodyHold(self.tok.vocab, mel, va.bar_starts, held)
                z_r.append(zr)
                z_k.append(zk)
                plans.append(plan)
                jobs.append((a, b, feature, mel, key_b))
        outs = self.trained.decode(z_r, z_k, plans, SamplingConfig(temperature, top_p, seed))
        results = [self._result(rewrite.restore_instruments(o, a, mel), f, seed,
                                {"feature": f, "bars_a": a.n_bars, "bars_b": b.n_bars, "keep": keep,
                                 **({"key": KEY_NAMES[key_b]} if f == "key" else {})})
                   for o, (a, b, f, mel, key_b) in zip(outs, jobs)]  # fmt: skip
        return [results[k : k + len(features)] for k in range(0, len(results), len(features))]
