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
    """Apply `work` to each item; a failure is reported on one line and the batch goes on.
    Several items get a progress bar on stderr (shown on a terminal only)."""
    import contextlib

    items = list(items)
    failed: list[str] = []
    show = len(items) > 1 and sys.stderr.isatty()
    with _progress() if show else contextlib.nullcontext() as prog:
        task = prog.add_task(what + "s", total=len(items), info="") if show else None
        for item in items:
            try:
                work(item)
            except EmocomposeError as exc:
                failed.append(str(exc))
                print(f"emocompose: {exc}", file=sys.stderr)
            if show:
                prog.update(task, advance=1, info=item if len(item) < 40 else "..." + item[-37:])
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
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/train_state.safetensors, with the "
                                "run's own options unless given again."),  # fmt: skip
    preset: Optional[str] = typer.Option(None, help="Model size: tiny (tests), small (CPU default), paper (GPU). Default: small."),
    steps: Optional[int] = typer.Option(None, help="Total steps to reach (a resumed run stops there too). Default: 8000."),
    batch: Optional[int] = typer.Option(None, help="Windows per step, over all processes. Default: 8."),
    bars: Optional[int] = typer.Option(None, help="Bars per window (T). Default: 16."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate. Default: 5e-4."),
    seed: Optional[int] = typer.Option(None, help="[default: 0]"),
    alpha: Optional[float] = typer.Option(None, help="Variance penalty on the mixture means (1 = plain ELBO). Default: 0.2."),
    mi: Optional[bool] = typer.Option(None, "--drop-mi/--keep-mi", help="Drop the mutual-information part of the class KL. Default: drop."),
    rho: Optional[float] = typer.Option(None, help="Supervision rate: keep labels on at most this share of bars. Default: 1."),
    labelled_share: Optional[float] = typer.Option(None, help="Share of each batch drawn from labelled pieces (1: only "
                                                   "them, e.g. to fine-tune toward their style). Default: 0.4."),  # fmt: skip
    kl_weight: Optional[float] = typer.Option(None, help="Weight of KL_z. Default: 1."),
    kl_warmup: Optional[int] = typer.Option(None, help="Steps of linear KL warm-up. Default: 1000."),
    free_bits: Optional[float] = typer.Option(None, help="Nats per latent dimension free of KL pressure. Default: 0.25."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Steps between checkpoints. Default: 100."),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 on a GPU, and where this CPU multiplies it natively, as "
                                             "timed at start; else fp32), bf16 or fp32. Default: auto."),
    transpose: Optional[int] = typer.Option(None, help="Move each window by up to this many semitones up or down "
                                            "(0: off; 6 cost valence control where measured). Default: 0."),  # fmt: skip
    warmup: Optional[int] = typer.Option(None, help="Steps of learning-rate warm-up. Default: 200."),
    init: Optional[str] = typer.Option(None, help="Start from this model file's weights with a fresh optimizer "
                                       "(e.g. checkpoints/default.safetensors); a --resume of a run that has "
                                       "a training state continues that state instead."),  # fmt: skip
    device: str = typer.Option("auto", help="auto (the GPU when torch sees one), cpu or cuda."),
    threads: int = typer.Option(0, help="CPU threads (0: torch's default)."),
) -> None:
    """Train the CDGMVAE on a dataset; resumable, and data-parallel under torchrun.

    OUT gets train_state.safetensors (to resume), model.safetensors (the latest weights) and
    best.safetensors (the weights at the lowest validation token loss; check it with evaluate).

    Examples:
      emocompose train data/all --out runs/small
      emocompose train data/all --out runs/small --resume              (after a stop: same options)
      emocompose train data/all --out runs/small --resume --steps 12000 (train on, further)
      emocompose train data/all --out runs/more --init checkpoints/default.safetensors --kl-warmup 1
      torchrun --nproc_per_node 2 -m emocompose train data/all --out runs/ddp
    """
    from emocompose.train import resolve_configs
    from emocompose.train import train as run

    given = {"preset": preset, "steps": steps, "batch": batch, "bars": bars, "lr": lr, "seed": seed, "rho": rho,
             "checkpoint_every": checkpoint_every, "precision": precision, "alpha": alpha, "drop_mi": mi,
             "kl_weight": kl_weight, "kl_warmup": kl_warmup, "free_bits": free_bits, "transpose": transpose,
             "warmup": warmup, "labelled_share": labelled_share}  # fmt: skip
    cfg, loss = resolve_configs(out, resume, {k: v for k, v in given.items() if v is not None})
    rank0 = os.environ.get("RANK", "0") == "0"
    if not rank0:
        run(dataset, out, cfg, loss, resume=resume, threads=threads or None, init=init, device=device)
        return
    with _progress() as prog:
        task = prog.add_task("train", total=cfg.steps, info="")

        def log(rec: dict) -> None:
            if "loss" in rec:
                info = (f"loss {rec['loss']:.3f} rec {rec['rec']:.3f} kl {rec['kl']:.2f} cls {rec['cls']:.3f} "
                        f"f_r {rec['f_r']:.3f} f_k {rec['f_k']:.3f} | {rec['tokens_per_s']:.0f} tok/s"
                        + (f" MFU {rec['mfu']:.0%}" if "mfu" in rec else ""))  # fmt: skip
                prog.update(task, completed=rec["step"], info=info)
                if not prog.console.is_terminal:  # a log file gets one line per record
                    prog.console.print(f"step {rec['step']}: {info}")
            elif "precision" in rec:
                prog.console.print(f"training from step {rec['step']} on {rec['world']} {rec['device']} "
                                   f"process(es) in {rec['precision']}")  # fmt: skip
            else:
                prog.console.print(f"step {rec['step']} (epoch {rec.get('epoch')}): " + ", ".join(
                    f"{k} {v}" for k, v in rec.items() if k.startswith("val")))  # fmt: skip

        result = run(dataset, out, cfg, loss, resume=resume, on_log=log, threads=threads or None, init=init,
                     device=device)  # fmt: skip
    best = f", best by validation in {out}/best.safetensors" if Path(out, "best.safetensors").exists() else ""
    say(f"[bold]{out}[/]: step {result['step']}, model in {out}/model.safetensors{best}")


# ---------------------------------------------------------------------------------------------
# generate / transform / swap


def _load_composer(model: Optional[str]):
    """The model, with a progress bar of decoded bars on a terminal's stderr."""
    from emocompose.compose import Composer

    composer = Composer.load(model)
    if sys.stderr.isatty():
        state = {}

        def on_bar(done: int, total: int) -> None:
            if "prog" not in state:
                state["prog"] = _progress()
                state["prog"].start()
                state["task"] = state["prog"].add_task("bars", total=total, info="")
            state["prog"].update(state["task"], completed=done, total=total)
            if done == total:
                state.pop("prog").stop()

        composer.on_bar = on_bar
    return composer


def _read_piece(composer, path: str):
    """A Grid from a file or '-' (stdin), through the model's tokenizer."""
    from emocompose.midi import read_input

    data = read_input(path)
    return composer.tok.grid(composer.tok.load(path if path != "-" else "<stdin>", data=data))


def _emit(results, out: Optional[str], default_name, as_json: bool, composer, t0: float, extra=None) -> None:
    """Write each result's MIDI; auto-named files never overwrite (a taken name gets a suffix)."""
    import time

    from emocompose.atomic import write_bytes

    many = len(results) > 1
    if out == "-" and many:
        raise UsageError("-o - writes one MIDI to stdout; use a folder for several outputs")
    for i, r in enumerate(results):
        data = composer.tok.to_midi(r.grid)
        planned = _planned_path(out, default_name(i, r), many)
        if planned is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            path = "-"
        elif planned == Path(out or "."):  # one output, to the file -o names
            write_bytes(out, data)
            path = out
        else:  # the atomic write makes a missing folder
            path = str(_claim(planned.parent, planned.name, data))
        record = {"path": path, "emotion": r.emotion, "bars": int(r.grid.n_bars), "notes": int(r.grid.n_notes),
                  "seed": r.seed, "seconds": round(time.perf_counter() - t0, 3), **(extra(r) if extra else {})}  # fmt: skip
        if as_json:
            print(json.dumps(record), flush=True)
        else:
            in_key = f", {record['key']}" if record.get("key") else ""
            say(f"wrote [bold]{path}[/] ({record['bars']} bars, {record['notes']} notes{in_key})")


def _planned_path(out: Optional[str], name: str, many: bool) -> Optional[Path]:
    """Where an output named `name` goes: None for stdout (-), `out` itself when one output goes
    to a file, else `name` in the folder `out` (the current folder by default)."""
    if out == "-":
        return None
    if out is not None and not many and not out.endswith(("/", os.sep)) and not Path(out).is_dir():
        return Path(out)
    return Path(out or ".") / name


def _claim(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` under `name` in `folder`, or name-1, name-2, ... if taken (atomic, exclusive)."""
    from emocompose.atomic import write_bytes

    stem, suffix = os.path.splitext(name)
    for k in range(10_000):
        path = folder / (name if k == 0 else f"{stem}-{k}{suffix}")
        if path.exists():
            continue
        try:
            write_bytes(path, data, exclusive=True)
            return path
        except FileExistsError:
            continue
    raise UsageError(f"no free file name for {name} in {folder}")


MODEL_OPT = typer.Option(None, "--model", "-m", help="A model file (safetensors); default: the shipped model.")
SEED_OPT = typer.Option(0, help="Random seed: the same seed gives the same bytes.")
JSON_OPT = typer.Option(False, "--json", help="One JSON object per output on stdout (path, emotion, bars, seed, seconds).")
# rewriting a piece samples cooler than composing one: the piece's own latents already say much
REWRITE_TEMP_OPT = typer.Option(0.8, help="Token sampling temperature (0: always the likeliest token).")
REWRITE_TOP_P_OPT = typer.Option(0.9, help="Nucleus sampling of pitches: keep the likeliest pitches up to this "
                                 "probability.")  # fmt: skip


PAPER_OPT = typer.Option(False, "--paper", help="The paper's latent operations exactly: bars drawn alone, z_k "
                        "around the emotion's component mean, transform shifted by the difference of the component "
                        "means, one decoding per output (for comparisons).")
CANDIDATES_OPT = typer.Option(None, "--candidates", help="Decode this many versions of each output and keep the one "
                              "the model's own encoder hears as most like the target emotion (default 1; --paper takes "
                              "only 1). Each one adds a decoding's time.", show_default=False)  # fmt: skip


@app.command()
def generate(
    emotion: Optional[str] = typer.Option(None, "--emotion", "-e", help="happy, tense, sad or calm (or Q1-Q4)."),
    arousal: Optional[float] = typer.Option(None, help="Instead of --emotion: arousal in [-1, 1] (-1 calm .. 1 excited)."),
    valence: Optional[float] = typer.Option(None, help="With --arousal: valence in [-1, 1] (-1 negative .. 1 positive)."),
    bars: int = typer.Option(20, help="Bars per piece."),
    count: int = typer.Option(1, "--count", "-n", help="Pieces to write (decoded as one batch)."),
    seed: int = SEED_OPT,
    temperature: float = typer.Option(1.0, help="Token sampling temperature (0: always the likeliest token)."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling of pitches: keep the likeliest pitches up to this "
                                "probability (rhythm, durations and dynamics keep the model's whole distribution)."),  # fmt: skip
    tempo: Optional[float] = typer.Option(None, help="Fix the tempo (BPM) instead of letting the model choose."),
    key: Optional[str] = typer.Option(None, "--key", "-k", help="The key, e.g. 'A minor', 'F# major', 'Bb' "
                                      "(default: drawn per piece from the keys of training pieces of that valence)."),
    coherence: float = typer.Option(0.6, min=0.0, max=1.0, help="How much the bars of a piece share their latents "
                                    "(0: each bar drawn alone, as in the paper; 1: every bar the same). Real music: about 0.6."),
    candidates: Optional[int] = CANDIDATES_OPT,
    paper: bool = PAPER_OPT,
    out: Optional[str] = typer.Option(None, "-o", "--out", help="A .mid file, a folder (for several), or - for stdout. "
                                      "Default: EMOTION_SEED_I.mid in the current folder, never overwriting."),  # fmt: skip
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Compose new music that carries an emotion.

    Examples:
      emocompose generate --emotion happy --bars 20 -o happy.mid
      emocompose generate --emotion sad --count 8 -o sad/ --json
      emocompose generate --emotion sad --key "D minor" --tempo 70 -o sad.mid
      emocompose generate --arousal 0.5 --valence -0.8 -o -  > tense-ish.mid
    """
    import time

    from emocompose.compose import check_candidates, check_key

    _check_limits(bars=bars, count=count, candidates=check_candidates(candidates, paper))
    if emotion is None and (arousal is None or valence is None):
        raise UsageError("give --emotion (happy, tense, sad, calm) or both --arousal and --valence")
    check_key(key, paper)  # a usage error before the model loads
    t0 = time.perf_counter()
    composer = _load_composer(model)
    results = composer.generate(emotion, arousal=arousal, valence=valence, bars=bars, count=count, seed=seed,
                                temperature=temperature, top_p=top_p, tempo=tempo, key=key, coherence=coherence,
                                paper=paper, candidates=candidates)  # fmt: skip
    _emit(results, out, lambda i, r: f"{r.emotion}_{seed}_{i}.mid", as_json, composer, t0,
          lambda r: {"key": r.info["key"]} if r.info.get("key") else {})  # fmt: skip


@app.command()
def transform(
    inputs: List[str] = typer.Argument(..., help="MIDI files or folders; - reads one MIDI from stdin."),
    to: str = typer.Option(..., "--to", "-t", help="Target emotion: happy, tense, sad or calm."),
    lam: float = typer.Option(1.0, "--lambda", "-l", help="Strength in [0, 1]: 0 re-decodes the piece, 1 moves it all the way."),
    source: Optional[str] = typer.Option(None, "--from", help="The piece's emotion, if you know it (default: inferred; "
                                          "the shift needs it with --paper only)."),
    seed: int = SEED_OPT,
    temperature: float = REWRITE_TEMP_OPT,
    top_p: float = REWRITE_TOP_P_OPT,
    out: Optional[str] = typer.Option(None, "-o", "--out", help="Output file (one input), folder, or -. "
                                      "Default: NAME_to_EMOTION.mid in the current folder."),  # fmt: skip
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON_OPT,
    candidates: Optional[int] = CANDIDATES_OPT,
    paper: bool = PAPER_OPT,
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs whose output file exists already "
                                       "(rerun a killed batch to finish it; the same seed gives the same bytes)."),  # fmt: skip
) -> None:
    """Rewrite pieces to carry another emotion, keeping meter, tempo and instruments.

    Examples:
      emocompose transform song.mid --to sad --lambda 0.7 -o song_sad.mid
      emocompose transform clips/ --to calm -o calm/ --json --skip-existing
      cat song.mid | emocompose transform - --to happy -o - > happy.mid
    """
    import time

    from emocompose.compose import check_candidates, parse_emotion
    from emocompose.dataset import find_inputs

    check_candidates(candidates, paper)
    parse_emotion(to)
    if source:
        parse_emotion(source)
    if not 0.0 <= lam <= 1.0:
        raise UsageError(f"--lambda must be in [0, 1], got {lam}")
    files = [f for f in inputs if f == "-"] + find_inputs([f for f in inputs if f != "-"])
    if not files:
        raise UsageError("no MIDI files found in the inputs given")
    composer = _load_composer(model)
    target = out if len(files) == 1 else (out or ".") + ("" if (out or ".").endswith("/") else "/")
    name_of = lambda path: f"{'stdin' if path == '-' else Path(path).stem}_to_{to.lower()}.mid"
    skipped = []

    def one(path: str) -> None:
        t0 = time.perf_counter()
        done = _planned_path(target, name_of(path), many=False)
        if skip_existing and done is not None and done.exists():
            skipped.append(path)
            return
        grid = _read_piece(composer, path)
        _check_limits(bars=grid.n_bars)
        r = composer.transform(grid, to, lam, source=source, seed=seed, temperature=temperature, top_p=top_p,
                               paper=paper, candidates=candidates)  # fmt: skip
        q = r.info["q"]
        keys = f", key {' -> '.join(dict.fromkeys(r.info['key']))}" if "key" in r.info else ""  # one name if kept
        print(f"emocompose: {path}: heard {r.info['source_emotion']} (arousal high {q['arousal'][1]:.2f}, "
              f"valence high {q['valence'][1]:.2f}); moved toward {to} with lambda {lam}{keys}", file=sys.stderr)  # fmt: skip
        _emit([r], target, lambda i, _: name_of(path), as_json, composer, t0,
              extra=lambda r: {"input": path, "source_emotion": r.info["source_emotion"], "q": r.info["q"], "lambda": lam,
                                 **({"source_key": r.info["key"][0], "key": r.info["key"][1]} if "key" in r.info else {})})  # fmt: skip

    code = run_batch(files, one)
    if skipped:
        say(f"skipped {len(skipped)} of {len(files)} inputs whose output exists (--skip-existing)")
    raise typer.Exit(code)


@app.command()
def swap(
    a: str = typer.Argument(..., help="Piece A: gives the bars (meter, tempo, instruments) and the other feature."),
    b: str = typer.Argument(..., help="Piece B: lends FEATURE."),
    feature: str = typer.Option(..., "--feature", "-f", help="rhythm (z_r from B) or key (z_k from B)."),
    seed: int = SEED_OPT,
    temperature: float = REWRITE_TEMP_OPT,
    top_p: float = REWRITE_TOP_P_OPT,
    out: Optional[str] = typer.Option(None, "-o", "--out", help="Output file or -. Default: A_FEATURE_from_B.mid."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Give piece A the rhythm (or the key) of piece B.

    The output has A's length; if B is shorter, its bars repeat from the start.

    Example: emocompose swap a.mid b.mid --feature rhythm -o a_with_b_rhythm.mid
    """
    import time

    if feature not in ("rhythm", "key"):
        raise UsageError(f"--feature must be rhythm or key, got {feature!r}")
    if a == "-" and b == "-":
        raise UsageError("only one of A and B can be read from stdin")
    t0 = time.perf_counter()
    composer = _load_composer(model)
    ga, gb = _read_piece(composer, a), _read_piece(composer, b)
    _check_limits(bars=ga.n_bars)
    r = composer.swap(ga, gb, feature, seed=seed, temperature=temperature, top_p=top_p)
    name = f"{Path(a).stem}_{feature}_from_{Path(b).stem}.mid"
    _emit([r], out, lambda i, _: name, as_json, composer, t0, extra=lambda r: r.info)


@app.command()
def evaluate(
    data: str = typer.Option(..., "--data", "-d", help="A dataset from `emocompose preprocess`, or a folder of labelled "
                             "MIDI (EMOPIA: its Q<k>_ names label it). Its train split trains the judge, its test "
                             "split is measured."),  # fmt: skip
    out: str = typer.Option("report", "--out", "-o", help="Folder for report.json, the figures and samples/."),
    model: Optional[str] = MODEL_OPT,
    pieces: int = typer.Option(25, help="Generated pieces per emotion for the control figures (25: one piece "
                               "moves an accuracy by 0.01)."),  # fmt: skip
    bars: int = typer.Option(20, help="Bars per generated piece (real clips are cut to it)."),
    clips: int = typer.Option(8, help="Test clips per quadrant for transform and swap (0 skips both)."),
    labels: Optional[str] = typer.Option(None, help="Labels CSV when --data is a folder of MIDI (see preprocess)."),
    seed: int = SEED_OPT,
    temperature: float = typer.Option(1.0, help="Token sampling temperature of the generated pieces (as generate)."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling of the generated pieces (as generate)."),
    candidates: Optional[int] = CANDIDATES_OPT,
    paper: bool = PAPER_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON on stdout."),
) -> None:
    """Measure a model the paper's way (emotion control, transform, swap, disentanglement, latents) and
    beyond it: realism (can a classifier tell its pieces from real test clips?) and quality.

    An emotion classifier that never sees the model (logistic regression on note features) is
    trained on the data's train split; its accuracy on the test split is the real-music ceiling
    printed beside every figure. Takes minutes: with the defaults it decodes about 390 pieces.

    Example: emocompose evaluate --data data/all --out report
    """
    from emocompose.compose import Composer, check_candidates
    from emocompose.evaluate import EvalConfig, Evaluation, load_real

    candidates = check_candidates(candidates, paper)  # resolved, so the report says how many
    _check_limits(bars=bars, count=pieces, candidates=candidates)
    if pieces < 1 or clips < 0:
        raise UsageError("--pieces must be at least 1 and --clips at least 0")
    cfg = EvalConfig(pieces=pieces, bars=bars, clips=clips, seed=seed, temperature=temperature, top_p=top_p,
                     paper=paper, candidates=candidates)  # fmt: skip
    composer = Composer.load(model)
    real = load_real(data, composer.tok, bars, labels_csv=labels)
    with _progress() as prog:
        task = prog.add_task("evaluate", total=None, info="")
        ev = Evaluation(composer, real, Path(out), cfg,
                        progress=lambda stage, done, total: prog.update(task, completed=done, total=total, info=stage))
        report = ev.run()
    if as_json:
        print(json.dumps(report))
    _print_report(report, out)


def _print_report(r: dict, out: str) -> None:
    """The summary table: each figure beside what real music (judged the same way) scores."""
    from rich.table import Table

    def avq(x: dict, key: str = "accuracy") -> str:
        q = f" / {x['quadrant_accuracy']:.2f}" if key == "accuracy" else ""
        return f"{x['arousal'][key]:.2f} / {x['valence'][key]:.2f}{q}"

    s = r["settings"]
    n = s.get("candidates") or 1
    how = "the paper's operations" if s.get("paper") else ("one decoding each" if n == 1 else f"best of {n} decodings")
    t = Table(title=f"evaluate {r['model']} (step {r.get('model_step')}; {how})", title_justify="left")
    t.add_column("measure")
    t.add_column("model", justify="right")
    t.add_column("real music", justify="right")
    ceiling = r["judge"]["test"]
    c = r["control"]
    t.add_row("generate: accuracy arousal / valence / quadrant", avq(c), avq(ceiling))
    t.add_row("generate: F1 arousal / valence", avq(c, "f1"), avq(ceiling, "f1"))
    tr = r["transform"]
    if tr["clips"]:
        t.add_row("transform (lambda 1): judged as the target", f"{tr['reached_target']:.2f}", "")
        lam = tr["lambda"]
        t.add_row(f"  toward the opposite, lambda {' '.join(f'{x:g}' for x in lam['values'])}",
                  " ".join(f"{x:.2f}" for x in lam["reached_opposite"]), "")  # fmt: skip
        t.add_row("  its rhythm cosine to the source", " ".join(f"{x:.2f}" for x in lam["rhythm_to_source"]), "")
    for feature, s in r["swap"].items():
        if not s["pairs"]:
            continue
        t.add_row(f"swap {feature}: rhythm cosine to A / B", f"{s['rhythm_to_a']:.2f} / {s['rhythm_to_b']:.2f}", "")
        t.add_row(f"swap {feature}: key cosine to A / B", f"{s['key_to_a']:.2f} / {s['key_to_b']:.2f}", "")
    d = r["disentanglement"]
    t.add_row("probe: rhythm from z_r / from z_k", f"{d['rhythm_from_z_r']:.2f} / {d['rhythm_from_z_k']:.2f}",
              f"chance {d['rhythm_chance']:.2f}")  # fmt: skip
    t.add_row("probe: key from z_k / from z_r", f"{d['key_from_z_k']:.2f} / {d['key_from_z_r']:.2f}",
              f"chance {d['key_chance']:.2f}")  # fmt: skip
    q = r["latent"]["model_q_accuracy"]
    t.add_row("model's q(y|x): arousal / valence", f"{q['arousal']:.2f} / {q['valence']:.2f}", "")
    rl = r["realism"]
    t.add_row(f"realism: generated told from real test clips (0.5: cannot; {rl['pieces']} each)",
              f"{rl['accuracy']:.2f}", f"{rl['real_against_real']:.2f} (train clips)")  # fmt: skip
    t.add_row("  the same without where onsets fall on the 16th grid", f"{rl['accuracy_without_grid_style']:.2f}", "")
    t.add_row(f"  mean overlapping area of {len(rl['features'])} structure features",
              f"{rl['mean_overlapping_area']:.2f}", "1.00")  # fmt: skip
    for name in rl["most_telling"][:3]:
        f = rl["features"][name]
        t.add_row(f"  {name.replace('_', ' ')}", f"{f['generated']:.2f}", f"{f['real']:.2f}")
    for k, v in r["quality"]["generated"].items():
        real = r["quality"]["real"][k]
        t.add_row(k.replace("_", " "), "-" if v["mean"] is None else f"{v['mean']:.3f}", f"{real['mean']:.3f}")
    _stderr().print(t)
    say(f"real music: the judge on {r['judge']['tested_on']} test clips (split: {r['judge']['split']})")
    say(f"wrote [bold]{out}/report.json[/], figures and samples/ in {r['seconds']['total']:.0f} s")


def _check_limits(bars: int | None = None, count: int | None = None, candidates: int = 1) -> None:
    """Limits that keep a typo from occupying the machine for hours; each says how to lift it."""
    max_bars = int(os.environ.get("EMOCOMPOSE_MAX_OUTPUT_BARS", 512))
    max_count = int(os.environ.get("EMOCOMPOSE_MAX_COUNT", 256))
    if bars is not None and not 1 <= bars <= max_bars:
        raise UsageError(f"--bars must be 1..{max_bars} (raise the limit with EMOCOMPOSE_MAX_OUTPUT_BARS)")
    if count is not None and not 1 <= count <= max_count:
        raise UsageError(f"--count must be 1..{max_count} (raise the limit with EMOCOMPOSE_MAX_COUNT)")
    if count is not None and count * candidates > max_count:
        raise UsageError(f"{count} pieces x {candidates} candidates is over {max_count} decodings "
                         "(lower --candidates, or raise the limit with EMOCOMPOSE_MAX_COUNT)")


# ---------------------------------------------------------------------------------------------
# shell completion


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.command()
def completions(shell: Shell = typer.Argument(..., help="bash, zsh or fish.")) -> None:
    """Print the shell completion script (also committed in completions/).

    Example: emocompose completions bash > ~/.local/share/bash-completion/completions/emocompose
    """
    sys.stdout.write(completion_script(shell.value))


COMPLETE_VAR = "_EMOCOMPOSE_COMPLETE"


def completion_script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="emocompose", complete_var=COMPLETE_VAR, shell=shell)


# ---------------------------------------------------------------------------------------------
# entry point


class Interrupted(EmocomposeError):
    exit_code = EXIT_INTERRUPTED


def _interrupt(signum, frame):
    raise Interrupted("interrupted; nothing half-written was left behind")


def main(argv: Optional[list[str]] = None) -> None:
    """Typer parses and reports usage errors itself (exit 2); everything else is ours."""
    import signal

    if os.environ.get(COMPLETE_VAR):  # the shell asks for completions: typer answers, fast
        from typer.completion import completion_init

        completion_init()
        app(prog_name="emocompose")
        return
    # Ctrl-C and kill become our own exception (exit 130), not click's "Aborted!" (exit 1)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(args=argv, prog_name="emocompose")  # exits by itself on success and on usage errors
    except EmocomposeError as exc:
        print(f"emocompose: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(EXIT_OK)  # `emocompose ... | head` closed the pipe: not an error of ours
    except Exception as exc:  # a bug: one line, the traceback on request
        if os.environ.get("EMOCOMPOSE_DEBUG"):
            raise
        print(f"emocompose: internal error: {type(exc).__name__}: {exc} (set EMOCOMPOSE_DEBUG=1 for the traceback; "
              "please report it)", file=sys.stderr)  # fmt: skip
        sys.exit(EXIT_INTERNAL)
