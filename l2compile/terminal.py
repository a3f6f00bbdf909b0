"""What a user sees: l2compile's lines and Keras' progress, not the native
libraries' logging.

TensorFlow, XLA and LiteRT write from C++ straight to file descriptor 2: the
oneDNN and CUDA notices at start-up (once for each library that loads them),
absl's "All log messages before absl::InitializeLog()", the converter's
`fully_quantize: 0, inference_type: 6 ...`. TF_CPP_MIN_LOG_LEVEL silences
only part of it. So the program points descriptor 2 at /dev/null and gives
Python's `sys.stderr` (l2compile's lines, warnings, tracebacks) a descriptor
of its own to the real stderr. `--verbose` or L2COMPILE_DEBUG=1 keeps
everything (and is the way to see a crash inside C++ code, which writes only
there).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

DEBUG_ENV = "L2COMPILE_DEBUG"

_saved: int | None = None  # the real stderr, while descriptor 2 is hidden


def quiet_native_logs() -> None:
    """Hide what native code writes to descriptor 2 (only in the program
    itself: not when stderr is captured, as by a test runner)."""
    global _saved
    if _saved is not None or os.environ.get(DEBUG_ENV):
        return
    real = sys.__stderr__
    if real is None or sys.stderr is not real or real.fileno() != 2:
        return
    real.flush()
    _saved = os.dup(2)
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 2)
    os.close(sink)
    sys.stderr = io.TextIOWrapper(
        open(_saved, "wb", buffering=0, closefd=False),  # noqa: SIM115
        encoding=real.encoding,
        errors="backslashreplace",
        line_buffering=True,
    )


def show_native_logs() -> None:
    """Undo `quiet_native_logs` (`--verbose`)."""
    global _saved
    if _saved is None:
        return
    sys.stderr.flush()
    os.dup2(_saved, 2)
    sys.stderr = sys.__stderr__
    os.close(_saved)
    _saved = None


def exit_now(code: int) -> None:
    """Flush what was written and leave at once, without Python's shutdown:
    with TensorFlow loaded, its teardown takes about a second."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe
            stream.flush()
    os._exit(code)
