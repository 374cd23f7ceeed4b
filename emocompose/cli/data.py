"""The commands that read and prepare music and train: tokenize, detokenize, analyze,
preprocess, train."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from emocompose.cli import app
from emocompose.cli.common import BEATS_OPT, batch
from emocompose.console import progress, say
from emocompose.errors import EXIT_OK, EXIT_PARTIAL
from emocompose.model.config import LossConfig
from emocompose.train import TrainConfig

@app.command()
def tokenize(
    file: str = typer.Argument(..., help="A MIDI file (or MusicXML/ABC/kern, read through music21); - for stdin."),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="Where to write the JSON (default: stdout)."),
    beats: str = BEATS_OPT,
) -> None:
    """Turn a music file into REMI tokens (JSON: names, ids, bar offsets, vocabulary).

    Example: emocompose tokenize song.mid -o song.tokens.json
    """
    from emocompose.outputs import write_or_stdout
    from emocompose.tokenizer import Tokenizer

    tok = Tokenizer()
    ids, offsets = tok.encode(tok.grid(tok.load(file, beats=beats)))
    write_or_stdout(out, tok.to_json(ids, offsets, source=file))


@app.command()
def detokenize(
    file: str = typer.Argument(..., help="Tokens JSON written by `emocompose tokenize` (or a generator); - for stdin."),
    out: str = typer.Option(..., "-o", "--out", help="The MIDI file to write; - for stdout."),
) -> None:
    """Write MIDI back from REMI tokens.

    Example: emocompose detokenize song.tokens.json -o song.mid
    """
    from emocompose.outputs import read_text, write_or_stdout
    from emocompose.tokenizer import Tokenizer

    tok = Tokenizer()
    write_or_stdout(out, tok.to_midi(tok.decode(tok.from_json(read_text(file), file))))


@app.command()
def analyze(
    files: List[str] = typer.Argument(..., help="Music files or folders (searched for MIDI files)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file on stdout instead of tables."),
    beats: str = BEATS_OPT,
) -> None:
    """Print what emocompose hears: bars, key, per-bar keys, notes per beat, velocity, tempo, range.

    Example: emocompose analyze song.mid other.mid --json
    """
    from emocompose.console import print_analysis
    from emocompose.dataset import find_inputs
    from emocompose.features import describe
    from emocompose.tokenizer import Tokenizer

    tok = Tokenizer()

    def one(path: str) -> None:
        piece = tok.load(path, beats=beats)
        info = {"file": path, **describe(tok.grid(piece), tok.config, piece)}
        print(json.dumps(info), flush=True) if as_json else print_analysis(info)

    raise typer.Exit(batch(find_inputs(files) or files, one))


@app.command()
def preprocess(
    inputs: List[str] = typer.Argument(..., help="Folders (searched recursively) and MIDI files."),
    out: str = typer.Option(..., "--out", "-o", help="The dataset folder to write."),
    labels: Optional[str] = typer.Option(
        None, help="CSV with a `file` column and `quadrant` (Q1-Q4) or `arousal`,`valence` (1 high, 0 low), "
        "optionally `split` (train/val/test). Without it, EMOPIA's Q<k>_ file-name prefix labels a file.",
    ),  # fmt: skip
    workers: int = typer.Option(0, help="Processes (0: one per core)."),
    beats: str = BEATS_OPT,
) -> None:
    """Turn folders of MIDI into a training dataset (tokens, bars, features, labels).

    Example: emocompose preprocess ~/data/emopia/midis ~/data/pop909 --labels ~/data/emopia/labels.csv --out data/all
    """
    from emocompose.dataset import preprocess as run

    with progress() as prog:
        task = prog.add_task("preprocess", total=None, info="")
        tick = lambda done, total: prog.update(task, completed=done, total=total)
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


def _default(what: str, cfg=TrainConfig) -> str:
    return f"Default: {getattr(cfg, what)}."


@app.command()
def train(
    dataset: str = typer.Argument(..., help="A dataset folder made by `emocompose preprocess`."),
    out: str = typer.Option(..., "--out", "-o", help="The run folder (checkpoints, log.jsonl)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/train_state.safetensors, with the "
                                "run's own options unless given again."),  # fmt: skip
    preset: Optional[str] = typer.Option(None, help="Model size: tiny (tests), mini, small (CPU), paper (GPU). " + _default("preset")),
    steps: Optional[int] = typer.Option(None, help="Total steps to reach (a resumed run stops there too). " + _default("steps")),
    batch: Optional[int] = typer.Option(None, help="Windows per step, over all processes. " + _default("batch")),
    bars: Optional[int] = typer.Option(None, help="Bars per window (T). " + _default("bars")),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate. " + _default("lr")),
    seed: Optional[int] = typer.Option(None, help=_default("seed")),
    alpha: Optional[float] = typer.Option(None, help="Variance penalty on the mixture means (1 = plain ELBO). " + _default("alpha", LossConfig)),
    mi: Optional[bool] = typer.Option(None, "--drop-mi/--keep-mi", help="Drop the mutual-information part of the class KL. " + _default("drop_mi", LossConfig)),
    rho: Optional[float] = typer.Option(None, help="Supervision rate: keep labels on at most this share of bars. " + _default("rho")),
    labelled_share: Optional[float] = typer.Option(None, help="Share of each batch drawn from labelled pieces (1: only "
                                                   "them, e.g. to fine-tune toward their style). " + _default("labelled_share")),  # fmt: skip
    kl_weight: Optional[float] = typer.Option(None, help="Weight of KL_z. " + _default("kl_weight", LossConfig)),
    kl_warmup: Optional[int] = typer.Option(None, help="Steps of linear KL warm-up. " + _default("kl_warmup", LossConfig)),
    free_bits: Optional[float] = typer.Option(None, help="Nats per latent dimension free of KL pressure. " + _default("free_bits", LossConfig)),
    memory_bars: Optional[int] = typer.Option(None, help="Bars before its own that each decoder layer reads (the "
                                              "paper's 1; a model of 1 may start a run of more with --init). "
                                              + _default("memory_bars")),  # fmt: skip
    checkpoint_every: Optional[int] = typer.Option(None, help="Steps between checkpoints. " + _default("checkpoint_every")),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 on a GPU, and where this CPU multiplies it natively, as "
                                             "timed at start; else fp32), bf16 or fp32. " + _default("precision")),  # fmt: skip
    transpose: Optional[int] = typer.Option(None, help="Move each window by up to this many semitones up or down "
                                            "(0: off; 6 cost valence control where measured). " + _default("transpose")),  # fmt: skip
    warmup: Optional[int] = typer.Option(None, help="Steps of learning-rate warm-up. " + _default("warmup")),
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
    from emocompose.console import train_record
    from emocompose.train import resolve_configs
    from emocompose.train import train as run

    given = {"preset": preset, "steps": steps, "batch": batch, "bars": bars, "lr": lr, "seed": seed, "rho": rho,
             "checkpoint_every": checkpoint_every, "precision": precision, "alpha": alpha, "drop_mi": mi,
             "kl_weight": kl_weight, "kl_warmup": kl_warmup, "free_bits": free_bits, "transpose": transpose,
             "warmup": warmup, "labelled_share": labelled_share, "memory_bars": memory_bars}  # fmt: skip
    cfg, loss = resolve_configs(out, resume, {k: v for k, v in given.items() if v is not None})
    options = dict(resume=resume, threads=threads or None, init=init, device=device)
    if os.environ.get("RANK", "0") != "0":
        run(dataset, out, cfg, loss, **options)
        return
    with progress() as prog:
        task = prog.add_task("train", total=cfg.steps, info="")

        def log(rec: dict) -> None:
            if "loss" in rec:
                prog.update(task, completed=rec["step"], info=train_record(rec))
                if prog.console.is_terminal:
                    return  # the bar shows it; a log file gets one line per record
            prog.console.print((f"step {rec['step']}: " if "loss" in rec else "") + train_record(rec))

        result = run(dataset, out, cfg, loss, on_log=log, **options)
    best = f", best by validation in {out}/best.safetensors" if Path(out, "best.safetensors").exists() else ""
    say(f"[bold]{out}[/]: step {result['step']}, model in {out}/model.safetensors{best}")


