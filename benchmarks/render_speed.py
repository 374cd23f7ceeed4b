"""How much faster than real time `render` plays music into WAV, on pieces a user renders: the
shipped model's 20-bar pieces (one per emotion), real scores for other instruments from
music21's corpus, and real EMOPIA and POP909 files when ../shared/data is there.

    python benchmarks/render_speed.py [--tries 3] [--data PATH]

Each row: seconds of audio, the best of --tries of rendering it (the synthesizer, the room and
the WAV encoding, from MIDI bytes; the soundfont loaded once before, as a batch does), and the
ratio. The audio issue's target: at least 50x real time on every row. The last line times
whole `emocompose render` processes for comparison (start-up included).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import DATA, Timer, real_files


def pieces(data: Path) -> list[tuple[str, bytes]]:
    from emocompose.compose import Composer
    from emocompose.corpus import SCORES, path
    from emocompose.emotions import NAMES
    from emocompose.midi import midi_bytes

    composer = Composer.load()
    out = [(f"generated {e}", composer.tok.to_midi(composer.generate(e, bars=20)[0].grid)) for e in NAMES]
    out += [(name, midi_bytes(str(path(name)))) for name in (SCORES[0], SCORES[6], SCORES[9])]
    if data.is_dir():
        out += [(f.name, f.read_bytes()) for f in real_files(data, 4)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tries", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    from emocompose.audio import AudioOut

    with Timer() as t:
        sound = AudioOut(tempfile.mkdtemp(), many=True)
    print(f"soundfont loaded in {t.seconds:.2f} s\n")
    print(f"{'piece':40} {'audio s':>8} {'render s':>9} {'x real time':>12}")
    worst = float("inf")
    for name, midi in pieces(args.data):
        best, audio_s = float("inf"), 0.0
        for _ in range(args.tries):
            with Timer() as t:
                audio_s = sound.write("piece.mid", midi, name)[1]
            best = min(best, t.seconds)
        worst = min(worst, audio_s / best)
        print(f"{name:40} {audio_s:8.1f} {best:9.3f} {audio_s / best:12.0f}")
    print(f"\nslowest: {worst:.0f}x real time (target: at least 50x)")

    with tempfile.TemporaryDirectory() as tmp:
        midi = Path(tmp, "piece.mid")
        midi.write_bytes(pieces(Path("/nonexistent"))[0][1])
        with Timer() as t:
            subprocess.run([sys.executable, "-m", "emocompose", "render", str(midi), "-o", f"{tmp}/piece.wav"], check=True)
        print(f"a whole `emocompose render` process of the first piece: {t.seconds:.2f} s")


if __name__ == "__main__":
    main()
