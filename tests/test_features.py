"""Rhythm and key features, and `analyze`."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import midi_bytes, run_cli, scale
from emocompose import features as F
from emocompose.tokenizer import Tokenizer

TOK = Tokenizer()


def grid_of(*args, **kw):
    return TOK.grid(TOK.load("x.mid", data=midi_bytes(*args, **kw)))


def test_rhythm_counts_onsets_per_sixteenth():
    notes = [(60, 80, 0, 1), (64, 80, 0, 1), (67, 80, 0.25, 1), (72, 80, 3.75, 4), (60, 80, 4, 5)]
    r = F.rhythm(grid_of([(0, False, notes)]))
    assert r.shape == (2, 16)
    assert r[0, 0] == 2 and r[0, 1] == 1 and r[0, 15] == 1 and r[0].sum() == 4 and r[1, 0] == 1


def test_rhythm_of_three_four_spreads_over_sixteen_bins():
    notes = [(60, 80, b, b + 1) for b in range(3)]
    r = F.rhythm(grid_of([(0, False, notes)], meters=((0, 3, 4),)))
    assert r.shape == (1, 16) and r[0].sum() == 3 and r[0, 0] == 1


@pytest.mark.parametrize("root", [0, 2, 7, 9])
@pytest.mark.parametrize("minor", [False, True])
def test_key_of_scales_and_triads(root, minor):
    third = 3 if minor else 4
    notes = scale(60 + root, minor=minor, bars=2)
    notes += [(48 + root, 70, b, b + 4) for b in range(0, 8, 4)]  # tonic bass
    notes += [(48 + root + third, 70, b, b + 4) for b in range(0, 8, 4)]  # its third
    notes += [(55 + root, 70, b, b + 4) for b in range(0, 8, 4)]  # and fifth
    g = grid_of([(0, False, notes)])
    expected = root + (12 if minor else 0)
    assert F.global_key(g, TOK.config) == expected
    assert (F.bar_keys(g, TOK.config) == expected).all()
    assert F.KEY_NAMES[expected].endswith("minor" if minor else "major")


def test_bar_keys_follow_a_modulation():
    c = [(n, 80, b, b + 1) for b, n in enumerate([60, 64, 67, 72] * 4 * 4)]
    d = [(n, 80, 64 + b, 65 + b) for b, n in enumerate([62, 66, 69, 74] * 4 * 4)]
    g = grid_of([(0, False, c + d)])
    keys = F.bar_keys(g, TOK.config)
    assert keys[0] == 0 and keys[-1] == 2  # C major then D major


def test_analyze_json(tmp_path, write_midi):
    p = write_midi("a.mid", [(0, False, scale(57, minor=True, bars=3, vel=70))])
    r = run_cli("analyze", p, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["key"] == "A minor" and info["bars"] == 3 and info["mean_velocity"] == 70
    assert info["notes_per_beat"] == 1.0 and info["tempo_bpm"] == pytest.approx(120, rel=0.03)
    assert len(info["bar_keys"]) == 3 and info["pitch_range"] == 12


def test_analyze_table(write_midi):
    p = write_midi("a.mid", [(0, False, scale())])
    r = run_cli("analyze", p)
    assert r.returncode == 0 and b"C major" in r.stdout and b"notes per beat" in r.stdout


@pytest.mark.parametrize("fmt,suffix", [("musicxml", ".musicxml"), ("abc", ".abc")])
def test_scores_are_read_through_music21(tmp_path, fmt, suffix):
    if fmt == "abc":
        path = tmp_path / "tune.abc"
        path.write_text("X:1\nT:t\nM:4/4\nL:1/4\nK:G\nG B d B | c A F D | G B d g | d2 G2 |]\n")
    else:
        import music21

        s = music21.stream.Stream([music21.meter.TimeSignature("3/4")])
        for p in ["A3", "C4", "E4", "A4", "E4", "C4"]:
            s.append(music21.note.Note(p, quarterLength=1))
        path = tmp_path / "score.musicxml"
        s.write("musicxml", fp=str(path))
    r = run_cli("analyze", path, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["notes"] >= 6 and info["bars"] >= 2
    assert info["key"] == ("G major" if fmt == "abc" else "A minor")


def test_bass_share_counts_the_bars_with_a_pitched_note_below_c3():
    piano = [(36, 70, 0, 4), (60, 80, 0, 1),  # bar 1: a C2 under the melody
             (64, 80, 4, 5),  # bar 2: the right hand alone
             (67, 80, 8, 9),  # bar 3: the right hand over a kick drum (a sound, not a bass note)
             (47, 70, 12, 13), (72, 80, 12, 13),  # bar 4: a B2
             (48, 70, 16, 17)]  # bar 5: C3 itself is not below C3  # fmt: skip
    g = grid_of([(0, False, piano), (0, True, [(36, 100, 8, 8.5)])])
    assert g.n_bars == 5
    assert F.bass_share(g) == pytest.approx(2 / 5)
    no_notes = replace(g, bar=g.bar[:0], pitch=g.pitch[:0], track=g.track[:0])
    assert np.isnan(F.bass_share(no_notes))  # no pitched bar to count
