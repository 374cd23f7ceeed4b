"""The labelled real music that `evaluate` measures against (its clips cut to the evaluation
length, with their split) and the emotion judge fitted on its train split."""

from __future__ import annotations

import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocompose import judge
from emocompose.errors import ModelError, UsageError
from emocompose.grid import Grid
from emocompose.tokenizer import Tokenizer


@dataclass
class Real:
    """Labelled real pieces cut to the evaluation length, with their split."""

    grids: list[Grid]
    labels: np.ndarray  # (n, 2) arousal, valence in {0, 1}
    splits: np.ndarray
    sources: list[str]
    split_note: str


def load_real(data: str, tok: Tokenizer, bars: int, labels_csv: str | None = None, workers: int = 0) -> Real:
    """The labelled pieces of a dataset folder, or of a folder of MIDI preprocessed on the fly."""
    from emocompose.dataset import Dataset, preprocess

    path = Path(data)
    if not path.exists():
        raise UsageError(f"no such dataset or folder: {data}")
    with tempfile.TemporaryDirectory(prefix="emocompose-eval-") as tmp:
        if (path / "manifest.json").is_file():
            ds = Dataset(path)
        else:
            preprocess([data], Path(tmp) / "ds", labels_csv=labels_csv, workers=workers, config=tok.config)
            ds = Dataset(Path(tmp) / "ds")
        if ds.vocab.fingerprint != tok.vocab.fingerprint:
            raise ModelError("the dataset was made with another token vocabulary than the model's", data)
        keep = [i for i in range(ds.n_pieces) if ds.labels[i, 0] >= 0 and ds.labels[i, 1] >= 0]
        grids = [tok.decode(ds.piece_ids(i)) for i in keep]
        pieces = [ds.pieces[i] for i in keep]
    if not keep:
        raise UsageError(f"{data}: no labelled pieces; evaluate needs labelled real music (EMOPIA: --labels labels.csv)")
    grids = [g.bar_slice(0, min(bars, g.n_bars)) for g in grids]
    splits = np.array([p["split"] for p in pieces])
    note = "the data's own split"
    if not (splits == "train").any() or not (splits == "test").any():
        # no split column: a fixed fifth of the files by a hash of their name (not song-disjoint)
        splits = np.array(["test" if zlib.crc32(p["source"].encode()) % 5 == 0 else "train" for p in pieces])
        note = "a hash of the file names (no split given; not song-disjoint)"
    labels = np.array([[p["arousal"], p["valence"]] for p in pieces], np.int64)
    return Real(grids, labels, splits, [p["source"] for p in pieces], note)


def fit_judge(real: Real, config) -> tuple[judge.Judge, dict]:
    """The judge trained on the real train clips, and its scores on the test (and val) clips:
    the real-music ceiling of every emotion figure."""
    tr, te, va = (real.splits == s for s in ("train", "test", "val"))
    f = judge.features_of(real.grids, config)
    j = judge.Judge.fit(f[tr], real.labels[tr])
    return j, {"trained_on": int(tr.sum()), "tested_on": int(te.sum()), "split": real.split_note,
               "test": judge.scores(real.labels[te], j.predict(f[te])),
               "val": judge.scores(real.labels[va], j.predict(f[va])) if va.any() else None,
               "model": j.to_dict()}  # fmt: skip
