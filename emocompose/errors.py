"""One exception type per way a command can fail, each with its documented exit code.

The CLI turns these into a single line on stderr (no traceback) and exits with `exit_code`;
the table of codes is in the README ("Exit codes").
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: please report it (run with EMOCOMPOSE_DEBUG=1 for the traceback)
EXIT_USAGE = 2  # bad option or argument (also what click uses)
EXIT_INPUT = 3  # the input (or every input of a batch) could not be used
EXIT_PARTIAL = 4  # a batch finished, but some inputs failed (listed in the summary)
EXIT_MODEL = 5  # the model, checkpoint or dataset is missing, corrupt or incompatible
EXIT_OUTPUT = 6  # the output could not be written (read-only folder, disk full, ...)
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: nothing half-written is left behind


class EmocomposeError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)

    def at(self, path: str) -> "EmocomposeError":
        """This error naming the file `path`, unless it names one already."""
        return self if self.path else type(self)(str(self), path)


class UsageError(EmocomposeError):
    exit_code = EXIT_USAGE


class InputError(EmocomposeError):
    """A MIDI (or score) file that cannot be read or is not usable music."""

    exit_code = EXIT_INPUT


class LimitError(InputError):
    """An input beyond one of the documented limits that protect the machine."""


class ModelError(EmocomposeError):
    """A checkpoint or dataset that is missing, corrupt, tampered or incompatible."""

    exit_code = EXIT_MODEL


class OutputError(EmocomposeError):
    exit_code = EXIT_OUTPUT


def check_share(what: str, x: float) -> float:
    """`x`, a share or strength that must lie in [0, 1] (lambda, coherence, echo, reverb)."""
    if not 0.0 <= x <= 1.0:
        raise UsageError(f"{what} must be in [0, 1], got {x}")
    return x
