"""Shares held near real music's while decoding (`share`): the targets per emotion and bar, what
`generate` and continuations give `bass` and `top_voice`, and when a share is steered at all."""

from __future__ import annotations

import pytest

from conftest import midi_bytes, scale
from emocompose import bass, share, top_voice
from emocompose.compose import Composer
from emocompose.emotions import NAMES
from emocompose.presets import BASS_ONSETS, TOP_STEPS
from emocompose.trajectory import Segment, plan

TABLE = {"happy": 0.3, "tense": 0.4, "sad": 0.1, "calm": 0.2}


@pytest.fixture(scope="module")
def composer(tiny_model):
    return Composer.load(tiny_model)


def test_targets_are_each_emotions_share_and_glide_between_them():
    """A piece of one emotion is held to that emotion's share in every bar; the centre of the
    plane to the four quadrants' mean; a piece turning from calm to tense to calm's, then tense's,
    with the bars of the glide between the two."""
    for name in NAMES:
        assert share.per_bar(TABLE, plan(name, None, None, 6, 6), 2) == pytest.approx([TABLE[name]] * 6)
    assert share.per_bar(TABLE, [Segment(4, (0.0, 0.0))], 2) == pytest.approx([0.25] * 4)
    turn = share.per_bar(TABLE, plan("calm:8,tense:8", None, None, None, 16), 4)
    assert turn[:6] == pytest.approx([0.2] * 6) and turn[10:] == pytest.approx([0.4] * 6)
    assert all(0.2 < t < 0.4 for t in turn[6:10]) and turn[6:10] == sorted(turn[6:10])
    for name in NAMES:  # each share by its own table: real music's
        assert bass.targets(plan(name, None, None, 6, 6), 2) == pytest.approx([BASS_ONSETS[name]] * 6)
        assert top_voice.targets(plan(name, None, None, 6, 6), 2) == pytest.approx([TOP_STEPS[name]] * 6)


def test_the_odds_move_by_target_over_share_within_the_cap_and_the_window():
    """No steering in the opening bar, for a sequence without a target, or before MIN_EVENTS
    choices; then target / share over the last WINDOW bars and this one, capped either way."""
    s = share.Share([[0.5] * 8, None], bars=8, cap=4.0)
    for _ in range(share.MIN_EVENTS - 1):
        s.count(0, 1, True)
        s.count(1, 1, False)
    assert s.factor(0, 1) is None and s.factor(0, 0) is None and s.factor(1, 1) is None
    s.count(0, 1, False)  # 3 of 4 went the way counted: 0.5 / 0.75
    assert s.factor(0, 1) == pytest.approx(2 / 3)
    for _ in range(12):
        s.count(0, 2, False)
    assert s.factor(0, 2) == pytest.approx(0.5 * 16 / 3)
    assert s.factor(0, 2 + share.WINDOW) == pytest.approx(4.0)  # bar 1 has left the window: capped
    assert s.factor(0, 3 + share.WINDOW) is None  # bar 2 too: no choices left in it


def test_a_gain_grows_once_a_bar_while_the_share_stays_off_its_target():
    """With a rate, the odds' multiplier is a gain multiplied once a bar by (target / share) ** rate:
    a share held at half its target doubles the gain every two bars at rate 0.5, up to the cap,
    however often it is asked for in a bar; proportional odds would stay at 2."""
    s = share.Share([[0.5] * 12], bars=12, cap=3.0, rate=0.5)
    gains = []
    for bar in range(1, 6):
        s.count(0, bar, True)
        for _ in range(3):
            s.count(0, bar, False)
        gains.append(s.factor(0, bar))
        assert s.factor(0, bar) == gains[-1]
    assert gains == pytest.approx([2**0.5, 2, 2**1.5, 3, 3])


@pytest.fixture
def targets_given(monkeypatch):
    """What each decoding gives its shares, in order: (the share's class, the targets, the first bar steered)."""
    given = []
    init = share.Share.__init__

    def spy(self, targets, bars, cap, first=1, rate=None):
        given.append((type(self).__name__, targets, first))
        init(self, targets, bars, cap, first, rate)

    monkeypatch.setattr(share.Share, "__init__", spy)
    return given


def test_generate_holds_both_shares_and_the_papers_way_leaves_them_to_the_model(composer, targets_given):
    """`generate` gives every piece its emotion's targets, bar by bar, from its second bar; `--paper`,
    the paper's operations exactly, gives none."""
    composer.generate("calm:4,sad:4", seed=4)
    composer.generate("sad", bars=8, seed=4, paper=True)
    turn = plan("calm:4,sad:4", None, None, None, 8)
    assert targets_given == [("Bass", [bass.targets(turn, 2)], 1), ("TopVoice", [top_voice.targets(turn, 2)], 1),
                             ("Bass", [None], 1), ("TopVoice", [None], 1)]  # fmt: skip


def test_a_continuation_keeps_the_shares_its_prompt_has(composer, targets_given):
    """The new bars are held, from their first bar on (the prompt's bars come before it), to the
    prompt's shares: a C2 under every fourth note of three bars of a scale puts one onset in four
    in the bass, and the scale's line steps at all but one of its 11 moves (the octave back down).
    A prompt without a left hand is left to the model there."""
    left = [(36, 80, b, b + 1) for b in range(0, 12, 4)]
    for notes in (scale(bars=3) + left, scale(bars=3)):
        prompt = composer.tok.grid(composer.tok.load("p.mid", data=midi_bytes([(0, False, notes)])))
        composer.continuation(prompt, 3, seed=1)
    steps = [10 / 11] * 3
    assert targets_given == [("Bass", [[0.25] * 3], 0), ("TopVoice", [pytest.approx(steps)], 0),
                             ("Bass", [None], 0), ("TopVoice", [pytest.approx(steps)], 0)]  # fmt: skip
