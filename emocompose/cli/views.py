"""The commands that let a user hear and see a file: render (audio) and plot (a piano roll)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer

from emocompose import presets
from emocompose.cli import app
from emocompose.cli.common import (MODEL_OPT, SOUNDFONT_OPT, batch, inputs_or_stdin, load_composer, one_stdout,
                                   read_piece)  # fmt: skip
from emocompose.console import say

INPUTS_ARG = typer.Argument(..., help="MIDI files or folders (or MusicXML/ABC/kern); - reads stdin.")


def _out(suffix: str):
    return typer.Option(None, "-o", "--out", help=f"A .{suffix} file (one input), a folder, or - for stdout. "
                        f"Default: NAME.{suffix} in the current folder, never overwriting.")  # fmt: skip


@app.command()
def render(
    inputs: List[str] = INPUTS_ARG,
    out: Optional[str] = _out("wav"),
    soundfont: Optional[str] = SOUNDFONT_OPT,
    rate: int = typer.Option(presets.SAMPLE_RATE, help="Sample rate in Hz."),
    reverb: float = typer.Option(presets.REVERB, help="Share of the sound sent through a small hall, in [0, 1] (0: dry)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per output on stdout (path, input, "
                                 "seconds of audio, seconds taken)."),  # fmt: skip
) -> None:
    """Play MIDI through a General MIDI soundfont into 16-bit stereo WAV, each track with its instrument.

    Needs no system library: the synthesizer is emocompose's own and the default soundfont
    (TimGM6mb) comes with the pretty_midi package. Renders about a hundred times faster than
    real time on a laptop CPU.

    Examples:
      emocompose render happy.mid -o happy.wav
      emocompose render sad/ -o sad_audio/ --json
      emocompose render song.mid --soundfont ~/sf2/FluidR3_GM.sf2 --rate 48000
    """
    from emocompose.audio import AudioOut
    from emocompose.midi import midi_bytes

    one_stdout(as_json, out)
    files = inputs_or_stdin(inputs)
    sound = AudioOut(out, many=len(files) > 1, soundfont=soundfont, rate=rate, room=reverb)

    def one(path: str) -> None:
        t0 = time.perf_counter()
        written, seconds = sound.write(f"{'stdin' if path == '-' else Path(path).stem}.wav", midi_bytes(path), path)
        if as_json:
            print(json.dumps({"path": written, "input": path, "audio_seconds": round(seconds, 3),
                              "seconds": round(time.perf_counter() - t0, 3)}), flush=True)  # fmt: skip
        else:
            say(f"wrote [bold]{written}[/] ({seconds:.1f} s of audio)")

    raise typer.Exit(batch(files, one))


@app.command()
def plot(
    inputs: List[str] = INPUTS_ARG,
    out: Optional[str] = _out("png"),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per output on stdout (path, input, bars, "
                                 "keys and the emotion heard per bar)."),  # fmt: skip
) -> None:
    """Draw a piece: its piano roll with bar lines and each bar's key, and under it the arousal
    and valence the model hears in each bar.

    What is heard per bar is the model's own reading of the bar (its encoder's q(y|x)), not the
    emotion a piece was asked for; the keys are those `emocompose analyze` prints.

    Examples:
      emocompose plot song.mid -o song.png
      emocompose plot clips/ -o rolls/ --json
    """
    from emocompose.plot import PlotOut

    one_stdout(as_json, out)
    files = inputs_or_stdin(inputs)
    pictures = PlotOut(out, many=len(files) > 1)
    composer = load_composer(model)

    def one(path: str) -> None:
        grid = read_piece(composer, path)
        name = f"{'stdin' if path == '-' else Path(path).stem}.png"
        written, heard = pictures.write(name, grid, composer.trained, title=path)
        if as_json:
            print(json.dumps({"path": written, "input": path, "bars": int(grid.n_bars),
                              "bar_keys": heard["keys"], "bar_emotions": heard["emotions"]}), flush=True)  # fmt: skip
        else:
            say(f"wrote [bold]{written}[/] ({grid.n_bars} bars)")

    raise typer.Exit(batch(files, one))
