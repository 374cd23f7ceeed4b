"""The commands that make music: generate, transform, swap, and evaluate, which measures them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from emocompose import presets
from emocompose.cli import app
from emocompose.cli.common import (AUDIO_OPT, CANDIDATES_OPT, JSON_OPT, MODEL_OPT, PAPER_OPT, SEED_OPT, SOUNDFONT_OPT,
                                   TEMP_HELP, TOP_P_HELP, PLOT_OPT, Beside, batch, emit, inputs_or_stdin, load_composer,
                                   read_piece)  # fmt: skip
from emocompose.console import progress, say
from emocompose.errors import EXIT_OK
from emocompose.trajectory import TRANSITION

@app.command()
def generate(
    emotion: Optional[str] = typer.Option(None, "--emotion", "-e", help="happy, tense, sad or calm (or Q1-Q4); or "
                                          "emotions over time, EMOTION:BARS,... (calm:8,tense:8,happy:4)."),
    arousal: Optional[str] = typer.Option(None, help="Instead of --emotion: arousal in [-1, 1] (-1 calm .. 1 excited), "
                                          "or VALUE:BARS,... over time."),
    valence: Optional[str] = typer.Option(None, help="With --arousal: valence in [-1, 1] (-1 negative .. 1 positive), "
                                          "or VALUE:BARS,... over time."),
    bars: Optional[int] = typer.Option(None, help=f"Bars per piece (default {presets.BARS}; with emotions over time, "
                                       "their sum)."),
    transition: Optional[int] = typer.Option(None, help=f"Bars over which one emotion glides into the next "
                                             f"(default {TRANSITION}).", show_default=False),
    count: int = typer.Option(1, "--count", "-n", help="Pieces to write (decoded as one batch)."),
    seed: int = SEED_OPT,
    temperature: float = typer.Option(presets.GENERATE.temperature, help=TEMP_HELP),
    top_p: float = typer.Option(presets.GENERATE.top_p, help=TOP_P_HELP),
    tempo: Optional[float] = typer.Option(None, help="Fix the tempo (BPM) instead of letting the model choose."),
    key: Optional[str] = typer.Option(None, "--key", "-k", help="The key to write toward, e.g. 'A minor', 'F# major', "
                                      "'Bb' (default: drawn per piece from the keys of training pieces of that "
                                      "valence). Most pieces land on it; the message names the key heard where not."),
    coherence: float = typer.Option(presets.COHERENCE, help="How much the bars of a piece share their latents, in [0, 1] "
                                    "(0: each bar drawn alone, as in the paper; 1: every bar the same). Real music: about 0.6."),
    key_spread: Optional[float] = typer.Option(None, help="How far a piece's key latents stray from its key, in "
                                               f"[0, 1] of the prior's spread (default {presets.KEY_SPREAD}; 1: the "
                                               "prior's, as in the paper: a third of pieces then land in another key). "
                                               "Its bars still move around the piece's key as the prior says.",
                                               show_default=False),  # fmt: skip
    echo: Optional[float] = typer.Option(None, help=f"Share of bars, in [0, 1], that repeat the rhythm of the bar "
                                         f"{presets.ECHO_BACK} before them with new notes (default {presets.ECHO}; real "
                                         "music: about one in nine; 0: none).", show_default=False),
    candidates: Optional[int] = CANDIDATES_OPT,
    paper: bool = PAPER_OPT,
    out: Optional[str] = typer.Option(None, "-o", "--out", help="A .mid file, a folder (for several), or - for stdout. "
                                      "Default: EMOTION_SEED_I.mid in the current folder, never overwriting."),  # fmt: skip
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON_OPT,
    audio: Optional[str] = AUDIO_OPT,
    soundfont: Optional[str] = SOUNDFONT_OPT,
    plot: Optional[str] = PLOT_OPT,
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Continue this MIDI file: its bars unchanged, then "
                                         "--bars new ones (default 8) in its emotion or --emotion's, with its meter, "
                                         "tempo, instruments, last bar's drums and left hand."),
    prompt_bars: Optional[int] = typer.Option(None, help="With --prompt: read only its last K bars as context."),
) -> None:
    """Compose new music that carries an emotion, or continue a piece of yours.

    Each piece's latents are drawn from the emotion's part of the model's latent space and decoded
    bar by bar; the same seed gives the same bytes. Without -o, it writes EMOTION_SEED_I.mid in
    the current folder, never overwriting a file.

    Examples:
      emocompose generate --emotion happy --bars 20 -o happy.mid --audio happy.wav
      emocompose generate --emotion calm:8,tense:8,happy:4 -o turn.mid    (20 bars whose mood turns twice)
      emocompose generate --emotion sad --count 8 -o sad/ --json
      emocompose generate --emotion sad --key "D minor" --tempo 70 -o sad.mid
      emocompose generate --arousal 0.5 --valence -0.8 -o -  > tense-ish.mid
      emocompose generate --prompt idea.mid --bars 8 --emotion sad -o idea_on.mid   (8 more bars, turning sad)
    """
    from emocompose.compose import check_candidates, check_key, check_prompt
    from emocompose.errors import LimitError, UsageError
    from emocompose.midi import read_input
    from emocompose.outputs import Destination, check_limits
    from emocompose.trajectory import check_transition, plan

    # every check before the model loads
    n = check_candidates(candidates, paper)
    if prompt is None:
        check_limits(bars=sum(s.bars for s in plan(emotion, arousal, valence, bars, presets.BARS)), count=count,
                     candidates=n)  # fmt: skip
    else:
        check_prompt(emotion, arousal, valence, key, tempo, paper, echo, transition, key_spread)
        prompt_data = read_input(prompt)
        bars = presets.PROMPT_BARS if bars is None else bars
        check_limits(bars=bars, count=count, candidates=n)
    transition = check_transition(TRANSITION if transition is None else transition)
    echo = presets.ECHO if echo is None else echo
    check_key(key, paper)
    dest = Destination(out, many=count > 1)
    beside = Beside(audio, plot, out, count > 1, soundfont, as_json)
    t0 = time.perf_counter()
    composer = load_composer(model, batch=count * n)
    if prompt is None:
        results = composer.generate(emotion, arousal=arousal, valence=valence, bars=bars, count=count, seed=seed,
                                    temperature=temperature, top_p=top_p, tempo=tempo, key=key, coherence=coherence,
                                    key_spread=presets.KEY_SPREAD if key_spread is None else key_spread,
                                    paper=paper, candidates=candidates, transition=transition, echo=echo)  # fmt: skip
    else:
        grid = read_piece(composer, prompt, prompt_data)
        try:
            check_limits(bars=grid.n_bars + bars)
        except UsageError as exc:  # the prompt's fault as much as --bars's: name it
            raise LimitError(f"{grid.n_bars} bars of prompt and {bars} new ones: {exc}", prompt) from None
        results = composer.continuation(grid, bars, emotion, count=count, seed=seed, temperature=temperature,
                                        top_p=top_p, coherence=coherence, prompt_bars=prompt_bars,
                                        candidates=candidates)  # fmt: skip
    stem = "" if prompt is None else f"{'stdin' if prompt == '-' else Path(prompt).stem}_"
    for i, r in enumerate(results):
        emit(dest, r, f"{stem}{r.emotion}_{seed}_{i}.mid", composer, as_json, t0, beside,
             **{k: r.info[k] for k in ("key", "segments", "prompt_bars", "new_bars") if r.info.get(k)})


@app.command()
def transform(
    inputs: List[str] = typer.Argument(..., help="MIDI files or folders; - reads one MIDI from stdin."),
    to: str = typer.Option(..., "--to", "-t", help="Target emotion: happy, tense, sad or calm; or emotions over "
                           "time, EMOTION:BARS,... adding up to the piece's bars (calm:8,tense:8)."),
    lam: float = typer.Option(1.0, "--lambda", "-l", help="Strength in [0, 1]: below 0.5 the melody, rhythm and harmony "
                             "stay and the rest is re-voiced; from 0.5 the mode changes (the harmony with it) and, "
                             "where arousal changes too, the rhythm under the melody is rewritten; 1 moves the latents "
                             "all the way."),
    source: Optional[str] = typer.Option(None, "--from", help="The piece's emotion, if you know it (default: what the model "
                                          "hears in it). Tempo changes only when arousal does."),
    seed: int = SEED_OPT,
    temperature: float = typer.Option(presets.TRANSFORM.temperature, help=TEMP_HELP),
    top_p: float = typer.Option(presets.TRANSFORM.top_p, help=TOP_P_HELP),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="Output file (one input), folder, or -. "
                                      "Default: NAME_to_EMOTION.mid in the current folder."),  # fmt: skip
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON_OPT,
    candidates: Optional[int] = CANDIDATES_OPT,
    paper: bool = PAPER_OPT,
    keep: str = typer.Option("melody", "--keep", help="melody: keep the piece's melody note for note (moved into "
                             "the target's mode from lambda 0.5) and write the rest around it; texture: keep its "
                             "accompaniment's rhythm and chords too, thinned toward low arousal and struck again "
                             "toward high (the most like your piece, the least far toward the target); none: decode "
                             "the whole piece from the moved latents (--paper implies none)."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs whose output file exists already "
                                       "(rerun a killed batch to finish it; the same seed gives the same bytes)."),  # fmt: skip
    audio: Optional[str] = AUDIO_OPT,
    soundfont: Optional[str] = SOUNDFONT_OPT,
    plot: Optional[str] = PLOT_OPT,
) -> None:
    """Rewrite pieces to carry another emotion, keeping the melody, meter and instruments.

    The model reads every pitched track as piano and rewrites what lies under the melody; the
    output gives the notes back to the source's instruments by register and keeps its drums.
    Tempo and dynamics follow the target's arousal by lambda. An output with under
    half the source's notes gets a warning.

    Examples:
      emocompose transform song.mid --to sad --lambda 0.7 -o song_sad.mid
      emocompose transform song.mid --to calm --keep texture    (its accompaniment thinned, not rewritten)
      emocompose transform song.mid --to happy --keep none      (the latents alone: a freer rewrite)
      emocompose transform song.mid --to calm:8,tense:12        (a 20-bar piece turning from calm to tense)
      emocompose transform clips/ --to calm -o calm/ --json --skip-existing
      cat song.mid | emocompose transform - --to happy -o - > happy.mid
    """
    from emocompose import trajectory
    from emocompose.compose import check_candidates, check_keep, check_lambda, key_path
    from emocompose.emotions import parse_emotion
    from emocompose.errors import InputError
    from emocompose.outputs import Destination, check_limits

    n = check_candidates(candidates, paper)
    to_name = trajectory.label(trajectory.plan(to, None, None, None, 1))  # checks the target before the model loads
    if source:
        parse_emotion(source)
    check_lambda(lam)
    check_keep(keep)
    files = inputs_or_stdin(inputs)
    dest = Destination(out, many=len(files) > 1)
    beside = Beside(audio, plot, out, len(files) > 1, soundfont, as_json)
    name_of = lambda path: f"{'stdin' if path == '-' else Path(path).stem}_to_{to_name}.mid"
    todo = [f for f in files if not (skip_existing and dest.exists(name_of(f)))]
    composer = load_composer(model, batch=n) if todo else None

    def one(path: str) -> None:
        t0 = time.perf_counter()
        grid = read_piece(composer, path)
        check_limits(bars=grid.n_bars)
        try:
            r = composer.transform(grid, to, lam, source=source, seed=seed, temperature=temperature, top_p=top_p,
                                   paper=paper, candidates=candidates, keep=keep)  # fmt: skip
        except InputError as exc:  # what the piece cannot be rewritten for: name the piece
            raise exc.at(path) from None
        q, key = r.info["q"], r.info.get("key")
        keys = f", key {key_path(key)}" if key else ""
        print(f"emocompose: {path}: heard {r.info['source_emotion']} (arousal high {q['arousal'][1]:.2f}, "
              f"valence high {q['valence'][1]:.2f}); moved toward {r.emotion} with lambda {lam}{keys}", file=sys.stderr)  # fmt: skip
        emit(dest, r, name_of(path), composer, as_json, t0, beside, input=path, source_emotion=r.info["source_emotion"],
             q=q, **{"lambda": lam}, keep=r.info["keep"], warning=r.info["warning"],
             **({"source_key": key[0], "key": key[1]} if key else {}),
             **({"segments": r.info["segments"]} if "segments" in r.info else {}))  # fmt: skip
        if r.info["warning"]:
            say(f"[yellow]warning[/]: {path}: {r.info['warning']}")
    code = batch(todo, one) if todo else EXIT_OK
    if len(todo) < len(files):
        say(f"skipped {len(files) - len(todo)} of {len(files)} inputs whose output exists (--skip-existing)")
    raise typer.Exit(code)


@app.command()
def swap(
    a: str = typer.Argument(..., help="Piece A: gives the bars (meter, tempo, instruments) and the other feature."),
    b: str = typer.Argument(..., help="Piece B: lends FEATURE."),
    feature: str = typer.Option(..., "--feature", "-f", help="rhythm (z_r from B) or key (z_k from B)."),
    seed: int = SEED_OPT,
    temperature: float = typer.Option(presets.SWAP.temperature, help=TEMP_HELP),
    top_p: float = typer.Option(presets.SWAP.top_p, help=TOP_P_HELP),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="Output file or -. Default: A_FEATURE_from_B.mid."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON_OPT,
    keep: str = typer.Option("melody", "--keep", help="melody (or texture): a key swap carries A's melody, note for "
                             "note, and its chords into B's key and mode; none: the latents alone."),
    audio: Optional[str] = AUDIO_OPT,
    soundfont: Optional[str] = SOUNDFONT_OPT,
    plot: Optional[str] = PLOT_OPT,
) -> None:
    """Give piece A the rhythm (or the key) of piece B.

    The output has A's length and instruments; if B is shorter, its bars repeat from the start.

    Examples:
      emocompose swap a.mid b.mid --feature rhythm -o a_with_b_rhythm.mid
      emocompose swap chorale.mid minuet.mid --feature key     (the chorale's tune in the minuet's key)
    """
    from emocompose.compose import check_feature, check_keep
    from emocompose.errors import UsageError
    from emocompose.outputs import Destination, check_limits

    check_feature(feature)
    check_keep(keep)
    if a == "-" and b == "-":
        raise UsageError("only one of A and B can be read from stdin")
    dest = Destination(out, many=False)
    beside = Beside(audio, plot, out, False, soundfont, as_json)
    t0 = time.perf_counter()
    composer = load_composer(model)
    ga, gb = read_piece(composer, a), read_piece(composer, b)
    check_limits(bars=ga.n_bars)
    r = composer.swap(ga, gb, feature, seed=seed, temperature=temperature, top_p=top_p, keep=keep)
    emit(dest, r, f"{Path(a).stem}_{feature}_from_{Path(b).stem}.mid", composer, as_json, t0, beside, **r.info)


@app.command()
def evaluate(
    data: str = typer.Option(..., "--data", "-d", help="A dataset from `emocompose preprocess`, or a folder of labelled "
                             "MIDI (EMOPIA: its Q<k>_ names label it). Its train split trains the judge, its test "
                             "split is measured."),  # fmt: skip
    out: str = typer.Option("report", "--out", "-o", help="Folder for report.json, the figures and samples/."),
    model: Optional[str] = MODEL_OPT,
    pieces: int = typer.Option(25, help="Generated pieces per emotion for the control figures (25: one piece "
                               "moves an accuracy by 0.01)."),  # fmt: skip
    bars: int = typer.Option(presets.BARS, help="Bars per generated piece (real clips are cut to it)."),
    clips: int = typer.Option(8, help="Test clips per quadrant for transform and swap (0 skips both)."),
    scores: int = typer.Option(10, help="Real scores for other instruments from music21's corpus to transform "
                               "each way (0 skips them)."),
    trajectories: int = typer.Option(16, help="Pieces per emotion trajectory (calm:8,tense:8, sad:8,happy:8, "
                                     "happy:8,sad:8), each segment judged on its own (0 skips them)."),
    labels: Optional[str] = typer.Option(None, help="Labels CSV when --data is a folder of MIDI (see preprocess)."),
    seed: int = SEED_OPT,
    temperature: float = typer.Option(presets.GENERATE.temperature, help="Token sampling temperature of the generated pieces (as generate)."),
    top_p: float = typer.Option(presets.GENERATE.top_p, help="Nucleus sampling of the generated pieces (as generate)."),
    candidates: Optional[int] = CANDIDATES_OPT,
    paper: bool = PAPER_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON on stdout."),
) -> None:
    """Measure a model the paper's way (emotion control, transform, swap, disentanglement, latents) and
    beyond it: realism (can a classifier tell its pieces from real test clips?) and quality.

    An emotion classifier that never sees the model (logistic regression on note features) is
    trained on the data's train split; its accuracy on the test split is the real-music ceiling
    printed beside every figure. Takes about 5 minutes on 2 CPU cores: with the defaults it decodes
    about 960 pieces (--clips 0 --scores 0 --trajectories 0 leaves out transform, swap, the scores
    and the emotions over time).

    Example: emocompose evaluate --data data/all --out report
    """
    from emocompose.compose import Composer
    from emocompose.console import print_report
    from emocompose.evaluate import EvalConfig, Evaluation
    from emocompose.hardware import set_decoding_threads
    from emocompose.outputs import check_limits
    from emocompose.real_music import load_real

    cfg = EvalConfig(pieces=pieces, bars=bars, clips=clips, seed=seed, temperature=temperature, top_p=top_p,
                     paper=paper, candidates=candidates, scores=scores, trajectory_pieces=trajectories)  # fmt: skip
    check_limits(bars=bars, count=pieces, candidates=cfg.candidates)
    set_decoding_threads(cfg.pieces)
    composer = Composer.load(model)
    real = load_real(data, composer.tok, bars, labels_csv=labels)
    with progress() as prog:
        task = prog.add_task("evaluate", total=None, info="")
        ev = Evaluation(composer, real, Path(out), cfg,
                        progress=lambda stage, done, total: prog.update(task, completed=done, total=total, info=stage))
        report = ev.run()
    if as_json:
        print(json.dumps(report))
    print_report(report, out)


