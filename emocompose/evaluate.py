"""`emocompose evaluate`: the paper's measurements (model.md section 6) for one model.

Everything is judged by `judge.Judge`, a classifier of real music that never sees the model,
trained on the data's train split and measured on its test split (the real-music ceiling):

* control: K generated pieces per emotion, judged per axis (the paper's Tables 2-3);
* transform: test clips moved to each other quadrant at lambda = 1 (Table 4), and toward the
  opposite quadrant as lambda runs from 0 to 1;
* swap: cosine similarity of the output's rhythm and key features to A and to B (Eq 22);
* disentanglement: linear probes of key from z_r and rhythm from z_k (near chance is the goal);
* latent space: a 2-D projection of the per-piece latents and the distance of the component means;
* realism: can a classifier tell generated pieces from real test clips (`realism.py`)?
* quality: MusPy-style measures of generated pieces beside real ones measured the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from emocompose import features, judge, quality, realism
from emocompose.compose import Composer, check_candidates, check_keep
from emocompose.emotions import EMOTIONS, NAMES, flipped, opposite
from emocompose.errors import UsageError
from emocompose.presets import BARS, GENERATE, TRANSFORM
from emocompose.grid import Grid
from emocompose.likeness import likeness
from emocompose.real_music import Real, fit_judge
from emocompose.rewrite import KEEP

ACROSS = {(0, 1): "valence", (1, 0): "arousal", (1, 1): "both"}  # a transform's change: the levels it flips


@dataclass(frozen=True)
class EvalConfig:
    pieces: int = 25  # generated pieces per emotion (at 10, two seed sets of one model read valence 0.60 and 0.75)
    bars: int = BARS  # length of generated pieces; real clips are cut to it
    clips: int = 8  # test clips per quadrant for transform and swap: 96 transforms (48 at 4 were noisy)
    lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    probe_pieces: int = 200  # real pieces whose bars the disentanglement probes read
    seed: int = 0
    temperature: float = GENERATE.temperature
    top_p: float = GENERATE.top_p
    paper: bool = False  # the paper's latent operations exactly (no coherence, no key table)
    candidates: int | None = None  # decodings per output (None: generate's default, 1 with paper)
    keep: str = "melody"  # what transform holds (rewrite.KEEP); the other ways are measured beside it
    scores: int = 10  # real scores for other instruments (corpus.SCORES) rewritten each way (0: none)
    # emotions over time: each segment of these pieces is judged on its own bars (the glide's too)
    trajectories: tuple[str, ...] = ("calm:8,tense:8", "sad:8,happy:8", "happy:8,sad:8")
    trajectory_pieces: int = 16  # one piece moves a segment's share by 0.06 (at 8, 0.12: too coarse to compare)

    def __post_init__(self):
        if self.pieces < 1 or self.clips < 0 or not 0 <= self.scores <= 10 or self.trajectory_pieces < 0:
            raise UsageError("pieces must be at least 1, clips and trajectory pieces at least 0 and scores in 0..10")
        # resolved here, so the report says how many
        object.__setattr__(self, "candidates", check_candidates(self.candidates, self.paper))
        check_keep(self.keep)


def _shares(rows: np.ndarray, cols: np.ndarray, n: int = 4) -> np.ndarray:
    """(n, n) matrix: share of each row class judged as each column class (NaN for empty rows)."""
    m = np.zeros((n, n))
    np.add.at(m, (rows, cols), 1)
    with np.errstate(invalid="ignore"):
        return m / m.sum(axis=1, keepdims=True)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den else 0.0


def _key_onehot(g: Grid, config) -> np.ndarray:
    return np.eye(features.N_KEYS)[features.bar_keys(g, config)]


def _probe(x: np.ndarray, y: np.ndarray, fit: np.ndarray, n_classes: int, l2: float = 1e-3) -> float:
    """Test accuracy of a multinomial logistic regression from x to y, fitted on rows `fit`."""
    import torch

    mean, std = x[fit].mean(0), x[fit].std(0) + 1e-6
    xt = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    f = torch.as_tensor(fit)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt[f] @ w + b, yt[f]) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (xt[~f] @ w + b).argmax(-1)
    return round(float((pred == yt[~f]).float().mean()), 4)


# the clips transformed in one decoding batch: this many of each quadrant, 56 decodings a batch
# (measured: 40 pieces a batch took 0.30 s a piece, 20 took 0.37 and 80 no less than 40)
CLIPS_TOGETHER = 2


class Evaluation:
    """One evaluation run; `run()` returns the report and writes it with its figures to `out`."""

    def __init__(self, composer: Composer, real: Real, out: Path, cfg: EvalConfig,
                 progress: Callable[[str, int, int], None] | None = None):  # fmt: skip
        self.c, self.real, self.out, self.cfg = composer, real, out, cfg
        self.conf = composer.tok.config
        self.progress = progress or (lambda stage, done, total: None)
        self.done = 0
        self.judge, self.judge_report = fit_judge(real, self.conf)
        test = np.flatnonzero(real.splits == "test")
        by_q = judge.quadrants(real.labels[test])
        self.clips = [[int(i) for i in test[by_q == q][: cfg.clips]] for q in range(4)]
        n_clips = sum(len(c) for c in self.clips)
        self.jobs_per_clip = 3 + sum(lam != 1.0 for lam in cfg.lambdas)
        # generate, transform, the other ways of rewriting (KEEP and paper, but this run's), swap, scores, trajectories
        self.total = (4 * cfg.pieces + n_clips * self.jobs_per_clip + len(KEEP) * n_clips * len(cfg.lambdas) + 2 * n_clips
                      + 4 * cfg.scores + len(cfg.trajectories) * cfg.trajectory_pieces)  # fmt: skip

    def _clip_batches(self):
        """The test clips as (quadrant, index), a batch at a time, with the batch's first rank n:
        the n-th clips of every quadrant for CLIPS_TOGETHER n at a time."""
        for n in range(0, self.cfg.clips, CLIPS_TOGETHER):
            yield n, [(q, idx[m]) for m in range(n, n + CLIPS_TOGETHER) for q, idx in enumerate(self.clips) if m < len(idx)]

    def _tick(self, stage: str, n: int) -> None:
        self.done += n
        self.progress(stage, self.done, self.total)

    def feats(self, grids: list[Grid]) -> np.ndarray:
        return judge.features_of(grids, self.conf)

    # -- sections ------------------------------------------------------------------------------

    def control(self) -> tuple[dict, dict[str, list[Grid]]]:
        cfg, grids, truth, results = self.cfg, {}, [], []
        for i, name in enumerate(NAMES):
            res = self.c.generate(name, bars=cfg.bars, count=cfg.pieces, seed=cfg.seed + i,
                                  temperature=cfg.temperature, top_p=cfg.top_p, paper=cfg.paper,
                                  candidates=cfg.candidates)  # fmt: skip
            grids[name] = [r.grid for r in res]
            results += res
            truth += [EMOTIONS[name]] * cfg.pieces
            self._tick("generate", cfg.pieces)
        prob = self.judge.prob_high(self.feats([g for name in NAMES for g in grids[name]]))
        pred = (prob >= 0.5).astype(np.int64)
        truth = np.array(truth)
        report = judge.scores(truth, pred)
        report["confusion"] = _shares(judge.quadrants(truth), judge.quadrants(pred)).round(4).tolist()
        report["prob_high"] = {name: prob[k * cfg.pieces : (k + 1) * cfg.pieces].mean(0).round(4).tolist()
                               for k, name in enumerate(NAMES)}  # fmt: skip
        report.update(keys_heard(results))
        return report, grids

    def trajectories(self) -> dict:
        """Per trajectory, each segment's bars of every piece judged on their own: the share heard
        as the segment's emotion and per axis, beside what the same judge hears in whole pieces
        of one emotion (`control`)."""
        from emocompose.trajectory import plan, spans

        cfg, report = self.cfg, {}
        for t, spec in enumerate(cfg.trajectories if cfg.trajectory_pieces else ()):
            segments = plan(spec, None, None, None, cfg.bars)
            res = self.c.generate(spec, count=cfg.trajectory_pieces, seed=cfg.seed + 100 + t, temperature=cfg.temperature,
                                  top_p=cfg.top_p, paper=cfg.paper, candidates=cfg.candidates)  # fmt: skip
            rows = []
            for seg, (a, b) in zip(segments, spans(segments)):
                parts = [r.grid.bar_slice(a, b) for r in res]
                pred = (self.judge.prob_high(self.feats(parts)) >= 0.5).astype(np.int64)
                truth = np.array([EMOTIONS[seg.emotion]] * len(parts))
                rows.append({"emotion": seg.emotion, "bars": seg.bars, **judge.scores(truth, pred)})
            report[spec] = rows
            self._tick("trajectories", cfg.trajectory_pieces)
        return {"pieces": cfg.trajectory_pieces, "each": report}

    def transform(self) -> tuple[dict, dict[tuple[int, int], list[Grid]]]:
        """The report, and per clip (quadrant, index) its outputs toward the opposite quadrant
        at each lambda."""
        cfg, r = self.cfg, self.real
        swept = {}
        targets_all, judged_all, sources_all = [], [], []
        sweep = []  # per clip: P(high) per axis at each lambda toward the opposite quadrant
        reached = []  # per clip: judged quadrant == opposite quadrant, per lambda
        kept = []  # per clip: cosine of the output's per-bar rhythm to the source's, per lambda
        at_one = {across: {} for across in ACROSS}  # per kind of change: per clip, its output at lambda 1
        jobs = {q: [(t, 1.0) for t in NAMES if t != NAMES[q]]
                + [(opposite(NAMES[q]), lam) for lam in cfg.lambdas if lam != 1.0] for q in range(4)}  # fmt: skip
        outs = {}
        for n, clips in self._clip_batches():
            for qi, out in zip(clips, self.c.transform_pieces(
                    [(r.grids[i], jobs[q], NAMES[q]) for q, i in clips], seed=cfg.seed + n, temperature=TRANSFORM.temperature,
                    top_p=TRANSFORM.top_p, paper=cfg.paper, candidates=cfg.candidates, keep=cfg.keep)):  # fmt: skip
                outs[qi] = out
            self._tick("transform", sum(len(jobs[q]) for q, _ in clips))
        for q, idx in enumerate(self.clips):
            src, opp = NAMES[q], opposite(NAMES[q])
            others = [t for t in NAMES if t != src]
            at = {lam: k for k, (_, lam) in enumerate(jobs[q][3:], start=3)}
            at[1.0] = others.index(opp)
            order = [at[lam] for lam in cfg.lambdas]
            for i in idx:
                out = outs[q, i]
                p_high = self.judge.prob_high(self.feats([o.grid for o in out]))
                judged = judge.quadrants((p_high >= 0.5).astype(int))
                targets_all += [NAMES.index(t) for t in others]
                judged_all += judged[:3].tolist()
                sources_all += [q] * 3
                sweep.append(p_high[order])
                reached.append(judged[order] == NAMES.index(opp))
                source_rhythm = features.rhythm(r.grids[i])
                kept.append([_cosine(features.rhythm(out[k].grid), source_rhythm) for k in order])
                swept[q, i] = [out[k].grid for k in order]
                for k, t in enumerate(others):
                    at_one[tuple(int(x != y) for x, y in zip(EMOTIONS[src], EMOTIONS[t]))][q, i] = [out[k].grid]
        t, j, s = np.array(targets_all), np.array(judged_all), np.array(sources_all)
        success = np.full((4, 4), np.nan)
        for q in range(4):
            for tq in range(4):
                m = (s == q) & (t == tq)
                if m.any():
                    success[q, tq] = (j[m] == tq).mean()
        sweep_a = np.array(sweep) if sweep else np.zeros((0, len(cfg.lambdas), 2))
        return {
            "clips": int(len(sweep)),
            "reached_target": round(float((t == j).mean()), 4) if len(t) else 0.0,
            "confusion": _shares(t, j).round(4).tolist() if len(t) else [],
            "success_by_source": [[None if np.isnan(x) else round(float(x), 4) for x in row] for row in success],
            "lambda": {
                "values": list(cfg.lambdas),
                "reached_opposite": np.array(reached).mean(0).round(4).tolist() if reached else [],
                "prob_high_arousal_moved": _moved(sweep_a, self.clips, 0),
                "prob_high_valence_moved": _moved(sweep_a, self.clips, 1),
                "rhythm_to_source": np.array(kept).mean(0).round(4).tolist() if kept else [],
            },
            # a change of valence alone keeps the source's rhythm, one of arousal rewrites it
            "told_from_real_by_change": {name: {k: v for k, v in self.rewrite_realism(at_one[a], a).items()
                                                if k in ("accuracy", "real_against_real")}
                                         for a, name in ACROSS.items()},  # fmt: skip
        }, swept

    def rewrites(self, mine_swept: dict[tuple[int, int], list[Grid]]) -> dict:
        """What each way of rewriting keeps of the clips and how far it gets, toward the
        opposite quadrant at each lambda: this run's way (from `transform`) and the others
        (`--keep` melody, texture or none, the paper's operation) on the same clips and seeds; and
        whether the rewrites pass for real music (`rewrite_realism`)."""
        cfg, r = self.cfg, self.real
        ways = {**{k: {"keep": k} for k in KEEP}, "paper": {"paper": True}}
        mine = "paper" if cfg.paper else cfg.keep
        out = {"lambda": list(cfg.lambdas), "this_run": mine, "ways": {}}
        for way, how in ways.items():
            swept = mine_swept if way == mine else {}
            if way != mine:
                for n, clips in self._clip_batches():
                    jobs = {q: [(opposite(NAMES[q]), lam) for lam in cfg.lambdas] for q, _ in clips}
                    for (q, i), res in zip(clips, self.c.transform_pieces(
                            [(r.grids[i], jobs[q], NAMES[q]) for q, i in clips], seed=cfg.seed + n,
                            temperature=TRANSFORM.temperature, top_p=TRANSFORM.top_p, candidates=1, **how)):  # fmt: skip
                        swept[q, i] = [x.grid for x in res]
                    self._tick("rewrites", len(cfg.lambdas) * len(clips))
            rows = {name: [] for name in ("reached_opposite", "melody_kept", "melody_on_top", "pitch_class_similarity",
                                          "onset_similarity", "notes_ratio")}  # fmt: skip
            for (q, i), grids in swept.items():
                p_high = self.judge.prob_high(self.feats(grids))
                rows["reached_opposite"].append(judge.quadrants((p_high >= 0.5).astype(int)) == NAMES.index(opposite(NAMES[q])))
                alike = [likeness(r.grids[i], g, self.conf) for g in grids]
                for name in ("melody_kept", "melody_on_top", "pitch_class_similarity", "onset_similarity"):
                    rows[name].append([a[name] for a in alike])
                rows["notes_ratio"].append([g.n_notes / max(r.grids[i].n_notes, 1) for g in grids])
            out["ways"][way] = {k: np.array(v, np.float64).mean(0).round(4).tolist() if v else [] for k, v in rows.items()}
            out["ways"][way]["realism"] = self.rewrite_realism(swept)
        return out

    def rewrite_realism(self, swept: dict[tuple[int, int], list[Grid]], across: tuple[int, int] = (1, 1)) -> dict:
        """The realism test of rewrites of test clips (at every lambda together, and at each)
        toward the quadrant `across` the levels flipped (both: the opposite), against as many
        train clips of each quadrant as there are rewrites toward it (the structure features
        differ by emotion); the floor is the test clips themselves against the same train clips.
        A way that wrote music as real as its sources would score the floor."""
        if not swept:
            return {"accuracy": None}
        r, train = self.real, np.flatnonzero(self.real.splits == "train")
        clips = list(swept)
        toward = np.bincount([NAMES.index(flipped(NAMES[q], across)) for q, _ in clips], minlength=4) * len(swept[clips[0]])
        by_q = judge.quadrants(r.labels[train])
        train = np.concatenate([train[by_q == q][: toward[q]] for q in range(4)])
        against = ([r.grids[i] for i in train], [r.sources[i] for i in train])
        sources = [r.sources[i] for _, i in clips]

        def told(grids: list[Grid], of: list[str]) -> dict:
            return realism.compare(grids, *against, [r.grids[i] for _, i in clips], sources, self.conf, self.cfg.seed,
                                   generated_sources=of)  # fmt: skip

        every = told([g for c in clips for g in swept[c]], [s for s in sources for _ in swept[clips[0]]])
        return {"accuracy": every["accuracy"], "real_against_real": every["real_against_real"],
                "pieces": every["pieces"], "most_telling": every["most_telling"],
                "by_lambda": [told([swept[c][k] for c in clips], sources)["accuracy"]
                              for k in range(len(swept[clips[0]]))]}  # fmt: skip

    def scores(self) -> dict:
        """What each way of rewriting keeps of real scores for other instruments (`corpus`)."""
        from emocompose import corpus

        return corpus.transform_kept(self.c, self.cfg.scores, seed=self.cfg.seed,
                                     on_done=lambda n: self._tick("scores", n))

    def swap(self) -> dict:
        """Each pair swapped both ways round, every pair in one decoding batch; A's and B's
        features computed once per pair."""
        r = self.real
        pairs = [(i, j) for q in range(4) for i, j in zip(self.clips[q], self.clips[(q + 2) % 4])]
        sims = {"rhythm": [], "key": []}
        swapped = self.c.swap_pairs([(r.grids[i], r.grids[j]) for i, j in pairs], list(sims), seed=self.cfg.seed)
        for (i, j), results in zip(pairs, swapped):
            a, b = r.grids[i], r.grids[j]
            idx = np.arange(a.n_bars) % b.n_bars
            fr_a, fr_b = features.rhythm(a), features.rhythm(b)[idx]
            fk_a, fk_b = _key_onehot(a, self.conf), _key_onehot(b, self.conf)[idx]
            key_b = features.global_key(b, self.conf)
            for feature, res in zip(sims, results):
                fr, fk = features.rhythm(res.grid), _key_onehot(res.grid, self.conf)
                sims[feature].append([_cosine(fr, fr_a), _cosine(fr, fr_b), _cosine(fk, fk_a), _cosine(fk, fk_b),
                                      key_b == features.global_key(res.grid, self.conf)])  # fmt: skip
        self._tick("swap", len(sims) * len(pairs))
        out = {}
        for feature, rows in sims.items():
            if not rows:
                out[feature] = {"pairs": 0}
                continue
            m = np.array(rows).mean(0)
            out[feature] = {"pairs": len(rows), "rhythm_to_a": round(float(m[0]), 4), "rhythm_to_b": round(float(m[1]), 4),
                            "key_to_a": round(float(m[2]), 4), "key_to_b": round(float(m[3]), 4),
                            "key_heard_b": round(float(m[4]), 4)}  # fmt: skip
        return out

    def latents(self) -> tuple[dict, dict, tuple]:
        """Disentanglement probes, the model's own q(y|x) on held-out pieces, and the points of
        the latent map (per-piece mean z_r and z_k, and the pieces' labels)."""
        import torch

        r, cfg = self.real, self.cfg
        held = np.flatnonzero(r.splits != "train")
        held = held[np.random.default_rng(cfg.seed).permutation(len(held))[: cfg.probe_pieces]]
        zr, zk, keys, onsets, piece, means, q_ok = [], [], [], [], [], [], []
        for n, i in enumerate(held):
            g = r.grids[i]
            mu_r, mu_k = self.c.trained.encode(g)
            q = self.c.trained.classify(mu_r, mu_k)
            q_ok.append([int(q["arousal"][1] >= 0.5) == r.labels[i, 0], int(q["valence"][1] >= 0.5) == r.labels[i, 1]])
            zr.append(mu_r.cpu().numpy())
            zk.append(mu_k.cpu().numpy())
            keys.append(features.bar_keys(g, self.conf))
            onsets.append(features.rhythm(g).sum(1))
            piece.append(np.full(g.n_bars, n))
            means.append((zr[-1].mean(0), zk[-1].mean(0)))
        zr, zk, keys, onsets, piece = map(np.concatenate, (zr, zk, keys, onsets, piece))
        # rhythm class: the bar's onset count in thirds of the held-out bars' distribution
        rclass = np.searchsorted(np.quantile(onsets, [1 / 3, 2 / 3]), onsets, side="right")
        fit = piece % 2 == 0  # probes fit on half of the pieces, tested on the other half
        chance_k = float(np.bincount(keys[~fit], minlength=24).max() / max((~fit).sum(), 1))
        chance_r = float(np.bincount(rclass[~fit], minlength=3).max() / max((~fit).sum(), 1))
        dis = {
            "bars": int(len(keys)), "pieces": int(len(held)),
            "key_from_z_k": _probe(zk, keys, fit, 24), "key_from_z_r": _probe(zr, keys, fit, 24),
            "key_chance": round(chance_k, 4),
            "rhythm_from_z_r": _probe(zr, rclass, fit, 3), "rhythm_from_z_k": _probe(zk, rclass, fit, 3),
            "rhythm_chance": round(chance_r, 4),
        }  # fmt: skip
        dists = {}
        for axis, name in enumerate(("z_r", "z_k")):
            prior = self.c.trained.model.priors()[axis]
            lo, hi = (m.detach().cpu() for m in self.c.trained.component_means(axis))
            spread = float(torch.exp(prior.log_std.detach().cpu()).mean())
            dists[name] = {"distance": round(float((hi - lo).norm()), 4), "in_stds": round(float((hi - lo).norm()) / spread, 4)}
        qa = np.array(q_ok).mean(0) if q_ok else np.zeros(2)
        lat = {"component_means": dists, "model_q_accuracy": {"arousal": round(float(qa[0]), 4),
               "valence": round(float(qa[1]), 4), "pieces": int(len(held))}}  # fmt: skip
        points = (np.array([m[0] for m in means]), np.array([m[1] for m in means]), r.labels[held])
        return dis, lat, points

    def realism(self, generated: dict[str, list[Grid]], against: str = "test") -> dict:
        """Generated pieces against the real clips of split `against` (test; val to choose between
        models; 'val+test' for both, a test that tells smaller differences apart); train clips
        against the same clips as the floor."""
        r = self.real
        real, train = np.flatnonzero(np.isin(r.splits, against.split("+"))), np.flatnonzero(r.splits == "train")
        return realism.compare([g for name in NAMES for g in generated.get(name, [])],
                               [r.grids[i] for i in real], [r.sources[i] for i in real],
                               [r.grids[i] for i in train], [r.sources[i] for i in train], self.conf, self.cfg.seed)  # fmt: skip

    def quality(self, generated: dict[str, list[Grid]]) -> dict:
        r = self.real
        real_rows = [quality.measure(g, self.conf) for g in r.grids]
        per = {}
        for q, name in enumerate(NAMES):
            real_q = [g for g, lab in zip(r.grids, judge.quadrants(r.labels)) if lab == q]
            per[name] = {"generated": features.describe_pieces(generated.get(name, []), self.conf),
                         "real": features.describe_pieces(real_q, self.conf)}
        gen_rows = [quality.measure(g, self.conf) for name in NAMES for g in generated.get(name, [])]
        return {"generated": quality.summarise(gen_rows), "real": quality.summarise(real_rows), "per_emotion": per}

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> dict:
        from emocompose import figures
        from emocompose.atomic import atomic_dir, write_text

        t0 = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        report = {"model": str(self.c.trained.path), "model_step": self.c.trained.meta.get("step"),
                  "settings": asdict(self.cfg)}  # fmt: skip
        stages = {}

        def timed(name, fn, *args):
            t = time.time()
            value = fn(*args)
            stages[name] = round(time.time() - t, 1)
            return value

        report["judge"] = self.judge_report
        report["control"], generated = timed("control", self.control)
        report["trajectories"] = timed("trajectories", self.trajectories)
        report["transform"], swept = timed("transform", self.transform)
        report["rewrites"] = timed("rewrites", self.rewrites, swept)
        report["swap"] = timed("swap", self.swap)
        report["scores"] = timed("scores", self.scores)
        report["disentanglement"], report["latent"], points = timed("latents", self.latents)
        report["realism"] = timed("realism", self.realism, generated)
        report["quality"] = timed("quality", self.quality, generated)
        report["seconds"] = stages | {"total": round(time.time() - t0, 1)}

        with atomic_dir(self.out / "samples") as samples:  # replaces an earlier run's samples whole
            for name in NAMES:
                for k, g in enumerate(generated[name]):
                    (samples / f"{name}-{k + 1:02d}.mid").write_bytes(self.c.tok.to_midi(g))
        figures.piano_roll({n: generated[n][0] for n in NAMES if generated[n]}, self.conf, self.out / "piano_rolls.png")
        zr, zk, lab = points
        figures.latent_scatter([
            ("z_r (rhythm) by arousal", _pca2(zr), lab[:, 0], ("low arousal", "high arousal")),
            ("z_k (key) by valence", _pca2(zk), lab[:, 1], ("low valence", "high valence")),
        ], self.out / "latent.png")  # fmt: skip
        figures.confusion(np.array(report["control"]["confusion"]), NAMES, NAMES, "generate: asked vs judged",
                          self.out / "control_confusion.png", row_label="asked")  # fmt: skip
        if report["transform"]["clips"]:
            figures.confusion(np.array(report["transform"]["confusion"]), NAMES, NAMES, "transform (lambda = 1)",
                              self.out / "transform_confusion.png")  # fmt: skip
            lam = report["transform"]["lambda"]
            figures.curves(lam["values"], {"judged as target quadrant": lam["reached_opposite"],
                                           "arousal judged moved": lam["prob_high_arousal_moved"],
                                           "valence judged moved": lam["prob_high_valence_moved"]},
                           "lambda", "share of clips", "transform toward the opposite quadrant",
                           self.out / "transform_lambda.png")  # fmt: skip
            ways = report["rewrites"]["ways"]
            figures.tradeoff({w: (m["reached_opposite"], m["melody_kept"]) for w, m in ways.items()},
                             report["rewrites"]["lambda"], "judged as the target quadrant", "source melody kept",
                             "transform toward the opposite quadrant: kept against reached",
                             self.out / "transform_kept.png")  # fmt: skip
        write_text(self.out / "report.json", json.dumps(report, indent=1) + "\n")
        return report


def _moved(sweep: np.ndarray, clips: list[list[int]], axis: int) -> list[float]:
    """Share of clips judged at the opposite level of `axis` at each lambda (every clip's target
    is the opposite quadrant, so both levels flip)."""
    if not len(sweep):
        return []
    src = np.concatenate([[EMOTIONS[NAMES[q]][axis]] * len(c) for q, c in enumerate(clips)])
    judged = (sweep[:, :, axis] >= 0.5).astype(int)
    return (judged != src[:, None]).mean(0).round(4).tolist()


def keys_heard(results) -> dict:
    """How often generated pieces (`compose.Result`s) of one key each are heard in the key their
    latents were centred on, and in that key's mode (`features.global_key`, as `analyze` hears
    them, `heard_key`); None for a model without a key table. A key path (an emotion over time)
    is left out: one key heard in the whole piece does not compare with it."""
    pairs = [(features.KEY_NAMES.index(r.info["key"]), features.KEY_NAMES.index(r.info["heard_key"]))
             for r in results if r.info.get("key") and "->" not in r.info["key"]]  # fmt: skip
    if not pairs:
        return {"key_heard_as_asked": None, "mode_heard_as_asked": None}
    asked, heard = np.array(pairs).T
    return {"key_heard_as_asked": round(float((asked == heard).mean()), 4),
            "mode_heard_as_asked": round(float((features.is_major(asked) == features.is_major(heard)).mean()), 4)}


def _pca2(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T
