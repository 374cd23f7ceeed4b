"""Emotions over time: how a trajectory is read, how its bars glide from one emotion to the
next, and that generate writes each segment where its latents say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli, scale
from emocompose.errors import EXIT_USAGE, UsageError
from emocompose.trajectory import Segment, label, plan, weights


def test_a_named_trajectory_is_its_segments_and_a_plain_emotion_fills_the_piece():
    segs = plan("calm:8,Q2:6,happy:4", None, None, None, 20)
    assert [(s.bars, s.emotion, s.levels) for s in segs] == [(8, "calm", (-1.0, 1.0)), (6, "tense", (1.0, -1.0)),
                                                             (4, "happy", (1.0, 1.0))]  # fmt: skip
    assert label(segs) == "calm-tense-happy"
    assert plan("sad", None, None, None, 20) == [Segment(20, (-1.0, -1.0))]
    assert plan("sad", None, None, 12, 20) == [Segment(12, (-1.0, -1.0))]
    assert plan("sad:4,sad:4", None, None, 8, 20)[1].bars == 4 and label(plan("sad:4,sad:4", None, None, 8, 20)) == "sad"


def test_arousal_and_valence_trajectories_cut_the_piece_where_either_changes():
    segs = plan(None, "0.5:4,-0.5:8", "1:6,-1:6", None, 20)
    assert [(s.bars, s.levels) for s in segs] == [(4, (0.5, 1.0)), (2, (-0.5, 1.0)), (6, (-0.5, -1.0))]
    # a plain value lasts as long as the other axis's written segments
    assert [s.bars for s in plan(None, "0.8", "0.5:3,-0.5:3", None, 20)] == [3, 3]
    assert plan(None, "0.3", "-0.9", None, 20) == [Segment(20, (0.3, -0.9))]


@pytest.mark.parametrize("emotion, arousal, valence, bars, words", [
    ("calm:8,tense:8", None, None, 20, "adds up to 16 bars but --bars is 20"),
    ("calm:0", None, None, None, "at least one bar"),
    ("calm:x", None, None, None, "not a whole number"),
    ("calm:8,tense", None, None, None, "give every segment its bars"),
    ("calm:8,,sad:2", None, None, None, "an empty segment"),
    ("angry:4", None, None, None, "unknown emotion"),
    (None, "0.5:4", "0.5:5", None, "must agree"),
    (None, "1.5", "0", None, r"arousal must be in \[-1, 1\], got 1.5"),
    (None, "high", "0", None, "not a number"),
    (None, "0.5", None, None, "both arousal and valence"),
    ("sad", "0.5", "0.5", None, "not both"),
])  # fmt: skip
def test_a_bad_trajectory_says_what_is_wrong(emotion, arousal, valence, bars, words):
    with pytest.raises(UsageError, match=words):
        plan(emotion, arousal, valence, bars, 20)


def test_the_glide_is_centred_on_each_change_and_no_longer_than_a_segment():
    segs = [Segment(4, (-1, 1)), Segment(4, (1, -1)), Segment(1, (1, 1))]
    w = np.array(weights(segs, 2))
    assert np.allclose(w.sum(1), 1)
    assert w[:, 0].tolist() == [1, 1, 1, 0.75, 0.25, 0, 0, 0, 0]  # bars 3 and 4 glide from calm to tense
    assert w[:, 2].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1]  # a one-bar segment is all its own: no room to glide
    assert np.array_equal(weights(segs, 0), np.repeat(np.eye(3), [4, 4, 1], axis=0))
    w4 = np.array(weights(segs[:2], 4))
    assert w4[:, 1].tolist() == [0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1]


def test_each_bar_is_centred_between_its_segments_and_a_crossing_turns_the_key(tiny_model):
    import torch

    from emocompose.compose import Composer
    from emocompose.latents import centre, prior_latents

    tm = Composer.load(tiny_model).trained
    segs = [Segment(3, (-1.0, 1.0)), Segment(3, (1.0, -1.0)), Segment(2, (0.5, -0.5))]
    z_r, z_k, keys = prior_latents(tm, segs, 4, seed=3, latent_temperature=0.0, transition=2)
    w = torch.tensor(weights(segs, 2))
    for axis, z in ((0, z_r), (1, z_k)):
        for piece in range(4):
            mids = torch.stack([centre(tm, axis, s.levels[axis], None if axis == 0 else keys[piece][k])
                                for k, s in enumerate(segs)])  # fmt: skip
            assert torch.allclose(z[piece], w.to(mids.dtype) @ mids, atol=1e-6)
    for k0, k1, k2 in keys:
        assert k0 < 12 or k1 == k0  # calm in major, or already minor: then no turn
        assert k1 >= 12 or not tm.model.key_means()[1][(k0 + 12) % 24]  # tense in minor when the table knows it
        assert k2 == k1  # the valence stays low: the key stays


def test_generate_writes_a_trajectory_as_one_piece_with_its_segments(tiny_model, tmp_path):
    r = run_cli("generate", "--emotion", "calm:2,tense:3", "-m", tiny_model, "-o", tmp_path / "t.mid", "--json")
    assert r.returncode == 0, r.stderr.decode()
    rec = json.loads(r.stdout)
    assert rec["bars"] == 5 and rec["emotion"] == "calm-tense"
    assert [(s["bars"], s["emotion"]) for s in rec["segments"]] == [(2, "calm"), (3, "tense")]
    bad = run_cli("generate", "--emotion", "calm:2,tense:3", "--bars", "4", "-m", tiny_model, "-o", tmp_path / "u.mid")
    assert bad.returncode == EXIT_USAGE and "--bars is 4" in bad.stderr.decode() and not (tmp_path / "u.mid").exists()


def test_transform_over_time_moves_each_segment_toward_its_own_emotion(tiny_model, write_midi):
    from emocompose.compose import Composer
    from emocompose.melody import find_melody
    from emocompose.rewrite import TEMPO_STEPS

    c = Composer.load(tiny_model)
    path = write_midi("tune.mid", [(0, False, scale(60, bars=4, beats=1.0, vel=70))])  # C major, one line
    src = c.tok.grid(c.tok.load(str(path)))
    r = c.transform(src, "calm:2,tense:2", 1.0, source="happy")
    assert r.emotion == "calm-tense" and [s["emotion"] for s in r.info["segments"]] == ["calm", "tense"]
    # happy -> calm slows the first half, happy -> tense keeps the second half's arousal
    assert (r.grid.bar_tempo - src.bar_tempo).tolist() == [-TEMPO_STEPS, -TEMPO_STEPS, 0, 0]
    # the melody is held, each segment's bars in the mode that segment's emotion alone gives them
    out = find_melody(r.grid, c.tok.config)
    alone = {to: find_melody(c.transform(src, to, 1.0, source="happy").grid, c.tok.config) for to in ("calm", "tense")}
    assert out.step.tolist() == alone["calm"].step.tolist() == alone["tense"].step.tolist()
    first = out.bar < 2
    assert np.array_equal(out.pitch[first], alone["calm"].pitch[first])
    assert np.array_equal(out.pitch[~first], alone["tense"].pitch[~first])
    assert not np.array_equal(alone["calm"].pitch[~first], alone["tense"].pitch[~first])  # the modes differ there


def test_transform_over_time_must_cover_the_piece(tiny_model, write_midi, tmp_path):
    path = write_midi("four.mid", [(0, False, scale(60, bars=4))])
    r = run_cli("transform", path, "--to", "calm:2,tense:3", "-m", tiny_model, "-o", tmp_path / "o.mid")
    err = r.stderr.decode()
    assert r.returncode == 3 and str(path) in err and "add up to 5 bars but the piece has 4" in err, err
    assert not (tmp_path / "o.mid").exists()
    bad = run_cli("transform", path, "--to", "calm:2,angry:2", "-m", tiny_model, "-o", tmp_path / "o.mid")
    assert bad.returncode == EXIT_USAGE and "unknown emotion" in bad.stderr.decode()
