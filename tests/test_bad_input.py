"""Bad input: one line on stderr naming the file and the problem, a documented exit code, no
traceback, within seconds; a batch goes on past bad files."""

from __future__ import annotations

import struct
import time

import pytest

from conftest import midi_bytes, run_cli, scale
from emocompose.errors import EXIT_INPUT, EXIT_PARTIAL

GOOD = midi_bytes([(0, False, scale())])


def _format2() -> bytes:
    return GOOD[:8] + struct.pack(">H", 2) + GOOD[10:]


def _tpq(division: int) -> bytes:
    return GOOD[:12] + struct.pack(">H", division) + GOOD[14:]


def _absurd_tempo() -> bytes:
    from symusic import Score, Tempo

    s = Score.from_midi(GOOD)
    s.tempos.append(Tempo(0, 100_000.0))  # 600 microseconds a beat
    return s.dumps_midi()


def _huge_ticks() -> bytes:
    # one note at the end of an absurd time: 2^27 ticks at 1 tick per beat
    return midi_bytes([(0, False, [(60, 80, 0, 1), (62, 80, 2**27, 2**27 + 1)])], tpq=1)


BAD = {
    "not_midi": (b"hello, I am a text file\n", "not a MIDI file"),
    "empty": (b"", "empty file"),
    "truncated": (GOOD[: len(GOOD) // 2], "truncated"),
    "header_only": (GOOD[:14], "truncated"),
    "no_notes": (midi_bytes([(0, False, [])]), "no notes"),
    "drums_only": (midi_bytes([(0, True, [(36, 100, 0, 0.5), (38, 100, 1, 1.5)])]), "only drum notes"),
    "format_2": (_format2(), "format 2"),
    "smpte": (_tpq(0xE728), "SMPTE"),
    "zero_resolution": (_tpq(0), "0 ticks per beat"),
    "absurd_tempo": (_absurd_tempo(), "absurd tempo"),
    "huge_time": (_huge_ticks(), "bars"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
@pytest.mark.parametrize("command", ["analyze", "tokenize"])
def test_bad_file_is_one_clear_line(tmp_path, case, command):
    data, why = BAD[case]
    path = tmp_path / f"{case}.mid"
    path.write_bytes(data)
    t0 = time.perf_counter()
    r = run_cli(command, path)
    assert time.perf_counter() - t0 < 30
    err = r.stderr.decode()
    assert r.returncode == EXIT_INPUT, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and why in lines[0], lines[0]


def test_file_over_size_limit_is_refused(tmp_path):
    path = tmp_path / "big.mid"
    path.write_bytes(GOOD + b"\0" * (2 * 2**20))
    r = run_cli("analyze", path, env={"EMOCOMPOSE_MAX_FILE_MB": "1"})
    assert r.returncode == EXIT_INPUT
    assert "EMOCOMPOSE_MAX_FILE_MB" in r.stderr.decode()


def test_missing_file(tmp_path):
    r = run_cli("analyze", tmp_path / "nope.mid")
    assert r.returncode == EXIT_INPUT and "no such file" in r.stderr.decode()


def test_batch_goes_on_past_bad_files(tmp_path):
    (tmp_path / "a.mid").write_bytes(GOOD)
    (tmp_path / "b.mid").write_bytes(b"junk")
    (tmp_path / "c.mid").write_bytes(GOOD)
    r = run_cli("analyze", tmp_path, "--json")
    assert r.returncode == EXIT_PARTIAL
    out = r.stdout.decode().strip().splitlines()
    assert len(out) == 2
    err = r.stderr.decode()
    assert "b.mid" in err and "1 of 3 files failed" in err


def test_all_bad_is_exit_input(tmp_path):
    (tmp_path / "a.mid").write_bytes(b"junk")
    (tmp_path / "b.mid").write_bytes(b"")
    r = run_cli("analyze", tmp_path)
    assert r.returncode == EXIT_INPUT
