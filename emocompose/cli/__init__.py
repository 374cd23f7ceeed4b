"""The command line: parse, call the core, print.

Messages and progress go to stderr, data (JSON, MIDI with `-o -`) to stdout. Every expected
failure is one line on stderr and a documented exit code (see `emocompose.errors` and the README);
set EMOCOMPOSE_DEBUG=1 to see tracebacks. torch and music21 are imported inside commands only,
so `--help` and shell completion stay fast. Defaults are read from the core (`presets`,
`TrainConfig`, `LossConfig`), never typed twice. The commands live in `data` (tokenize,
detokenize, analyze, preprocess, train), `music` (generate, transform, swap, evaluate) and
`views` (render, plot).
"""

from __future__ import annotations

import inspect
import os
import sys
from enum import Enum
from typing import Optional

import typer

from emocompose import __version__
from emocompose.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EmocomposeError

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


def _version(value: bool) -> None:
    if value:
        print(f"emocompose {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


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


def reflow(doc: str) -> str:
    """A command's docstring as `--help` shows it: the lines of a paragraph of prose joined into
    one, for the terminal to wrap at its width (Typer's rich help keeps every line break of the
    source after the first paragraph), and indented lines (examples) kept as written."""
    out: list[str] = []
    for line in inspect.cleandoc(doc).split("\n"):
        prev = out[-1] if out else ""
        if line and not line.startswith(" ") and prev and not prev.startswith(" ") and not prev.endswith(":"):
            out[-1] = f"{prev} {line}"
        else:
            out.append(line)
    return "\n".join(out)


from emocompose.cli import data, music, views  # noqa: E402,F401  (registers their commands on `app`)

for _command in app.registered_commands:
    _command.help = reflow(_command.help or _command.callback.__doc__ or "")
