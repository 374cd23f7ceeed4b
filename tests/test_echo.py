"""A generated bar that echoes the rhythm of the bar a phrase before it: exactly its onsets,
never across a change of emotion, never in the paper's operations."""

from __future__ import annotations

import numpy as np
import pytest

from emocompose.echo import echo_plan
from emocompose.errors import UsageError


def test_the_plan_echoes_the_share_asked_within_a_segment():
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    assert echo_plan(8, 0.0, 4, rng()) == [-1] * 8
    assert echo_plan(8, 1.0, 4, rng()) == [-1, -1, -1, -1, 0, 1, 2, 3]
    assert echo_plan(8, 1.0, 2, rng(), np.array([0, 0, 0, 0, 1, 1, 1, 1])) == [-1, -1, 0, 1, -1, -1, 4, 5]
    many = np.array(echo_plan(10_000, 0.15, 4, rng())) >= 0
    assert many.mean() == pytest.approx(0.15, abs=0.01)
    assert echo_plan(8, 0.5, 4, rng()) == echo_plan(8, 0.5, 4, rng())


def test_an_echoing_bar_repeats_the_onsets_of_its_bar_exactly(tiny_model):
    from emocompose.compose import Composer

    c = Composer.load(tiny_model)
    checked = 0
    for r in c.generate("happy", bars=8, count=6, seed=1, echo=1.0):
        onsets = [sorted(set(r.grid.pos[r.grid.bar == b].tolist())) for b in range(8)]
        for t in range(4, 8):
            if onsets[t - 4]:  # a silent bar leaves the echo free
                assert onsets[t] == onsets[t - 4]
                checked += 1
    assert checked >= 4
    free = [sorted(set(r.grid.pos.tolist())) for r in c.generate("happy", bars=8, count=6, seed=1, echo=0.0)]
    assert free != [sorted(set(r.grid.pos.tolist())) for r in c.generate("happy", bars=8, count=6, seed=1, echo=1.0)]


def test_the_paper_never_echoes_and_a_share_outside_0_1_is_refused(tiny_model):
    from emocompose.compose import Composer

    c = Composer.load(tiny_model)
    a, b = (c.generate("sad", bars=8, seed=2, paper=True, echo=e)[0].grid for e in (0.0, 1.0))
    assert np.array_equal(a.pos, b.pos) and np.array_equal(a.pitch, b.pitch)
    with pytest.raises(UsageError, match="echo"):
        c.generate("sad", bars=2, echo=1.5)
