"""Where a command's outputs go, and the rules every command keeps when writing them.

* naming: one output to the file `out` names, several into the folder `out` (the current folder
  by default), or one to stdout with `-`;
* claiming: an automatically named file never overwrites another (a taken name gets -1, -2, ...);
* atomic writes (`atomic`): a file is whole or absent;
* `skip_existing`: a rerun of a killed batch finishes it instead of starting again;
* batches go on past bad inputs, each failure one line, with the documented exit code;
* limits on what one command may make, so a typo cannot occupy the machine for hours.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterable

from emocompose.errors import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, EmocomposeError, InputError, UsageError

# Each can be lifted by the environment variable of the same name (as `midi.LIMITS` for inputs).
LIMITS = {"EMOCOMPOSE_MAX_OUTPUT_BARS": 512, "EMOCOMPOSE_MAX_COUNT": 256}


def _limit(name: str) -> int:
    return int(os.environ.get(name, LIMITS[name]))


def check_limits(bars: int | None = None, count: int | None = None, candidates: int = 1) -> None:
    """Bars per piece, pieces per command, and decodings (pieces x candidates) within the limits."""
    max_bars, max_count = _limit("EMOCOMPOSE_MAX_OUTPUT_BARS"), _limit("EMOCOMPOSE_MAX_COUNT")
    if bars is not None and not 1 <= bars <= max_bars:
        raise UsageError(f"bars must be 1..{max_bars}, got {bars} (raise the limit with EMOCOMPOSE_MAX_OUTPUT_BARS)")
    if count is not None and not 1 <= count <= max_count:
        raise UsageError(f"count must be 1..{max_count}, got {count} (raise the limit with EMOCOMPOSE_MAX_COUNT)")
    if count is not None and count * candidates > max_count:
        raise UsageError(f"{count} pieces x {candidates} candidates is over {max_count} decodings "
                         "(fewer candidates, or raise the limit with EMOCOMPOSE_MAX_COUNT)")  # fmt: skip


class Destination:
    """The outputs of one command: `out` as given (None: the current folder; '-': stdout), and
    whether the command makes several (then `out` is a folder whatever its name)."""

    def __init__(self, out: str | None, many: bool):
        if out == "-" and many:
            raise UsageError("- writes one MIDI to stdout; give a folder for several outputs")
        self.out, self.many = out, many

    def path_for(self, name: str) -> Path | None:
        """Where the output named `name` goes (None: stdout)."""
        if self.out == "-":
            return None
        if self.out is not None and not self.many and not self.out.endswith(("/", os.sep)) and not Path(self.out).is_dir():
            return Path(self.out)
        return Path(self.out or ".") / name

    def exists(self, name: str) -> bool:
        """Whether the output `name` was written already (what `skip_existing` skips)."""
        path = self.path_for(name)
        return path is not None and path.exists()

    def write(self, name: str, data: bytes) -> str:
        """Write one output; returns where it went ('-' for stdout). A file named by `out` is
        replaced; an automatic name is claimed, never overwriting."""
        path = self.path_for(name)
        if path is None or path == Path(self.out or "."):  # stdout, or the file `out` names
            write_or_stdout(self.out, data)
            return str(self.out)
        return str(claim(path.parent, path.name, data))  # the atomic write makes a missing folder


def claim(folder: Path, name: str, data: bytes) -> Path:
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


def write_or_stdout(out: str | None, data: bytes | str) -> None:
    """Bytes or text to the file `out` (atomically) or to stdout (None or '-')."""
    from emocompose.atomic import write_bytes

    raw = data.encode("utf-8") if isinstance(data, str) else data
    if out in (None, "-"):
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
    else:
        write_bytes(out, raw)


def read_text(path: str) -> str:
    """A text file, or stdin for '-'; a file that cannot be read is an input error naming it."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", path) from None


def run_batch(items: Iterable[str], work: Callable[[str], None], what: str = "file",
              on_item: Callable[[int, int, str], None] | None = None) -> int:  # fmt: skip
    """Apply `work` to each item; a failure is one line on stderr and the batch goes on.
    `on_item(done, total, item)` follows progress. Returns the exit code: 0 when all went well,
    EXIT_PARTIAL when some failed, EXIT_INPUT when every one did."""
    items = list(items)
    failed = 0
    for n, item in enumerate(items, start=1):
        try:
            work(item)
        except EmocomposeError as exc:
            failed += 1
            print(f"emocompose: {exc}", file=sys.stderr)
        if on_item:
            on_item(n, len(items), item)
    if not failed:
        return EXIT_OK
    if len(items) > 1:
        print(f"emocompose: {failed} of {len(items)} {what}s failed", file=sys.stderr)
    return EXIT_INPUT if failed == len(items) else EXIT_PARTIAL
