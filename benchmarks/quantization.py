"""What the token grid keeps of real music: note recall and onset timing error.

    python benchmarks/quantization.py [--files 400] [--data ../shared/data]

Recall: the share of a file's notes that come back from tokens with their onset step, pitch and
track (notes lost are those merged onto one step with an equal pitch and track). Timing error:
the distance, in milliseconds of the original performance, between a note's onset and the grid
step it was snapped to.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _common import DATA, real_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    from emocompose.tokenizer import Tokenizer

    tok = Tokenizer()
    for corpus in ("emopia", "pop909"):
        files = [f for f in real_files(args.data, 2 * args.files) if corpus in str(f)][: args.files]
        notes = kept = 0
        errors = []
        for f in files:
            piece = tok.load(f)
            grid = tok.decode(tok.encode(tok.grid(piece))[0])
            notes += len(piece.onset)
            kept += grid.n_notes
            b = np.clip(np.searchsorted(piece.bars, piece.onset, side="right") - 1, 0, piece.n_bars - 1)
            step = (piece.bars[b + 1] - piece.bars[b]) / piece.bar_positions[b]
            snapped = piece.bars[b] + np.round((piece.onset - piece.bars[b]) / step) * step
            errors.append(np.abs(piece.seconds(snapped) - piece.seconds(piece.onset)) * 1000)
        e = np.concatenate(errors)
        print(f"{corpus:7s} {len(files)} files, {notes} notes: recall {kept / notes:.4f}, "
              f"onset error mean {e.mean():.1f} ms, median {np.median(e):.1f} ms, p95 {np.percentile(e, 95):.1f} ms")


if __name__ == "__main__":
    main()
