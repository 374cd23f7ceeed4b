"""Does the decoder keep the left hand? How often an onset begins below C3, per quadrant: in real
clips, as the model predicts it when fed the real notes (teacher-forced, on EMOPIA `val`), and in
pieces it generates from the prior, by how far into the piece.

    python benchmarks/bass_drift.py --data data/all [--model PATH] [--pieces 25] [--seeds 0 1]

Notes at one onset are written lowest first (`tokenizer`), so the first pitch after a Position
decides whether the onset has a bass note. A model that predicts that share as the data has it
when it reads real notes, but writes fewer such onsets bar after bar when it reads its own, drifts
(the shipped model's sad and tense pieces do; what was tried against it is in `docs/journal.md`,
sessions 21 and 22). Also printed: the share of bars with any note below C3
(`features.bass_share`, which `evaluate` reports per quadrant), and how many pitched notes a bar
holds by the same spans: the left hand fading shows there too (real tense clips build up from bar
1 to bar 4 on, where the shipped model's tense pieces thin out).

And the chords: how often a note is followed by another at the same onset, as the model predicts
it teacher-forced (after each note's Duration), in real clips, in test clips decoded again from
their own posterior means (`transform` at lambda 0 with nothing kept) and in generated pieces.
The shipped model keeps real chords when it decodes real latents and writes fewer from the
latents `generate` draws for sad and tense pieces (journal, session 24).

And the top voice: how often an onset's highest note lies within a whole tone of the previous
onset's (`top_voice.step_share`), which `generate` holds near real music's (journal, session 26).
"""

from __future__ import annotations

import argparse

import numpy as np

SPANS = ((0, 1), (1, 3), (3, None))  # bars 1, 2-3, 4 on


def notes_per_bar(grid, config, bars: tuple[int, int | None]) -> float:
    """Pitched notes per bar over the bars of `bars` that the piece has (nan if none)."""
    from emocompose.features import pitched_notes

    lo, hi = bars
    hi = grid.n_bars if hi is None else min(hi, grid.n_bars)
    if hi <= lo:
        return np.nan
    b = pitched_notes(grid, config).bar
    return float(((b >= lo) & (b < hi)).sum() / (hi - lo))


def by_span(measure, pieces, config, fmt: str) -> str:
    """`measure(grid, config, span)` averaged over the pieces for each of SPANS, as 'a / b / c'."""
    return " / ".join(format(np.nanmean([measure(g, config, span) for g in pieces]), fmt) for span in SPANS)


def chord_share(grid, config) -> float:
    """The share of pitched notes followed by another at the same onset (drums left out)."""
    from emocompose.features import pitched_notes

    onset = pitched_notes(grid, config).onset
    return float(1 - len(np.unique(onset)) / len(onset)) if len(onset) else np.nan


def teacher_forced(model, data: str) -> dict[str, dict[int, tuple[float, float, int]]]:
    """Per measure and quadrant, over EMOPIA `val` windows with the posterior means: the model's
    mean probability, the data's share and the cases counted. "bass": that an onset's first
    pitch is below BASS; "chord": that a pitch follows a (pitched) note's Duration."""
    import torch

    from emocompose.dataset import Dataset, Windows
    from emocompose.features import BASS
    from emocompose.judge import quadrants
    from emocompose.midi import DRUMS
    from emocompose.tokenizer import DURATION, PITCH, POSITION
    from emocompose.train import TrainConfig

    ds = Dataset(data)
    win = Windows(ds, TrainConfig(val_windows=10_000))
    vocab = ds.vocab
    pitched = (vocab.kind == PITCH) & (vocab.track != DRUMS)  # over the vocabulary
    low = pitched & (vocab.value < BASS)
    sums: dict[str, dict[int, list[float]]] = {"bass": {}, "chord": {}}
    windows = win.val_windows()
    with torch.inference_mode():
        for i in range(0, len(windows), 8):
            batch = win.collate(windows[i : i + 8], torch, labels=ds.labels)
            tokens, lens = batch["tokens"], batch["lens"]
            (mu_r, _, mu_k, _), _ = model.encode(tokens, lens)
            h, pk, _ = model.decode(tokens, lens, mu_r, mu_k)
            p = torch.softmax(model.logits(h).float(), -1).numpy()
            inp = tokens.reshape(-1)[pk.rows].numpy()
            target = batch["targets"].reshape(-1)[pk.rows].numpy()
            piece = (pk.rows // tokens[0].numel()).numpy()
            quadrant = quadrants(batch["labels"].numpy())
            at = (vocab.kind[inp] == POSITION) & (target >= 0) & pitched[target.clip(0)]
            for r in np.flatnonzero(at):
                s = sums["bass"].setdefault(int(quadrant[piece[r]]), [0.0, 0.0, 0])
                s[0] += p[r, low].sum() / p[r, pitched].sum()
                s[1] += float(low[target[r]])
                s[2] += 1
            for r in np.flatnonzero((vocab.kind[inp] == DURATION) & (vocab.track[inp] != DRUMS) & (target >= 0)):
                s = sums["chord"].setdefault(int(quadrant[piece[r]]), [0.0, 0.0, 0])
                s[0] += p[r, pitched].sum()
                s[1] += float(pitched[target[r]])
                s[2] += 1
    return {m: {q: (a / n, b / n, n) for q, (a, b, n) in by.items()} for m, by in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a dataset from `emocompose preprocess` (with EMOPIA's labels)")
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--pieces", type=int, default=25, help="pieces per emotion and seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()

    from emocompose.bass import onset_share
    from emocompose.compose import Composer
    from emocompose.emotions import NAMES
    from emocompose.features import bass_share
    from emocompose.judge import quadrants
    from emocompose.real_music import load_real
    from emocompose.top_voice import step_share

    c = Composer.load(args.model)
    config = c.tok.config
    real = load_real(args.data, c.tok, 20)
    real_q = quadrants(real.labels)
    forced = teacher_forced(c.trained.model, args.data)
    print(f"model {c.trained.path}: the share of onsets that begin below C3 (of bars with a note below it)")
    print(f"{'':6} | {'real clips':12} | {'teacher-forced: model / data':28} | generated, bars 1 / 2-3 / 4-20 (all)")
    density, chords, steps = [], [], []
    for k, name in enumerate(NAMES):
        clips = [g for g, q in zip(real.grids, real_q) if q == k]
        grids = [res.grid for s in args.seeds for res in c.generate(name, bars=20, count=args.pieces, seed=s)]
        spans = by_span(lambda g, _, span: onset_share(g, span), grids, config, ".3f")
        model_p, data_p, _ = forced["bass"].get(k, (np.nan, np.nan, 0))
        print(
            f"{name:6} | {np.nanmean([onset_share(g) for g in clips]):.3f} "
            f"({np.nanmean([bass_share(g) for g in clips]):.2f}) | {model_p:.3f} / {data_p:.3f}{'':14} | "
            f"{spans} ({np.nanmean([bass_share(g) for g in grids]):.2f})"
        )
        density.append(
            (name, by_span(notes_per_bar, clips, config, ".1f"), by_span(notes_per_bar, grids, config, ".1f"))
        )
        test = [g for g, q, s in zip(real.grids, real_q, real.splits) if q == k and s == "test"][: args.pieces]
        again = [c.transform(g, name, 0.0, source=name, keep="none").grid for g in test]
        model_c, data_c, _ = forced["chord"].get(k, (np.nan, np.nan, 0))
        chords.append(
            f"{name:6} | {np.nanmean([chord_share(g, config) for g in clips]):.3f}{'':7} | {model_c:.3f} / "
            f"{data_c:.3f}{'':14} | {np.nanmean([chord_share(g, config) for g in again]):.3f}{'':36} | "
            f"{np.nanmean([chord_share(g, config) for g in grids]):.3f}"
        )
        steps.append(f"{name:6} | {np.nanmean([step_share(g) for g in clips]):.3f}{'':7} | "
                     f"{np.nanmean([step_share(g) for g in again]):.3f}{'':36} | "
                     f"{np.nanmean([step_share(g) for g in grids]):.3f}")  # fmt: skip
    print("pitched notes per bar, bars 1 / 2-3 / 4-20: real clips | generated")
    for name, real_d, gen_d in density:
        print(f"{name:6} | {real_d:18} | {gen_d}")
    print("the share of notes followed by another at the same onset:")
    print(f"{'':6} | {'real clips':12} | {'teacher-forced: model / data':28} | "
          f"{'test clips decoded from their own latents':41} | generated")  # fmt: skip
    print("\n".join(chords))
    print("the share of onsets whose highest note moves by a step (a whole tone or less):")
    print(f"{'':6} | {'real clips':12} | {'test clips decoded from their own latents':41} | generated")
    print("\n".join(steps))


if __name__ == "__main__":
    main()
