"""Files written whole: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO


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
        self.what = kind(mode)  #: "a FIFO"
        super().__init__(f"is {self.what}, not a regular file")


class TooLarge(ValueError):
    """A file larger than its reader's bound."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the file is {size:,} bytes; the most is {limit:,}")
        self.size, self.limit = size, limit


def kind(mode: int) -> str:
    """What a file of this `st_mode` is, in words ("a FIFO")."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: Path, *, follow_links: bool = True) -> int:
    """An open descriptor of the regular file `path`, blocking as usual.

    A FIFO, a device or a socket is refused from its open descriptor, before a
    byte is read, so a reader never waits on a pipe nor reads /dev/zero
    forever (a path checked by a stat first could be swapped between the two).
    With `follow_links=False` a symbolic link is refused (ELOOP).

    Raises FileNotFoundError, NotAFile, or another OSError (`unreadable`
    words each).
    """
    flags = os.O_RDONLY | _NONBLOCK
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFile(mode)
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_binary(path: Path | str) -> BinaryIO:
    """The regular file `path` (`open_regular`), open to read bytes."""
    return os.fdopen(open_regular(Path(path)), "rb")


def unreadable(exc: OSError) -> str:
    """Why a file could not be opened, in words for a message after its name."""
    if isinstance(exc, NotAFile):
        return str(exc)
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop (ELOOP: too many levels of symbolic links)"
    return f"cannot read: {exc.strerror or exc}"


def read_bounded(path: Path, limit: int, *, follow_links: bool = True) -> bytes:
    """The bytes of the regular file `path` (`open_regular`), never more than
    `limit`: a file that grows past it while it is read is refused too.

    Raises FileNotFoundError, NotAFile, TooLarge, or another OSError.
    """
    with os.fdopen(open_regular(path, follow_links=follow_links), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise TooLarge(size, limit)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(len(data), limit)
    return data


class NotJson(ValueError):
    """A file that is not the JSON its reader wants: the reason, in words
    ("more than 1,048,576 bytes", "not JSON: ...")."""


def read_json(path: Path, limit: int) -> Any:
    """The parsed JSON of the regular file `path`, read with a bound
    (`read_bounded`).

    Raises FileNotFoundError, NotAFile, another OSError, or NotJson.
    """
    try:
        raw = read_bounded(path, limit)
    except TooLarge:
        raise NotJson(f"more than {limit:,} bytes") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        reason = "not UTF-8"
    except RecursionError:
        reason = "nested too deep"
    except ValueError as exc:
        reason = str(exc)
    raise NotJson(f"not JSON: {reason}")


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
