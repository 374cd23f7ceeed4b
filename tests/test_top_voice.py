"""The top voice (`top_voice`): each generated piece's share of onsets whose highest note moves by
a step held near real music's, from either side, counted as the measure reads it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import midi_bytes, prefer
from emocompose import top_voice
from emocompose.compose import Composer
from emocompose.hardware import torch_threads
from emocompose.midi import DRUMS, PIANO
from emocompose.sampling import BarPlan, SamplingConfig, decode_bars


@pytest.fixture(scope="module")
def composer(tiny_model):
    return Composer.load(tiny_model)


def test_the_top_voice_moves_toward_its_target_from_either_side(composer, monkeypatch):
    """From the same latents and draws, pieces held to mostly steps step more than the model alone,
    and pieces held to none step less. The model here loves the keys of an octave alike and a new
    onset after most notes. What the decoder counted is what `step_share` reads in its output."""
    model, vocab = composer.trained.model, composer.tok.vocab
    steps = vocab.config.duration_array
    prefer(monkeypatch, model, vocab, ((vocab.pitch0 + 128 * PIANO + np.arange(60, 73), 50.0),
                                       (vocab.dur0 + len(steps) * PIANO + np.flatnonzero(steps <= 4), 100.0),
                                       (vocab.pos0 + np.arange(16), 55.0)))  # fmt: skip
    counters = []
    init = top_voice.TopVoice.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        counters.append(self)

    monkeypatch.setattr(top_voice.TopVoice, "__init__", spy)
    cond = torch.randn(6, 8, model.config.d, generator=torch.Generator().manual_seed(0))
    share = {}
    for target in (0.9, None, 0.0):
        plans = [BarPlan([16] * 8, [-1] * 8, top_steps=None if target is None else [target] * 8) for _ in range(6)]
        counters.clear()
        with torch_threads(1):  # every part of the batch decodes in this process, where the spy sees it
            out = decode_bars(model, vocab, cond, plans, SamplingConfig(temperature=1.0, top_p=1.0, seed=1))
        grids = [composer.tok.decode(np.concatenate(seq)) for seq in out]
        share[target] = np.mean([top_voice.step_share(g) for g in grids])
        counted = np.concatenate([c.hits.sum(1) / c.events.sum(1) for c in counters])
        assert counted == pytest.approx([top_voice.step_share(g) for g in grids])
    # alone, about 0.28 (of 13 keys alike, 5 or fewer lie within a whole tone); the odds move by at most
    # CAP, and not in the first bar
    assert share[0.9] > share[None] + 0.08 and share[0.0] < share[None] - 0.05, share


def test_only_pitches_within_a_step_of_the_last_top_are_raised(composer):
    """After onsets that leapt, the pitches within a whole tone of the previous onset's highest
    note that the range rule lets through are raised, in the first bar steered by CAP ** RATE
    (`share`: the gain's first move, by target / share capped at CAP); a pitch it holds back, the pitches
    further away, the drums' and the other tokens stay as the model gave them. The first bar is
    the model's own, and so is a piece before its first onset."""
    vocab = composer.tok.vocab
    piano = lambda p: vocab.pitch0 + 128 * PIANO + p  # noqa: E731
    ids = np.r_[piano(np.array([57, 58, 60, 62, 63])), vocab.pitch0 + 128 * DRUMS + 60, vocab.tempo0]
    steer = top_voice.TopVoice(vocab, [[0.5] * 3], bars=3)
    logits = np.zeros(len(ids))
    assert np.array_equal(steer.steer(0, 1, ids, logits, 0, 6, None), logits)  # no onset yet
    for p in (48, 67, 48, 67, 48, 60):  # leaps of a fifth and more, ending on C4
        steer.wrote(0, piano(p - 12))  # a chord: its highest note counts
        steer.wrote(0, piano(p))
        steer.onset_over(0, 0)
    assert np.array_equal(steer.steer(0, 0, ids, logits, 0, 6, None), logits)
    far = np.array([False, False, False, True, False, False])  # D4, beyond the range played
    moved = steer.steer(0, 1, ids, logits, 0, 6, far)
    assert np.allclose(moved, np.log(top_voice.CAP**top_voice.RATE) * np.array([0, 1, 1, 0, 0, 0, 0]))


def test_the_share_reads_the_highest_pitched_note_of_each_onset(composer):
    """A C major chord (top G4), then A4 (a step), a kick over F4 (drums are sounds, not the line:
    a third down), G4 (a step) and C6 (a leap): two steps in four moves."""
    piano = [(48, 80, 0, 1), (60, 80, 0, 1), (64, 80, 0, 1), (67, 80, 0, 1), (69, 80, 1, 2), (65, 80, 2, 3),
             (67, 80, 3, 4), (84, 80, 4, 5)]  # fmt: skip
    drums = [(76, 100, 2, 2.5)]
    grid = composer.tok.grid(composer.tok.load("x.mid", data=midi_bytes([(0, False, piano), (0, True, drums)])))
    assert top_voice.step_share(grid) == pytest.approx(0.5)
    assert np.isnan(top_voice.step_share(grid.take(grid.pitch == 84)))
