"""Audio: the SoundFont reader and the synthesizer on a font built here (a sine whose pitch,
loop, envelope and level are known), then `render` and `--audio` as a user runs them."""

from __future__ import annotations

import io
import json
import struct
import wave

import numpy as np
import pytest

from conftest import midi_bytes, run_cli, scale
from emocompose.audio import HEADROOM, SILENCE_CB, Note, Renderer, notes_from_midi, reverb, to_wav
from emocompose.errors import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, InputError
from emocompose.soundfont import SoundFont

RATE = 44_100
PERIOD = 100  # samples per cycle of the font's sine: 441 Hz at its root key
ROOT = 69
RELEASE_S = 0.2
PAN = 0.25


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def sine_font(version: int = 2, sample_modes: int = 1) -> bytes:
    """An SF2 with a preset (bank 0, program 0) of one instrument: a 0.1 s sine at 441 Hz, root key 69, looped
    over its last 20 cycles, a 0.2 s release, and the key range split in two zones so that a
    key finds exactly one: below 64 in the middle, from 64 panned PAN to the right. Program 1
    plays the same instrument an octave up (a preset generator adds to the instrument's)."""
    n = 44 * PERIOD
    pcm = (np.sin(2 * np.pi * np.arange(n + 46) / PERIOD) * 16000).astype("<i2").tobytes()  # 46 guard points
    release = int(round(1200 * np.log2(RELEASE_S)))
    gen = lambda op, amount: struct.pack("<Hh", op, amount)  # noqa: E731
    key_range = lambda lo, hi: struct.pack("<HBB", 43, lo, hi)  # noqa: E731
    zones = [key_range(0, 63) + gen(38, release) + gen(54, sample_modes) + gen(53, 0),
             key_range(64, 127) + gen(17, int(PAN * 1000)) + gen(38, release) + gen(54, sample_modes) + gen(53, 0)]  # fmt: skip
    igen = b"".join(zones) + gen(0, 0)
    ibag = struct.pack("<HH", 0, 0) + struct.pack("<HH", 4, 0) + struct.pack("<HH", 9, 0)
    inst = struct.pack("<20sH", b"sine", 0) + struct.pack("<20sH", b"EOI", 2)
    pgen = gen(41, 0) + gen(51, 12) + gen(41, 0) + gen(0, 0)  # program 1 adds an octave to the instrument
    pbag = struct.pack("<HH", 0, 0) + struct.pack("<HH", 1, 0) + struct.pack("<HH", 3, 0)
    phdr = b"".join(struct.pack("<20sHHHIII", name, program, 0, bag, 0, 0, 0)
                    for name, program, bag in ((b"sine", 0, 0), (b"sine up", 1, 1), (b"EOP", 0, 2)))  # fmt: skip
    shdr = (struct.pack("<20sIIIIIBbHH", b"sine", 0, n, n - 20 * PERIOD, n, RATE, ROOT, 0, 0, 1)
            + struct.pack("<20sIIIIIBbHH", b"EOS", 0, 0, 0, 0, 0, 0, 0, 0, 0))  # fmt: skip
    pmod = imod = b"\0" * 10
    body = b"sfbk" + _list(b"INFO", _chunk(b"ifil", struct.pack("<HH", version, 1))) + _list(b"sdta", _chunk(b"smpl", pcm))
    body += _list(b"pdta", *(_chunk(k, v) for k, v in ((b"phdr", phdr), (b"pbag", pbag), (b"pmod", pmod),
                  (b"pgen", pgen), (b"inst", inst), (b"ibag", ibag), (b"imod", imod), (b"igen", igen), (b"shdr", shdr))))  # fmt: skip
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module")
def font(tmp_path_factory):
    path = tmp_path_factory.mktemp("sf") / "sine.sf2"
    path.write_bytes(sine_font())
    return SoundFont(path)


def _note(key=ROOT, start=0.0, end=0.5, velocity=127) -> Note:
    return Note(start, end, key, velocity, 0, 0, 1.0)


def _frequency(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 16 * len(x)))
    return spectrum.argmax() * RATE / (16 * len(x))


@pytest.mark.parametrize("key", [57, ROOT, 76, 81])
def test_a_key_sounds_at_its_equal_tempered_pitch_through_the_loop(font, key):
    audio = Renderer(font, RATE).render([_note(key, end=1.0)])
    held = audio[int(0.5 * RATE) : int(0.9 * RATE), 0]  # long past the 0.1 s sample's end: the loop
    expected = RATE / PERIOD * 2 ** ((key - ROOT) / 12)
    assert abs(_frequency(held) / expected - 1) < 0.001  # under 2 cents
    assert np.abs(held).max() > 0.5 * np.abs(audio).max()  # the loop sustains at full level


@pytest.mark.parametrize("key", [ROOT, 70, 50])
def test_the_tiled_loop_reads_the_sample_as_one_continuous_wave_within_half_a_cent(font, key):
    r = Renderer(font, RATE)
    zone, step = font.zones(0, 0, key, 100)[0], 2 ** ((key - ROOT) / 12)
    wave = r._wave(zone, key, 2 * RATE)  # the sample ends at 0.1 s: the rest is the loop, tiled
    n = int(0.15 * RATE)
    exact = np.sin(2 * np.pi * np.arange(n) * step / PERIOD) * 16000 / 32768  # whole cycles loop seamlessly
    assert np.abs(wave[:n] - exact).max() < 0.05 * np.abs(exact).max()
    cents = 1200 * np.log2(_frequency(wave[int(0.1 * RATE) :]) / (RATE / PERIOD * step))
    assert abs(cents) < 0.5


def test_a_preset_generator_adds_to_its_instruments(font):
    audio = Renderer(font, RATE).render([Note(0.0, 1.0, 60, 100, 0, 1, 1.0)])
    assert _frequency(audio[int(0.5 * RATE) : int(0.9 * RATE), 0]) == pytest.approx(2 * RATE / PERIOD * 2 ** (-9 / 12), rel=1e-3)


def test_release_fades_and_the_voice_ends_at_the_silence_floor(font):
    audio = Renderer(font, RATE).render([_note(end=0.5)])[:, 0]
    level = lambda t: np.abs(audio[int(t * RATE) : int(t * RATE) + 2 * PERIOD]).max()  # noqa: E731
    # 100 dB per release time after the key lifts: -25 dB at a quarter of it
    assert 20 * np.log10(level(0.5 + RELEASE_S / 4) / level(0.45)) == pytest.approx(-25, abs=1.5)
    end = 0.5 + RELEASE_S * SILENCE_CB / 1000
    assert np.abs(audio[int(end * RATE) + 2 :]).max() == 0


def test_one_shot_sample_stops_when_it_runs_out(tmp_path):
    path = tmp_path / "once.sf2"
    path.write_bytes(sine_font(sample_modes=0))
    audio = Renderer(SoundFont(path), RATE).render([_note(end=1.0)])[:, 0]
    assert np.abs(audio[: int(0.09 * RATE)]).max() > 0.1
    assert np.abs(audio[int(0.11 * RATE) :]).max() == 0


def test_velocity_follows_the_spec_curve_and_pan_is_equal_power(font):
    r = Renderer(font, RATE)
    loud = np.abs(r.render([_note(60, velocity=127)])).max()
    soft = np.abs(r.render([_note(60, velocity=64)])).max()
    assert soft / loud == pytest.approx((64 / 127) ** 2, rel=0.01)
    audio = r.render([_note(60)])
    assert np.abs(audio[:, 0]).max() == pytest.approx(HEADROOM * 16000 / 32768 * np.sqrt(0.5), rel=0.01)
    assert np.array_equal(audio[:, 0], audio[:, 1])  # pan 0: the middle
    right = r.render([_note(76)])
    left_peak, right_peak = np.abs(right).max(axis=0)
    assert left_peak / right_peak == pytest.approx(np.sqrt((0.5 - PAN) / (0.5 + PAN)), rel=0.01)
    assert left_peak**2 + right_peak**2 == pytest.approx(2 * np.abs(audio[:, 0]).max() ** 2, rel=0.02)


def test_notes_mix_by_addition_and_alike_notes_share_one_mix(font):
    r = Renderer(font, RATE)
    a, b, c = _note(60, 0.0, 0.5), _note(72, 0.25, 0.75), _note(60, 1.0, 1.1)  # c: a's key, shorter
    every, alone = r.render([a, b, c]), [r.render([n]) for n in (a, b, c)]
    n = min(len(x) for x in (every, *alone))
    assert np.allclose(every[:n], sum(x[:n] for x in alone), atol=1e-6)
    first = alone[0]
    again = r.render([a, _note(60, 1.0, 1.5)])  # the same note later: the same sound, moved
    k = int(1.0 * RATE)
    assert np.allclose(again[k : k + 1000], first[:1000], atol=1e-6)


def test_sustain_pedal_holds_a_released_key_until_it_lifts(tmp_path):
    from symusic import ControlChange, Score, Track
    from symusic import Note as SNote

    score = Score(480)  # 120 BPM: a beat is 0.5 s
    tr = Track("p", 0, False)
    tr.notes.append(SNote(0, 240, 60, 90))  # released at 0.25 s, the pedal down until 1 s
    tr.notes.append(SNote(1440, 240, 62, 90))  # after the pedal lifts: as written
    tr.controls.append(ControlChange(0, 64, 127))
    tr.controls.append(ControlChange(960, 64, 0))
    score.tracks.append(tr)
    notes = notes_from_midi(score.dumps_midi(), "p.mid")
    assert [(n.key, round(n.start, 3), round(n.end, 3)) for n in notes] == [(60, 0.0, 1.0), (62, 1.5, 1.75)]


def test_a_key_struck_again_cuts_the_note_still_sounding_on_it():
    from emocompose.audio import _restruck

    start, end, key = np.array([0.0, 0.5, 0.2, 0.9]), np.array([2.0, 0.7, 0.4, 3.0]), np.array([64, 64, 60, 64])
    assert _restruck(start, end, key).tolist() == [0.5, 0.7, 0.4, 3.0]


def test_drums_play_from_the_drum_bank_and_fall_back_to_a_kit(font):
    drum = Note(0.0, 0.5, 38, 100, 128, 0, 1.0)
    # the sine font has no bank 128: the first preset plays rather than nothing
    assert np.abs(Renderer(font, RATE).render([drum])).max() > 0


@pytest.mark.parametrize("data, words", [
    (b"not a soundfont at all", "not a SoundFont 2 file"),
    (sine_font()[:200], "runs past the file's end"),
    (sine_font(version=3), "SF3"),
    (sine_font().replace(b"phdr", b"phdx"), "missing"),
], ids=["junk", "truncated", "sf3", "no_presets_table"])  # fmt: skip
def test_a_broken_soundfont_is_one_reason_naming_it(tmp_path, data, words):
    path = tmp_path / "bad.sf2"
    path.write_bytes(data)
    with pytest.raises(InputError, match=words) as err:
        SoundFont(path)
    assert str(path) in str(err.value)


def test_wav_is_16_bit_stereo_and_a_mix_that_would_clip_is_scaled_to_fit():
    audio = np.zeros((RATE, 2), np.float32)
    audio[100] = [3.0, -1.5]
    with wave.open(io.BytesIO(to_wav(audio, RATE))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, RATE, RATE)
        pcm = np.frombuffer(w.readframes(RATE), "<i2").reshape(-1, 2)
    assert pcm[100, 0] == round(0.99 * 32767) and pcm[100, 1] == round(-0.495 * 32767)


def test_the_room_adds_a_tail_of_the_same_energy_and_is_the_same_every_time():
    x = np.zeros((RATE, 2), np.float32)
    x[0] = 1.0
    wet = reverb(x, RATE, 1.0)
    assert len(wet) > len(x) and np.array_equal(wet, reverb(x, RATE, 1.0))
    assert (wet[:, 0] ** 2).sum() == pytest.approx(1.0, rel=1e-3)
    assert not np.allclose(wet[:, 0], wet[:, 1])  # each ear its own room
    assert np.array_equal(reverb(x, RATE, 0.0), x)


# ---------------------------------------------------------------------------------------------
# The commands, with the default General MIDI font


def _wav(data: bytes) -> tuple[int, int, float]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnchannels(), w.getframerate(), w.getnframes() / w.getframerate()


def test_render_plays_every_track_for_the_length_of_the_piece(tmp_path):
    song = tmp_path / "song.mid"
    song.write_bytes(midi_bytes([(0, False, scale(bars=2)), (33, False, scale(36, bars=2)),
                                 (0, True, [(36, 100, b, b + 0.25) for b in range(8)])]))  # fmt: skip
    r = run_cli("render", song, "-o", tmp_path / "song.wav", "--json")
    assert r.returncode == EXIT_OK, r.stderr.decode()
    rec = json.loads(r.stdout)
    channels, rate, seconds = _wav((tmp_path / "song.wav").read_bytes())
    assert (channels, rate) == (2, 44_100)
    assert seconds == pytest.approx(rec["audio_seconds"], abs=0.01)
    assert 4.0 < seconds < 4.0 + 5  # 8 beats at 120 BPM, and the last notes' tails
    again = run_cli("render", song, "-o", tmp_path / "again.wav")
    assert again.returncode == EXIT_OK
    assert (tmp_path / "again.wav").read_bytes() == (tmp_path / "song.wav").read_bytes()


def test_render_batch_goes_on_past_a_bad_file_and_names_it(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mid").write_bytes(midi_bytes([(0, False, scale(bars=1))]))
    (tmp_path / "in" / "b.mid").write_bytes(b"junk")
    r = run_cli("render", tmp_path / "in", "-o", tmp_path / "out")
    err = r.stderr.decode()
    assert r.returncode == EXIT_PARTIAL and "b.mid" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav"]


@pytest.mark.parametrize("args, code, words", [
    (["--soundfont", "{tmp}/none.sf2"], EXIT_INPUT, "no such soundfont"),
    (["--soundfont", "{tmp}/a.mid"], EXIT_INPUT, "not a SoundFont 2 file"),
    (["--rate", "100"], EXIT_USAGE, "sample rate"),
    (["--reverb", "1.5"], EXIT_USAGE, "reverb"),
    (["--json", "-o", "-"], EXIT_USAGE, "--json writes its records to stdout"),
])  # fmt: skip
def test_render_refuses_bad_options_before_writing(tmp_path, args, code, words):
    (tmp_path / "a.mid").write_bytes(midi_bytes([(0, False, scale(bars=1))]))
    r = run_cli("render", tmp_path / "a.mid", "-o", tmp_path / "a.wav", *(a.format(tmp=tmp_path) for a in args))
    err = r.stderr.decode()
    assert r.returncode == code and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a.wav").exists()


def test_generate_writes_audio_and_a_picture_beside_the_midi(tiny_model, tmp_path):
    r = run_cli("generate", "--emotion", "calm", "--bars", "2", "--count", "2", "-m", tiny_model, "-o", tmp_path / "mid",
                "--audio", tmp_path / "wav", "--plot", tmp_path / "png", "--json")  # fmt: skip
    assert r.returncode == EXIT_OK, r.stderr.decode()
    records = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [rec["audio"] for rec in records] == [str(tmp_path / "wav" / f"calm_0_{i}.wav") for i in range(2)]
    for rec in records:
        assert _wav(open(rec["audio"], "rb").read())[0] == 2
        assert open(rec["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_picture_is_headed_by_the_name_of_the_file_it_shows(tiny_model, tmp_path, monkeypatch):
    """-o names the MIDI: its picture says that name, not the one generate would have chosen."""
    import signal

    import torch

    from emocompose import cli, figures
    from emocompose.hardware import torch_threads

    titles, draw = [], figures.piece
    monkeypatch.setattr(figures, "piece", lambda *a: titles.append(a[-1]) or draw(*a))
    # the command sets this process's decoding threads and its Ctrl-C handlers: put them back
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with torch_threads(torch.get_num_threads()), pytest.raises(SystemExit) as exc:
            cli.main(["generate", "--emotion", "calm", "--bars", "2", "-m", str(tiny_model), "-o",
                      str(tmp_path / "mine.mid"), "--plot", str(tmp_path / "mine.png")])  # fmt: skip
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert exc.value.code == EXIT_OK and titles == ["mine.mid"]


def test_soundfont_without_audio_and_two_stdouts_are_usage_errors(tiny_model, tmp_path):
    r = run_cli("generate", "--emotion", "sad", "-m", tiny_model, "--soundfont", "x.sf2")
    assert r.returncode == EXIT_USAGE and "--audio" in r.stderr.decode()
    r = run_cli("generate", "--emotion", "sad", "-m", tiny_model, "-o", "-", "--audio", "-")
    assert r.returncode == EXIT_USAGE and "stdout" in r.stderr.decode()


@pytest.mark.parametrize("program", [0, 24, 40, 56, 73])
def test_the_general_midi_font_plays_each_instrument_in_tune(program):
    from emocompose.audio import load_font

    r = Renderer(load_font(None), RATE)
    for key in (48, 69, 81):
        audio = r.render([Note(0.0, 1.0, key, 100, 0, program, 1.0)])[int(0.2 * RATE) : int(0.8 * RATE), 0]
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), 8 * len(audio)))
        hz = np.fft.rfftfreq(8 * len(audio), 1 / RATE)
        f = 440 * 2 ** ((key - 69) / 12)
        band = (hz > f * 2 ** (-1 / 12)) & (hz < f * 2 ** (1 / 12))
        peak = hz[band][spectrum[band].argmax()]
        assert abs(1200 * np.log2(peak / f)) < 15, (program, key, peak, f)
        assert spectrum[band].max() > 0.1 * spectrum.max()  # the fundamental is there, not a stray partial


@pytest.mark.parametrize("case, words", [("not_midi", "not a MIDI file"), ("truncated", "truncated"),
                                         ("no_notes", "no notes"), ("format_2", "format 2"),
                                         ("huge_time", "EMOCOMPOSE_MAX_AUDIO_MINUTES")])  # fmt: skip
def test_render_names_a_bad_file_in_one_line_and_writes_nothing(tmp_path, case, words):
    from test_bad_input import BAD

    path = tmp_path / f"{case}.mid"
    path.write_bytes(BAD[case][0])
    r = run_cli("render", path, "-o", tmp_path / "out.wav")
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == EXIT_INPUT and len(lines) == 1 and str(path) in lines[0] and words in lines[0], lines
    assert not (tmp_path / "out.wav").exists()
