"""Shared fixtures: MIDI built in code from (pitch, velocity, start, end) tuples, and real data
from ../shared/data where it exists (tests that need it skip without it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EMOCOMPOSE_DATA", ROOT.parent / "shared" / "data"))
EMOPIA = DATA / "emopia" / "midis"
POP909 = DATA / "pop909"


@pytest.fixture(autouse=True, scope="session")
def _score_cache(tmp_path_factory):
    """Scores converted in this run are kept in a folder of its own, not the user's cache
    (`score_cache`); commands run by `run_cli` inherit it."""
    os.environ["EMOCOMPOSE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def midi_bytes(tracks, tempos=((0, 120.0),), meters=((0, 4, 4),), tpq=480) -> bytes:
    """tracks: list of (program, is_drum, [(pitch, velocity, start_beat, end_beat), ...])."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    score = Score(tpq)
    for t, bpm in tempos:
        score.tempos.append(Tempo(int(t * tpq), float(bpm)))
    for t, n, d in meters:
        score.time_signatures.append(TimeSignature(int(t * tpq), n, d))
    for program, drum, notes in tracks:
        tr = Track("t", program, drum)
        for pitch, vel, start, end in notes:
            tr.notes.append(Note(int(round(start * tpq)), max(1, int(round((end - start) * tpq))), pitch, vel))
        score.tracks.append(tr)
    return score.dumps_midi()


def scale(root=60, minor=False, beats=1.0, bars=4, vel=80):
    steps = [0, 2, 3, 5, 7, 8, 10, 12] if minor else [0, 2, 4, 5, 7, 9, 11, 12]
    out, t = [], 0.0
    while t < bars * 4:
        for s in steps:
            if t >= bars * 4:
                break
            out.append((root + s, vel, t, t + beats))
            t += beats
    return out


def run_cli(*args, stdin: bytes | None = None, env: dict | None = None, timeout: float = 120):
    """Run `python -m emocompose ARGS` as a user would; returns CompletedProcess (bytes)."""
    e = {**os.environ, **(env or {})}
    e.pop("EMOCOMPOSE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "emocompose", *map(str, args)], input=stdin,
                          capture_output=True, timeout=timeout, env=e, cwd=ROOT)  # fmt: skip


def prefer(monkeypatch, model, vocab, table) -> None:
    """Make `model`'s logits take the values of `table`, (token ids, logit) pairs, wherever those
    ids are computed (`model.logits` computes a span of ids), so that tests can steer what the
    decoder likes."""
    logits = model.logits

    def preferring(h, lo=0, hi=None):
        out = logits(h, lo, hi)
        for ids, value in table:
            inside = ids[(ids >= lo) & (ids < (hi or len(vocab)))]
            out[:, inside - lo] = value
        return out

    monkeypatch.setattr(model, "logits", preferring)


def needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present")


@pytest.fixture
def write_midi(tmp_path):
    def make(name: str, *args, **kw) -> Path:
        p = tmp_path / name
        p.write_bytes(midi_bytes(*args, **kw))
        return p

    return make


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small labelled + unlabelled dataset of in-code pieces, with train, val and test splits."""
    from emocompose.dataset import preprocess

    root = tmp_path_factory.mktemp("corpus")
    midi = root / "midi"
    midi.mkdir()
    rows = ["file,quadrant,split"]
    r = np.random.default_rng(7)
    for i in range(20):
        q = 1 + i % 4
        fast = q in (1, 2)
        minor = q in (2, 3)
        notes = scale(60 + int(r.integers(0, 5)), minor=minor, beats=0.5 if fast else 1.5, bars=6, vel=90 if fast else 50)
        name = f"Q{q}_song{i}_0.mid"
        (midi / name).write_bytes(midi_bytes([(0, False, notes)]))
        rows.append(f"{name},Q{q},{'train' if i < 12 else 'val' if i < 16 else 'test'}")
    for i in range(6):  # unlabelled
        (midi / f"pop{i}.mid").write_bytes(midi_bytes([(0, False, scale(62 + i, bars=8, beats=1.0))]))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    out = root / "ds"
    preprocess([str(midi)], out, labels_csv=str(root / "labels.csv"), workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset, tmp_path_factory):
    """A tiny model trained for a few steps: real weights in a real checkpoint file."""
    from emocompose.model.config import LossConfig
    from emocompose.train import TrainConfig, train

    run = tmp_path_factory.mktemp("run")
    train(str(tiny_dataset), str(run), TrainConfig(preset="tiny", steps=6, batch=4, bars=4, precision="fp32",
                                                   checkpoint_every=6), LossConfig(kl_warmup=2))  # fmt: skip
    return run / "model.safetensors"
