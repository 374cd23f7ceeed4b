"""generate, transform and swap: grammar-constrained decoding, exact bar counts, determinism,
the latent arithmetic, and the CLI for scripts (stdin/stdout, --json, batches, exit codes)."""

from __future__ import annotations

import io
import json

import mido
import numpy as np
import pytest
import torch

from conftest import midi_bytes, prefer, run_cli, scale
from emocompose import latents
from emocompose.compose import Composer, check_key
from emocompose.emotions import EMOTIONS
from emocompose.errors import EXIT_INPUT, EXIT_MODEL, EXIT_PARTIAL, EXIT_USAGE, ModelError, UsageError
from emocompose.features import KEY_NAMES
from emocompose.midi import PIANO
from emocompose.sampling import AFTER_BAR, BarPlan, Grammar, SamplingConfig, decode_bars
from emocompose.tokenizer import BAR, DURATION, PITCH, POSITION, TEMPO, VELOCITY
from emocompose.trajectory import Segment

SONG = midi_bytes([(0, False, scale(bars=3, beats=0.5, vel=90)), (33, False, [(36, 90, b, b + 2) for b in range(0, 12, 2)])])


@pytest.fixture(scope="module")
def composer(tiny_model):
    return Composer.load(tiny_model)


def shifted(composer, grid, to: str, lam: float, source: str, paper: bool = False):
    return latents.shifted_latents(composer.trained, grid, EMOTIONS[to], lam, EMOTIONS[source], paper=paper)


def prior(composer, levels, count, bars, seed=0, latent_temperature=1.0, coherence=0.6, key=None, paper=False):
    """One segment's latents, and its key per piece."""
    z_r, z_k, keys = latents.prior_latents(composer.trained, [Segment(bars, levels)], count, seed, latent_temperature,
                                           coherence, check_key(key), paper)  # fmt: skip
    return z_r, z_k, None if keys is None else [k for (k,) in keys]


def test_key_spread_scales_how_far_a_piece_strays_from_its_key_not_its_bars_around_it(composer):
    """At key_spread s, the part of z_k a piece's bars share strays from where it is centred by
    s of what it strays at the prior's spread, and each bar moves around it as at the prior's
    spread (bars that share nothing are left alone); z_r and the keys drawn are the same; the
    paper's operations keep the prior's spread."""
    tm, seg = composer.trained, [Segment(6, (1.0, -1.0))]
    full, half, zero = (latents.prior_latents(tm, seg, 3, 5, key_spread=s) for s in (1.0, 0.5, 0.0))
    assert torch.equal(full[0], half[0]) and torch.equal(full[0], zero[0]) and full[2] == half[2] == zero[2]
    assert not torch.allclose(full[1], zero[1])
    torch.testing.assert_close(half[1] - zero[1], 0.5 * (full[1] - zero[1]))
    moved = full[1] - zero[1]  # the same for every bar of a piece
    torch.testing.assert_close(moved, moved[:, :1].expand_as(moved))
    assert not torch.allclose(zero[1], zero[1][:, :1].expand_as(zero[1]))
    alone = [latents.prior_latents(tm, seg, 3, 5, coherence=0.0, key_spread=s)[1] for s in (1.0, 0.5)]
    assert torch.equal(alone[0], alone[1])
    paper = [latents.prior_latents(tm, seg, 3, 5, paper=True, key_spread=s)[1] for s in (1.0, 0.5)]
    assert torch.equal(paper[0], paper[1])


def check_bar_grammar(bar: np.ndarray, vocab, positions: int):
    """A bar is Bar Tempo (Position [Tempo] (Pitch Velocity Duration)+)*, positions rising."""
    kind, value, track = vocab.kind[bar], vocab.value[bar], vocab.track[bar]
    assert kind[0] == BAR and value[0] == positions and kind[1] == TEMPO
    assert len(bar) <= vocab.config.max_bar_tokens
    last_pos, i = -1, 2
    while i < len(bar):
        assert kind[i] == POSITION and last_pos < value[i] < positions, (i, kind[i])
        last_pos = value[i]
        i += 1
        if i < len(bar) and kind[i] == TEMPO:
            i += 1
        while i < len(bar) and kind[i] == PITCH:
            assert kind[i + 1] == VELOCITY and kind[i + 2] == DURATION
            assert track[i] == track[i + 1] == track[i + 2]
            i += 3


def test_decoding_follows_the_grammar_even_from_random_weights(composer):
    torch.manual_seed(3)
    model = composer.trained.model
    vocab = composer.tok.vocab
    with torch.no_grad():
        for p in model.parameters():  # a random model samples every kind of token
            p.add_(torch.randn_like(p) * 0.5)
        cond = torch.randn(6, 5, model.config.d)
        plans = [BarPlan([16, 16, 12, 16, 20], [-1] * 5) for _ in range(6)]
        out = decode_bars(model, vocab, cond, plans, SamplingConfig(temperature=1.5, top_p=1.0, seed=1))
    for seq in out:
        assert len(seq) == 5
        for bar, positions in zip(seq, plans[0].positions):
            check_bar_grammar(bar, vocab, positions)


def test_decoding_no_bars_gives_each_sequence_none(composer):
    model = composer.trained.model
    cond = torch.zeros(2, 0, model.config.d)
    assert decode_bars(model, composer.tok.vocab, cond, [BarPlan([], []) for _ in range(2)], SamplingConfig()) == [[], []]


def test_pieces_of_different_lengths_decode_together_as_each_alone(composer):
    """A batch may hold pieces of any lengths (`transform_pieces`, `swap_pairs`): each gets
    exactly its plan's bars, and greedy decoding gives each the tokens it gets alone."""
    model, vocab = composer.trained.model, composer.tok.vocab
    torch.manual_seed(5)
    cond = torch.randn(3, 4, model.config.d)
    plans = [BarPlan([16] * n, [-1] * n) for n in (4, 1, 3)]
    greedy = SamplingConfig(temperature=0.0)
    together = decode_bars(model, vocab, cond, plans, greedy)
    assert [len(seq) for seq in together] == [4, 1, 3]
    for i, plan in enumerate(plans):
        alone = decode_bars(model, vocab, cond[i : i + 1, : len(plan.positions)], [plan], greedy)[0]
        assert [b.tolist() for b in alone] == [b.tolist() for b in together[i]]


def test_a_batch_decodes_in_parts_the_same_in_processes_as_here(composer):
    """A CPU batch decodes as `PARTS` parts, in forked children where torch's threads allow:
    the same bytes whichever way, and each sequence takes its own draws of the whole batch's."""
    from emocompose.hardware import torch_threads

    model, vocab = composer.trained.model, composer.tok.vocab
    torch.manual_seed(6)
    cond = torch.randn(1, 3, model.config.d).expand(4, -1, -1)  # four times the same piece
    plans = [BarPlan([16] * 3, [-1] * 3) for _ in range(4)]
    cfg = SamplingConfig(temperature=1.5, top_p=1.0, seed=4)
    with torch_threads(2):
        side_by_side = decode_bars(model, vocab, cond, plans, cfg)
    with torch_threads(1):
        here = decode_bars(model, vocab, cond, plans, cfg)
    as_lists = lambda out: [[b.tolist() for b in seq] for seq in out]  # noqa: E731
    assert as_lists(side_by_side) == as_lists(here)
    # the first sequence of each part draws its own numbers: the same piece, written apart
    assert as_lists(here)[0] != as_lists(here)[2]


def test_grammar_reserves_room_for_a_whole_note():
    from emocompose.sampling import AFTER_DURATION, AFTER_POSITION
    from emocompose.tokenizer import Vocab

    vocab = Vocab()
    g = Grammar(vocab, 10)
    kinds = lambda ids: set(vocab.kind[ids].tolist())  # noqa: E731
    # 2 tokens of room after a note: no new Position (4 needed) nor Pitch (3); the bar may only end
    ids, _, _ = g.allowed(AFTER_DURATION, 3, 16, 1, 8)
    assert kinds(ids) <= {BAR, 1} and vocab.bar0 in ids  # 1: EOS
    ids, a, b = g.allowed(AFTER_DURATION, 3, 16, 1, 7)  # 3 left: another note at this Position
    assert kinds(ids) == {BAR, 1, PITCH} and (vocab.kind[ids[a:b]] == PITCH).all() and b - a == 5 * 128
    ids, _, _ = g.allowed(AFTER_DURATION, 3, 16, 1, 6)  # 4 left: a later Position too, and only later
    assert set(vocab.value[ids][vocab.kind[ids] == POSITION].tolist()) == set(range(4, 16))
    ids, a, b = g.allowed(AFTER_POSITION, 3, 16, 1, 6, tracks=(1, 3))  # only the plan's tracks play
    assert set(vocab.track[ids[a:b]].tolist()) == {1, 3} and kinds(ids) == {PITCH, TEMPO}
    ids, _, _ = g.allowed(AFTER_BAR, -1, 16, -1, 1)
    assert kinds(ids) == {TEMPO}


def test_generate_exact_bars_batch_and_determinism(composer):
    a = composer.generate("happy", bars=6, count=3, seed=5)
    b = composer.generate("happy", bars=6, count=3, seed=5)
    c = composer.generate("happy", bars=6, count=3, seed=6)
    assert [r.grid.n_bars for r in a] == [6, 6, 6]
    mids = [composer.tok.to_midi(r.grid) for r in a]
    assert mids == [composer.tok.to_midi(r.grid) for r in b]
    assert mids != [composer.tok.to_midi(r.grid) for r in c]
    # the written file lasts exactly its bars (the end marker sits on the last bar line)
    assert mido.MidiFile(file=io.BytesIO(mids[0])).length == pytest.approx(seconds_of(a[0].grid, composer), rel=1e-3)


def seconds_of(grid, composer) -> float:
    """How long a grid lasts, by its bars' tempos and the tempo changes inside bars (the model
    picks both)."""
    cfg = composer.tok.config
    total = 0.0
    for b, steps in enumerate(grid.bar_positions.tolist()):
        at, tempo = 0, grid.bar_tempo[b]
        for p, t in zip(grid.tempo_pos[grid.tempo_bar == b].tolist(), grid.tempo_bin[grid.tempo_bar == b].tolist()):
            total += (p - at) * 60 / cfg.tempo_values[tempo] / cfg.positions_per_quarter
            at, tempo = p, t
        total += (steps - at) * 60 / cfg.tempo_values[tempo] / cfg.positions_per_quarter
    return total


def prob_tense(composer, grid) -> float:
    """How sure the model's own encoder is that a piece is tense (arousal high, valence low)."""
    q = composer.trained.classify(*composer.trained.encode(grid))
    return q["arousal"][1] * q["valence"][0]


def test_candidates_keep_the_one_the_encoder_hears_as_the_target(composer):
    """With n candidates, each output is the best-scored of the n decodings that one call with
    n times the count and no choosing writes (the same draws in the same batch)."""
    pool = composer.generate("tense", bars=3, count=6, seed=4, candidates=1)
    picked = composer.generate("tense", bars=3, count=2, seed=4, candidates=3)
    mids = [composer.tok.to_midi(r.grid) for r in pool]
    for i, r in enumerate(picked):
        group = mids[3 * i : 3 * i + 3]
        j = group.index(composer.tok.to_midi(r.grid))  # it is one of its own group
        sure = [prob_tense(composer, pool[3 * i + k].grid) for k in range(3)]
        assert sure[j] == pytest.approx(max(sure), abs=1e-3) and r.info["candidates"] == 3
        assert r.info["q"] == composer.trained.classify(*composer.trained.encode(r.grid))
    assert [r.info["candidates"] for r in composer.generate("tense", bars=1, paper=True)] == [1]
    with pytest.raises(UsageError, match="paper"):
        composer.generate("tense", bars=1, paper=True, candidates=2)


def test_transform_candidates_share_the_latents_and_lambda_zero_decodes_once(composer, monkeypatch):
    grid = composer.tok.grid(composer.tok.load("s.mid", data=SONG))
    seen = []
    real = composer.trained.decode

    def spy(z_r, z_k, plans, *args):
        seen.append((z_r, z_k))
        return real(z_r, z_k, plans, *args)

    monkeypatch.setattr(composer.trained, "decode", spy)
    r = composer.transform(grid, "sad", 1.0, seed=1, candidates=3)
    z_r, z_k = seen[-1]
    assert len(z_r) == 3 and torch.equal(z_r[0], z_r[2]) and torch.equal(z_k[0], z_k[1])
    assert r.info["candidates"] == 3 and r.grid.n_bars == grid.n_bars
    composer.transform(grid, "sad", 0.0, candidates=3)
    assert len(seen[-1][0]) == 1  # at lambda 0 every decoding is the piece itself: no choice to make


def test_continuous_emotion_lies_between_component_means(composer):
    lo, hi = composer.trained.component_means(0)
    assert torch.allclose(latents.axis_mean(composer.trained, 0, -1.0), lo) and torch.allclose(latents.axis_mean(composer.trained, 0, 1.0), hi)
    assert torch.allclose(latents.axis_mean(composer.trained, 0, 0.0), (lo + hi) / 2)
    r = composer.generate(arousal=0.3, valence=-0.9, bars=2, seed=1)[0]
    assert r.emotion == "tense" and r.grid.n_bars == 2


@pytest.fixture
def key_table(composer):
    """Set the model's key table to known values for a test: key k's mean z_k is k * 0.1 in
    every dimension; C minor (12) has never been seen; labelled low-valence pieces were all in
    A minor (21), high-valence ones all in C major (0)."""
    m = composer.trained.model
    saved = [t.clone() for t in (m.key_sum, m.key_weight, m.key_share)]
    with torch.no_grad():
        m.key_weight.fill_(2.0)
        m.key_weight[12] = 0.0
        m.key_sum.copy_(torch.arange(24.0)[:, None] * 0.1 * m.key_weight[:, None])
        m.key_share.zero_()
        m.key_share[0, 21], m.key_share[1, 0] = 5.0, 3.0
    yield m
    with torch.no_grad():
        for t, v in zip((m.key_sum, m.key_weight, m.key_share), saved):
            t.copy_(v)


def test_paper_transform_shift_is_lambda_times_mean_difference(composer):
    grid = composer.tok.grid(composer.tok.load("s.mid", data=SONG))
    mu_r, mu_k = composer.trained.encode(grid)
    z0, _ = shifted(composer, grid, "sad", 0.0, source="happy", paper=True)
    assert torch.equal(z0[0], mu_r) and torch.equal(z0[1], mu_k)  # lambda 0: the piece's own latents
    z, info = shifted(composer, grid, "calm", 0.7, source="happy", paper=True)  # only arousal changes
    lo, hi = composer.trained.component_means(0)
    assert torch.equal(z[1], mu_k)
    assert torch.allclose(z[0], mu_r + 0.7 * (lo - hi), atol=1e-6)
    assert info["source_emotion"] == "happy" and not info["source_inferred"] and "key" not in info
    q = info["q"]
    assert abs(sum(q["arousal"]) - 1) < 1e-3 and abs(sum(q["valence"]) - 1) < 1e-3


def test_transform_moves_the_piece_to_where_generate_centres_the_target(composer, key_table):
    """Each axis moves by lambda (centre - the piece's mean); z_k's centre is in the piece's key,
    or its parallel key when the mode is not the target's; the bars keep their own movement."""
    from emocompose.features import global_key, is_major

    grid = composer.tok.grid(composer.tok.load("s.mid", data=SONG))
    k = global_key(grid, composer.tok.config)
    assert is_major(k)  # a major piece: its parallel minor is k + 12
    mu_r, mu_k = composer.trained.encode(grid)
    lo_r, hi_r = composer.trained.component_means(0)
    lo, hi = composer.trained.component_means(1)
    z0, _ = shifted(composer, grid, "tense", 0.0, source="happy")
    assert torch.equal(z0[0], mu_r) and torch.equal(z0[1], mu_k)  # lambda 0: the piece's own latents
    with torch.no_grad():
        key_table.key_weight[k + 12] = 2.0
        key_table.key_sum[k + 12] = (k + 12) * 0.1 * 2.0
    z, info = shifted(composer, grid, "tense", 0.7, source="happy")
    assert info["key"] == [KEY_NAMES[k], KEY_NAMES[k + 12]]
    minor_centre = (k + 12) * 0.1 + (lo - hi) / 2  # the key table's mean, moved to low valence
    for got, mu, goal in ((z[0], mu_r, hi_r), (z[1], mu_k, minor_centre)):
        # the piece's mean goes 70% of the way to the goal, in a straight line ...
        assert torch.allclose(goal - got.mean(0), 0.3 * (goal - mu.mean(0)), atol=1e-5)
        # ... and every bar keeps its own offset from the piece's mean
        assert torch.allclose(got - got.mean(0), mu - mu.mean(0), atol=1e-5)
    full = shifted(composer, grid, "tense", 1.0, source="happy")[0][1]
    assert torch.allclose(full.mean(0), minor_centre, atol=1e-5)  # lambda 1: all the way
    # a major key already has a happy mode: it stays; an unseen parallel key is never a target
    z, info = shifted(composer, grid, "calm", 1.0, source="sad")
    assert info["key"] == [KEY_NAMES[k]] * 2 and torch.allclose(z[1].mean(0), k * 0.1 + (hi - lo) / 2, atol=1e-5)
    with torch.no_grad():
        key_table.key_weight[k + 12] = 0.0
    assert shifted(composer, grid, "tense", 0.7, source="happy")[1]["key"] == [KEY_NAMES[k]] * 2
    # the paper's shift knows no keys, nor does a model without a key table: the component mean
    assert "key" not in shifted(composer, grid, "tense", 0.7, source="happy", paper=True)[1]
    with torch.no_grad():
        key_table.key_weight.zero_()
    z, info = shifted(composer, grid, "tense", 1.0, source="happy")
    assert "key" not in info and torch.allclose(z[1].mean(0), lo, atol=1e-5)


def test_generated_bars_share_their_latents_by_coherence(composer):
    one = prior(composer, (1.0, -1.0), count=3, bars=5, seed=2, coherence=1.0)
    alone = prior(composer, (1.0, -1.0), count=3, bars=5, seed=2, coherence=0.0)
    for z in one[:2]:
        assert torch.allclose(z, z[:, :1].expand_as(z))  # every bar of a piece the same
    for z in alone[:2]:
        assert not torch.allclose(z[:, 0], z[:, 1])
    # every bar is still a sample of the component: over many pieces, mean and spread hold
    z_r = prior(composer, (1.0, 1.0), count=4000, bars=2, seed=3, coherence=0.6)[0]
    sigma = torch.exp(composer.trained.model.priors()[0].log_std)
    assert torch.allclose(z_r.mean((0, 1)), composer.trained.component_means(0)[1], atol=4 * float(sigma.max()) / 60)
    assert torch.allclose(z_r[:, 0].std(0), sigma, rtol=0.1)
    corr = ((z_r[:, 0] - z_r[:, 0].mean(0)) * (z_r[:, 1] - z_r[:, 1].mean(0))).mean(0) / sigma**2
    assert abs(float(corr.mean()) - 0.6) < 0.05
    with pytest.raises(UsageError, match="coherence"):
        prior(composer, (1.0, 1.0), 1, 2, coherence=1.5)


def test_generation_centres_z_k_on_a_key_of_the_target_valence(composer, key_table):
    lo, hi = composer.trained.component_means(1)
    offset = (lo - hi) / 2  # low valence: half the way from the middle to the low component
    _, z_k, keys = prior(composer, (1.0, -1.0), count=6, bars=3, seed=0, latent_temperature=0.0)
    assert keys == [21] * 6  # low-valence training pieces were all in A minor
    assert torch.allclose(z_k, (2.1 + offset).expand_as(z_k), atol=1e-5)
    _, _, keys = prior(composer, (1.0, 1.0), count=6, bars=3, seed=0)
    assert keys == [0] * 6
    _, z_k, keys = prior(composer, (1.0, 1.0), count=2, bars=3, key="bm", latent_temperature=0.0)
    assert keys == [23, 23] and torch.allclose(z_k, (2.3 - offset).expand_as(z_k), atol=1e-5)
    r = composer.generate("sad", bars=2, key="E minor")[0]
    assert r.info["key"] == "E minor"
    # --paper: z_k around the component mean and bars drawn alone, whatever the table holds
    _, z_k, keys = prior(composer, (1.0, -1.0), count=2, bars=3, latent_temperature=0.0, paper=True)
    assert keys is None and torch.allclose(z_k, lo.expand_as(z_k))
    z_r = prior(composer, (1.0, -1.0), count=2, bars=3, coherence=1.0, paper=True)[0]
    assert not torch.allclose(z_r[:, 0], z_r[:, 1])
    with pytest.raises(UsageError, match="paper"):
        composer.generate("sad", bars=2, key="E minor", paper=True)
    with pytest.raises(ModelError, match="C minor"):
        composer.generate("sad", bars=2, key="C minor")
    with pytest.raises(UsageError, match="unknown key"):
        composer.generate("sad", bars=2, key="H dorian")


def test_generated_keys_take_the_mode_of_the_asked_valence(composer, key_table):
    with torch.no_grad():  # low-valence pieces also in C major (0), high-valence ones also in A minor (21)
        key_table.key_share[0, 0], key_table.key_share[1, 21] = 50.0, 50.0
    assert set(prior(composer, (1.0, -1.0), count=40, bars=1, seed=0)[2]) == {21}
    assert set(prior(composer, (-1.0, 1.0), count=40, bars=1, seed=0)[2]) == {0}
    # between the two: the minor keys of low-valence pieces and the major ones of high-valence pieces
    assert set(prior(composer, (1.0, 0.0), count=40, bars=1, seed=0)[2]) == {0, 21}


def test_a_model_without_a_key_table_still_loads_and_generates(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    from emocompose import checkpoint

    tensors = load_file(str(tiny_model))
    meta = checkpoint.read_meta(tiny_model)
    older = tmp_path / "older.safetensors"
    save_file({k: v for k, v in tensors.items() if k not in checkpoint.ADDED_LATER}, str(older),
              metadata={"emocompose": json.dumps(meta)})  # fmt: skip
    c = Composer.load(older)
    assert c.trained.model.key_means() is None
    r = c.generate("sad", bars=2)[0]
    assert r.grid.n_bars == 2 and r.info["key"] is None
    with pytest.raises(ModelError, match="no key table"):
        c.generate("sad", bars=2, key="A minor")


def test_transform_keeps_layout(composer):
    grid = composer.tok.grid(composer.tok.load("s.mid", data=SONG))
    from emocompose.rewrite import TEMPO_STEPS

    for source, slower in (("sad", 0), ("tense", TEMPO_STEPS)):  # tempo moves with arousal alone
        for keep in ("melody", "none"):
            r = composer.transform(grid, "calm", 1.0, seed=2, source=source, keep=keep)
            assert r.grid.n_bars == grid.n_bars and np.array_equal(r.grid.bar_positions, grid.bar_positions)
            assert np.array_equal(r.grid.bar_tempo, grid.bar_tempo - slower)
            assert set(r.grid.track.tolist()) <= set(grid.track.tolist())


def test_swap_takes_each_latent_from_its_piece(composer, monkeypatch):
    a = composer.tok.grid(composer.tok.load("a.mid", data=SONG))
    b = composer.tok.grid(composer.tok.load("b.mid", data=midi_bytes([(0, False, scale(57, minor=True, bars=2))])))
    seen = {}
    real = composer.trained.decode

    def spy(z_r, z_k, plans, *args):
        seen["z"] = (z_r[0], z_k[0])
        return real(z_r, z_k, plans, *args)

    monkeypatch.setattr(composer.trained, "decode", spy)
    r = composer.swap(a, b, "rhythm")
    from emocompose.melody import piano_view

    ar, ak = composer.trained.encode(piano_view(a))  # every pitched note read as piano
    br, _ = composer.trained.encode(piano_view(b))
    assert torch.equal(seen["z"][1], ak) and torch.equal(seen["z"][0], br[np.arange(a.n_bars) % b.n_bars])
    assert r.grid.n_bars == a.n_bars


# -- the command line ------------------------------------------------------------------------


def test_cli_generate_files_json_and_stdout(tiny_model, tmp_path):
    r = run_cli("generate", "--emotion", "sad", "--bars", 3, "--count", 2, "-o", tmp_path / "out", "--json", "--model", tiny_model)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert [x["bars"] for x in recs] == [3, 3] and {x["emotion"] for x in recs} == {"sad"}
    assert all((tmp_path / "out" / x["path"].split("/")[-1]).exists() for x in recs)
    one = run_cli("generate", "-e", "happy", "--bars", 2, "--seed", 9, "-o", "-", "--model", tiny_model)
    two = run_cli("generate", "-e", "happy", "--bars", 2, "--seed", 9, "-o", "-", "--model", tiny_model)
    assert one.returncode == 0 and one.stdout[:4] == b"MThd" and one.stdout == two.stdout


def test_cli_auto_names_never_overwrite(tiny_model, tmp_path):
    for _ in range(2):
        r = run_cli("generate", "-e", "calm", "--bars", 1, "-o", tmp_path, "--model", tiny_model)
        assert r.returncode == 0
    assert sorted(p.name for p in tmp_path.glob("*.mid")) == ["calm_0_0-1.mid", "calm_0_0.mid"]


def test_cli_transform_stdin_batch_and_exit_codes(tiny_model, tmp_path):
    r = run_cli("transform", "-", "--to", "sad", "--lambda", 0.5, "-o", "-", "--model", tiny_model, stdin=SONG)
    assert r.returncode == 0 and r.stdout[:4] == b"MThd", r.stderr
    assert b"heard" in r.stderr
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.mid").write_bytes(SONG)
    (d / "bad.mid").write_bytes(b"nope")
    r = run_cli("transform", d, "--to", "calm", "-o", tmp_path / "out", "--json", "--model", tiny_model)
    assert r.returncode == EXIT_PARTIAL
    assert len(r.stdout.decode().splitlines()) == 1 and b"bad.mid" in r.stderr
    assert (tmp_path / "out" / "a_to_calm.mid").exists()
    rec = json.loads(r.stdout)  # the key written toward, as generate names it, and the piece's own
    assert rec["key"].endswith("major") and rec["source_key"] in KEY_NAMES  # calm: a major key
    # the key heard in the output is the one analyze hears in the file written
    r = run_cli("analyze", tmp_path / "out" / "a_to_calm.mid", "--json")
    assert json.loads(r.stdout)["key"] == rec["heard_key"], (r.stdout, rec)


@pytest.mark.parametrize("args,code,words", [
    (["generate", "--emotion", "angry"], EXIT_USAGE, "unknown emotion"),
    (["generate"], EXIT_USAGE, "give an emotion"),
    (["generate", "-e", "sad", "--bars", "0"], EXIT_USAGE, "bars must be 1..512"),
    (["generate", "--arousal", "2", "--valence", "0"], EXIT_USAGE, "[-1, 1]"),
    (["transform", "X", "--to", "sad", "--lambda", "1.5"], EXIT_USAGE, "[0, 1]"),
    (["swap", "X", "Y", "--feature", "melody"], EXIT_USAGE, "rhythm or key"),
    (["generate", "-e", "sad", "--key", "H dorian"], EXIT_USAGE, "unknown key 'H dorian'"),
    (["generate", "-e", "sad", "--key", "A minor", "--paper"], EXIT_USAGE, "paper"),
    (["generate", "-e", "sad", "--coherence", "1.5"], EXIT_USAGE, "coherence must be in [0, 1]"),
    (["generate", "-e", "sad", "--candidates", "0"], EXIT_USAGE, "candidates must be at least 1"),
    (["generate", "-e", "sad", "--candidates", "2", "--paper"], EXIT_USAGE, "paper"),
    (["generate", "-e", "sad", "-n", "200", "--candidates", "2"], EXIT_USAGE, "200 pieces x 2 candidates"),
    (["generate", "-e", "sad", "--json", "-o", "-"], EXIT_USAGE, "--json writes its records to stdout"),
    (["transform", "-", "--to", "sad", "--json", "--plot", "-"], EXIT_USAGE, "--json writes its records to stdout"),
])  # fmt: skip
def test_cli_usage_errors(args, code, words, tiny_model):
    r = run_cli(*args, "--model", tiny_model)
    err = r.stderr.decode()
    assert r.returncode == code and words in err and "Traceback" not in err, err


def test_cli_bad_input_file(tiny_model, tmp_path):
    bad = tmp_path / "x.mid"
    bad.write_bytes(b"MThd\0\0")
    out = tmp_path / "o.mid"
    r = run_cli("transform", bad, "--to", "sad", "-o", out, "--model", tiny_model)
    assert r.returncode == EXIT_INPUT and str(bad) in r.stderr.decode() and not out.exists()


@pytest.mark.parametrize("content", [b"\x80\x04\x95junk-pickle", b"PK\x03\x04zip", b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", b""])
def test_cli_refuses_non_safetensors_models(tmp_path, content):
    model = tmp_path / "model.safetensors"
    model.write_bytes(content)
    r = run_cli("generate", "-e", "sad", "-o", tmp_path / "o.mid", "--model", model)
    assert r.returncode == EXIT_MODEL and len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.mid").exists()


def test_completions_are_in_sync(tmp_path):
    from conftest import ROOT

    for shell in ("bash", "zsh", "fish"):
        r = run_cli("completions", shell)
        assert r.returncode == 0
        assert r.stdout.decode() == (ROOT / "completions" / f"emocompose.{shell}").read_text(), f"run: emocompose completions {shell} > completions/emocompose.{shell}"


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from emocompose.cli import app; sys.argv=['emocompose','--help']\ntry:\n app()\nexcept SystemExit: pass\nprint('torch' in sys.modules, 'music21' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.stdout.decode().strip().splitlines()[-1] == "False False"


def test_help_shows_paragraphs_whole_and_examples_indented():
    """Typer's rich help keeps every line break of a docstring, and dedents an examples paragraph
    that follows the summary alone (`cli.reflow` and a second paragraph in each such command)."""
    from typer.testing import CliRunner

    from emocompose.cli import app

    runner = CliRunner()
    shown = {}
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        out = runner.invoke(app, [name, "--help"], env={"COLUMNS": "400"}).output
        shown[name] = [line for line in out.splitlines() if line.strip().startswith("emocompose ")]
        assert all(len(x) - len(x.lstrip()) >= 3 for x in shown[name]), (name, shown[name])
    assert len(shown["generate"]) >= 5 and len(shown["plot"]) == 2
    out = runner.invoke(app, ["transform", "--help"], env={"COLUMNS": "400"}).output
    assert any("reads every pitched track" in line and "gets a warning." in line for line in out.splitlines()), out


def test_ctrl_c_exits_130_and_writes_nothing(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    out = tmp_path / "x.mid"
    proc = subprocess.Popen([sys.executable, "-m", "emocompose", "generate", "-e", "sad", "--bars", "400", "--count", "8",
                             "-o", str(out), "--model", str(ROOT / "checkpoints" / "default.safetensors")],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)  # fmt: skip
    time.sleep(6)  # loading torch and the model, then decoding
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_nucleus_cuts_only_the_pitch_tail_and_keeps_the_pitch_mass():
    from emocompose.sampling import draw, probabilities

    # allowed tokens: 4 pitches (0.4, 0.2, 0.1, 0.05 of the mass), then a position and a duration
    # in the tail (0.15, 0.1)
    p = np.array([0.4, 0.2, 0.1, 0.05, 0.15, 0.1])
    out = probabilities(np.log(p), SamplingConfig(top_p=0.75), (0, 4))
    # the pitches' own distribution is 0.53, 0.27, 0.13, 0.07: its 0.75 nucleus keeps the first two
    assert out[2] == 0 and out[3] == 0
    assert np.allclose(out[:2], [0.5, 0.25])  # 0.75 of the mass, as before the cut
    assert np.allclose(out[4:], [0.15, 0.1])  # the tail of other kinds stays
    assert np.allclose(probabilities(np.log(p), SamplingConfig(top_p=1.0), (0, 4)), p)
    # a draw is the token where the cumulative probability passes u; cut tokens are never drawn
    cfg = SamplingConfig(top_p=0.75)
    drawn = [draw(np.log(p), cfg, u, (0, 4)) for u in (0.0, 0.49, 0.51, 0.74, 0.76, 0.89, 0.91, 0.999)]
    assert drawn == [0, 0, 1, 1, 4, 4, 5, 5]
    assert draw(np.log(p), SamplingConfig(temperature=0), 0.9) == 0
    # pitches far below the likeliest token (a low temperature) weigh nothing, and nothing is NaN
    far = np.array([-500.0, -500.0, 0.0, 1.0], np.float32)
    for held in (None, np.array([True, False])):
        assert np.array_equal(probabilities(far, SamplingConfig(top_p=0.9), (0, 2), held) > 0, [0, 0, 1, 1])


def test_held_keys_leave_the_likely_pitches_unless_they_hold_half_of_them():
    from emocompose.sampling import probabilities

    p = np.array([0.2, 0.3, 0.15, 0.1, 0.15, 0.1])  # 4 pitches, then a position and a duration
    first, second = np.array([True, False, False, False]), np.array([False, True, False, False])
    out = probabilities(np.log(p), SamplingConfig(top_p=1.0), (0, 4), first)
    assert out[0] == 0 and np.isclose(out[:4].sum(), 0.75)  # a note comes as often as before
    assert np.allclose(out[1:4], np.array([0.3, 0.15, 0.1]) * 0.75 / 0.55)
    assert np.allclose(out[4:], [0.15, 0.1])
    # the nucleus is the model's own (pitches 1, 0 and 2), less the held key
    out = probabilities(np.log(p), SamplingConfig(top_p=0.75), (0, 4), first)
    assert np.allclose(out, [0, 0.5, 0.25, 0, 0.15, 0.1])
    # a held key with over half the nucleus (pitches 1 and 0): the model means to strike it again
    out = probabilities(np.log(p), SamplingConfig(top_p=0.5), (0, 4), second)
    assert np.allclose(out, [0.3, 0.45, 0, 0, 0.15, 0.1])


def _love_the_piano_played_short(model, vocab, monkeypatch) -> None:
    """Make the model love every piano key alike, played short (up to a beat): it would strike
    a key again at once if it could, and far fewer than half of the keys sound at once."""
    steps = vocab.config.duration_array
    keys = vocab.pitch0 + 128 * PIANO + np.arange(128)
    short = vocab.dur0 + len(steps) * PIANO + np.flatnonzero(steps <= 4)
    prefer(monkeypatch, model, vocab, ((keys, 50.0), (short, 100.0)))


def test_decoding_never_strikes_a_key_still_sounding(composer, monkeypatch):
    """A file holds one note per key at a time, so the decoder waits for a key's release before
    striking it again (it used to, and the file cut the first note short), even from a model
    that would strike every key again at once."""
    model, vocab = composer.trained.model, composer.tok.vocab
    steps = vocab.config.duration_array
    _love_the_piano_played_short(model, vocab, monkeypatch)
    cond = torch.randn(4, 6, model.config.d, generator=torch.Generator().manual_seed(0))
    plans = [BarPlan([16, 16, 12, 16, 16, 16], [-1] * 6) for _ in range(4)]
    out = decode_bars(model, vocab, cond, plans, SamplingConfig(temperature=1.0, top_p=1.0, seed=2))
    again = 0
    for seq in out:
        g = composer.tok.decode(np.concatenate(seq))
        for track, pitch in set(zip(g.track.tolist(), g.pitch.tolist())):
            one = np.flatnonzero((g.track == track) & (g.pitch == pitch))
            one = one[np.argsort(g.onsets[one], kind="stable")]
            assert (g.onsets[one][1:] >= (g.onsets + steps[g.dur])[one][:-1]).all(), (track, pitch)
            again += len(one) - 1
    assert again >= 8  # the loved keys come back once released


def test_keys_still_sounding_at_the_end_of_what_comes_before_stay_held(composer, monkeypatch):
    """Decoding after a piece (a continuation's prompt) waits for the release of the keys it
    leaves sounding, as for its own: the same model that loves every key strikes those keys
    early in the new bars when it is not told of them."""
    from emocompose import sampling
    from emocompose.grid import Grid

    model, vocab = composer.trained.model, composer.tok.vocab
    steps = vocab.config.duration_array
    _love_the_piano_played_short(model, vocab, monkeypatch)
    # held keys never yield here (a big chord can make them half of the likely keys: `Held`)
    monkeypatch.setattr(sampling, "MEANT", 1.01)
    long = len(steps) - 1  # the longest note: it sounds on through the next bars
    held = np.arange(30, 102, 3)  # 24 keys: far under half of the piano's
    n = len(held)
    before = Grid(np.array([16]), np.array([0]), np.zeros(n, np.int64), np.zeros(n, np.int64),
                  np.full(n, PIANO), held, np.full(n, 10), np.full(n, long))  # fmt: skip
    release = int(steps[long]) - 16
    cond = torch.randn(8, 3, model.config.d, generator=torch.Generator().manual_seed(0))
    early = {}
    for told in (before, None):
        plans = [BarPlan([16] * 3, [-1] * 3) for _ in range(8)]
        out = decode_bars(model, vocab, cond, plans, SamplingConfig(temperature=1.0, top_p=1.0, seed=2), before=told)
        grids = [composer.tok.decode(np.concatenate(seq)) for seq in out]
        early[told is None] = sum(int(np.isin(g.pitch[g.onsets < release], held).sum()) for g in grids)
    assert early[False] == 0 and early[True] >= 8, early


def test_a_pitch_far_beyond_the_range_played_comes_only_when_the_model_means_it(composer, monkeypatch):
    """After a prompt in one octave (with drums under it: their notes are sounds, not pitches),
    a key two and a half octaves under the octave, as likely as each of its keys (one of thirteen
    likely pitches), is never drawn; it is drawn with no such rule (`Register`), and drawn when it
    holds most of the likely pitches' probability."""
    from emocompose import sampling
    from emocompose.grid import Grid
    from emocompose.midi import DRUMS

    model, vocab = composer.trained.model, composer.tok.vocab
    steps = vocab.config.duration_array
    octave = vocab.pitch0 + 128 * PIANO + np.arange(60, 72)
    far = vocab.pitch0 + 128 * PIANO + np.array([30])
    short = vocab.dur0 + len(steps) * PIANO + np.flatnonzero(steps <= 4)
    n = len(octave) + 4  # the octave's keys at steps 0-11, then a kick, snares and a hi-hat
    before = Grid(np.array([16]), np.array([0]), np.zeros(n, np.int64), np.arange(n),
                  np.r_[np.full(12, PIANO), np.full(4, DRUMS)], np.r_[np.arange(60, 72), 35, 38, 40, 42],
                  np.full(n, 10), np.zeros(n, np.int64))  # fmt: skip
    cond = torch.randn(8, 3, model.config.d, generator=torch.Generator().manual_seed(0))

    logits = model.logits

    def far_notes(far_logit: float, widen: int) -> int:
        monkeypatch.setattr(model, "logits", logits)  # each preference on the model's own logits
        prefer(monkeypatch, model, vocab, ((octave, 50.0), (far, far_logit), (short, 100.0)))
        monkeypatch.setattr(sampling, "WIDEN", widen)
        plans = [BarPlan([16] * 3, [-1] * 3) for _ in range(8)]
        out = decode_bars(model, vocab, cond, plans, SamplingConfig(temperature=1.0, top_p=1.0, seed=2), before=before)
        return sum(int((composer.tok.decode(np.concatenate(seq)).pitch == 30).sum()) for seq in out)

    widen = sampling.WIDEN
    assert far_notes(50.0, widen) == 0
    assert far_notes(50.0, 128) >= 5  # about one note in thirteen
    assert far_notes(54.0, widen) >= 20  # e^4 times each other key: 0.8 of the likely pitches


def test_generated_pieces_are_what_their_files_hold(tiny_model):
    """What evaluate measures is what a user hears: a generated piece read back from its MIDI
    file has exactly its notes (the decoder writes overlapping notes of one pitch; a file cannot)."""
    c = Composer.load(tiny_model)
    for r in c.generate("sad", bars=6, count=6, seed=3):
        back = c.tok.grid(c.tok.load("x.mid", data=c.tok.to_midi(r.grid)))
        for k in ("bar", "pos", "track", "pitch", "vel", "dur"):
            assert np.array_equal(getattr(back, k), getattr(r.grid, k)), k


def test_pieces_transformed_together_come_back_to_their_own_piece(composer):
    """transform_pieces decodes pieces of any lengths as one batch: each gets its own outputs, as
    long as it is (a bass-only piece's come back bass-only)."""
    song = composer.tok.grid(composer.tok.load("s.mid", data=SONG))  # piano and bass, 3 bars
    bass = composer.tok.grid(composer.tok.load("b.mid", data=midi_bytes([(33, False, scale(36, bars=3))])))
    longer = composer.tok.grid(composer.tok.load("l.mid", data=midi_bytes([(0, False, scale(60, bars=5))])))
    jobs = [("sad", 1.0), ("calm", 0.5)]
    together = composer.transform_pieces([(song, jobs, None), (bass, jobs, "happy"), (longer, jobs, None)], seed=4)
    assert [[r.grid.n_bars for r in rs] for rs in together] == [[3, 3], [3, 3], [5, 5]]
    assert all(set(r.grid.track.tolist()) <= set(bass.track.tolist()) for r in together[1])
    assert [r.info["source_emotion"] for r in together[1]] == ["happy", "happy"]


def test_pairs_swapped_together_each_keep_their_a(composer):
    song = composer.tok.grid(composer.tok.load("s.mid", data=SONG))  # piano and bass, 3 bars
    longer = composer.tok.grid(composer.tok.load("l.mid", data=midi_bytes([(0, False, scale(60, bars=5))])))
    out = composer.swap_pairs([(song, longer), (longer, song)], ["rhythm", "key"], seed=2)
    assert [[(r.grid.n_bars, r.info["feature"], r.info["bars_b"]) for r in rs] for rs in out] == [
        [(3, "rhythm", 5), (3, "key", 5)], [(5, "rhythm", 3), (5, "key", 3)]]


def test_decoding_threads_one_for_a_piece_and_a_bad_setting_is_a_usage_error(monkeypatch):
    from emocompose.hardware import THREADS_ENV, set_decoding_threads, torch_threads

    with torch_threads(torch.get_num_threads()):  # put back what the settings below change
        monkeypatch.delenv(THREADS_ENV, raising=False)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert set_decoding_threads(1) == 1
        monkeypatch.setenv(THREADS_ENV, "3")
        assert set_decoding_threads(1) == 3
        monkeypatch.setenv(THREADS_ENV, "many")
        with pytest.raises(UsageError, match=THREADS_ENV):
            set_decoding_threads(1)


def test_every_result_names_the_key_analyze_hears_in_its_file(composer):
    """`heard_key`, for Python callers as for the CLI: the key `analyze` reads from the MIDI the
    result is written as, for each operation (the decoder does not always land on `key`)."""
    from emocompose import features

    tok = composer.tok
    song = tok.grid(tok.load("song.mid", data=SONG))
    results = (composer.generate("sad", bars=2, count=2, seed=1) + [composer.transform(song, "happy", 1.0)]
               + [composer.swap(song, song, "key")] + composer.continuation(song, 1, seed=2))  # fmt: skip
    for r in results:
        written = tok.grid(tok.load("out.mid", data=tok.to_midi(r.grid)))
        assert r.info["heard_key"] == features.describe(written, tok.config)["key"], r.info
