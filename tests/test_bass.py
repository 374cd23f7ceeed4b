"""The left hand (`bass`): each generated piece's share of onsets that begin below C3 held near
real music's for its emotion, from either side, without raising what the range rule holds back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import midi_bytes, prefer, scale
from emocompose import bass
from emocompose.compose import Composer
from emocompose.emotions import NAMES
from emocompose.midi import DRUMS, PIANO
from emocompose.presets import BASS_ONSETS
from emocompose.sampling import BarPlan, SamplingConfig, decode_bars
from emocompose.trajectory import Segment, plan


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
    for _ in range(bass.MIN_ONSETS):
        steer.wrote(0, 0, vocab.pitch0 + 128 * PIANO + 60)
    logits = np.zeros(len(ids))
    assert np.array_equal(steer.steer(0, 0, ids, logits, 0, 6, None), logits)
    far = np.array([True, False, False, False, False, False])  # the lowest, beyond the range played
    moved = steer.steer(0, 1, ids, logits, 0, 6, far)
    assert np.allclose(moved, np.log(bass.CAP) * np.array([0, 1, 1, 0, 0, 0, 0]))
    assert np.array_equal(bass.Bass(vocab, [None], bars=3).steer(0, 1, ids, logits, 0, 6, None), logits)


def test_targets_are_real_musics_share_for_each_emotion_and_glide_between_them():
    """A piece of one emotion is held to that emotion's share in every bar; the centre of the
    plane to the four quadrants' mean; a piece turning from calm to tense to calm's, then tense's,
    with the bars of the glide between the two."""
    for name in NAMES:
        assert bass.targets(plan(name, None, None, 6, 6), 2) == pytest.approx([BASS_ONSETS[name]] * 6)
    assert bass.targets([Segment(4, (0.0, 0.0))], 2) == pytest.approx([np.mean(list(BASS_ONSETS.values()))] * 4)
    turn = bass.targets(plan("calm:8,tense:8", None, None, None, 16), 4)
    calm, tense = BASS_ONSETS["calm"], BASS_ONSETS["tense"]
    assert turn[:6] == pytest.approx([calm] * 6) and turn[10:] == pytest.approx([tense] * 6)
    assert all(calm < t < tense for t in turn[6:10]) and turn[6:10] == sorted(turn[6:10])


@pytest.fixture
def targets_given(monkeypatch):
    """What each decoding gives `Bass`, in order: (the targets, the first bar steered)."""
    given = []
    init = bass.Bass.__init__

    def spy(self, vocab, targets, bars, first=1):
        given.append((targets, first))
        init(self, vocab, targets, bars, first)

    monkeypatch.setattr(bass.Bass, "__init__", spy)
    return given


def test_generate_holds_the_left_hand_and_the_papers_way_leaves_it_to_the_model(composer, targets_given):
    """`generate` gives every piece its emotion's targets, bar by bar, from its second bar; `--paper`,
    the paper's operations exactly, gives none."""
    composer.generate("calm:4,sad:4", seed=4)
    composer.generate("sad", bars=8, seed=4, paper=True)
    assert targets_given == [([bass.targets(plan("calm:4,sad:4", None, None, None, 8), 2)], 1), ([None], 1)]


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


def test_a_continuation_keeps_the_left_hand_its_prompt_has(composer, targets_given):
    """The new bars are held, from their first bar on (the prompt's bars come before it), to the
    share of the prompt's onsets that begin below C3, here one in four; a prompt without a left
    hand is left to the model."""
    left = [(36, 80, b, b + 1) for b in range(0, 8, 4)]  # a C2 under every fourth of the scale's notes
    for notes in (scale(bars=2) + left, scale(bars=2)):
        prompt = composer.tok.grid(composer.tok.load("p.mid", data=midi_bytes([(0, False, notes)])))
        composer.continuation(prompt, 3, seed=1)
    assert targets_given == [([[0.25] * 3], 0), ([None], 0)]
