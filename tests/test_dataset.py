"""preprocess: a memory-mappable dataset with features and labels, deterministic, never half written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import midi_bytes, run_cli, scale
from emocompose.dataset import Dataset, preprocess
from emocompose.errors import ModelError


@pytest.fixture
def corpus(tmp_path):
    d = tmp_path / "midi"
    d.mkdir()
    (d / "Q1_songA_0.mid").write_bytes(midi_bytes([(0, False, scale(bars=5, beats=0.5))]))
    (d / "Q3_songB_0.mid").write_bytes(midi_bytes([(0, False, scale(57, minor=True, bars=3, beats=2))]))
    (d / "plain.mid").write_bytes(midi_bytes([(0, False, scale(62, bars=2))]))
    (d / "broken.mid").write_bytes(b"MThd junk")
    return d


def test_preprocess_makes_a_dataset(corpus, tmp_path):
    m = preprocess([str(corpus)], tmp_path / "ds", workers=1)
    c = m["counts"]
    assert c["files_read"] == 4 and c["files_failed"] == 1 and c["pieces"] == 3
    assert "broken.mid" in m["failed"][0]
    ds = Dataset(tmp_path / "ds")
    assert ds.n_pieces == 3 and len(ds.bar_offsets) - 1 == c["bars"] == 10
    labels = {p["source"].split("/")[-1]: tuple(lab) for p, lab in zip(ds.pieces, ds.labels.tolist())}
    assert labels["Q1_songA_0.mid"] == (1, 1) and labels["Q3_songB_0.mid"] == (0, 0) and labels["plain.mid"] == (-1, -1)
    # features line up with bars; the first bar of the fast scale has 8 onsets
    assert ds.rhythm.shape == (10, 16) and ds.rhythm[0].sum() == 8
    q3 = [i for i, p in enumerate(ds.pieces) if "Q3" in p["source"]][0]
    assert ds.pieces[q3]["key"] == 21 and ds.bar_key[ds.piece_bars[q3]] == 21  # A minor
    assert isinstance(ds.tokens, np.memmap)


def test_labels_csv_and_splits(corpus, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("file,quadrant,split\nmidi/plain.mid,Q2,val\nQ1_songA_0.mid,Q4,test\n")
    preprocess([str(corpus)], tmp_path / "ds", labels_csv=str(csv), workers=1)
    ds = Dataset(tmp_path / "ds")
    by = {p["source"].split("/")[-1]: (p["split"], p["arousal"], p["valence"]) for p in ds.pieces}
    assert by["plain.mid"] == ("val", 1, 0) and by["Q1_songA_0.mid"] == ("test", 0, 1)
    assert by["Q3_songB_0.mid"] == ("train", 0, 0)


def test_preprocess_creates_missing_parent_folders(corpus, tmp_path):
    # a new user's first `--out data/all` must not fail after the work because `data/` is missing
    m = preprocess([str(corpus)], tmp_path / "new" / "deeper" / "ds", workers=1)
    assert Dataset(tmp_path / "new" / "deeper" / "ds").n_pieces == m["counts"]["pieces"] == 3


def test_preprocess_twice_gives_the_same_dataset(corpus, tmp_path):
    preprocess([str(corpus)], tmp_path / "a", workers=2)
    preprocess([str(corpus)], tmp_path / "b", workers=1)
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name


def test_killed_preprocess_leaves_no_finished_dataset(corpus, tmp_path, monkeypatch):
    import emocompose.dataset as dsmod

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dsmod.np, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        preprocess([str(corpus)], tmp_path / "ds", workers=1)
    assert not (tmp_path / "ds").exists()
    assert not any(tmp_path.glob(".emocompose-tmp-*"))


def test_unfinished_or_foreign_dataset_is_refused(corpus, tmp_path):
    preprocess([str(corpus)], tmp_path / "ds", workers=1)
    man = tmp_path / "ds" / "manifest.json"
    d = json.loads(man.read_text())
    d["vocab"]["fingerprint"] = "0123456789abcdef"
    man.write_text(json.dumps(d))
    with pytest.raises(ModelError, match="different token vocabulary"):
        Dataset(tmp_path / "ds")
    man.unlink()
    with pytest.raises(ModelError, match="not a finished dataset"):
        Dataset(tmp_path / "ds")


def test_cli_preprocess_reports_and_exits_partial(corpus, tmp_path):
    r = run_cli("preprocess", corpus, "--out", tmp_path / "ds", "--workers", "1")
    assert r.returncode == 4, r.stderr
    err = r.stderr.decode()
    assert "broken.mid" in err and "1 of 4 files failed" in err and "bars over L" in err
