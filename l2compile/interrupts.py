"""Ctrl-C and SIGTERM: whatever l2compile is doing, one line and exit 130.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread
happens to be. Inside TensorFlow that is often a place that cannot pass it on:
a `__del__` (Python prints "Exception ignored in ..." and carries on), or a
callback from C++ that turns it into another exception. So a signal here is
first *recorded*, then raised; every phase of a build checks the record
(`check`), and publishing looks at it before it moves anything. An interrupt
that was swallowed still stops the build at the next phase, and one that
arrives while publishing (`deferred`) waits until the files are in place.

Only the command line installs the handlers (`install`); a program that calls
l2compile's functions keeps its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

#: The signals that stop l2compile, and the exit status that says so.
SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130

#: Test hook: name a phase (`phase(NAME)`) and l2compile sends itself
#: $L2COMPILE_TEST_SIGNAL (INT or TERM) the moment it gets there, so a test
#: can interrupt each phase exactly, without sleeping.
HOOK_PHASE = "L2COMPILE_TEST_SIGNAL_AT"
HOOK_SIGNAL = "L2COMPILE_TEST_SIGNAL"

_received: list[int] = []
_held = 0  # >0 while signals are deferred


def _handle(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if _held == 0:
        raise KeyboardInterrupt


def _unraisable(hook: Any) -> Any:
    def quiet(unraisable: Any) -> None:
        # An interrupt raised inside a `__del__` is recorded; the build stops
        # at its next phase. Python's "Exception ignored in" report of it is
        # noise.
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            hook(unraisable)

    return quiet


def install() -> None:
    """Handle SIGINT and SIGTERM from now on (call it in the main thread)."""
    for sig in SIGNALS:
        signal.signal(sig, _handle)
    sys.unraisablehook = _unraisable(sys.unraisablehook)


def installed() -> bool:
    """Whether this process handles signals l2compile's way (`install`)."""
    return signal.getsignal(signal.SIGINT) is _handle


def received() -> bool:
    """Whether a signal has arrived, raised or not."""
    return bool(_received)


def check() -> None:
    """Raise KeyboardInterrupt if a signal arrived that did not stop us yet."""
    if _received and _held == 0:
        raise KeyboardInterrupt


def phase(name: str) -> None:
    """Mark the start of a phase: stop here if a signal arrived before it."""
    check()
    if os.environ.get(HOOK_PHASE) == name:
        wanted = os.environ.get(HOOK_SIGNAL, "INT")
        os.kill(os.getpid(), signal.Signals[f"SIG{wanted}"])
        check()  # the handler ran, or recorded it while deferred


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Record signals without raising them inside this block (main thread).

    For steps that must not be cut in half: publishing, and cleaning up.
    """
    global _held
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # Called as a library, without `install`: record signals for the moment.
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    borrowed = {sig: h for sig, h in previous.items() if h is not _handle}
    for sig in borrowed:
        signal.signal(sig, _handle)
    before = len(_received)
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        for sig, handler in borrowed.items():
            signal.signal(sig, handler)
        if borrowed:
            # The caller handles signals its own way: give it what came
            # meanwhile, now that the block is done.
            arrived = _received[before:]
            del _received[before:]
            for signum in dict.fromkeys(arrived):
                signal.raise_signal(signum)


def stop_raising() -> None:
    """From now on only record signals: the process is on its way out."""
    global _held
    _held += 1


def settle() -> bool:
    """For a command whose work is done: from now on only record signals, and
    say (once) whether one came, forgetting it."""
    stop_raising()
    came = received()
    _received.clear()
    return came
