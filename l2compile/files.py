"""Files written whole: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


def write_atomically(path: Path, text: str | bytes) -> None:
    """Write through a temporary file beside `path`, so it is never half-written."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes the file private; keep the old file's mode, or the umask's.
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Open without waiting on a FIFO that has no writer.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


class NotAFile(OSError):
    """A path that is not a regular file; the message ("is a FIFO, not a
    regular file") follows the path's name."""

    def __init__(self, mode: int) -> None:
        super().__init__(f"is {kind(mode)}, not a regular file")


class TooLarge(ValueError):
    """A file larger than its reader's bound."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the file is {size:,} bytes; the most is {limit:,}")
        self.size, self.limit = size, limit


def kind(mode: int) -> str:
    """What a file of this `st_mode` is, in words ("a FIFO")."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_bounded(path: Path, limit: int, *, follow_links: bool = True) -> bytes:
    """The bytes of the regular file `path`, never more than `limit`.

    A FIFO, a device or a socket is refused from its open descriptor, before a
    byte is read, so a reader never waits on a pipe nor reads /dev/zero
    forever; a file that grows past `limit` while it is read is refused too.
    With `follow_links=False` a symbolic link is refused (ELOOP).

    Raises FileNotFoundError, NotAFile, TooLarge, or another OSError.
    """
    flags = os.O_RDONLY | _NONBLOCK
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotAFile(info.st_mode)
    with os.fdopen(fd, "rb") as f:
        if info.st_size > limit:
            raise TooLarge(info.st_size, limit)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(len(data), limit)
    return data


def json_text(value: Any) -> str:
    """Strict JSON: a value that is not finite (NaN, infinity) is written as
    null, never as the bare NaN that JSON readers refuse."""
    return json.dumps(_finite(value), indent=2, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
