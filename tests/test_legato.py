"""Notes held longer in the file than the decoder reads them (`sampling.BarPlan.legato`): every
other token stays as drawn, no note comes out shorter, and `generate` and continuations ask for it
where the paper's operations do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import midi_bytes, scale
from emocompose import sampling
from emocompose.compose import Composer
from emocompose.presets import LEGATO
from emocompose.sampling import BarPlan, SamplingConfig, decode_bars
from emocompose.tokenizer import DURATION


@pytest.fixture(scope="module")
def composer(tiny_model):
    return Composer.load(tiny_model)


def decoded(composer, legato: float) -> list[np.ndarray]:
    model, vocab = composer.trained.model, composer.tok.vocab
    cond = torch.randn(4, 6, model.config.d, generator=torch.Generator().manual_seed(0))
    plans = [BarPlan([16] * 6, [-1] * 6, legato=legato) for _ in range(4)]
    out = decode_bars(model, vocab, cond, plans, SamplingConfig(temperature=1.0, top_p=0.95, seed=3))
    return [np.concatenate(seq) for seq in out]


def test_only_lengths_change_and_none_gets_shorter(composer):
    """From the same latents and draws, the pieces decoded with legato have every token the pieces
    without it have, but for Durations, which are as long or longer (some longer); at a legato far
    beyond any used, every note takes the longest length: the decoder still read its own."""
    vocab = composer.tok.vocab
    steps = vocab.config.duration_array
    plain = decoded(composer, 0.0)
    for legato, longest in ((0.5, False), (1000.0, True)):
        held = decoded(composer, legato)
        for a, b in zip(plain, held):
            assert len(a) == len(b)
            is_dur = vocab.kind[a] == DURATION
            assert (vocab.kind[b] == vocab.kind[a]).all() and (a[~is_dur] == b[~is_dur]).all()
            longer = steps[vocab.value[b[is_dur]]] - steps[vocab.value[a[is_dur]]]
            assert (longer >= 0).all()
            if longest:
                assert (vocab.value[b[is_dur]] == len(steps) - 1).all()
        grown = np.concatenate([(b != a)[vocab.kind[a] == DURATION] for a, b in zip(plain, held)])
        assert grown.mean() > 0.1, grown.mean()


def test_generate_and_continuations_hold_notes_longer_and_the_paper_does_not(composer, monkeypatch):
    """`generate` and a continuation decode with `presets.LEGATO`; `--paper` with none."""
    given = []
    decode = sampling.decode_bars

    def spy(model, vocab, cond, plans, *args, **kwargs):
        given.append({p.legato for p in plans})
        return decode(model, vocab, cond, plans, *args, **kwargs)

    monkeypatch.setattr(sampling, "decode_bars", spy)
    composer.generate("sad", bars=2, count=2, seed=1)
    composer.generate("sad", bars=2, seed=1, paper=True)
    prompt = composer.tok.grid(composer.tok.load("p.mid", data=midi_bytes([(0, False, scale(bars=2))])))
    composer.continuation(prompt, 2, seed=1)
    assert given == [{LEGATO}, {0.0}, {LEGATO}] and LEGATO > 0
