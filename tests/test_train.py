"""train: resume after a kill equals an uninterrupted run; two DDP ranks equal one process;
bad datasets and checkpoints are refused with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from conftest import ROOT, run_cli
from emocompose.errors import EXIT_MODEL, EXIT_OUTPUT

ARGS = ["--preset", "tiny", "--batch", "4", "--bars", "4", "--precision", "fp32", "--threads", "1",
        "--checkpoint-every", "1", "--kl-warmup", "5"]  # fmt: skip


def weights(run):
    return load_file(str(run / "model.safetensors"))


def assert_same(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max())


def test_resume_after_kill_equals_uninterrupted(tiny_dataset, tmp_path):
    steps = 14
    r = run_cli("train", tiny_dataset, "--out", tmp_path / "full", "--steps", steps, *ARGS)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    full = weights(tmp_path / "full")

    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "emocompose", "train", str(tiny_dataset), "--out", str(run),
                             "--steps", str(steps), *ARGS], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    state = run / "config.json"
    while time.time() < deadline:  # kill it mid-run, wherever it is, once a checkpoint exists
        if state.exists() and json.loads(state.read_text())["step"] >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert killed_at < steps, "the run finished before it could be killed"
    # --resume alone: the run's own options (preset, batch, steps, ...) come from its checkpoint
    r = run_cli("train", tiny_dataset, "--out", run, "--resume", "--threads", "1")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert_same(weights(run), full, atol=1e-6)
    # the log has one line per logged step, none duplicated by the resume
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    logged = [d["step"] for d in records if "loss" in d]
    assert logged == sorted(set(logged)) and logged[-1] == steps


def test_two_ddp_ranks_equal_one_process(tiny_dataset, tmp_path):
    steps = 4
    r = run_cli("train", tiny_dataset, "--out", tmp_path / "one", "--steps", steps, *ARGS)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "emocompose", "train", str(tiny_dataset), "--out", str(tmp_path / "two"), "--steps", str(steps), *ARGS]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert_same(weights(tmp_path / "two"), weights(tmp_path / "one"), atol=1e-5)


def test_train_writes_log_and_validation(tiny_dataset, tmp_path):
    r = run_cli("train", tiny_dataset, "--out", tmp_path / "run", "--steps", 6, *ARGS)
    assert r.returncode == 0
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("step" in x for x in lines) and any("loss" in x for x in lines)
    val = [x for x in lines if "val_loss" in x]
    assert val and "val_acc_arousal" in val[-1]
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["model"]["d"] == 32 and meta["train"]["preset"] == "tiny" and meta["step"] == 6
    # the key table: the 12 labelled train pieces, 6 of each valence, and z_k means of seen keys
    w = weights(tmp_path / "run")
    assert w["key_share"].sum(1).tolist() == [6.0, 6.0]
    assert (w["key_weight"] > 0).sum() >= 2 and torch.isfinite(w["key_sum"]).all()


def test_missing_and_unfinished_dataset(tmp_path):
    r = run_cli("train", tmp_path / "nope", "--out", tmp_path / "run", *ARGS)
    assert r.returncode == EXIT_MODEL and b"no such dataset" in r.stderr and b"Traceback" not in r.stderr
    (tmp_path / "half").mkdir()
    r = run_cli("train", tmp_path / "half", "--out", tmp_path / "run", *ARGS)
    assert r.returncode == EXIT_MODEL and b"not a finished dataset" in r.stderr


def test_checkpoint_of_another_preset_is_refused(tiny_dataset, tmp_path):
    r = run_cli("train", tiny_dataset, "--out", tmp_path / "run", "--steps", 2, *ARGS)
    assert r.returncode == 0
    args = [a if a != "tiny" else "small" for a in ARGS]
    r = run_cli("train", tiny_dataset, "--out", tmp_path / "run", "--steps", 4, "--resume", *args)
    assert r.returncode == EXIT_MODEL and b"preset" in r.stderr, r.stderr


def test_unwritable_output(tiny_dataset, tmp_path):
    blocker = tmp_path / "a-file"  # a folder cannot be made under a file, even by root
    blocker.write_text("")
    r = run_cli("train", tiny_dataset, "--out", blocker / "run", "--steps", 2, *ARGS)
    assert r.returncode == EXIT_OUTPUT and b"cannot write" in r.stderr, r.stderr


def test_auto_precision_takes_bf16_only_where_it_is_faster(monkeypatch):
    from emocompose import hardware

    rates = {}
    monkeypatch.setattr(hardware, "_matmul_rate", lambda dtype, *a: rates[dtype])
    rates.update(bf16=0.9e9, fp32=140e9)  # emulated bf16 (measured on an AVX2-only EPYC)
    assert hardware.cpu_precision() == "fp32"
    rates.update(bf16=330e9, fp32=140e9)  # AMX
    assert hardware.cpu_precision() == "bf16"
    rates.update(bf16=150e9, fp32=140e9)  # no real gain: fp32 keeps full precision
    assert hardware.cpu_precision() == "fp32"


def _one_piece_dataset(tmp_path, name, notes, drums):
    from conftest import midi_bytes
    from emocompose.dataset import preprocess

    folder = tmp_path / name
    folder.mkdir()
    (folder / "p.mid").write_bytes(midi_bytes([(0, False, notes), (0, True, drums)]))
    preprocess([str(folder)], tmp_path / f"{name}_ds", workers=1)
    return tmp_path / f"{name}_ds"


def test_transposed_window_equals_the_transposed_piece(tmp_path):
    """A window moved by s semitones in `collate` is exactly what preprocessing the piece played
    s semitones higher gives: pitched tokens and targets, bar keys; drums, rhythm and labels stay."""
    from conftest import scale
    from emocompose.dataset import Dataset
    from emocompose.dataset import Windows
    from emocompose.train import TrainConfig

    notes = scale(60, minor=True, beats=0.5, bars=6) + [(48, 70, 4 * b, 4 * b + 3) for b in range(6)]
    drums = [(36, 90, b, b + 0.25) for b in range(24)]
    cfg = TrainConfig(bars=4, transpose=6)
    for shift in (3, -5):
        moved = [(p + shift, v, a, b) for p, v, a, b in notes]
        base = Windows(Dataset(_one_piece_dataset(tmp_path, f"base{shift}", notes, drums)), cfg)
        other = Windows(Dataset(_one_piece_dataset(tmp_path, f"moved{shift}", moved, drums)), cfg)
        for start in (0, 2):
            a = base.collate([(0, start, shift)], torch)
            b = other.collate([(0, start, 0)], torch)
            for k in a:
                assert torch.equal(a[k], b[k]), (shift, start, k)
        assert not torch.equal(a["tokens"], base.collate([(0, 2, 0)], torch)["tokens"])


def test_transposition_stays_in_midi_range(tmp_path):
    from conftest import scale
    from emocompose.dataset import Dataset
    from emocompose.dataset import Windows
    from emocompose.train import TrainConfig

    high = [(p + 60, v, a, b) for p, v, a, b in scale(55, bars=4)]  # up to MIDI 127
    win = Windows(Dataset(_one_piece_dataset(tmp_path, "high", high, [])), TrainConfig(bars=4))
    ids = win.collate([(0, 0, 6)], torch)["tokens"]
    plain = win.collate([(0, 0, 0)], torch)["tokens"]
    assert torch.equal(ids, plain)  # the top note is 127: no room to move up
    down = win.collate([(0, 0, -6)], torch)["tokens"]
    pitched = torch.from_numpy(win._pitched(plain.numpy()))
    assert torch.equal(down[pitched], plain[pitched] - 6) and torch.equal(down[~pitched], plain[~pitched])


def test_init_starts_from_a_model_file_and_best_is_the_lowest_validation(tiny_dataset, tmp_path):
    from emocompose import checkpoint

    # a model far from the seed's initial weights (a high rate), then a run from it at a rate so
    # low that its weights must still be the file's
    r = run_cli("train", tiny_dataset, "--out", tmp_path / "far", "--steps", 3, "--lr", "1e-2", "--warmup", "1", *ARGS)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    far = tmp_path / "far" / "model.safetensors"
    r = run_cli("train", tiny_dataset, "--out", tmp_path / "run", "--steps", 3, "--init", far,
                "--lr", "1e-9", "--warmup", "1", *ARGS)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    start = load_file(str(far))
    got = load_file(str(tmp_path / "run" / "train_state.safetensors"))
    moved = [k for k in start if k not in ("key_sum", "key_weight", "key_share") and
             not torch.allclose(start[k].float(), got[k], atol=1e-7, rtol=0)]  # fmt: skip
    assert not moved, moved
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    vals = [x["val_rec"] for x in log if "val_rec" in x]
    best = checkpoint.read_meta(tmp_path / "run" / "best.safetensors")
    assert best["val_rec"] == min(vals) and best["init"] == str(far)
    # model files keep matrices in fp16 (half the bytes) and the key table in fp32
    stored = load_file(str(tmp_path / "run" / "best.safetensors"))
    assert stored["embed.weight"].dtype == torch.float16 and stored["key_sum"].dtype == torch.float32
    state = load_file(str(tmp_path / "run" / "train_state.safetensors"))
    assert state["embed.weight"].dtype == torch.float32


def test_init_from_another_preset_is_refused(tiny_dataset, tiny_model, tmp_path):
    args = [a if a != "tiny" else "mini" for a in ARGS]
    r = run_cli("train", tiny_dataset, "--out", tmp_path / "run", "--steps", 2, "--init", tiny_model, *args)
    assert r.returncode == EXIT_MODEL and b"preset" in r.stderr and b"Traceback" not in r.stderr, r.stderr


def test_a_model_of_one_memory_bar_starts_a_run_of_two(tiny_dataset, tiny_model, tmp_path):
    from emocompose import checkpoint

    r = run_cli("train", tiny_dataset, "--out", tmp_path / "run", "--steps", 2, "--init", tiny_model,
                "--memory-bars", 2, *ARGS)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    start, _, _ = checkpoint.load_model(tiny_model)
    model, _, _ = checkpoint.load_model(tmp_path / "run" / "model.safetensors")
    assert start.dec.memory_bars == 1 and model.dec.memory_bars == model.config.dec_memory_bars == 2
    assert model.enc_r.memory_bars == 1  # the encoders read one bar back, as before
    r = run_cli("generate", "--model", tmp_path / "run" / "model.safetensors", "--emotion", "sad", "--bars", 3,
                "-o", tmp_path / "sad.mid")  # fmt: skip
    assert r.returncode == 0 and (tmp_path / "sad.mid").stat().st_size > 0, r.stderr.decode()[-2000:]


def test_a_training_state_from_before_a_model_field_resumes(tiny_dataset, tmp_path):
    from emocompose import checkpoint

    run = tmp_path / "run"
    assert run_cli("train", tiny_dataset, "--out", run, "--steps", 1, *ARGS).returncode == 0
    state = run / "train_state.safetensors"
    meta = checkpoint.read_meta(state)
    del meta["model"]["dec_memory_bars"]  # as written before the field existed
    checkpoint.save(state, checkpoint.load_tensors(state), meta)
    r = run_cli("train", tiny_dataset, "--out", run, "--steps", 2, "--resume", *ARGS)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert checkpoint.read_meta(state)["step"] == 2


def test_train_config_checks_its_own_values():
    import pytest

    from emocompose.errors import UsageError
    from emocompose.train import TrainConfig

    for bad in ({"precision": "fp16"}, {"transpose": 13}, {"batch": 0}, {"memory_bars": 0}):
        with pytest.raises(UsageError):
            TrainConfig(**bad)
