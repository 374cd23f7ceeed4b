"""What the commands share: options, batches with progress, loading the model, reading a
piece, writing a result and saying where it went."""

from __future__ import annotations

import json
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


def read_piece(composer, path: str):
    """A Grid from a file or '-' (stdin), through the model's tokenizer."""
    from emocompose.midi import read_input

    data = read_input(path)
    return composer.tok.grid(composer.tok.load(path if path != "-" else "<stdin>", data=data))


def emit(dest, result, name: str, composer, as_json: bool, t0: float, **extra) -> None:
    """Write one result and say where it went (a JSON line with --json)."""
    path = dest.write(name, composer.tok.to_midi(result.grid))
    record = {"path": path, "emotion": result.emotion, "bars": int(result.grid.n_bars),
              "notes": int(result.grid.n_notes), "seed": result.seed,
              "seconds": round(time.perf_counter() - t0, 3), **extra}  # fmt: skip
    if as_json:
        print(json.dumps(record), flush=True)
    else:
        in_key = f", {record['key']}" if record.get("key") else ""
        say(f"wrote [bold]{path}[/] ({record['bars']} bars, {record['notes']} notes{in_key})")


MODEL_OPT = typer.Option(None, "--model", "-m", help="A model file (safetensors); default: the shipped model.")
SEED_OPT = typer.Option(0, help="Random seed: the same seed gives the same bytes.")
JSON_OPT = typer.Option(False, "--json", help="One JSON object per output on stdout (path, emotion, bars, seed, seconds).")
TEMP_HELP = "Token sampling temperature (0: always the likeliest token)."
TOP_P_HELP = ("Nucleus sampling of pitches: keep the likeliest pitches up to this probability (rhythm, durations and "
              "dynamics keep the model's whole distribution).")  # fmt: skip
PAPER_OPT = typer.Option(False, "--paper", help="The paper's latent operations exactly: bars drawn alone, z_k "
                        "around the emotion's component mean, transform shifted by the difference of the component "
                        "means, one decoding per output (for comparisons).")
CANDIDATES_OPT = typer.Option(None, "--candidates", help="Decode this many versions of each output and keep the one "
                              f"the model's own encoder hears as most like the target emotion (default {presets.CANDIDATES}; "
                              "--paper takes only 1). Each one adds a decoding's time.", show_default=False)  # fmt: skip


