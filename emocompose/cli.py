"""The command line: parse, call one function of the core, print.

Messages and progress go to stderr, data (JSON, MIDI with `-o -`) to stdout. Every expected
failure is one line on stderr and a documented exit code (see `emocompose.errors` and the README);
set EMOCOMPOSE_DEBUG=1 to see tracebacks. torch and music21 are imported inside commands only,
so `--help` and shell completion stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Callable, Iterable, List, Optional

import typer

from emocompose import __version__
from emocompose.errors import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EmocomposeError,
    UsageError,
)

app = typer.Typer(
    name="emocompose",
    help="Write and rewrite symbolic music (MIDI) to carry a chosen emotion.\n\n"
    "Emotions are Russell's quadrants: happy (high arousal, high valence), tense (high, low), "
    "sad (low, low), calm (low, high). Start with `emocompose generate --emotion happy`, "
    "or `emocompose analyze song.mid` to see what emocompose hears in a file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(msg: str) -> None:
    _stderr().print(msg)


def _version(value: bool) -> None:
    if value:
        print(f"emocompose {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# Batches: go on past bad inputs, list them, exit with the documented code


def run_batch(items: Iterable[str], work: Callable[[str], None], what: str = "file") -> int:
    """Apply `work` to each item; a failure is reported on one line and the batch goes on."""
    items = list(items)
    failed: list[str] = []
    for item in items:
        try:
            work(item)
        except EmocomposeError as exc:
            failed.append(str(exc))
            print(f"emocompose: {exc}", file=sys.stderr)
    if not failed:
        return EXIT_OK
    if len(items) > 1:
        print(f"emocompose: {len(failed)} of {len(items)} {what}s failed", file=sys.stderr)
    return EXIT_INPUT if len(failed) == len(items) else EXIT_PARTIAL


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=_stderr(), transient=False,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# tokenize / detokenize


@app.command()
def tokenize(
    file: str = typer.Argument(..., help="A MIDI file (or MusicXML/ABC/kern, read through music21); - for stdin."),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="Where to write the JSON (default: stdout)."),
    beats: str = typer.Option("auto", help="auto: use a beat_midi.txt beside the file for bar lines; ignore: never."),
) -> None:
    """Turn a music file into REMI tokens (JSON: names, ids, bar offsets, vocabulary).

    Example: emocompose tokenize song.mid -o song.tokens.json
    """
    from emocompose.tokenizer import Tokenizer

    tok = Tokenizer()
    piece = tok.load(file, beats=beats)
    ids, offsets = tok.encode(tok.grid(piece))
    _write_text_or_stdout(out, tok.to_json(ids, offsets, source=file))


@app.command()
def detokenize(
    file: str = typer.Argument(..., help="Tokens JSON written by `emocompose tokenize` (or a generator); - for stdin."),
    out: str = typer.Option(..., "-o", "--out", help="The MIDI file to write; - for stdout."),
) -> None:
    """Write MIDI back from REMI tokens.

    Example: emocompose detokenize song.tokens.json -o song.mid
    """
    from emocompose.tokenizer import Tokenizer

    tok = Tokenizer()
    raw = sys.stdin.read() if file == "-" else _read_text(file)
    ids = tok.from_json(raw, file)
    _write_bytes_or_stdout(out, tok.to_midi(tok.decode(ids)))


def _read_text(path: str) -> str:
    from emocompose.errors import InputError

    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", path) from None


def _write_text_or_stdout(out: Optional[str], text: str) -> None:
    if out in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from emocompose.atomic import write_text

        write_text(out, text)


def _write_bytes_or_stdout(out: str, data: bytes) -> None:
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        from emocompose.atomic import write_bytes

        write_bytes(out, data)


# ---------------------------------------------------------------------------------------------
# analyze


@app.command()
def analyze(
    files: List[str] = typer.Argument(..., help="Music files or folders (searched for MIDI files)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file on stdout instead of tables."),
    beats: str = typer.Option("auto", help="auto: use a beat_midi.txt beside the file for bar lines; ignore: never."),
) -> None:
    """Print what emocompose hears: bars, key, per-bar keys, notes per beat, velocity, tempo, range.

    Example: emocompose analyze song.mid other.mid --json
    """
    from emocompose.dataset import find_inputs
    from emocompose.features import describe
    from emocompose.tokenizer import Tokenizer

    tok = Tokenizer()

    def one(path: str) -> None:
        piece = tok.load(path, beats=beats)
        info = {"file": path, **describe(tok.grid(piece), tok.config, piece)}
        if as_json:
            print(json.dumps(info), flush=True)
        else:
            _print_analysis(info)

    code = run_batch(find_inputs(files) or files, one)
    raise typer.Exit(code)


def _print_analysis(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=info["file"], show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("bars", str(info["bars"]))
    t.add_row("key", info["key"])
    t.add_row("notes", str(info["notes"]))
    t.add_row("notes per beat", f"{info['notes_per_beat']:.2f}")
    t.add_row("mean velocity", f"{info['mean_velocity']:.1f}")
    t.add_row("tempo", f"{info['tempo_bpm']:.0f} BPM")
    t.add_row("pitch range", f"{info['pitch_range']} semitones ({info['lowest']}-{info['highest']})")
    keys, runs = info["bar_keys"], []
    for i, k in enumerate(keys):  # runs of equal keys read better than one key per bar
        if runs and runs[-1][2] == k:
            runs[-1][1] = i + 1
        else:
            runs.append([i + 1, i + 1, k])
    t.add_row("bar keys", ", ".join(f"{a}-{b}: {k}" if a != b else f"{a}: {k}" for a, b, k in runs))
    Console().print(t)


# ---------------------------------------------------------------------------------------------
# preprocess


@app.command()
def preprocess(
    inputs: List[str] = typer.Argument(..., help="Folders (searched recursively) and MIDI files."),
    out: str = typer.Option(..., "--out", "-o", help="The dataset folder to write."),
    labels: Optional[str] = typer.Option(
        None, help="CSV with a `file` column and `quadrant` (Q1-Q4) or `arousal`,`valence` (1 high, 0 low), "
        "optionally `split` (train/val/test). Without it, EMOPIA's Q<k>_ file-name prefix labels a file.",
    ),  # fmt: skip
    workers: int = typer.Option(0, help="Processes (0: one per core)."),
    beats: str = typer.Option("auto", help="auto: bar lines from a beat_midi.txt beside a file (POP909); ignore: never."),
) -> None:
    """Turn folders of MIDI into a training dataset (tokens, bars, features, labels).

    Example: emocompose preprocess ~/data/emopia/midis ~/data/pop909 --labels ~/data/emopia/labels.csv --out data/all
    """
    from emocompose.dataset import preprocess as run

    with _progress() as prog:
        task = prog.add_task("preprocess", total=None, info="")

        def tick(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        manifest = run(inputs, out, labels_csv=labels, workers=workers, beats=beats, progress=tick)
    c = manifest["counts"]
    for msg in manifest["failed"]:
        print(f"emocompose: {msg}", file=sys.stderr)
    say(
        f"[bold]{out}[/]: {c['pieces']} pieces, {c['bars']} bars, {c['tokens']} tokens; "
        f"{c['files_failed']} of {c['files_read']} files failed; {c['bars_over_L']} bars over L={c['L']} tokens "
        f"({c['tokens_over_L']} tokens beyond L); labelled share {c['labelled_share_bars']:.1%} of bars"
    )
    raise typer.Exit(EXIT_PARTIAL if c["files_failed"] else EXIT_OK)


# ---------------------------------------------------------------------------------------------
# train


@app.command()
def train(
    dataset: str = typer.Argument(..., help="A dataset folder made by `emocompose preprocess`."),
    out: str = typer.Option(..., "--out", "-o", help="The run folder (checkpoints, log.jsonl)."),
    preset: str = typer.Option("small", help="Model size: tiny (tests), small (CPU default), paper (GPU)."),
    steps: int = typer.Option(8000, help="Total steps to reach (a resumed run stops there too)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/train_state.safetensors."),
    batch: int = typer.Option(8, help="Windows per step, over all processes."),
    bars: int = typer.Option(16, help="Bars per window (T)."),
    lr: float = typer.Option(5e-4, help="Peak learning rate."),
    seed: int = typer.Option(0),
    alpha: float = typer.Option(0.2, help="Variance penalty on the mixture means (1 = plain ELBO)."),
    mi: bool = typer.Option(True, "--drop-mi/--keep-mi", help="Drop the mutual-information part of the class KL."),
    rho: float = typer.Option(1.0, help="Supervision rate: keep labels on at most this share of bars."),
    kl_weight: float = typer.Option(1.0, help="Weight of KL_z."),
    kl_warmup: int = typer.Option(1000, help="Steps of linear KL warm-up."),
    free_bits: float = typer.Option(0.25, help="Nats per latent dimension free of KL pressure."),
    checkpoint_every: int = typer.Option(100, help="Steps between checkpoints."),
    precision: str = typer.Option("auto", help="auto (bf16 on CPU, fp32 on GPU), bf16 or fp32."),
    threads: int = typer.Option(0, help="CPU threads (0: torch's default)."),
) -> None:
    """Train the CDGMVAE on a dataset; resumable, and data-parallel under torchrun.

    Example: emocompose train data/all --out runs/small --steps 8000   (then --resume after a stop)
    """
    from emocompose.model.gmvae import LossConfig
    from emocompose.train import TrainConfig
    from emocompose.train import train as run

    if precision not in ("auto", "bf16", "fp32"):
        raise UsageError("--precision takes auto, bf16 or fp32")
    cfg = TrainConfig(preset=preset, steps=steps, batch=batch, bars=bars, lr=lr, seed=seed, rho=rho,
                      checkpoint_every=checkpoint_every, precision=precision)  # fmt: skip
    loss = LossConfig(alpha=alpha, drop_mi=mi, kl_weight=kl_weight, kl_warmup=kl_warmup, free_bits=free_bits)
    rank0 = os.environ.get("RANK", "0") == "0"
    if not rank0:
        run(dataset, out, cfg, loss, resume=resume, threads=threads or None)
        return
    with _progress() as prog:
        task = prog.add_task("train", total=steps, info="")

        def log(rec: dict) -> None:
            if "loss" in rec:
                info = (f"loss {rec['loss']:.3f} rec {rec['rec']:.3f} kl {rec['kl']:.2f} cls {rec['cls']:.3f} "
                        f"f_r {rec['f_r']:.3f} f_k {rec['f_k']:.3f} | {rec['tokens_per_s']:.0f} tok/s"
                        + (f" MFU {rec['mfu']:.0%}" if "mfu" in rec else ""))  # fmt: skip
                prog.update(task, completed=rec["step"], info=info)
            else:
                prog.console.print(f"step {rec['step']} (epoch {rec.get('epoch')}): " + ", ".join(
                    f"{k} {v}" for k, v in rec.items() if k.startswith("val")))  # fmt: skip

        result = run(dataset, out, cfg, loss, resume=resume, on_log=log, threads=threads or None)
    say(f"[bold]{out}[/]: step {result['step']}, model in {out}/model.safetensors")


# ---------------------------------------------------------------------------------------------
# entry point


def main(argv: Optional[list[str]] = None) -> None:
    import click

    try:
        rv = app(args=argv, standalone_mode=False, prog_name="emocompose")
        code = rv if isinstance(rv, int) else EXIT_OK
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("emocompose: interrupted; nothing half-written was left behind", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except EmocomposeError as exc:
        print(f"emocompose: {exc}", file=sys.stderr)
        code = exc.exit_code
    except BrokenPipeError:
        code = EXIT_OK  # `emocompose ... | head` closed the pipe: not an error of ours
    except Exception as exc:  # a bug: one line, the traceback on request
        if os.environ.get("EMOCOMPOSE_DEBUG"):
            raise
        print(f"emocompose: internal error: {type(exc).__name__}: {exc} (set EMOCOMPOSE_DEBUG=1 for the traceback; "
              "please report it)", file=sys.stderr)  # fmt: skip
        code = EXIT_INTERNAL
    sys.exit(code)
