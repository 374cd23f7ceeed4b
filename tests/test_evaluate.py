"""evaluate: the judge, the quality measures and the probes on known inputs, and the whole
command on a tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import midi_bytes, run_cli, scale
from emocompose import judge, quality
from emocompose.errors import EXIT_USAGE
from emocompose.tokenizer import Tokenizer

TOK = Tokenizer()


def grid_of(notes, **kw):
    return TOK.grid(TOK.load("x.mid", data=midi_bytes([(0, False, notes)], **kw)))


def test_binary_scores_by_hand():
    truth = np.array([1, 1, 1, 0, 0, 0])
    pred = np.array([1, 1, 0, 0, 0, 1])
    s = judge.binary_scores(truth, pred)
    # each class: 2 of 3 right, precision 2/3 -> everything 2/3
    assert s["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert s["precision"] == s["recall"] == s["f1"] == pytest.approx(2 / 3, abs=1e-4)
    s = judge.binary_scores(np.array([1, 1, 0, 0]), np.array([1, 1, 1, 1]))
    # class 1: precision 0.5 recall 1; class 0: nothing predicted -> 0 and 0
    assert s["precision"] == pytest.approx(0.25) and s["recall"] == pytest.approx(0.5)


def test_judge_learns_a_separable_rule_and_standardises():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(judge.FEATURES))) * 50 + 100  # large scale: standardisation must cope
    y = np.c_[x[:, 0] > 100, x[:, 3] < 100].astype(int)
    j = judge.Judge.fit(x, y, l2=0.01)
    assert (j.predict(x) == y).mean() > 0.97
    p = j.prob_high(x)
    assert p.shape == (200, 2) and ((p >= 0) & (p <= 1)).all()


def arpeggio(pitches, bars=2, vel=80):
    return [(pitches[i % len(pitches)], vel, i, i + 1) for i in range(4 * bars)]


def test_note_features_on_a_known_piece():
    # 2 bars of quarter notes arpeggiating C major, velocity 80: 1 note a beat, one note per
    # onset, no off-beat onsets, a major mode
    g = grid_of(arpeggio([60, 64, 67, 72]))
    f = dict(zip(judge.FEATURES, judge.note_features(g, TOK.config)))
    assert f["notes_per_beat"] == pytest.approx(1.0)
    assert f["notes_per_onset"] == pytest.approx(1.0)
    assert f["offbeat_share"] == 0.0
    assert f["log_duration"] == pytest.approx(0.0, abs=1e-9)  # a beat long
    assert abs(f["mean_velocity"] - 80) < 3
    assert f["mode"] > 0 and f["major_bars"] == 1.0
    minor = dict(zip(judge.FEATURES, judge.note_features(grid_of(arpeggio([57, 60, 64, 69])), TOK.config)))
    assert minor["mode"] < 0


def test_quality_measures_on_known_pieces():
    line = quality.measure(grid_of(scale(60, bars=4, beats=1.0)), TOK.config)
    # C D E F G A B C: 7 pitch classes, C twice as often as the others in each octave run
    counts = np.array([2, 1, 1, 1, 1, 1, 1], float)
    p = counts / counts.sum()
    assert line["pitch_class_entropy"] == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-6)
    assert line["scale_consistency"] == 1.0
    assert line["groove_consistency"] == 1.0  # every bar has onsets on the same four steps
    assert line["polyphony"] == pytest.approx(1.0)
    assert line["notes_per_beat"] == pytest.approx(1.0)
    chord = quality.measure(grid_of([(60, 80, 0, 4), (64, 80, 0, 4), (67, 80, 0, 4)]), TOK.config)
    assert chord["polyphony"] == pytest.approx(3.0)
    assert chord["pitch_class_entropy"] == pytest.approx(math.log2(3))
    out = quality.summarise([line, chord, dict(line, groove_consistency=float("nan"))])
    assert out["groove_consistency"]["mean"] == 1.0  # the NaN is left out


def test_probe_reads_a_linear_code_and_not_noise():
    from emocompose.evaluate import _probe

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8))
    y = np.digitize(x[:, 0] + x[:, 1], [-0.7, 0.7])  # 3 classes cut by parallel planes
    fit = np.arange(400) % 2 == 0
    assert _probe(x, y, fit, 3) > 0.9
    assert _probe(x, rng.integers(0, 3, 400), fit, 3) < 0.5  # chance is 1/3


def test_evaluate_leaves_out_what_is_asked_for_as_none(tiny_model, tiny_dataset, tmp_path):
    """--clips 0 --scores 0 --trajectories 0: generated pieces alone, as the help says."""
    r = run_cli("evaluate", "--data", tiny_dataset, "--model", tiny_model, "--out", tmp_path / "rep", "--pieces", "1",
                "--bars", "2", "--clips", "0", "--scores", "0", "--trajectories", "0", "--json", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["transform"]["clips"] == 0 and rep["swap"]["key"]["pairs"] == 0 and rep["scores"]["scores"] == []
    assert rep["control"]["arousal"]["n"] == 4


def test_evaluate_end_to_end(tiny_model, tiny_dataset, tmp_path):
    out = tmp_path / "rep"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "calm-99.mid").write_bytes(b"from an earlier run with more --pieces")
    r = run_cli("evaluate", "--data", tiny_dataset, "--model", tiny_model, "--out", out, "--pieces", "2",
                "--clips", "1", "--bars", "2", "--scores", "2", "--trajectories", "2", "--json", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads((out / "report.json").read_text())
    assert rep == json.loads(r.stdout)
    # two real quartets, rewritten by a model that knows nothing: the melody is kept all the same
    assert rep["scores"]["scores"] == ["mozart/k155/movement1.mxl", "beethoven/opus18no1/movement2.krn"]
    assert [m["melody_kept"] for m in rep["scores"]["means"]["melody"].values()] == [1.0, 1.0]
    assert all(len(rows) == 2 for by in rep["scores"]["each"].values() for rows in by.values())
    assert rep["judge"]["trained_on"] == 12 and rep["judge"]["tested_on"] == 4
    c = rep["control"]
    assert c["arousal"]["n"] == c["valence"]["n"] == 8
    assert all(abs(sum(row) - 1) < 1e-3 for row in c["confusion"])
    for spec, rows in rep["trajectories"]["each"].items():  # each segment judged on its own bars
        assert [(x["emotion"], x["bars"], x["arousal"]["n"]) for x in rows] == [
            (name, 8, 2) for name in (part.split(":")[0] for part in spec.split(","))]
    tr = rep["transform"]
    assert tr["clips"] == 4 and len(tr["lambda"]["reached_opposite"]) == len(tr["lambda"]["rhythm_to_source"]) == 5
    assert all(abs(sum(row) - 1) < 1e-3 for row in tr["confusion"])
    assert rep["swap"]["rhythm"]["pairs"] == rep["swap"]["key"]["pairs"] == 4
    assert rep["disentanglement"]["bars"] > 0
    assert rep["quality"]["real"]["scale_consistency"]["mean"] > 0.9  # the fixtures are scales
    rl = rep["realism"]
    assert rl["pieces"] == 4 and rl["floor_pieces"] == 4  # 8 generated, 4 test clips, 12 train clips
    assert len(rl["features"]) == 20 and rl["most_telling"][0] in rl["features"]
    assert set(rl) >= {"accuracy", "real_against_real", "accuracy_without_grid_style", "mean_overlapping_area"}
    told = rep["rewrites"]["ways"]["melody"]["realism"]  # 4 clips at 5 lambdas against 12 train clips
    assert told["pieces"] == 12 and len(told["by_lambda"]) == 5
    for name in ("piano_rolls", "latent", "control_confusion", "transform_confusion", "transform_lambda"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "samples").glob("*.mid"))) == 8  # this run's pieces only
    assert b"generate: accuracy" in r.stderr


class Echo:
    """A stand-in composer whose outputs are known: transform gives the source back, swap gives
    back piece B for rhythm and piece A for key (each as long as A)."""

    def __init__(self, composer):
        self.tok, self.trained = composer.tok, composer.trained

    def transform_pieces(self, pieces, **kw):
        from emocompose.compose import Result

        return [[Result(grid, to, 0, {}) for to, _ in jobs] for grid, jobs, _ in pieces]

    def swap_pairs(self, pairs, features, **kw):
        from emocompose.compose import Result

        return [[Result(b.bar_slice(0, a.n_bars) if f == "rhythm" else a, f, 0, {}) for f in features] for a, b in pairs]


def test_transform_and_swap_figures_compare_each_output_with_the_right_piece(tiny_model, tiny_dataset, tmp_path,
                                                                            monkeypatch):  # fmt: skip
    from emocompose import realism
    from emocompose.compose import Composer
    from emocompose.evaluate import EvalConfig, Evaluation
    from emocompose.real_music import load_real

    echo = Echo(Composer.load(tiny_model))
    ev = Evaluation(echo, load_real(str(tiny_dataset), echo.tok, 2), tmp_path, EvalConfig(pieces=1, bars=2, clips=1))
    swap = ev.swap()
    assert swap["rhythm"]["pairs"] == 4 and swap["rhythm"]["rhythm_to_b"] == 1.0 and swap["key"]["key_to_a"] == 1.0
    assert swap["rhythm"]["rhythm_to_a"] < 1.0 and swap["key"]["key_to_b"] < 1.0  # the pairs differ
    assert swap["rhythm"]["key_heard_b"] == 1.0 and swap["key"]["key_heard_b"] < 1.0  # the outputs are B and A
    tr, swept = ev.transform()
    assert tr["lambda"]["rhythm_to_source"] == [1.0] * 5  # every output is its source
    told = []  # the groups of each realism test: a rewrite is grouped with its source's song
    test = realism.two_sample_accuracy
    monkeypatch.setattr(realism, "two_sample_accuracy", lambda a, b, ga, gb, **kw: told.append(ga) or test(a, b, ga, gb, **kw))
    ways = ev.rewrites(swept)["ways"]
    songs = {realism.song_of(ev.real.sources[i]) for q in range(4) for i in ev.clips[q]}
    assert len(told) == 4 * 6 * 3 and all(set(groups) <= songs for groups in told)  # 4 ways, 6 tests of 3 each
    assert set(ways) == {"melody", "texture", "none", "paper"}
    for m in ways.values():  # each way's outputs are their sources too: all kept, all alike
        for name in ("melody_kept", "melody_on_top", "pitch_class_similarity", "onset_similarity", "notes_ratio"):
            assert m[name] == [1.0] * 5, name
        assert m["reached_opposite"] == [0.0] * 5  # here the judge hears no source as its opposite
        # rewrites that are their sources pass for real exactly as the sources do (the floor),
        # at each lambda: the same pieces, in the same folds (a source's rewrites share its song's)
        assert m["realism"]["by_lambda"] == [m["realism"]["real_against_real"]] * 5
    # and at lambda 1 toward each other quadrant, by the levels changed
    assert all(m["accuracy"] == m["real_against_real"] for m in tr["told_from_real_by_change"].values())

    # an output (its source) is judged as a target quadrant only where the judge mistakes the
    # source for it: at most one of the three targets of a clip, none where the judge is right
    assert tr["reached_target"] == pytest.approx((1 - ev.judge_report["test"]["quadrant_accuracy"]) / 3, abs=1e-3)


def test_realism_reads_the_real_clips_of_the_splits_named(tiny_model, tiny_dataset, tmp_path, monkeypatch):
    """`val+test` measures against the clips of both splits, and the floor is always train's."""
    from emocompose import realism
    from emocompose.compose import Composer
    from emocompose.evaluate import EvalConfig, Evaluation
    from emocompose.real_music import load_real

    echo = Echo(Composer.load(tiny_model))
    ev = Evaluation(echo, load_real(str(tiny_dataset), echo.tok, 2), tmp_path, EvalConfig(pieces=1, bars=2, clips=1))
    seen = {}
    monkeypatch.setattr(realism, "compare", lambda g, r, rs, f, fs, *a: seen.setdefault(len(seen), (rs, fs)))
    for against in ("test", "val", "val+test"):
        ev.realism({}, against)
    split_of = dict(zip(ev.real.sources, ev.real.splits))
    (test, floor), (val, _), (both, floor2) = seen.values()
    assert {split_of[x] for x in test} == {"test"} and {split_of[x] for x in val} == {"val"}
    assert sorted(both) == sorted(test + val) and floor == floor2 and {split_of[x] for x in floor} == {"train"}


def test_control_counts_the_pieces_heard_in_the_key_written_toward(tiny_model, tiny_dataset, tmp_path):
    """Each generated piece is heard in one key; written toward that key, its relative (the same
    scale, the other mode), its parallel (the other mode) and a neighbour of its mode."""
    from emocompose.compose import Composer, Result
    from emocompose.evaluate import EvalConfig, Evaluation, keys_heard
    from emocompose.features import KEY_NAMES, global_key, parallel_key, relative_key
    from emocompose.real_music import load_real

    composer = Composer.load(tiny_model)
    real = load_real(str(tiny_dataset), composer.tok, 2)
    piece = real.grids[0]
    k = global_key(piece, composer.tok.config)
    asked = [k, int(relative_key(k)), parallel_key(k), 12 * (k // 12) + (k + 1) % 12]

    class Fixed(Echo):
        def generate(self, name, count, **kw):
            return [Result(piece, name, 0, {"key": KEY_NAMES[asked[i % 4]], "heard_key": KEY_NAMES[k]})
                    for i in range(count)]

    ev = Evaluation(Fixed(composer), real, tmp_path, EvalConfig(pieces=4, bars=2, clips=1))
    report, _ = ev.control()
    assert report["key_heard_as_asked"] == 0.25 and report["mode_heard_as_asked"] == 0.5
    path = Result(piece, "calm", 0, {"key": f"{KEY_NAMES[k]} -> {KEY_NAMES[parallel_key(k)]}",
                                      "heard_key": KEY_NAMES[k]})  # over time: left out
    assert keys_heard([path]) == {"key_heard_as_asked": None, "mode_heard_as_asked": None}


def test_evaluate_needs_labelled_music(tiny_model, tmp_path, write_midi):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    (folder / "song.mid").write_bytes(midi_bytes([(0, False, scale(60, bars=4))]))
    r = run_cli("evaluate", "--data", folder, "--model", tiny_model, "--out", tmp_path / "rep")
    assert r.returncode == EXIT_USAGE and b"no labelled pieces" in r.stderr and b"Traceback" not in r.stderr
    assert not (tmp_path / "rep").exists()


def test_structure_features_on_known_pieces():
    from emocompose import realism

    # 4 bars of legato C-major triads on every beat: 3 notes an onset, all onsets on beats,
    # every bar the same rhythm and pitches, nothing silent, the top voice repeating G
    triads = [(p, 80, b, b + 1) for b in range(16) for p in (60, 64, 67)]
    f = dict(zip(realism.FEATURES, realism.structure_features(grid_of(triads), TOK.config)))
    assert f["notes_per_beat"] == pytest.approx(3.0) and f["notes_per_onset"] == pytest.approx(3.0)
    assert f["chord_share"] == 1.0 and f["onsets_on_beats"] == 1.0 and f["onsets_on_16ths"] == 0.0
    assert f["bars_repeating_rhythm"] == 1.0 and f["adjacent_bar_pitch_similarity"] == pytest.approx(1.0)
    assert f["silent_share"] == 0.0 and f["top_voice_interval"] == 0.0 and f["top_voice_steps"] == 1.0
    assert f["pitch_range"] == pytest.approx(7.0) and f["log_duration_spread"] == pytest.approx(0.0, abs=1e-9)
    # staccato sixteenths on the off-beats, leaping by octaves: half the time silent
    leaps = [(60 + 12 * (i % 2), 80, i + 0.25, i + 0.5) for i in range(8)]
    f = dict(zip(realism.FEATURES, realism.structure_features(grid_of(leaps), TOK.config)))
    assert f["onsets_on_16ths"] == 1.0 and f["onsets_on_beats"] == 0.0
    assert f["top_voice_interval"] == 12.0 and f["top_voice_leaps"] == 1.0
    assert f["silent_share"] == pytest.approx(0.75)


def test_two_sample_test_tells_shifted_sets_apart_and_not_equal_ones():
    from emocompose import realism

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(80, 5)), rng.normal(size=(80, 5))
    groups = [f"s{i // 2}" for i in range(80)]  # two clips a song
    assert abs(realism.two_sample_accuracy(a, b, groups, groups) - 0.5) < 0.12
    assert realism.two_sample_accuracy(a, b + [4, 0, 0, 0, 0], groups, groups) > 0.9  # Bayes: 0.98
    folds = realism._folds(groups, 5, 0)
    assert all(len(set(folds[[g == s for g in groups]])) == 1 for s in set(groups))
    assert realism.song_of("x/Q1_abc_3.mid") == realism.song_of("Q1_abc_12.mid") == "Q1_abc"


def test_overlapping_area_of_equal_and_distant_distributions():
    from emocompose import realism

    rng = np.random.default_rng(0)
    real = rng.normal(size=300)
    assert realism.overlapping_area(real, rng.normal(size=300)) > 0.9
    assert realism.overlapping_area(real, rng.normal(size=300) + 20) < 0.02


def test_overlapping_area_is_the_kernel_sum_at_every_grid_point():
    """The binned densities give the area the definition gives: each density the sum of one
    Gaussian kernel per distance, evaluated at every grid point (Yang & Lerch 2020)."""
    from emocompose import realism

    def direct(real, generated, points=512):
        intra = np.abs(real[:, None] - real[None])[np.triu_indices(len(real), 1)]
        inter = np.abs(generated[:, None] - real[None]).ravel()
        hi = max(intra.max(), inter.max())
        grid = np.linspace(-0.1 * hi, 1.1 * hi, points)

        def density(d):
            bw = max(d.std() * len(d) ** -0.2, 1e-3 * hi)
            return np.exp(-0.5 * ((grid[:, None] - d[None]) / bw) ** 2).sum(1) / (len(d) * bw * np.sqrt(2 * np.pi))

        return np.minimum(density(intra), density(inter)).sum() * (grid[1] - grid[0])

    rng = np.random.default_rng(1)
    for real, generated in [(rng.normal(size=80), rng.normal(0.5, 1.5, 60)), (rng.exponential(size=40), rng.exponential(2, 90)),
                            (rng.integers(0, 4, 50).astype(float), rng.integers(0, 6, 70).astype(float))]:  # fmt: skip
        assert abs(realism.overlapping_area(real, generated) - direct(real, generated)) < 1e-3
