"""Writes that are never half done: write a temporary file beside the target, fsync, rename.

A reader (or a rerun after a crash) sees either the old file, the complete new one, or nothing.
Temporary names carry the pid and a random suffix so that concurrent writers never share one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from emocompose.errors import OutputError

TMP_MARK = ".emocompose-tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


def _tmp_name(target: Path) -> Path:
    return target.with_name(f"{TMP_MARK}{target.name}.{os.getpid()}.{secrets.token_hex(4)}")


def _explain(exc: OSError, target: Path) -> OutputError:
    if exc.errno == errno.ENOSPC:
        why = "no space left on the device"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied (read-only folder?)"
    elif exc.errno == errno.ENOENT:
        why = "folder does not exist"
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        why = "a file stands where a folder is needed"
    else:
        why = exc.strerror or str(exc)
    return OutputError(f"cannot write: {why}", str(target))


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed onto `target`.

    With `exclusive`, an existing target is never replaced (the rename is a hard link that
    fails if the name exists), so two processes cannot overwrite each other's output.
    """
    target = Path(target)
    tmp = _tmp_name(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # `-o new/song.mid` makes `new/`
    except OSError as exc:
        raise _explain(exc, target) from None
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # some writers (safetensors) create files private
        if exclusive:
            os.link(tmp, target)  # atomic and fails with EEXIST if taken
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
    except FileExistsError:
        _remove(tmp)
        raise
    except OSError as exc:
        _remove(tmp)
        raise _explain(exc, target) from None
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(target: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> None:
    with atomic_path(target, exclusive=exclusive) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def _remove_stale(target: Path) -> None:
    """Delete temporaries of `target` left by writers that were killed (their pid is gone)."""
    prefix = f"{TMP_MARK}{target.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            if not entry.name.startswith(prefix):
                continue
            pid = entry.name[len(prefix) :].split(".")[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if entry.is_dir():
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                _remove(Path(entry.path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Build a whole folder under a temporary name and rename it into place at the end.
    Temporaries of the same folder left by killed runs are removed first."""
    target = Path(target)
    _remove_stale(target)
    tmp = _tmp_name(target)
    try:
        # `--out runs/new/data` should not fail after minutes of work because `runs/new` is missing
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        yield tmp
        if target.exists():
            old = _tmp_name(target)
            os.replace(target, old)  # keep the old copy until the new one is in place
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _explain(exc, target) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
