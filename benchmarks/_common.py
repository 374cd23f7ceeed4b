"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_files(data: Path, n: int) -> list[Path]:
    """n real files, half EMOPIA and half POP909, spread over each corpus."""
    emopia = sorted((data / "emopia" / "midis").glob("*.mid"))
    pop = sorted((data / "pop909").glob("*/*.mid"))
    if not emopia and not pop:
        raise SystemExit(f"no MIDI files under {data} (give --data)")
    half = n // 2
    pick = lambda xs, k: xs[:: max(1, len(xs) // max(k, 1))][:k]  # noqa: E731
    return pick(emopia, half) + pick(pop, n - half)


class Timer:
    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t


def dataset_or_preprocess(dataset: Path | None, data: Path):
    """The dataset given, or EMOPIA + POP909 preprocessed into a temporary folder (kept alive by
    the returned handle)."""
    import tempfile

    from emocompose.dataset import preprocess

    if dataset is not None:
        return dataset, None
    tmp = tempfile.TemporaryDirectory()
    out = Path(tmp.name) / "ds"
    preprocess([str(data / "emopia" / "midis"), str(data / "pop909")], out, labels_csv=str(data / "emopia" / "labels.csv"))
    return out, tmp
