"""What the commands share: options, batches with progress, loading the model, reading a
piece, writing a result and saying where it went."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable, Optional

import typer

from emocompose import presets
from emocompose.console import progress, say


def batch(items: list[str], work: Callable[[str], None], what: str = "file") -> int:
    """`outputs.run_batch` with a progress bar on a terminal's stderr when there are several."""
    from emocompose.outputs import run_batch

    if len(items) < 2 or not sys.stderr.isatty():
        return run_batch(items, work, what)
    with progress() as prog:
        task = prog.add_task(what + "s", total=len(items), info="")
        return run_batch(items, work, what, lambda done, total, item: prog.update(
            task, completed=done, info=item if len(item) < 40 else "..." + item[-37:]))  # fmt: skip


def inputs_or_stdin(inputs: list[str]) -> list[str]:
    """The MIDI files named or found in the folders given, with '-' (stdin) kept."""
    from emocompose.dataset import find_inputs
    from emocompose.errors import UsageError

    files = [f for f in inputs if f == "-"] + find_inputs([f for f in inputs if f != "-"])
    if not files:
        raise UsageError("no MIDI files found in the inputs given")
    return files


BEATS_OPT = typer.Option("auto", help="auto: use a beat_midi.txt beside the file for bar lines (POP909); ignore: never.")


def load_composer(model: Optional[str], batch: int = 1):
    """The model, with the threads for decoding `batch` pieces at once and a progress bar of
    decoded bars on a terminal's stderr."""
    from emocompose.compose import Composer
    from emocompose.hardware import set_decoding_threads

    set_decoding_threads(batch)
    composer = Composer.load(model)
    if sys.stderr.isatty():
        state = {}

        def on_bar(done: int, total: int) -> None:
            if "prog" not in state:
                state["prog"] = progress()
                state["prog"].start()
                state["task"] = state["prog"].add_task("bars", total=total, info="")
            state["prog"].update(state["task"], completed=done, total=total)
            if done == total:
                state.pop("prog").stop()

        composer.trained.on_bar = on_bar
    return composer


def read_piece(composer, path: str, data: bytes | None = None):
    """A Grid from a file or '-' (stdin), or from its bytes read already, through the model's tokenizer."""
    from emocompose.midi import read_input

    data = read_input(path) if data is None else data
    return composer.tok.grid(composer.tok.load(path if path != "-" else "<stdin>", data=data))


def one_stdout(as_json: bool, *outs: str | None) -> None:
    """Refuse two writers on stdout: their bytes would mix into neither."""
    from emocompose.errors import UsageError

    if outs.count("-") > 1:
        raise UsageError("only one of -o, --audio and --plot can write to stdout")
    if as_json and "-" in outs:
        raise UsageError("--json writes its records to stdout; give the outputs files or folders")


class Beside:
    """What a command writes beside each MIDI output: its audio (`--audio`) and its picture
    (`--plot`), both made (and a bad soundfont refused) before any decoding."""

    def __init__(self, audio: str | None, plot: str | None, out: str | None, many: bool, soundfont: str | None,
                 as_json: bool = False):  # fmt: skip
        from emocompose.audio import AudioOut
        from emocompose.errors import UsageError
        from emocompose.plot import PlotOut

        if soundfont is not None and audio is None:
            raise UsageError("--soundfont plays the audio of --audio; give --audio too")
        one_stdout(as_json, out, audio, plot)
        self.audio = AudioOut(audio, many=many, soundfont=soundfont) if audio is not None else None
        self.plot = PlotOut(plot, many=many) if plot is not None else None

    def write(self, name: str, midi: bytes, grid, trained, title: str | None = None) -> dict:
        """Write what goes beside the output `name`; `title` heads the picture (default: `name`)."""
        written = {}
        if self.audio is not None:
            written["audio"] = self.audio.write(name, midi)[0]
        if self.plot is not None:
            written["plot"] = self.plot.write(name, grid, trained, title)[0]
        return written


def emit(dest, result, name: str, composer, as_json: bool, t0: float, beside: Beside, **extra) -> None:
    """Write one result (and what goes beside it) and say where it went (a JSON line with --json).
    `key` in `extra` is the key the result was written toward; the key heard in it (`heard_key`,
    as `analyze` hears it) is said beside it when they differ: the decoder does not always land
    on the key its latents were centred on."""
    midi = composer.tok.to_midi(result.grid)
    path = dest.write(name, midi)
    title = os.path.basename(path) if path != "-" else None  # the picture names the file it shows
    record = {"path": path, "emotion": result.emotion, "bars": int(result.grid.n_bars),
              "notes": int(result.grid.n_notes), "seed": result.seed, **extra,
              "heard_key": result.info["heard_key"],
              **beside.write(name, midi, result.grid, composer.trained, title)}  # fmt: skip
    record["seconds"] = round(time.perf_counter() - t0, 3)
    if as_json:
        print(json.dumps(record), flush=True)
    else:
        asked, heard = record.get("key"), record["heard_key"]
        if asked in (None, heard):
            in_key = f", {heard}"
        else:  # a key path (an emotion over time) is the plan's, not comparable with one key heard
            in_key = f", {asked}" if "->" in asked else f", {heard}; written toward {asked}"
        also = "".join(f" and [bold]{record[k]}[/]" for k in ("audio", "plot") if k in record)
        say(f"wrote [bold]{path}[/]{also} ({record['bars']} bars, {record['notes']} notes{in_key})")


MODEL_OPT = typer.Option(None, "--model", "-m", help="A model file (safetensors); default: the shipped model.")
SEED_OPT = typer.Option(0, help="Random seed: the same seed gives the same bytes.")
JSON_OPT = typer.Option(False, "--json", help="One JSON object per output on stdout (path, emotion, bars, notes, seed, "
                        "key written toward, heard_key, seconds).")
TEMP_HELP = "Token sampling temperature (0: always the likeliest token)."
TOP_P_HELP = ("Nucleus sampling of pitches: keep the likeliest pitches up to this probability (rhythm, durations and "
              "dynamics keep the model's whole distribution).")  # fmt: skip
PAPER_OPT = typer.Option(False, "--paper", help="The paper's latent operations exactly: bars drawn alone, z_k "
                        "around the emotion's component mean, transform shifted by the difference of the component "
                        "means, one decoding per output (for comparisons).")
SOUNDFONT_OPT = typer.Option(None, "--soundfont", help="An SF2 soundfont to play the audio with (default: "
                             "the General MIDI font TimGM6mb that the pretty_midi package carries).")
AUDIO_OPT = typer.Option(None, "--audio", help="Also write the result as audio: a .wav file, or a folder for several "
                         "(named as the MIDI). See `emocompose render`.")
PLOT_OPT = typer.Option(None, "--plot", help="Also draw the result (piano roll, keys, emotion heard per bar): a .png "
                        "file, or a folder for several. See `emocompose plot`.")
CANDIDATES_OPT = typer.Option(None, "--candidates", help="Decode this many versions of each output and keep the one "
                              f"the model's own encoder hears as most like the target emotion (default {presets.CANDIDATES}; "
                              "--paper takes only 1). Each one adds a decoding's time.", show_default=False)  # fmt: skip


