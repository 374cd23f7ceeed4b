"""transform keeps the piece: the melody found and held note for note under any weights, nothing
above it where it sounds, the source's rhythm held below half way, modes moved by scale degree,
instruments and drums given back, and the bad inputs of the rewrite."""

from __future__ import annotations


import numpy as np
import pytest

from conftest import midi_bytes, run_cli, scale
from emocompose import rewrite
from emocompose.compose import Composer
from emocompose.errors import EXIT_INPUT, EXIT_USAGE, InputError
from emocompose.hold import MelodyHold, check_room, repeated_bars
from emocompose.likeness import likeness
from emocompose.melody import PIANO, find_melody, piano_view, to_mode
from emocompose.midi import DRUMS, TRACKS
from emocompose.sampling import SamplingConfig, decode_bars

C_MAJOR_TUNE = [60, 64, 65, 67, 69, 71, 72, 67]  # C E F G A B C G, a quarter each


def tune(pitches=C_MAJOR_TUNE, start=0.0):
    return [(p, 90, start + i, start + i + 1) for i, p in enumerate(pitches)]


def chords(bars=2, root=48):  # C major triads on every beat, below the tune
    return [(root + d, 60, b, b + 1) for b in range(4 * bars) for d in (0, 4, 7)]


@pytest.fixture(scope="module")
def composer(tiny_model):
    return Composer.load(tiny_model)


def grid_of(composer, tracks):
    return composer.tok.grid(composer.tok.load("t.mid", data=midi_bytes(tracks)))


def test_the_top_voice_is_the_melody_and_a_note_under_a_held_one_is_not(composer):
    held = [(76, 80, 0, 4)]  # E5 held a whole bar: the low notes struck under it are no melody
    g = grid_of(composer, [(0, False, held + [(48, 70, 1, 2), (52, 70, 2, 3), (79, 80, 4, 5)])])
    mel = find_melody(g, composer.tok.config)
    assert mel.pitch.tolist() == [76, 79] and mel.step.tolist() == [0, 16]
    # a single line on top in its own instrument is taken whole, even where it rests
    g = grid_of(composer, [(0, False, chords()), (40, False, tune())])
    mel = find_melody(g, composer.tok.config)
    assert mel.pitch.tolist() == C_MAJOR_TUNE and set(g.track[mel.index].tolist()) == {TRACKS.index("Strings")}


def test_modes_move_by_scale_degree_bar_by_bar(composer):
    g = grid_of(composer, [(0, False, chords(root=48) + tune())])
    cfg = composer.tok.config
    mel = find_melody(g, cfg)
    minor = to_mode(mel, g, cfg, major=False)
    assert minor.pitch.tolist() == [60, 63, 65, 67, 68, 70, 72, 67]  # E, A, B flattened; C, F, G stay
    assert to_mode(minor, g, cfg, major=False).pitch.tolist() == minor.pitch.tolist()  # g is still in C major
    assert to_mode(mel, g, cfg, major=True).pitch.tolist() == C_MAJOR_TUNE  # already major: nothing moves


def hold_decode(composer, grid, mel, held=None, seed=0):
    tm = composer.trained
    view = piano_view(grid)
    plan = tm.plan(view, view.n_bars)
    plan.hold = MelodyHold(composer.tok.vocab, mel, view.bar_starts, held)
    z = tm.encode(view)
    bars = decode_bars(tm.model, composer.tok.vocab, tm.model.condition(z[0][None], z[1][None]), [plan],
                       SamplingConfig(1.0, 1.0, seed))  # fmt: skip
    return bars[0], composer.tok.decode(np.concatenate(bars[0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_hold_writes_every_melody_note_and_nothing_above_it_from_any_weights(composer, seed):
    """The tiny model's weights are random: whatever it wants, the melody comes out note for
    note (pitch, onset, velocity, length) and no other note sounds at or above it."""
    from test_compose import check_bar_grammar

    cfg = composer.tok.config
    g = grid_of(composer, [(0, False, chords(bars=3) + tune(C_MAJOR_TUNE + [74, 76, 77, 79]))])
    mel = find_melody(g, cfg)
    bars, out = hold_decode(composer, g, mel, seed=seed)
    for b, p in zip(bars, g.bar_positions.tolist()):
        check_bar_grammar(b, composer.tok.vocab, p)
    notes = {(s, p): (v, d) for s, p, v, d in zip(out.onsets.tolist(), out.pitch.tolist(), out.vel.tolist(), out.dur.tolist())}
    for s, p, v, d in zip(mel.step.tolist(), mel.pitch.tolist(), mel.vel.tolist(), mel.dur.tolist()):
        assert notes.get((s, p)) == (v, d), (s, p)
    ceiling = mel.ceiling(int(g.bar_starts[-1]), cfg)
    is_mel = {(s, p) for s, p in zip(mel.step.tolist(), mel.pitch.tolist())}
    ends = out.onsets + cfg.duration_array[out.dur]
    for s, e, p in zip(out.onsets.tolist(), ends.tolist(), out.pitch.tolist()):
        if (s, p) not in is_mel:
            assert (ceiling[s : min(e, len(ceiling))] > p).all(), (s, e, p)


@pytest.mark.parametrize("seed", [3, 4])
def test_below_half_way_the_other_notes_keep_the_source_rhythm_and_harmony(composer, seed):
    cfg = composer.tok.config
    g = grid_of(composer, [(0, False, chords(bars=2) + tune())])
    _, out = hold_decode(composer, g, find_melody(g, cfg), held=piano_view(g), seed=seed)
    assert set(out.onsets.tolist()) <= set(g.onsets.tolist())
    struck = {(s, p % 12) for s, p in zip(g.onsets.tolist(), g.pitch.tolist())}
    assert all((s, p % 12) in struck for s, p in zip(out.onsets.tolist(), out.pitch.tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_below_half_way_every_onset_of_the_source_is_kept(composer, seed):
    """Eighths under a tune of half notes: whatever the model would skip, each of the source's
    onsets gets a note (a drawn Position moves to the source's next onset, not past it)."""
    cfg = composer.tok.config
    eighths = [(48 + (7 * k) % 12, 60, k / 2, k / 2 + 0.5) for k in range(16)]
    halves = [(72 + d, 90, 2 * i, 2 * i + 2) for i, d in enumerate([0, 4, 7, 5])]
    g = grid_of(composer, [(0, False, eighths + halves)])
    _, out = hold_decode(composer, g, find_melody(g, cfg), held=piano_view(g), seed=seed)
    assert set(out.onsets.tolist()) == set(g.onsets.tolist())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_below_half_way_each_onset_keeps_its_chord_size_and_lengths(composer, seed):
    """A held bass, short triads and a tune above: each onset gets as many notes as the
    source struck there, with the source's lengths there (all fit below the tune), and no key
    is struck while a note sounds on it (the file would cut that note short)."""
    cfg = composer.tok.config
    bass = [(36, 70, 0, 4), (36, 70, 4, 8)]  # the triads' root sounds under them all
    triads = [(48 + d, 60, b + 0.5, b + 0.75) for b in range(8) for d in (0, 4, 7)]
    g = grid_of(composer, [(0, False, bass + triads + tune(start=0.0))])
    _, out = hold_decode(composer, g, find_melody(g, cfg), held=piano_view(g), seed=seed)
    lengths = lambda grid: sorted(zip(grid.onsets.tolist(), grid.dur.tolist()))  # noqa: E731
    assert lengths(out) == lengths(g)
    assert np.array_equal(out.playable(cfg).dur, out.dur)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_change_of_valence_alone_keeps_the_source_rhythm_at_any_lambda(composer, seed):
    """Happy to tense (and happy turning tense over time) keeps arousal: at lambda 0.5 and 1 the
    rewrite is in the minor mode on the source's onsets, chord sizes and lengths, its C major
    triads made C minor ones, as a key swap does."""
    cfg = composer.tok.config
    bass = [(36, 70, 0, 4), (36, 70, 4, 8)]
    triads = [(48 + d, 60, b + 0.5, b + 0.75) for b in range(8) for d in (0, 4, 7)]
    g = grid_of(composer, [(0, False, bass + triads + tune(start=0.0))])
    lengths = lambda grid: sorted(zip(grid.onsets.tolist(), grid.dur.tolist()))  # noqa: E731
    classes = lambda grid, bar: set((grid.pitch[grid.bar == bar] % 12).tolist())  # noqa: E731
    targets = [("tense", 0.5), ("tense", 1.0), ("happy:1,tense:1", 1.0)]
    for r, (to, _) in zip(composer.transform_many(g, targets, source="happy", seed=seed), targets):
        assert lengths(r.grid) == lengths(g)
        assert find_melody(r.grid, cfg).pitch.tolist()[4:6] == [68, 70]  # A flat, B flat: C minor in bar 2
        assert classes(r.grid, 1) == {0, 3, 7, 8, 10}  # the tune's and C minor's
        assert classes(r.grid, 0) == ({0, 3, 5, 7} if to == "tense" else {0, 4, 5, 7})
        assert np.array_equal(r.grid.bar_tempo, g.bar_tempo)


def test_retimed_thins_runs_toward_low_arousal_and_strikes_again_toward_high(composer):
    """Eighth-note chords under a tune: toward low arousal 3 of a bar's 8 onsets go (each the one
    closest after the one before it) and the rest sound to the bar's end; half notes toward high
    arousal: the first chord is struck again a quarter later; bars of the same arousal and the
    melody stay as they are."""
    cfg = composer.tok.config
    eighths = [(48 + d, 60, k / 2, k / 2 + 0.5) for k in range(16) for d in (0, 4)]
    g = grid_of(composer, [(0, False, eighths + tune())])
    view, mel = piano_view(g), find_melody(g, cfg)
    out = rewrite.retimed(view, cfg, mel, np.array([-1, 0]), 1.0)
    acc = lambda grid, bar: sorted((int(p), int(s), int(d)) for p, s, d, b in zip(  # noqa: E731
        grid.pitch, grid.pos, cfg.duration_array[grid.dur], grid.bar) if b == bar and p < 60)
    assert acc(out, 0) == [(p, s, 16 - s) for p in (48, 52) for s in (0, 4, 8, 12, 14)]
    assert acc(out, 1) == acc(view, 1)
    assert find_melody(out, cfg).pitch.tolist() == mel.pitch.tolist()
    halves = [(48, 60, 2 * k, 2 * k + 2) for k in range(4)]
    g = grid_of(composer, [(0, False, halves + tune())])
    out = rewrite.retimed(piano_view(g), cfg, find_melody(g, cfg), np.array([1, 1]), 1.0)
    assert acc(out, 0) == acc(out, 1) == [(48, 0, 4), (48, 4, 4), (48, 8, 8)]  # 2 onsets: DENSER * 2 struck again


@pytest.mark.parametrize("seed", [0, 1])
def test_keep_texture_holds_the_source_retimed_where_arousal_changes(composer, seed):
    cfg = composer.tok.config
    g = grid_of(composer, [(0, False, [(48 + d, 60, k / 2, k / 2 + 0.5) for k in range(16) for d in (0, 7)] + tune())])
    r = composer.transform(g, "sad", 1.0, source="happy", seed=seed, keep="texture")
    held = rewrite.retimed(rewrite.held_source(piano_view(g), cfg, (0, 0), 1.0), cfg,
                           rewrite.held_melody(g, cfg, (0, 0), 1.0), np.array([-1, -1]), 1.0)  # fmt: skip
    assert sorted(r.grid.onsets.tolist()) == sorted(held.onsets.tolist()) and r.info["keep"] == "texture"
    assert len(set(r.grid.onsets.tolist())) < len(set(g.onsets.tolist()))  # thinner: toward low arousal


def test_below_half_way_a_key_still_sounding_is_not_struck_again(composer):
    """Step by step through the hold: a held C under a whole-note tune takes the source's length,
    the chord at the onset is complete with the melody, and at the next onset the C triad may
    not take the key still sounding (a file would end the held note there) and stays near the
    source's voicing; with no key left near it, a chord ends short."""
    from emocompose.sampling import AFTER_DURATION, AFTER_POSITION, AFTER_VELOCITY
    from emocompose.tokenizer import DURATION, PITCH

    v, cfg = composer.tok.vocab, composer.tok.config
    g = grid_of(composer, [(0, False, [(36, 70, 0, 4), (72, 90, 0, 4)] + [(48 + d, 60, 1, 1.5) for d in (0, 4, 7)])])
    mel = find_melody(g, cfg)
    assert mel.pitch.tolist() == [72]
    hold = MelodyHold(v, mel, g.bar_starts, piano_view(g))
    piano = lambda kind, first: first + PIANO * {PITCH: 128, DURATION: len(cfg.duration_bins)}[kind]  # noqa: E731
    pitches = np.arange(128) + piano(PITCH, v.pitch0)
    every = np.r_[v.pos0 + np.arange(1, 16), pitches, np.arange(len(cfg.duration_bins)) + piano(DURATION, v.dur0)]
    assert hold.settle(pitches[36], 0, True) == pitches[36]  # below the melody: an accompaniment note
    hold.settle(v.vel0 + PIANO * cfg.velocity_bins + 5, 0, False)
    durs, _, _ = hold.restrict(every, 0, AFTER_VELOCITY)
    assert cfg.duration_array[v.value[durs]].tolist() == [16]  # the source's length for it, the melody's taken
    hold.settle(int(durs[0]), 0, False)
    ids, _, _ = hold.restrict(every, 0, AFTER_DURATION)  # the chord is full once the melody comes
    assert pitches[72] in ids and not np.isin(pitches[:72], ids).any()
    hold.settle(int(v.pos0 + 4), 0, True)  # moving on places the melody note
    hold.settle(hold.forced(), 0, False)
    hold.settle(hold.forced(), 0, False)
    assert hold.settle(int(v.pos0 + 9), 0, True) == v.pos0 + 4  # the source's next onset
    ids, _, _ = hold.restrict(every, 4, AFTER_POSITION)
    allowed = set(v.value[ids[v.kind[ids] == PITCH]].tolist())
    assert allowed == {43, 48, 52, 55, 60}  # C, E, G near the source's triad, but not the C still held
    hold.settle(pitches[48], 4, True)
    hold.settle(v.vel0 + PIANO * cfg.velocity_bins + 5, 4, False)
    hold.settle(int(durs[0]), 4, False)
    few = np.r_[pitches[[24, 48]], v.pos0 + np.arange(5, 16)]  # left: the key struck here, one two octaves down
    ids, _, _ = hold.restrict(few, 4, AFTER_DURATION)
    assert not np.isin(pitches, ids).any()  # the chord ends a note short rather than reach that far


def test_a_note_drawn_longer_than_it_may_sound_under_the_melody_is_held_until_the_melody_comes_down(composer):
    from emocompose.sampling import AFTER_VELOCITY
    from emocompose.tokenizer import DURATION

    v, cfg = composer.tok.vocab, composer.tok.config
    g = grid_of(composer, [(0, False, [(72, 90, 0, 2), (60, 90, 2, 4)])])
    hold = MelodyHold(v, find_melody(g, cfg), g.bar_starts)
    durations = np.arange(len(cfg.duration_bins)) + v.dur0 + PIANO * len(cfg.duration_bins)
    hold.settle(v.pitch0 + 128 * PIANO + 64, 0, True)  # E4 under the first melody note
    hold.settle(v.vel0 + PIANO * cfg.velocity_bins + 5, 0, False)
    ids, _, _ = hold.restrict(durations, 0, AFTER_VELOCITY)
    assert len(ids) == len(durations)  # any length may be drawn ...
    cut = hold.settle(int(durations[-1]), 0, False)  # ... and the longest is cut where C4 begins
    assert v.kind[cut] == DURATION and cfg.duration_array[v.value[cut]] == 8


def test_a_bar_too_full_of_melody_is_named(composer):
    g = grid_of(composer, [(0, False, [(60 + i % 12, 80, i / 4, i / 4 + 0.25) for i in range(20)])])  # 16ths
    mel = find_melody(g, composer.tok.config)
    with pytest.raises(InputError, match="bar 1 has 16 melody notes"):
        check_room(mel, g.n_bars, 64)


def test_instruments_and_drums_come_back(composer):
    drums = [(36, 100, b, b + 0.5) for b in range(8)]
    g = grid_of(composer, [(0, True, drums), (40, False, tune()), (25, False, chords(bars=2, root=55)),
                           (33, False, [(36, 90, b, b + 1) for b in range(8)])])  # fmt: skip
    r = composer.transform(g, "sad", 1.0, seed=1)
    out, cfg = r.grid, composer.tok.config
    d_in, d_out = g.track == DRUMS, out.track == DRUMS
    assert np.array_equal(g.onsets[d_in], out.onsets[d_out]) and np.array_equal(g.pitch[d_in], out.pitch[d_out])
    assert set(out.track.tolist()) <= set(g.track.tolist())
    mel = rewrite.held_melody(g, cfg, (0, 0), 1.0)
    strings = out.track == TRACKS.index("Strings")
    assert set(zip(mel.step.tolist(), mel.pitch.tolist())) <= set(zip(out.onsets[strings].tolist(), out.pitch[strings].tolist()))
    assert out.programs == g.programs
    low = out.pitch[(out.track != DRUMS) & ~strings]
    bass = out.track[(out.track != DRUMS) & ~strings] == TRACKS.index("Bass")
    assert (low[bass].max(initial=0) <= low[~bass].min(initial=127))  # the lowest notes go to the bass


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_from_half_way_a_bar_repeated_in_the_source_repeats_the_rewrites_rhythm(composer, seed):
    """Bars 1 and 3 repeat bar 0's onsets and melody rhythm (bar 3 with other pitches), bar 2
    does not: at lambda 0.5 and 1 the model writes the rhythm under the melody, and writes it
    again in bars 1 and 3."""
    bar = lambda b, root, tune_: [(root + d, 60, 4 * b + k + 0.5, 4 * b + k + 1) for k in range(4) for d in (0, 4)] + \
        [(p, 90, 4 * b + k, 4 * b + k + 1) for k, p in enumerate(tune_)]  # noqa: E731
    other = [(48, 60, 8 + k / 2, 8 + k / 2 + 0.5) for k in range(8)] + [(72, 90, 8, 12)]
    g = grid_of(composer, [(0, False, bar(0, 48, [72, 74, 76, 77]) + bar(1, 48, [72, 74, 76, 77]) + other
                           + bar(3, 50, [74, 76, 77, 79]))])  # fmt: skip
    assert repeated_bars(piano_view(g), find_melody(g, composer.tok.config)) == [-1, 0, -1, 1]
    for r in composer.transform_many(g, [("sad", 0.5), ("sad", 1.0)], source="happy", seed=seed):
        onsets = [set(r.grid.pos[r.grid.bar == t].tolist()) for t in range(4)]
        assert onsets[1] == onsets[0] and onsets[3] == onsets[0]


def test_lambda_zero_gives_the_piece_back_and_one_moves_mode_tempo_and_dynamics(composer):
    cfg = composer.tok.config
    g = grid_of(composer, [(0, False, chords(bars=2) + tune())])
    same, moved = composer.transform_many(g, [("sad", 0.0), ("sad", 1.0)], source="happy", seed=2)
    assert likeness(g, same.grid, cfg)["melody_kept"] == 1.0 and likeness(g, same.grid, cfg)["melody_on_top"] == 1.0
    assert np.array_equal(same.grid.bar_tempo, g.bar_tempo)
    kept = find_melody(g, cfg)
    heard = find_melody(moved.grid, cfg)
    assert heard.step.tolist() == kept.step.tolist()
    assert heard.pitch.tolist() == [60, 63, 65, 67, 68, 70, 72, 67]
    assert (moved.grid.bar_tempo == g.bar_tempo - rewrite.TEMPO_STEPS).all()
    vel = lambda grid, m: cfg.velocity_value(grid.vel[m.index]).mean()
    assert vel(moved.grid, heard) < vel(g, kept)  # quieter toward low arousal, not beyond the target's
    assert vel(moved.grid, heard) >= rewrite.TARGET_VELOCITY[0] - 3
    rest = np.ones(moved.grid.n_notes, bool)
    rest[heard.index] = False  # the other notes follow too: down to the target's mean, no further
    assert cfg.velocity_value(moved.grid.vel[rest]).mean() <= rewrite.TARGET_VELOCITY[0] + 3
    paper = composer.transform(g, "sad", 1.0, source="happy", seed=2, paper=True)
    assert np.array_equal(paper.grid.bar_tempo, g.bar_tempo)  # the paper's operation: the latents alone


def test_keep_none_is_the_latents_alone(composer):
    g = grid_of(composer, [(0, False, chords(bars=2) + tune())])
    r = composer.transform(g, "sad", 1.0, seed=2, keep="none")
    assert r.info["keep"] == "none" and r.grid.n_bars == g.n_bars


def test_cli_keep_and_inputs_with_nothing_to_rewrite(tiny_model, tmp_path):
    r = run_cli("transform", "x.mid", "--to", "sad", "--keep", "tune", "--model", tiny_model)
    assert r.returncode == EXIT_USAGE and "keep must be melody, texture or none" in r.stderr.decode()
    drums = tmp_path / "drums.mid"
    drums.write_bytes(midi_bytes([(0, True, [(36, 100, b, b + 0.5) for b in range(8)])]))
    r = run_cli("transform", str(drums), "--to", "sad", "-o", str(tmp_path / "o.mid"), "--model", tiny_model)
    err = r.stderr.decode()
    assert r.returncode == EXIT_INPUT and "drums.mid: contains only drum notes" in err and "Traceback" not in err
    assert not (tmp_path / "o.mid").exists()


def test_a_gutted_output_is_never_plain_success(composer):
    g = grid_of(composer, [(0, False, chords(bars=2) + tune())])
    first = lambda n: g.take(np.arange(n))
    assert rewrite.gutted(first(0), g) == "the output has no notes"
    assert rewrite.gutted(first(g.n_notes // 2 - 1), g) == f"the output has {g.n_notes // 2 - 1} notes against the source's {g.n_notes}: under half"
    assert rewrite.gutted(first(g.n_notes // 2), g) is None


def test_a_key_swap_carries_the_melody_into_the_other_key_and_mode(composer):
    cfg = composer.tok.config
    a = grid_of(composer, [(0, False, chords(bars=2)), (40, False, tune())])
    d_major = grid_of(composer, [(0, False, scale(62, bars=2))])
    a_minor = grid_of(composer, [(0, False, [(57 + d, 60, b, b + 1) for b in range(8) for d in (0, 3, 7)])])  # triads
    assert rewrite.melody_in_key(a, cfg, 2).pitch.tolist() == [p + 2 for p in C_MAJOR_TUNE]  # D major
    assert rewrite.melody_in_key(a, cfg, 21).pitch.tolist() == [57, 60, 62, 64, 65, 67, 69, 64]  # A minor: C minor, down 3
    for b, key in ((d_major, 2), (a_minor, 21)):
        r = composer.swap(a, b, "key", seed=1)
        mel = rewrite.melody_in_key(a, cfg, key)
        strings = r.grid.track == TRACKS.index("Strings")
        assert set(zip(mel.step.tolist(), mel.pitch.tolist())) == set(zip(r.grid.onsets[strings].tolist(), r.grid.pitch[strings].tolist()))
        assert set(r.grid.onsets.tolist()) <= set(a.onsets.tolist())  # on A's rhythm
        held = rewrite.view_in_key(piano_view(a), cfg, key)  # and A's harmony carried there
        assert set(zip(r.grid.onsets.tolist(), (r.grid.pitch % 12).tolist())) <= set(
            zip(held.onsets.tolist(), (held.pitch % 12).tolist()))
        assert r.info["key"] == ("D major" if key == 2 else "A minor")
    r = composer.swap(a, d_major, "key", seed=1, keep="none")
    assert r.info["keep"] == "none"


def test_a_legato_melody_keeps_its_lengths_and_the_rest_stays_below_every_note_sounding(composer):
    """Notes that ring on under the next (as a played legato does) are held at their own
    lengths, not cut where the next begins; where two sound, the rest stays below the lower."""
    cfg = composer.tok.config
    legato = [(p, 90, i, i + 1.5) for i, p in enumerate([60, 64, 67, 72])]  # each rings half a beat into the next
    g = grid_of(composer, [(0, False, [(48, 60, 0, 4)] + legato)])
    mel = find_melody(g, cfg)
    assert mel.pitch.tolist() == [60, 64, 67, 72]
    assert cfg.duration_array[mel.dur].tolist() == [6, 6, 6, 6]  # 1.5 beats of 4 steps
    ceiling = mel.ceiling(16, cfg)
    assert ceiling[4:6].tolist() == [60, 60] and ceiling[6:8].tolist() == [64, 64]  # C still sounds under E
    _, out = hold_decode(composer, g, mel)
    kept = {(s, p): d for s, p, d in zip(out.onsets.tolist(), out.pitch.tolist(), out.dur.tolist())}
    assert [kept[(4 * i, p)] for i, p in enumerate([60, 64, 67, 72])] == mel.dur.tolist()
