"""Training datasets: `preprocess` writes them, `Dataset` memory-maps them, `Windows` cuts them
into training batches.

A dataset is a folder of plain numpy arrays (no pickle) and one `manifest.json`:

    tokens.npy       uint16 (n_tokens,)      every bar's token ids, bar after bar, piece after piece
    bar_offsets.npy  int64  (n_bars + 1,)    where each bar starts in tokens
    piece_bars.npy   int64  (n_pieces + 1,)  where each piece starts in bars
    rhythm.npy       uint8  (n_bars, 16)     f_r: onsets per 16th of the bar (clipped at 255)
    bar_key.npy      uint8  (n_bars,)        f_k: key of each bar, 0-11 major, 12-23 minor
    labels.npy       int8   (n_pieces, 2)    arousal, valence: 1 high, 0 low, -1 unlabelled
    pieces.jsonl     one object per piece: source, split, key, bars, label
    manifest.json    format, vocabulary, counts; written last, so a folder without it is unfinished

The folder is built under a temporary name and renamed into place when complete: a killed
run leaves nothing `train` would take for a finished dataset, and a rerun starts afresh.
"""

from __future__ import annotations

import csv
import json
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from emocompose.emotions import from_quadrant
from emocompose.errors import EmocomposeError, InputError, ModelError, UsageError
from emocompose.features import N_KEYS
from emocompose.midi import DRUMS, MIDI_SUFFIXES, SCORE_SUFFIXES, TRACKS
from emocompose.tokenizer import Tokenizer, TokenizerConfig, Vocab

if TYPE_CHECKING:
    from emocompose.train import TrainConfig

DATASET_FORMAT = 1
SPLITS = ("train", "val", "test", "none")
EMOPIA_PREFIX = re.compile(r"^Q([1-4])_")


def find_inputs(paths: Iterable[str]) -> list[str]:
    """Files named, and music files found (recursively, sorted) in folders named."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = [str(f) for f in sorted(path.rglob("*")) if f.is_file() and f.suffix.lower() in MIDI_SUFFIXES | SCORE_SUFFIXES]
            out.extend(found)
        else:
            out.append(str(p))
    return out


@dataclass(frozen=True)
class Label:
    arousal: int = -1
    valence: int = -1
    split: str = "train"


def read_labels(csv_path: str | None) -> dict[str, Label]:
    """A labels CSV: `file` plus `quadrant` (Q1-Q4) or `arousal`/`valence` (1 high, 0 low), and
    optionally `split`. Files match by name without folders or suffix."""
    if not csv_path:
        return {}
    try:
        with open(csv_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise UsageError(f"cannot read labels: {exc.strerror}", csv_path) from None
    if not rows or "file" not in rows[0]:
        raise UsageError("labels CSV needs a header with a `file` column", csv_path)
    out = {}
    for i, row in enumerate(rows, start=2):
        try:
            if row.get("arousal") not in (None, "") and row.get("valence") not in (None, ""):
                a, v = int(row["arousal"]), int(row["valence"])
            elif row.get("quadrant"):
                a, v = from_quadrant(int(row["quadrant"].strip().lstrip("Qq")))
            else:
                a, v = -1, -1
        except (ValueError, KeyError):
            raise UsageError(f"line {i}: bad quadrant/arousal/valence", csv_path) from None
        split = (row.get("split") or "train").strip()
        if split not in SPLITS:
            split = "none"
        out[Path(row["file"]).stem] = Label(a, v, split)
    return out


def label_for(path: str, labels: dict[str, Label]) -> Label:
    stem = Path(path).stem
    if stem in labels:
        return labels[stem]
    m = EMOPIA_PREFIX.match(stem)
    if m:
        a, v = from_quadrant(int(m.group(1)))
        return Label(a, v, "train")
    return Label()


def _tokenize_one(args) -> tuple[str, dict | str]:
    """Worker: one file to arrays, or an error message. Never raises (a pool must go on)."""
    path, config_dict, beats = args
    from emocompose import features

    tok = _worker_tokenizer(config_dict)
    try:
        piece = tok.load(path, beats=beats)
        grid = tok.grid(piece)
        # leading and trailing empty bars carry nothing to learn
        used = np.unique(grid.bar)
        grid = grid.bar_slice(int(used[0]), int(used[-1]) + 1)
        ids, offsets = tok.encode(grid)
        hist = features.pitch_class_histogram(grid, tok.config)
        keys = features.bar_keys(grid, tok.config, hist)
        return path, {
            "ids": ids.astype(np.uint16),
            "bar_len": np.diff(offsets),
            "rhythm": np.minimum(features.rhythm(grid), 255).astype(np.uint8),
            "bar_key": keys.astype(np.uint8),
            "key": features.global_key(grid, tok.config, hist, keys),
            "notes": int(grid.n_notes),
        }
    except EmocomposeError as exc:
        return path, str(exc)
    except Exception as exc:  # a parser bug must not take the batch down
        return path, f"{path}: unexpected error: {type(exc).__name__}: {exc}"


_TOKENIZERS: dict[str, Tokenizer] = {}


def _worker_tokenizer(config_dict: dict) -> Tokenizer:
    key = json.dumps(config_dict, sort_keys=True)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = Tokenizer(TokenizerConfig.from_dict(config_dict))
    return _TOKENIZERS[key]


def preprocess(
    inputs: list[str],
    out: str | os.PathLike,
    *,
    labels_csv: str | None = None,
    workers: int = 0,
    config: TokenizerConfig | None = None,
    beats: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Turn MIDI files into a dataset folder; returns the manifest. Bad files are listed, not fatal."""
    from emocompose.atomic import atomic_dir, write_text

    config = config or TokenizerConfig()
    vocab = Vocab(config)
    files = find_inputs(inputs)
    if not files:
        raise UsageError("no MIDI files found in the inputs given")
    labels = read_labels(labels_csv)
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(f, config.to_dict(), beats) for f in files]
    results: list[tuple[str, dict | str]] = []
    if workers > 1 and len(files) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, r in enumerate(pool.map(_tokenize_one, jobs, chunksize=8)):
                results.append(r)
                if progress:
                    progress(i + 1, len(files))
    else:
        for i, job in enumerate(jobs):
            results.append(_tokenize_one(job))
            if progress:
                progress(i + 1, len(files))

    good = [(p, r) for p, r in results if isinstance(r, dict)]
    failed = [r for _, r in results if isinstance(r, str)]
    if not good:
        raise InputError(f"none of the {len(files)} files could be used; first problem: {failed[0]}")
    L = config.max_bar_tokens
    bar_len = np.concatenate([r["bar_len"] for _, r in good])
    piece_bars = np.r_[0, np.cumsum([len(r["bar_len"]) for _, r in good])].astype(np.int64)
    lab = [label_for(p, labels) for p, _ in good]
    labelled = np.array([lb.arousal >= 0 for lb in lab])
    n_bars_piece = np.diff(piece_bars)
    manifest = {
        "format": DATASET_FORMAT,
        "vocab": vocab.to_dict(),
        "counts": {
            "files_read": len(files),
            "files_failed": len(failed),
            "pieces": len(good),
            "bars": int(len(bar_len)),
            "tokens": int(bar_len.sum()),
            "notes": int(sum(r["notes"] for _, r in good)),
            "bars_over_L": int((bar_len > L).sum()),
            "tokens_over_L": int(np.maximum(bar_len - L, 0).sum()),
            "L": L,
            "labelled_pieces": int(labelled.sum()),
            "labelled_share_bars": round(float(n_bars_piece[labelled].sum() / max(len(bar_len), 1)), 4),
            "splits": {s: int(sum(lb.split == s for lb in lab)) for s in SPLITS},
        },
        "bar_tokens": {
            "median": float(np.median(bar_len)),
            "p90": float(np.percentile(bar_len, 90)),
            "max": int(bar_len.max()),
        },
        "failed": failed,
    }
    with atomic_dir(out) as tmp:
        np.save(tmp / "tokens.npy", np.concatenate([r["ids"] for _, r in good]))
        np.save(tmp / "bar_offsets.npy", np.r_[0, np.cumsum(bar_len)].astype(np.int64))
        np.save(tmp / "piece_bars.npy", piece_bars)
        np.save(tmp / "rhythm.npy", np.concatenate([r["rhythm"] for _, r in good]))
        np.save(tmp / "bar_key.npy", np.concatenate([r["bar_key"] for _, r in good]))
        np.save(tmp / "labels.npy", np.array([[lb.arousal, lb.valence] for lb in lab], np.int8).reshape(-1, 2))
        with open(tmp / "pieces.jsonl", "w") as fh:
            for (p, r), lb in zip(good, lab):
                fh.write(json.dumps({"source": p, "split": lb.split, "key": r["key"], "bars": len(r["bar_len"]),
                                     "arousal": lb.arousal, "valence": lb.valence}) + "\n")  # fmt: skip
        write_text(tmp / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


class Dataset:
    """A preprocessed dataset, memory-mapped. Refuses unfinished folders and other vocabularies."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not self.path.is_dir():
            raise ModelError("no such dataset folder (make one with `emocompose preprocess`)", str(path))
        if not manifest.is_file():
            raise ModelError("not a finished dataset (no manifest.json); rerun `emocompose preprocess`", str(path))
        try:
            self.manifest = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            raise ModelError("corrupt manifest.json; rerun `emocompose preprocess`", str(path)) from None
        if self.manifest.get("format") != DATASET_FORMAT:
            raise ModelError(
                f"dataset format {self.manifest.get('format')}, this emocompose reads {DATASET_FORMAT}; rerun preprocess",
                str(path),
            )
        self.vocab = Vocab.from_dict(self.manifest.get("vocab", {}), what=f"dataset {path}")
        try:
            self.tokens = np.load(self.path / "tokens.npy", mmap_mode="r")
            self.bar_offsets = np.load(self.path / "bar_offsets.npy", mmap_mode="r")
            self.piece_bars = np.load(self.path / "piece_bars.npy")
            self.rhythm = np.load(self.path / "rhythm.npy", mmap_mode="r")
            self.bar_key = np.load(self.path / "bar_key.npy", mmap_mode="r")
            self.labels = np.load(self.path / "labels.npy")
            self.pieces = [json.loads(line) for line in (self.path / "pieces.jsonl").read_text().splitlines()]
        except (OSError, ValueError) as exc:
            raise ModelError(f"corrupt dataset ({exc}); rerun `emocompose preprocess`", str(path)) from None
        n_bars, n_pieces = len(self.bar_offsets) - 1, len(self.piece_bars) - 1
        if (
            self.bar_offsets[-1] != len(self.tokens)
            or self.piece_bars[-1] != n_bars
            or len(self.rhythm) != n_bars
            or len(self.bar_key) != n_bars
            or len(self.labels) != n_pieces
            or len(self.pieces) != n_pieces
        ):
            raise ModelError("dataset arrays disagree in length; rerun `emocompose preprocess`", str(path))

    @property
    def n_pieces(self) -> int:
        return len(self.piece_bars) - 1

    def piece_ids(self, i: int) -> np.ndarray:
        """Token ids of piece i (all its bars, as `Tokenizer.decode` reads them)."""
        lo, hi = self.bar_offsets[self.piece_bars[i]], self.bar_offsets[self.piece_bars[i + 1]]
        return np.asarray(self.tokens[lo:hi], np.int64)

    def split_of(self) -> np.ndarray:
        return np.array([p["split"] for p in self.pieces])


# ---------------------------------------------------------------------------------------------
# Training windows of T bars, collated into padded tensors


class Windows:
    """Training and validation windows of a dataset, and their collation into a batch."""

    def __init__(self, ds: Dataset, cfg: "TrainConfig"):
        self.ds, self.cfg = ds, cfg
        self.L = ds.vocab.config.max_bar_tokens
        split = ds.split_of()
        n_bars = np.diff(ds.piece_bars)
        labels = ds.labels.copy()
        train = np.flatnonzero(split == "train")
        if len(train) == 0:
            raise UsageError(f"dataset {ds.path} has no pieces in the train split")
        # supervision rate: drop labels of random labelled pieces until the share is <= rho
        rng = np.random.default_rng(cfg.seed)
        lab = train[labels[train, 0] >= 0]
        total = n_bars[train].sum()
        keep = lab[rng.permutation(len(lab))]
        share = np.cumsum(n_bars[keep]) / max(total, 1)
        keep = keep[share <= cfg.rho + 1e-9]
        dropped = np.setdiff1d(lab, keep)
        labels[dropped] = -1
        self.labels = labels
        self.labelled = keep
        self.unlabelled = np.setdiff1d(train, keep)
        self.val = np.flatnonzero(split == "val")
        self.n_bars = n_bars
        self.supervision = float(n_bars[keep].sum() / max(total, 1))
        self.train_bars = int(total)
        # how often the labelled training pieces of each valence class are in each key
        self.key_share = np.zeros((2, N_KEYS), np.float32)
        for p in keep:
            self.key_share[labels[p, 1], ds.pieces[p]["key"]] += 1

    def sample(self, step: int) -> list[tuple[int, int, int]]:
        """The (piece, first bar, semitones) windows of one global batch, a function of (seed,
        step) only."""
        rng = np.random.default_rng([self.cfg.seed, step])
        out = []
        for _ in range(self.cfg.batch):
            use_lab = len(self.labelled) and (not len(self.unlabelled) or rng.random() < self.cfg.labelled_share)
            pool = self.labelled if use_lab else self.unlabelled
            w = self.n_bars[pool].astype(np.float64)
            piece = int(pool[rng.choice(len(pool), p=w / w.sum())])
            start = int(rng.integers(0, max(self.n_bars[piece] - self.cfg.bars, 0) + 1))
            shift = int(rng.integers(-self.cfg.transpose, self.cfg.transpose + 1)) if self.cfg.transpose else 0
            out.append((piece, start, shift))
        return out

    def val_windows(self) -> list[tuple[int, int, int]]:
        out = []
        for p in self.val:
            for s in range(0, max(int(self.n_bars[p]) - self.cfg.bars, 0) + 1, self.cfg.bars):
                out.append((int(p), s, 0))
        rng = np.random.default_rng(12345)
        rng.shuffle(out)
        return out[: self.cfg.val_windows]

    def collate(self, windows: list[tuple[int, int, int]], torch_mod, labels: np.ndarray | None = None) -> dict:
        """Padded tensors for a list of windows, each transposed by its semitones. Bars over L are
        cut to L tokens (and counted in the dataset manifest). A bar's last target is the next
        bar's Bar token, or EOS."""
        torch = torch_mod
        ds, T, L = self.ds, self.cfg.bars, self.L
        labels = self.labels if labels is None else labels
        b = len(windows)
        spans = []
        n = 8
        for piece, start, shift in windows:
            first, last = ds.piece_bars[piece], ds.piece_bars[piece + 1]
            bars = list(range(first + start, min(first + start + T, last)))
            spans.append((bars, last, self._feasible(bars, last, shift)))
            for bi in bars:
                n = max(n, min(int(ds.bar_offsets[bi + 1] - ds.bar_offsets[bi]), L))
        n = min(-(-n // 8) * 8, L)  # pad to a multiple of 8, for tidy matmuls
        tokens = np.zeros((b, T, n), np.int64)
        targets = np.full((b, T, n), -100, np.int64)
        lens = np.zeros((b, T), np.int64)
        rhythm = np.zeros((b, T, 16), np.float32)
        key = np.zeros((b, T), np.int64)
        eos = ds.vocab.eos
        for i, (bars, last, shift) in enumerate(spans):
            for j, bi in enumerate(bars):
                s, e = int(ds.bar_offsets[bi]), int(ds.bar_offsets[bi + 1])
                ids = np.asarray(ds.tokens[s : min(e, s + n)], np.int64)
                k = len(ids)
                tokens[i, j, :k] = ids
                targets[i, j, : k - 1] = ids[1:]
                if e - s > k:
                    targets[i, j, k - 1] = int(ds.tokens[s + k])
                else:
                    targets[i, j, k - 1] = int(ds.tokens[e]) if bi + 1 < last else eos
                lens[i, j] = k
                rhythm[i, j] = ds.rhythm[bi]
                key[i, j] = ds.bar_key[bi]
            if shift:
                for a in (tokens[i], targets[i]):
                    a[self._pitched(a)] += shift
                key[i] = transpose_keys(key[i], shift)
        lab = np.array([labels[p] for p, *_ in windows], np.int64).reshape(b, 2)
        return {
            "tokens": torch.from_numpy(tokens),
            "targets": torch.from_numpy(targets),
            "lens": torch.from_numpy(lens),
            "rhythm": torch.from_numpy(rhythm),
            "key": torch.from_numpy(key),
            "labels": torch.from_numpy(lab),
        }

    def _pitched(self, ids: np.ndarray) -> np.ndarray:
        """Where ids are pitches of a pitched track (drum "pitches" name instruments)."""
        v = self.ds.vocab
        rel = ids - v.pitch0
        return (rel >= 0) & (rel < len(TRACKS) * 128) & (rel // 128 != DRUMS)

    def _feasible(self, bars: list[int], last: int, shift: int) -> int:
        """The shift moved toward 0 until every pitch of the window (and of the token after it,
        a target) stays in 0..127."""
        if not shift:
            return 0
        ds = self.ds
        end = ds.bar_offsets[bars[-1] + 1] + (1 if bars[-1] + 1 < last else 0)
        ids = np.asarray(ds.tokens[ds.bar_offsets[bars[0]] : end], np.int64)
        pitch = (ids[self._pitched(ids)] - ds.vocab.pitch0) % 128
        if not len(pitch):
            return shift
        return int(np.clip(shift, -int(pitch.min()), 127 - int(pitch.max())))


def transpose_keys(key: np.ndarray, shift: int) -> np.ndarray:
    """Key indices (0-11 major, 12-23 minor on their tonic) moved by `shift` semitones."""
    return (key // 12) * 12 + (key % 12 + shift) % 12
