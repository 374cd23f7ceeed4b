"""Global-key accuracy against POP909's key annotations: emocompose's duration-weighted
Krumhansl-Schmuckler beside music21's key analysis on the same files, in one run.

    python benchmarks/key_accuracy.py [--songs 120] [--data ../shared/data]

The reference key of a song is the annotated key that lasts longest (key_audio.txt).
Both sides are timed from the file on disk to the key (parsing included).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from _common import DATA, Timer

PC = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4, "E#": 5, "F": 5, "F#": 6, "Gb": 6,
      "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11, "Cb": 11}  # fmt: skip


def reference_key(song: Path) -> int | None:
    dur = defaultdict(float)
    for line in (song / "key_audio.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) < 3 or ":" not in parts[2]:
            continue
        root, mode = parts[2].split(":")
        if root not in PC:
            continue
        dur[PC[root] + (12 if mode.startswith("min") else 0)] += float(parts[1]) - float(parts[0])
    return max(dur, key=dur.get) if dur else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=120)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    songs = sorted(p for p in (args.data / "pop909").iterdir() if p.is_dir())
    songs = songs[:: max(1, len(songs) // args.songs)][: args.songs]
    ref = {s: reference_key(s) for s in songs}
    songs = [s for s in songs if ref[s] is not None]

    from emocompose import features
    from emocompose.tokenizer import Tokenizer

    tok = Tokenizer()
    with Timer() as t_ours:
        ours = {s: features.global_key(tok.grid(tok.load(s / f"{s.name}.mid")), tok.config) for s in songs}

    import music21

    def m21_key(path: Path) -> int:
        k = music21.converter.parse(str(path)).analyze("key")
        return PC[k.tonic.name.replace("-", "b")] + (12 if k.mode == "minor" else 0)

    with Timer() as t_m21:
        theirs = {s: m21_key(s / f"{s.name}.mid") for s in songs}

    n = len(songs)
    acc_o = sum(ours[s] == ref[s] for s in songs) / n
    acc_m = sum(theirs[s] == ref[s] for s in songs) / n
    print(f"{n} POP909 songs")
    print(f"emocompose (KS, bar vote):          accuracy {acc_o:.3f}  {t_ours.seconds:7.2f} s")
    print(f"music21 {music21.__version__} analyze('key'):  accuracy {acc_m:.3f}  {t_m21.seconds:7.2f} s")
    print(f"ratio: emocompose is {t_m21.seconds / t_ours.seconds:.0f}x as fast, accuracy {acc_o - acc_m:+.3f}")


if __name__ == "__main__":
    main()
