"""Tokenize the same real files with emocompose and with MidiTok's REMI, in one run; then time a
whole-corpus `preprocess` of EMOPIA + POP909.

    python benchmarks/tokenize_speed.py [--files 90] [--data ../shared/data] [--no-preprocess]
"""

from __future__ import annotations

import argparse
from importlib.metadata import version
import os
import tempfile
from pathlib import Path

from _common import DATA, Timer, real_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=90)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many passes")
    ap.add_argument("--no-preprocess", action="store_true")
    args = ap.parse_args()
    files = real_files(args.data, args.files)

    from emocompose.tokenizer import Tokenizer

    tok = Tokenizer()

    def ours(beats="ignore"):
        n = 0
        for f in files:
            ids, _ = tok.encode(tok.grid(tok.load(f, beats=beats)))
            n += len(ids)
        return n

    import miditok

    cfg = miditok.TokenizerConfig(num_velocities=32, use_tempos=True, use_time_signatures=False, use_programs=False)
    remi = miditok.REMI(cfg)

    def theirs():
        n = 0
        for f in files:
            seq = remi.encode(f)
            n += sum(len(s.ids) for s in seq) if isinstance(seq, list) else len(seq.ids)
        return n

    results = {}
    # like for like: both read the MIDI file alone; the third line adds POP909's beat files,
    # which emocompose reads beside a file to find real bars (MidiTok has no such step)
    runs = (("emocompose", ours), (f"MidiTok {version('miditok')} REMI", theirs),
            ("emocompose + beat files", lambda: ours("auto")))  # fmt: skip
    for name, fn in runs:
        best = float("inf")
        for _ in range(args.repeat):
            with Timer() as t:
                n_tokens = fn()
            best = min(best, t.seconds)
        results[name] = (len(files) / best, n_tokens)
        print(f"{name:26s} {len(files) / best:8.1f} files/s  {n_tokens / best:10.0f} tokens/s  ({len(files)} files)")
    a, b, c = (v[0] for v in results.values())
    print(f"ratio: emocompose tokenizes {a / b:.1f}x as many files per second as MidiTok "
          f"({c / b:.1f}x while also reading POP909's beat files)")

    if not args.no_preprocess:
        from emocompose.dataset import preprocess

        inputs = [str(args.data / "emopia" / "midis"), str(args.data / "pop909")]
        with tempfile.TemporaryDirectory() as tmp, Timer() as t:
            m = preprocess(inputs, Path(tmp) / "ds", labels_csv=str(args.data / "emopia" / "labels.csv"),
                           workers=os.cpu_count() or 1)  # fmt: skip
        c = m["counts"]
        print(f"preprocess: {c['files_read']} files ({c['files_failed']} failed), {c['bars']} bars, {c['tokens']} tokens "
              f"in {t.seconds:.1f} s on {os.cpu_count()} cores")  # fmt: skip


if __name__ == "__main__":
    main()
