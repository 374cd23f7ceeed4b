"""Fuzzing: hostile MIDI through every command that reads it. Whatever the bytes, the result is
a piece or one clean line naming the file, never a traceback, a hang or unbounded memory.
benchmarks/fuzz.py runs the same on many more inputs and prints the figures of the README."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EMOPIA, POP909, ROOT, midi_bytes, scale
from mutate import MUTATORS, mutate, outcome

SEEDS = [
    midi_bytes([(0, False, scale(60, bars=4))]),
    midi_bytes([(0, False, scale(57, minor=True, bars=3, beats=0.5)), (33, False, scale(36, bars=3, beats=2)),
                (0, True, [(36, 100, b * 0.5, b * 0.5 + 0.25) for b in range(24)])],
               tempos=((0, 90), (4, 140)), meters=((0, 4, 4), (8, 3, 4))),  # fmt: skip
]
if EMOPIA.exists():
    SEEDS += [p.read_bytes() for p in sorted(EMOPIA.glob("*.mid"))[:4]]
if POP909.exists():
    SEEDS += [p.read_bytes() for p in sorted(POP909.glob("*/[0-9]*.mid"))[:2]]
SLOW = 5.0  # seconds: "no hang past a few seconds"
MEMORY_MB = 4096  # address-space cap for the CLI runs below


def timed_outcome(data: bytes) -> str:
    t = time.perf_counter()
    result = outcome(data)
    assert time.perf_counter() - t < SLOW, "input took too long"
    return result


def test_every_mutator_fails_cleanly_or_reads():
    rng = np.random.default_rng(0)
    seen = {m.__name__: set() for m in MUTATORS}
    for i in range(400):
        name, data = mutate(SEEDS[i % len(SEEDS)], rng, n=1 + i % 3)
        seen[name.split("+")[0]].add(timed_outcome(data))
    # the mutators really break files (not all are still readable) and the run covers them all
    assert all(seen.values()) and any("refused" in s for s in seen.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=3000), fmt=st.integers(0, 3), ntracks=st.integers(0, 70000),
       division=st.integers(0, 65535))  # fmt: skip
def test_random_bytes_after_a_valid_header(body, fmt, ntracks, division):
    header = b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + min(ntracks, 65535).to_bytes(2, "big")
    timed_outcome(header + division.to_bytes(2, "big") + b"MTrk" + len(body).to_bytes(4, "big") + body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, len(SEEDS) - 1), rng_seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4))
def test_mutations_chosen_by_hypothesis(seed, rng_seed, n):
    timed_outcome(mutate(SEEDS[seed], np.random.default_rng(rng_seed), n=n)[1])


def _mutated_folder(tmp_path, count: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    folder = tmp_path / "fuzz"
    folder.mkdir()
    expected = {}
    for i in range(count):
        # the first file is left whole, so every folder has one readable file (with or without
        # ../shared/data, whose files add seeds)
        data = SEEDS[0] if i == 0 else mutate(SEEDS[i % len(SEEDS)], rng, n=1 + i % 2)[1]
        path = folder / f"f{i:03d}.mid"
        path.write_bytes(data)
        expected[path.name] = outcome(data, str(path))
    return folder, expected


def _run_capped(*args, timeout=300):
    """The CLI with its address space capped, as a shared machine would want."""

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_MB * 2**20, MEMORY_MB * 2**20))

    return subprocess.run([sys.executable, "-m", "emocompose", *map(str, args)], capture_output=True, timeout=timeout,
                          cwd=ROOT, preexec_fn=cap)  # fmt: skip


def _check_clean(r, names_failed: set[str]) -> None:
    err = r.stderr.decode()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("emocompose: ") and ".mid" in ln]
    named = {n for n in names_failed if any(n in ln for ln in lines)}
    assert named == names_failed, (names_failed - named, err)


def test_cli_preprocess_and_analyze_on_a_folder_of_hostile_files(tmp_path):
    folder, expected = _mutated_folder(tmp_path, 40)
    refused = {n for n, o in expected.items() if o == "refused"}
    assert refused and len(refused) < len(expected)
    r = _run_capped("preprocess", folder, "--out", tmp_path / "ds", "--workers", "1")
    assert r.returncode == 4
    _check_clean(r, refused)
    r = _run_capped("analyze", folder, "--json")
    assert r.returncode == 4
    _check_clean(r, refused)
    assert len(r.stdout.decode().splitlines()) == len(expected) - len(refused)


def test_cli_tokenize_transform_and_swap_on_hostile_files(tmp_path, tiny_model):
    folder, expected = _mutated_folder(tmp_path, 12, seed=2)
    refused = {n for n, o in expected.items() if o == "refused"}
    for name, result in expected.items():
        r = _run_capped("tokenize", folder / name, "-o", tmp_path / "t.json")
        assert r.returncode == (0 if result == "ok" else 3), r.stderr
        if result == "refused":
            assert len(r.stderr.decode().strip().splitlines()) == 1
    r = _run_capped("transform", folder, "--to", "sad", "--model", tiny_model, "-o", tmp_path / "out")
    assert r.returncode == 4
    _check_clean(r, refused)
    good = sorted(n for n, o in expected.items() if o == "ok")
    bad = sorted(refused)
    r = _run_capped("swap", folder / good[0], folder / bad[0], "--feature", "rhythm", "--model", tiny_model,
                    "-o", tmp_path / "s.mid")  # fmt: skip
    assert r.returncode == 3 and bad[0].encode() in r.stderr and b"Traceback" not in r.stderr


@pytest.mark.parametrize("n_tracks", [600, 5000])
def test_huge_track_counts_are_refused_fast(tmp_path, n_tracks):
    track = b"MTrk" + (4).to_bytes(4, "big") + b"\x00\xff\x2f\x00"
    data = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + n_tracks.to_bytes(2, "big") + (480).to_bytes(2, "big")
    assert timed_outcome(data + track * n_tracks) == "refused"
