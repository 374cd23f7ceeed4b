"""tokenize -> decode round trips on in-code fixtures and real files, and vocabulary versioning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import EMOPIA, POP909, midi_bytes, needs, run_cli, scale
from emocompose.errors import InputError, ModelError
from emocompose.tokenizer import BAR, Tokenizer, TokenizerConfig, Vocab

TOK = Tokenizer()


def roundtrip(data: bytes, name="x.mid", beats="ignore"):
    """Tokens of a file, and tokens of the MIDI decoded from them (must be equal)."""
    piece = TOK.load(name, data=data, beats=beats)
    grid = TOK.grid(piece)
    ids, offsets = TOK.encode(grid)
    back = TOK.to_midi(TOK.decode(ids))
    ids2, offsets2 = TOK.encode(TOK.grid(TOK.load("back.mid", data=back, beats="ignore")))
    return piece, grid, ids, offsets, ids2, offsets2


FIXTURES = {
    "chords": ([(0, False, [(60, 80, 0, 1), (64, 80, 0, 1), (67, 80, 0, 1), (65, 70, 1, 2), (69, 70, 1, 2)])],),
    "tie_across_bars": ([(0, False, [(60, 90, 3, 6), (72, 50, 3.5, 4.75), (55, 64, 7.75, 9)])],),
    "tempo_changes": ([(0, False, scale(bars=4))], ((0, 90.0), (4, 140.0), (10, 60.0))),
    "meter_changes": ([(0, False, scale(bars=6))], ((0, 120.0),), ((0, 4, 4), (8, 3, 4), (14, 6, 8), (20, 5, 4))),
    "several_tracks": ([(0, False, scale()), (33, False, [(36, 100, b, b + 2) for b in range(0, 16, 2)]),
                        (48, False, [(72, 60, 0, 8), (76, 60, 8, 16)]), (25, False, [(64, 70, 1, 1.5)])],),
    "drums": ([(0, False, scale(bars=2)), (0, True, [(36, 110, b / 2, b / 2 + 0.1) for b in range(16)])],),
}  # fmt: skip


@pytest.mark.parametrize("name", FIXTURES, ids=list(FIXTURES))
def test_fixture_roundtrip_keeps_every_note(name):
    piece, grid, ids, offsets, ids2, offsets2 = roundtrip(midi_bytes(*FIXTURES[name]))
    assert np.array_equal(ids, ids2)
    assert np.array_equal(offsets, offsets2)
    # every source note is in the grid with its onset, pitch, track, velocity and duration bins
    cfg = TOK.config
    g = TOK.decode(ids)
    assert g.n_notes == len(piece.pitch) == grid.n_notes
    onset_steps = g.onsets
    expected = piece.onset * cfg.positions_per_quarter // piece.tpq  # fixtures sit on the 16th grid
    # durations in grid steps, to the nearest bin (a drum hit shorter than a step: the shortest)
    lengths = cfg.duration_array[cfg.duration_bin(piece.duration * cfg.positions_per_quarter / piece.tpq)]
    assert sorted(zip(onset_steps, g.pitch, g.track, cfg.duration_array[g.dur])) == \
        sorted(zip(expected, piece.pitch, piece.track, lengths))  # fmt: skip
    assert sorted(g.vel) == sorted(cfg.velocity_bin(piece.velocity))


def test_meter_sets_bar_length():
    _, grid, ids, *_ = roundtrip(midi_bytes(*FIXTURES["meter_changes"]))
    assert grid.bar_positions.tolist()[:2] == [16, 16]
    assert 12 in grid.bar_positions  # 3/4 and 6/8
    assert 20 in grid.bar_positions  # 5/4
    names = TOK.names(ids)
    assert names[0] == "Bar-16" and "Bar-12" in names and "Bar-20" in names


def test_tempo_tokens_follow_changes():
    _, grid, ids, *_ = roundtrip(midi_bytes(*FIXTURES["tempo_changes"]))
    values = TOK.config.tempo_values[grid.bar_tempo]
    assert abs(values[0] - 90) / 90 < 0.03 and abs(values[1] - 140) / 140 < 0.03
    assert len(grid.tempo_bin) == 1 and grid.tempo_pos[0] == 8  # the change at beat 10 is mid-bar


def test_duration_bin_is_the_nearest_bin():
    """The lookup table on ceil(2 * steps) agrees with a search of the bin midpoints, ties included."""
    cfg = TOK.config
    bins = cfg.duration_array.astype(float)
    steps = np.concatenate([np.linspace(0.01, 80, 20_001), (bins[1:] + bins[:-1]) / 2, bins, [500.0]])
    nearest = np.searchsorted((bins[1:] + bins[:-1]) / 2, steps, side="left")
    assert np.array_equal(cfg.duration_bin(steps), nearest)


def test_one_meter_shortcut_equals_the_bar_search():
    """quantize finds bars by division when all bars are alike; an odd last bar forces the
    general search, and every note must land in the same place."""
    from dataclasses import replace

    from emocompose.tokenizer import quantize

    piece = TOK.load("x.mid", data=midi_bytes(*FIXTURES["tie_across_bars"]), beats="ignore")
    uneven = replace(piece, bars=np.append(piece.bars, piece.bars[-1] + 7), bar_positions=np.append(piece.bar_positions, 3))
    a, b = quantize(piece, TOK.config), quantize(uneven, TOK.config)
    for f in ("bar", "pos", "track", "pitch", "vel", "dur"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f


def test_drums_and_tracks_use_their_classes():
    _, grid, ids, *_ = roundtrip(midi_bytes(*FIXTURES["drums"]))
    names = set(TOK.names(ids))
    assert "Pitch-Drums-36" in names and "Pitch-Piano-60" in names


def test_bars_over_L_are_kept_not_dropped():
    notes = [(30 + i, 80, 0, 0.25) for i in range(60)]  # 60 notes on one step: 184 tokens
    _, grid, ids, offsets, ids2, _ = roundtrip(midi_bytes([(0, False, notes)]))
    assert np.diff(offsets).max() > TOK.config.max_bar_tokens
    assert np.array_equal(ids, ids2)


@needs(EMOPIA)
def test_real_emopia_roundtrip():
    """Every 97th EMOPIA clip (12 of 1,078); one test, so a clone without the data skips one."""
    for f in sorted(EMOPIA.glob("*.mid"))[::97]:
        _, _, ids, _, ids2, _ = roundtrip(f.read_bytes(), f.name)
        assert np.array_equal(ids, ids2), f.name


@needs(POP909)
def test_real_pop909_roundtrip_with_beat_file():
    for song in ("001", "250", "617", "909"):
        piece = TOK.load(POP909 / song / f"{song}.mid")  # bars from beat_midi.txt
        assert piece.bar_bpm is not None and np.median(piece.bar_positions) == 16
        ids, _ = TOK.encode(TOK.grid(piece))
        back = TOK.to_midi(TOK.decode(ids))
        ids2, _ = TOK.encode(TOK.grid(TOK.load("b.mid", data=back, beats="ignore")))
        assert np.array_equal(ids, ids2), song


def test_bar_offsets_point_at_bar_tokens():
    _, _, ids, offsets, *_ = roundtrip(midi_bytes(*FIXTURES["several_tracks"]))
    assert (TOK.vocab.kind[ids[offsets[:-1]]] == BAR).all() and offsets[-1] == len(ids)


def test_vocabulary_of_another_config_is_refused():
    other = Vocab(TokenizerConfig(velocity_bins=16))
    with pytest.raises(ModelError, match="different token vocabulary"):
        Vocab.from_dict({**other.to_dict(), "fingerprint": "0" * 16})
    with pytest.raises(ModelError, match="version"):
        Vocab.from_dict({**TOK.vocab.to_dict(), "version": 999})
    assert Vocab.from_dict(TOK.vocab.to_dict()).names == TOK.vocab.names


def test_tokens_json_refuses_other_vocabulary():
    ids, offsets = TOK.encode(TOK.grid(TOK.load("x.mid", data=midi_bytes(*FIXTURES["chords"]))))
    text = TOK.to_json(ids, offsets)
    assert np.array_equal(TOK.from_json(text)[:-1], ids)
    d = json.loads(text)
    d["vocab_fingerprint"] = "ffffffffffffffff"
    with pytest.raises(InputError, match="vocabulary"):
        TOK.from_json(json.dumps(d))


def test_cli_tokenize_detokenize(tmp_path, write_midi):
    src = write_midi("a.mid", *FIXTURES["several_tracks"])
    r = run_cli("tokenize", src, "-o", tmp_path / "a.json")
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "a.json").read_text())
    assert d["tokens"][0] == "Bar-16" and d["tokens"][-1] == "EOS" and len(d["ids"]) == len(d["tokens"])
    r = run_cli("detokenize", tmp_path / "a.json", "-o", tmp_path / "b.mid")
    assert r.returncode == 0, r.stderr
    a = TOK.encode(TOK.grid(TOK.load(src)))[0]
    b = TOK.encode(TOK.grid(TOK.load(tmp_path / "b.mid")))[0]
    assert np.array_equal(a, b)


def test_playable_grid_is_what_a_midi_file_keeps():
    """Decoded notes that a MIDI file cannot hold are made playable, and then the file holds
    exactly them: a re-struck pitch ends the sounding note, a doubled note goes, the end cuts."""
    from emocompose.midi import GUITAR, PIANO
    from emocompose.grid import Grid

    steps = TOK.config.duration_array
    dur = lambda n: int(np.flatnonzero(steps == n)[0])  # noqa: E731
    # (bar, pos, track, pitch, duration in steps), sorted as a decoder writes them
    notes = [(0, 0, PIANO, 60, 16), (0, 0, PIANO, 64, 8), (0, 0, PIANO, 64, 3), (0, 2, GUITAR, 60, 4),
             (0, 4, PIANO, 60, 2), (1, 12, PIANO, 67, 16)]  # fmt: skip
    b, p, t, n, d = map(np.array, zip(*notes))
    g = Grid(np.array([16, 16]), np.array([20, 20]), b, p, t, n, np.full(len(b), 20), np.array([dur(x) for x in d]))
    out = g.playable(TOK.config)
    got = list(zip(out.onsets.tolist(), out.track.tolist(), out.pitch.tolist(), steps[out.dur].tolist()))
    assert got == [(0, PIANO, 60, 4), (0, PIANO, 64, 8), (2, GUITAR, 60, 4), (4, PIANO, 60, 2), (28, PIANO, 67, 4)]
    back = TOK.grid(TOK.load("x.mid", data=TOK.to_midi(out)))
    for k in ("bar", "pos", "track", "pitch", "vel", "dur"):
        assert np.array_equal(getattr(back, k), getattr(out, k)), k
