"""The left hand (`bass`): each generated piece's share of onsets that begin below C3 held near
real music's for its emotion, from either side, without raising what the range rule holds back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import midi_bytes, prefer
from emocompose import bass, share
from emocompose.compose import Composer
from emocompose.midi import DRUMS, PIANO
from emocompose.sampling import BarPlan, SamplingConfig, decode_bars


@pytest.fixture(scope="module")
def composer(tiny_model):
    return Composer.load(tiny_model)


def test_the_left_hand_moves_toward_its_target_from_either_side(composer, monkeypatch):
    """From the same latents and draws, pieces held to most onsets in the bass begin more of them
    there than the model alone does, and pieces held to none begin fewer. The model here loves
    every piano key alike and a new onset after most notes."""
    model, vocab = composer.trained.model, composer.tok.vocab
    steps = vocab.config.duration_array
    prefer(monkeypatch, model, vocab, ((vocab.pitch0 + 128 * PIANO + np.arange(128), 50.0),
                                       (vocab.dur0 + len(steps) * PIANO + np.flatnonzero(steps <= 4), 100.0),
                                       (vocab.pos0 + np.arange(16), 55.0)))  # fmt: skip
    cond = torch.randn(6, 8, model.config.d, generator=torch.Generator().manual_seed(0))
    share = {}
    for target in (0.9, None, 0.0):
        plans = [BarPlan([16] * 8, [-1] * 8, bass=None if target is None else [target] * 8) for _ in range(6)]
        out = decode_bars(model, vocab, cond, plans, SamplingConfig(temperature=1.0, top_p=1.0, seed=1))
        share[target] = np.mean([bass.onset_share(composer.tok.decode(np.concatenate(seq))) for seq in out])
    # the odds move by target / share: from about 0.63 alone, by 1.4 toward 0.9 and by CAP toward 0
    assert share[0.9] > share[None] + 0.05 and share[0.0] < share[None] - 0.1, share


def test_only_bass_pitches_within_reach_are_raised_and_by_at_most_the_cap(composer):
    """With no onset in the bass so far, the pitches below C3 that the range rule lets through
    are raised by CAP; a pitch it holds back, the pitches above C3, the drums' and the other
    tokens stay as the model gave them. The first bar is the model's own."""
    vocab = composer.tok.vocab
    pitches = vocab.pitch0 + 128 * PIANO + np.array([30, 40, 47, 48, 60])
    drum = vocab.pitch0 + 128 * DRUMS + 36
    ids = np.r_[pitches, drum, vocab.tempo0]
    steer = bass.Bass(vocab, [[0.5] * 3], bars=3)
    for _ in range(share.MIN_EVENTS):
        steer.wrote(0, 0, vocab.pitch0 + 128 * PIANO + 60)
    logits = np.zeros(len(ids))
    assert np.array_equal(steer.steer(0, 0, ids, logits, 0, 6, None), logits)
    far = np.array([True, False, False, False, False, False])  # the lowest, beyond the range played
    moved = steer.steer(0, 1, ids, logits, 0, 6, far)
    assert np.allclose(moved, np.log(bass.CAP) * np.array([0, 1, 1, 0, 0, 0, 0]))
    assert np.array_equal(bass.Bass(vocab, [None], bars=3).steer(0, 1, ids, logits, 0, 6, None), logits)


def test_the_share_counts_each_onset_by_its_lowest_pitched_note(composer):
    """Four onsets in bar 1: a chord over C2, a lone C4, a kick under a C4 (drums are sounds, not
    the left hand) and a low A2 alone; bar 2 holds one more onset, over C2."""
    piano = [(36, 80, 0, 1), (60, 80, 0, 1), (64, 80, 0, 1), (60, 80, 1, 2), (62, 80, 2, 3), (45, 80, 3, 4),
             (36, 80, 4, 5)]  # fmt: skip
    drums = [(36, 100, 2, 2.5)]
    grid = composer.tok.grid(composer.tok.load("x.mid", data=midi_bytes([(0, False, piano), (0, True, drums)])))
    assert bass.onset_share(grid, (0, 1)) == pytest.approx(0.5)
    assert bass.onset_share(grid) == pytest.approx(0.6)
    assert np.isnan(bass.onset_share(grid, (2, None)))
