"""Faults: tampered checkpoints, kills in the middle of a batch, two writers in one folder,
limits, a full disk and unwritable folders."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, midi_bytes, run_cli, scale
from emocompose.errors import EXIT_MODEL, EXIT_OUTPUT, EXIT_USAGE, ModelError

SONG = midi_bytes([(0, False, scale(60, bars=4, beats=0.5))])


# -- checkpoints ------------------------------------------------------------------------------


class _Boom:
    """Unpickling this runs code: it creates the file named in the constructor."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _rewrite(src, dst, edit_tensors=None, edit_meta=None):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        m = json.loads(meta["emocompose"])
        edit_meta(m)
        meta["emocompose"] = json.dumps(m)
    save_file(tensors, str(dst), metadata=meta)


def _vocab_version(m):
    m["vocab"]["version"] = 99


def _fingerprint(m):
    m["vocab"]["tokens"][5] = "Bar-999"


TAMPERED = {
    "truncated": (lambda b: b[: len(b) // 2], "truncated"),
    "header cut": (lambda b: b[:40], "safetensors"),
    "header garbage": (lambda b: b[:8] + b"{" + b"\x00\xff" * 20 + b[49:], "corrupt"),
    "header length lies": (lambda b: (len(b) * 4).to_bytes(8, "little") + b[8:], "bad header"),
}
REWRITTEN = {
    "wrong shape": (dict(edit_tensors=lambda t: t.update({k: t[k][:-1].clone() for k in list(t)[:1]})), "shape"),
    "missing tensor": (dict(edit_tensors=lambda t: t.pop(sorted(t)[-1])), "lacks"),
    "unknown tensor": (dict(edit_tensors=lambda t: t.update({"evil": t[sorted(t)[0]].clone()})), "unknown"),
    "other vocabulary version": (dict(edit_meta=_vocab_version), "vocabulary version"),
    "other vocabulary": (dict(edit_meta=_fingerprint), "different token vocabulary"),
    "other format": (dict(edit_meta=lambda m: m.update(format=7)), "format"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_bytes_are_refused(case, tiny_model, tmp_path):
    from emocompose.compose import Composer

    edit, words = TAMPERED[case]
    bad = tmp_path / "m.safetensors"
    bad.write_bytes(edit(tiny_model.read_bytes()))
    with pytest.raises(ModelError, match=words) as exc:
        Composer.load(bad)
    assert "\n" not in str(exc.value) and str(bad) in str(exc.value)


@pytest.mark.parametrize("case", sorted(REWRITTEN))
def test_tampered_contents_are_refused(case, tiny_model, tmp_path):
    from emocompose.compose import Composer

    kw, words = REWRITTEN[case]
    bad = tmp_path / "m.safetensors"
    _rewrite(tiny_model, bad, **kw)
    with pytest.raises(ModelError, match=words):
        Composer.load(bad)


@pytest.mark.parametrize("name", ["model.safetensors", "model.pt", "model.bin", "model"])
def test_a_pickle_under_any_name_is_refused_and_runs_nothing(name, tmp_path):
    import torch

    marker = tmp_path / "pwned"
    path = tmp_path / name
    with open(path, "wb") as fh:
        pickle.dump(_Boom(marker), fh, protocol=2)
    r = run_cli("generate", "-e", "sad", "--model", path, "-o", tmp_path / "o.mid")
    assert r.returncode == EXIT_MODEL and b"pickle" in r.stderr and not marker.exists()
    torch.save({"w": _Boom(marker)}, path)  # torch's zip format, also pickle inside
    r = run_cli("generate", "-e", "sad", "--model", path, "-o", tmp_path / "o.mid")
    assert r.returncode == EXIT_MODEL and not marker.exists() and not (tmp_path / "o.mid").exists()


def test_cli_names_the_tampered_checkpoint(tiny_model, tmp_path):
    bad = tmp_path / "m.safetensors"
    _rewrite(tiny_model, bad, edit_meta=_vocab_version)
    r = run_cli("transform", "-", "--to", "sad", "--model", bad, "-o", "-", stdin=SONG)
    err = r.stderr.decode().strip()
    assert r.returncode == EXIT_MODEL and len(err.splitlines()) == 1 and str(bad) in err and "Traceback" not in err


# -- interruptions and concurrency -------------------------------------------------------------


def _complete_midis(folder):
    """Every .mid in the folder is whole: it parses and ends with its end-of-track event."""
    from symusic import Score

    files = sorted(folder.glob("*.mid"))
    for f in files:
        data = f.read_bytes()
        assert data.endswith(b"\xff\x2f\x00") and Score.from_midi(data).end() > 0, f
    return files


def test_kill_during_a_transform_batch_leaves_only_whole_files_and_rerun_finishes(tiny_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(12):
        (src / f"s{i:02d}.mid").write_bytes(midi_bytes([(0, False, scale(60 + i, bars=8, beats=0.5))]))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "emocompose", "transform", str(src), "--to", "calm", "--model", str(tiny_model),
           "-o", str(out), "--skip-existing"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.mid"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    done = _complete_midis(out)
    assert 3 <= len(done) < 12
    before = {f.name: f.read_bytes() for f in done}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    after = _complete_midis(out)
    assert len(after) == 12 and all((out / n).read_bytes() == b for n, b in before.items())
    assert f"skipped {len(done)}".encode() in r.stderr
    # the same command with the same seed writes the same bytes as a run never interrupted
    clean = tmp_path / "clean"
    subprocess.run(cmd[:-3] + ["-o", str(clean)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    assert {f.name: f.read_bytes() for f in clean.glob("*.mid")} == {f.name: f.read_bytes() for f in after}


# a process that dies (os._exit: no clean-up runs, as under SIGKILL) at the n-th call of a function
DIE_AT = """
import os, sys
import numpy as np
from emocompose import dataset
where, n = sys.argv.pop(1), int(sys.argv.pop(1))
calls = [0]
def dying(real):
    def f(*a, **k):
        calls[0] += 1
        if calls[0] >= n:
            os._exit(9)
        return real(*a, **k)
    return f
if where == "read":
    dataset._tokenize_one = dying(dataset._tokenize_one)
else:
    np.save = dying(np.save)
from emocompose.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("where, n", [("read", 30), ("save", 1), ("save", 4), ("save", 6)])
def test_a_preprocess_killed_at_any_moment_leaves_no_dataset(tmp_path, where, n):
    """Killed while reading files, or before, between or after writing its arrays: there is no
    dataset (nothing `train` would take), and rerunning makes the same dataset as a run never
    killed, clearing the killed run's temporary folder."""
    src = tmp_path / "midi"
    src.mkdir()
    for i in range(40):
        (src / f"Q{1 + i % 4}_s{i}_0.mid").write_bytes(midi_bytes([(0, False, scale(55 + i % 12, bars=4, beats=0.25))]))
    out = tmp_path / "ds"
    args = ["preprocess", str(src), "--out", str(out), "--workers", "1"]
    killed = subprocess.run([sys.executable, "-c", DIE_AT, where, str(n), *args], cwd=ROOT, capture_output=True, timeout=300)
    assert killed.returncode == 9, killed.stderr
    assert not out.exists()
    assert bool(list(tmp_path.glob(".emocompose-tmp-*"))) == (where == "save")  # writing had begun
    r = subprocess.run([sys.executable, "-m", "emocompose", *args], cwd=ROOT, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    clean = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "emocompose", *args[:2], "--out", str(clean), "--workers", "1"], cwd=ROOT,
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    for f in sorted(clean.iterdir()):
        assert f.read_bytes() == (out / f.name).read_bytes(), f.name
    assert not list(tmp_path.glob(".emocompose-tmp-*"))


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    from emocompose.atomic import TMP_MARK, atomic_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{TMP_MARK}ds.{int(dead.stdout)}.abcd"
    live = tmp_path / f"{TMP_MARK}ds.{os.getpid()}.ef01"  # a writer still running: left alone
    for p in (stale, live):
        p.mkdir()
        (p / "tokens.npy").write_bytes(b"half")
    with atomic_dir(tmp_path / "ds") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not stale.exists() and live.exists() and (tmp_path / "ds" / "manifest.json").exists()


def test_two_processes_writing_one_folder_never_collide(tiny_model, tmp_path):
    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "emocompose", "generate", "-e", "happy", "--bars", "2", "--count", "3",
           "--model", str(tiny_model), "-o", str(out) + "/", "--json"]  # fmt: skip
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    paths = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        paths += [json.loads(line)["path"] for line in stdout.decode().splitlines()]
    assert len(set(paths)) == 9  # nobody overwrote anybody
    files = _complete_midis(out)
    assert sorted(map(str, files)) == sorted(paths)
    # same seed, same command: the three copies of each piece are byte-identical (none interleaved)
    by_piece = {}
    for f in files:
        by_piece.setdefault(f.name.split("-")[0].removesuffix(".mid"), set()).add(f.read_bytes())
    assert len(by_piece) == 3 and all(len(v) == 1 for v in by_piece.values())


# -- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, env, variable", [
    (["generate", "-e", "sad", "--bars", "600"], {}, "EMOCOMPOSE_MAX_OUTPUT_BARS"),
    (["generate", "-e", "sad", "--count", "300"], {}, "EMOCOMPOSE_MAX_COUNT"),
    (["analyze", "IN"], {"EMOCOMPOSE_MAX_FILE_MB": "0"}, "EMOCOMPOSE_MAX_FILE_MB"),
    (["analyze", "IN"], {"EMOCOMPOSE_MAX_NOTES": "10"}, "EMOCOMPOSE_MAX_NOTES"),
    (["analyze", "IN"], {"EMOCOMPOSE_MAX_BARS": "2"}, "EMOCOMPOSE_MAX_BARS"),
    (["analyze", "IN"], {"EMOCOMPOSE_MAX_TRACKS": "0"}, "EMOCOMPOSE_MAX_TRACKS"),
])  # fmt: skip
def test_each_limit_says_how_to_lift_it(args, env, variable, tmp_path):
    song = tmp_path / "song.mid"
    song.write_bytes(SONG)
    r = run_cli(*[str(song) if a == "IN" else a for a in args], env=env)
    err = r.stderr.decode().strip()
    assert r.returncode in (EXIT_USAGE, 3) and variable in err and len(err.splitlines()) == 1, err


def test_a_lifted_limit_lets_the_input_through(tmp_path):
    song = tmp_path / "song.mid"
    song.write_bytes(SONG)
    assert run_cli("analyze", song, env={"EMOCOMPOSE_MAX_NOTES": "10"}).returncode == 3
    assert run_cli("analyze", song, env={"EMOCOMPOSE_MAX_NOTES": "1000"}).returncode == 0


# -- full disk, read-only folders --------------------------------------------------------------


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only")])
def test_full_or_read_only_disk_is_one_line_and_leaves_nothing(code, words, tmp_path, monkeypatch, capsys):
    """The OS refuses the write half-way (simulated: root ignores permissions, and a real full
    disk cannot be made without privileges); the command says so and leaves no file behind."""
    from emocompose import atomic, cli

    song = tmp_path / "song.mid"
    song.write_bytes(SONG)
    real_fsync = os.fsync

    def failing_fsync(fd):
        real_fsync(fd)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    for args in (["tokenize", str(song), "-o", str(tmp_path / "t.json")],
                 ["detokenize", "TOKENS", "-o", str(tmp_path / "back.mid")]):  # fmt: skip
        if "TOKENS" in args:
            (tmp_path / "ok.json").write_text(run_cli("tokenize", song).stdout.decode())
            args = [str(tmp_path / "ok.json") if a == "TOKENS" else a for a in args]
        with pytest.raises(SystemExit) as exc:
            cli.main(args)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == EXIT_OUTPUT and words in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.json", "song.mid"]  # no partial or temporary file


def test_an_unwritable_folder_for_real(tmp_path):
    """The OS itself refuses (no simulation, and root too): a file stands where the output's
    folder should be."""
    song = tmp_path / "song.mid"
    song.write_bytes(SONG)
    (tmp_path / "blocker").write_text("a file, not a folder")
    for args in (["tokenize", song, "-o", tmp_path / "blocker" / "t.json"],
                 ["generate", "-e", "sad", "--bars", "1", "-o", tmp_path / "blocker" / "deeper" / "x.mid"]):  # fmt: skip
        r = run_cli(*args)
        err = r.stderr.decode()
        assert r.returncode == EXIT_OUTPUT and "a file stands where a folder is needed" in err, err
        assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "song.mid"]


def test_a_safetensors_header_length_that_starts_like_a_pickle_is_still_read(tmp_path):
    """Found by the sweep: a header 128 + 256k bytes long starts with 0x80, as a pickle does."""
    import torch

    from emocompose import checkpoint

    for pad in range(0, 512, 8):
        path = tmp_path / "m.safetensors"
        checkpoint.save(path, {"w": torch.zeros(3)}, {"format": checkpoint.FORMAT, "pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    assert checkpoint.read_meta(path)["pad"] == "x" * pad
