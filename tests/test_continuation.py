"""Continuing a prompt: the decoder's memory of the prompt is what one pass over prompt and
continuation computes, and the output is the prompt unchanged, then the new bars in its meter,
tempo and instruments."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import midi_bytes, run_cli, scale
from emocompose.errors import EXIT_USAGE


@pytest.fixture(scope="module")
def composer(tiny_model):
    from emocompose.compose import Composer

    return Composer.load(tiny_model)


def _prompt(bars: int = 3) -> bytes:
    return midi_bytes([(0, False, scale(60, bars=bars, beats=0.5)), (33, False, scale(36, bars=bars, beats=2.0)),
                       (0, True, [(36, 100, b, b + 0.25) for b in range(0, 4 * bars)])])  # fmt: skip


def test_the_memory_of_a_prompt_is_what_one_pass_over_prompt_and_continuation_computes(composer, tmp_path):
    from emocompose.melody import piano_view

    tm = composer.trained
    path = tmp_path / "p.mid"
    path.write_bytes(_prompt(3))
    prompt = piano_view(tm.tok.grid(tm.tok.load(str(path))))
    more = composer.generate("sad", bars=2, seed=1)[0].grid
    both = prompt.then(more)
    mu_r, mu_k = tm.encode(prompt)
    z_r, z_k = torch.randn(2, mu_r.shape[1]), torch.randn(2, mu_k.shape[1])
    (tokens, lens), = tm._windows(both, 16)
    with torch.no_grad():
        h, pk, _ = tm.model.decode(tokens, lens, torch.cat([mu_r, z_r])[None], torch.cat([mu_k, z_k])[None])
        one_pass = pk.pad(h)[0, prompt.n_bars :]
        (tokens, lens), = tm._windows(prompt, 16)
        whole = tm.model.decode(tokens, lens, mu_r[None], mu_k[None])[2]
        for window in (1, 2, 16):  # read in windows, the memory carried across them
            memory = tm.memory(prompt, mu_r, mu_k, window=window)
            assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(memory[0], whole[0])), window
            (tokens, lens), = tm._windows(more, 16)
            h, pk, _ = tm.model.decode(tokens, lens, z_r[None], z_k[None], *memory)
            after = pk.pad(h)[0]
            real = torch.arange(after.shape[1]) < lens[0, :, None]
            assert torch.allclose(after[real], one_pass[:, : after.shape[1]][real], atol=1e-4), window


def test_a_continuation_is_the_prompt_unchanged_then_new_bars_in_its_meter_tempo_and_instruments(tiny_model, tmp_path):
    from emocompose.midi import DRUMS
    from emocompose.tokenizer import Tokenizer

    (tmp_path / "p.mid").write_bytes(_prompt(3))
    r = run_cli("generate", "--prompt", tmp_path / "p.mid", "--bars", "4", "--emotion", "calm", "-m", tiny_model,
                "-o", tmp_path / "out.mid", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    rec = json.loads(r.stdout)
    assert (rec["bars"], rec["prompt_bars"], rec["new_bars"], rec["emotion"]) == (7, 3, 4, "calm")
    tok = Tokenizer()
    src, out = (tok.grid(tok.load(str(tmp_path / name))) for name in ("p.mid", "out.mid"))
    head, tail = out.bar_slice(0, 3), out.bar_slice(3, 7)
    for name in ("bar", "pos", "track", "pitch", "vel", "dur"):
        assert np.array_equal(getattr(head, name), getattr(src, name)), name
    assert (tail.bar_positions == src.bar_positions[-1]).all() and (tail.bar_tempo == src.bar_tempo[-1]).all()
    assert set(tail.track.tolist()) <= set(src.track.tolist())
    last_drums = sorted(src.pos[(src.track == DRUMS) & (src.bar == 2)].tolist())
    for b in range(4):  # the last bar's drums go on
        assert sorted(tail.pos[(tail.track == DRUMS) & (tail.bar == b)].tolist()) == last_drums


@pytest.mark.parametrize("args, words", [
    (["--emotion", "calm:2,sad:2"], "one emotion"),
    (["--key", "C major"], "key from its prompt"),
    (["--arousal", "0.5", "--valence", "0.5"], "arousal and valence"),
    (["--paper"], "no continuation"),
    (["--prompt-bars", "0"], "at least 1"),
    (["--echo", "0.3"], "no echo"),
    (["--transition", "1"], "no transition"),
    (["--key-spread", "0.3"], "key spread"),
])  # fmt: skip
def test_a_prompt_refuses_what_it_sets_itself(tiny_model, tmp_path, args, words):
    (tmp_path / "p.mid").write_bytes(_prompt(2))
    r = run_cli("generate", "--prompt", tmp_path / "p.mid", "-m", tiny_model, "-o", tmp_path / "o.mid", *args)
    assert r.returncode == EXIT_USAGE and words in r.stderr.decode(), r.stderr.decode()
    assert not (tmp_path / "o.mid").exists()


def test_a_prompt_that_cannot_be_read_or_is_too_long_is_named(tiny_model, tmp_path):
    (tmp_path / "junk.mid").write_bytes(b"not music")
    r = run_cli("generate", "--prompt", tmp_path / "junk.mid", "-m", tiny_model, "-o", tmp_path / "o.mid")
    assert r.returncode == 3 and "junk.mid" in r.stderr.decode() and "not a MIDI file" in r.stderr.decode()
    (tmp_path / "p.mid").write_bytes(_prompt(3))
    r = run_cli("generate", "--prompt", tmp_path / "p.mid", "--bars", "2", "-m", tiny_model, "-o", tmp_path / "o.mid",
                env={"EMOCOMPOSE_MAX_OUTPUT_BARS": "4"})  # fmt: skip
    err = r.stderr.decode()
    assert r.returncode == 3 and "p.mid: 3 bars of prompt and 2 new ones" in err and "EMOCOMPOSE_MAX_OUTPUT_BARS" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.mid").exists()


def test_a_continuation_is_what_its_file_holds_when_the_prompt_ends_on_sounding_keys(composer):
    """A prompt cut while its notes still sound (most EMOPIA clips are) goes on sounding into
    the new bars: those keys stay held while decoding, and the piece is what its MIDI file holds
    (a new note on a key still sounding would leave the file two notes on one key at once)."""
    tok = composer.tok
    chord = [(p, 70, 10.0, 20.0) for p in range(36, 96, 2)]  # 30 keys sounding 8 beats past the end
    prompt = tok.grid(tok.load("p.mid", data=midi_bytes([(0, False, scale(60, bars=3, beats=0.5)[:-4] + chord)])))
    steps = tok.config.duration_array
    assert (prompt.onsets + steps[prompt.dur] > prompt.bar_positions.sum()).sum() >= 20
    for r in composer.continuation(prompt, bars=3, emotion="happy", count=4, seed=5):
        back = tok.grid(tok.load("x.mid", data=tok.to_midi(r.grid)))
        for k in ("bar", "pos", "track", "pitch", "vel", "dur"):
            assert np.array_equal(getattr(back, k), getattr(r.grid, k)), k
