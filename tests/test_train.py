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
    from emocompose import train

    rates = {}
    monkeypatch.setattr(train, "_matmul_rate", lambda dtype, *a: rates[dtype])
    rates.update(bf16=0.9e9, fp32=140e9)  # emulated bf16 (measured on an AVX2-only EPYC)
    assert train.cpu_precision() == "fp32"
    rates.update(bf16=330e9, fp32=140e9)  # AMX
    assert train.cpu_precision() == "bf16"
    rates.update(bf16=150e9, fp32=140e9)  # no real gain: fp32 keeps full precision
    assert train.cpu_precision() == "fp32"
