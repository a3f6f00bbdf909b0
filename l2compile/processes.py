"""Where a build's stages run: in this process when its Keras runs the stage's
backend (or Keras is not imported yet, and the stage picks it), otherwise in
a fresh Python process on that backend.

Keras reads KERAS_BACKEND once, when it is first imported, so a process runs
one backend. `l2compile build` trains on the spec's backend (JAX by default)
and exports on TensorFlow from the `.keras` file the training saved: on JAX,
the export runs in a second process; on TensorFlow, both run in one.

A child process reads its job (the stage's name and its argument, pickled) on
its standard input and sends back pickled messages on a pipe of its own: log
lines as they come, then the stage's result or the error it raised. Its
output goes to the terminal as the parent's does, so Keras' progress bar shows
as usual. Ctrl-C reaches both processes: the child stops (exit status 130),
and the parent raises KeyboardInterrupt once the child has ended. A SIGTERM
sent to the parent alone is passed on to the child.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

from l2compile import backends, interrupts, terminal
from l2compile.errors import BuildError

Log = Callable[[str], None]

#: The stages a child process may run: name -> (module, function). Each takes
#: its job and a log function, and returns what the parent gets back.
STAGES = {
    "train": ("l2compile.training", "train"),
    "export": ("l2compile.build", "export_stage"),
    "onnx": ("l2compile.formats.onnx", "export_jax"),
}
#: How long a child that was told to stop may take before it is killed.
STOP_SECONDS = 30


def keras_backend() -> str | None:
    """The backend this process's Keras runs, or will once imported: Keras'
    own, else $KERAS_BACKEND; None when neither says (a stage may pick)."""
    keras = sys.modules.get("keras")
    if keras is None:
        return os.environ.get("KERAS_BACKEND") or None
    return str(keras.backend.backend())


def claim(backend: str, *, tensorflow: bool = False) -> None:
    """Make the command line's own process (the one that installed l2compile's
    signal handlers) the one that trains on `backend`.

    The spec (or --backend) decides, not $KERAS_BACKEND. On another backend
    than TensorFlow, TensorFlow is made unimportable here: the export runs in
    a child, and Keras on JAX or PyTorch imports TensorFlow, where it is
    installed, only to check for its types (keras.utils.set_random_seed,
    model.save): 455 MiB of memory and 1.4 s for nothing. A finder first on
    sys.meta_path refuses the import; Keras goes on without it. (Not a None in
    sys.modules: Keras reads any "tensorflow" entry there as TensorFlow being
    loaded, and its preprocessing layers, Normalization among them, then
    reach for it.) Where the generated module reads its data with TensorFlow
    (`tensorflow`: an image folder's images), it stays importable.
    """
    if not interrupts.installed() or "keras" in sys.modules:
        return  # a library caller's process, or one whose Keras is chosen
    os.environ["KERAS_BACKEND"] = backend
    if (
        backend != backends.EXPORT
        and not tensorflow
        and "tensorflow" not in sys.modules
    ):
        sys.meta_path.insert(
            0, _Refused(("tensorflow",), "l2compile trains on another backend here")
        )
        # etils (which the onnx extra's jax2onnx brings) reads files, JAX's
        # compilation cache among them, through tf.io.gfile wherever
        # TensorFlow is installed: here it is refused, so plain file I/O.
        os.environ["EPATH_USE_TF"] = "false"


#: What Keras (and TensorFlow, which imports Keras) import where they are
#: installed, only to offer what a build never calls: Keras' plotting and
#: bounding-box drawing (matplotlib, OpenCV), its pandas DataFrame inputs and
#: its scikit-learn wrappers. They are installed beside l2compile (matplotlib
#: draws the report; the others come with Ray, MediaPipe or the tests), and
#: they cost each of a build's processes about 2 s of its import of Keras
#: (docs/benchmarks.md, "Importing Keras").
NOT_FOR_A_BUILD = ("matplotlib", "pandas", "sklearn", "cv2")


def import_keras() -> None:
    """Import Keras on this process's backend, without NOT_FOR_A_BUILD (and,
    on another backend than JAX, without JAX, which TensorFlow's TFLite
    module imports where installed, for its JAX converter): each missing one
    turns off a Keras feature a build does not use, as if it were not
    installed. Those modules stay importable afterwards."""
    if "keras" in sys.modules:
        return
    refused = NOT_FOR_A_BUILD + (() if keras_backend() in (None, "jax") else ("jax",))
    finder = _Refused(refused, "not imported with Keras for a build")
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module("keras")
    finally:
        sys.meta_path.remove(finder)


class _Refused(importlib.abc.MetaPathFinder):
    """Refuses to import some top-level packages, as if they were not
    installed."""

    def __init__(self, packages: tuple[str, ...], why: str) -> None:
        self.packages, self.why = packages, why

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.packages:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} ({self.why})", name=fullname
            )
        return None


def _here(backend: str) -> bool:
    """Whether this process can run a stage on `backend`."""
    return keras_backend() in (None, backend)


class Child:
    """A fresh Python process for one stage on one backend.

    It starts at once and imports Keras on its backend while it waits for its
    job, so a build can start its export process before it trains: the
    import (TensorFlow's, seconds) overlaps the training.
    """

    def __init__(self, stage: str, backend: str) -> None:
        self.stage, self.backend = stage, backend
        read_end, write_end = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "l2compile.processes", stage),
                    *(str(write_end), str(os.getpid())),
                ],
                stdin=subprocess.PIPE,
                pass_fds=(write_end,),
                env={**os.environ, "KERAS_BACKEND": backend},
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.messages = os.fdopen(read_end, "rb")

    def run(self, job: Any, log: Log) -> Any:
        """Send the job; relay the child's log lines; its result, or its error
        raised here."""
        outcome: tuple[str, Any] | None = None
        try:
            with self.messages:
                assert self.process.stdin is not None
                try:
                    pickle.dump(job, self.process.stdin, pickle.HIGHEST_PROTOCOL)
                    self.process.stdin.close()
                except BrokenPipeError:
                    pass  # the child ended early; its exit status says why
                while (message := self._receive()) is not None:
                    kind, value = message
                    if kind == "log":
                        log(value)
                    else:
                        outcome = (kind, value)
            status = self.process.wait()
        except BaseException:
            self.stop()
            raise
        if outcome is not None:
            kind, value = outcome
            if kind == "result":
                return value
            if kind == "error":
                raise value  # an l2compile error, as the stage raised it
            raise StageFailed(*value)
        if status == interrupts.EXIT_INTERRUPTED or status in (
            -signal.SIGINT,
            -signal.SIGTERM,
        ):
            raise KeyboardInterrupt
        how = (
            f"was killed by signal {signal.Signals(-status).name}"
            if status < 0
            else f"ended with exit status {status}"
        )
        raise BuildError(
            f"the {self.stage} process on Keras' {self.backend} backend {how} "
            "before it finished"
            + ("; set L2COMPILE_DEBUG=1 to see its traceback" if status > 0 else "")
        )

    def _receive(self) -> tuple[str, Any] | None:
        """The child's next message; None once it has sent its last."""
        try:
            message: tuple[str, Any] = pickle.load(self.messages)
        except EOFError:
            return None
        except Exception as exc:  # a message this process cannot read back
            raise BuildError(
                f"the {self.stage} process sent a message that cannot be read "
                f"here: {type(exc).__name__}: {exc}"
            ) from exc
        return message

    def stop(self) -> None:
        """End the child if it still runs (an interrupt, an error, or a job
        that never came); nothing if it has finished."""
        with interrupts.deferred():
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()  # a child waiting for its job ends
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.messages.close()


def start(stage: str, backend: str) -> Child | None:
    """Start the child process that `run(stage, backend, ...)` will need, now;
    None where the stage will run in this process. Call it where a signal
    cannot strike between the start and the caller's hold on the child
    (interrupts.deferred), so that no child is left behind."""
    backends.check_installed(backend)
    return None if _here(backend) else Child(stage, backend)


def run(
    stage: str, backend: str, job: Any, log: Log, child: Child | None = None
) -> Any:
    """Run `stage` on `backend`: here if this process can, else in a child
    (`child`, if `start` gave one)."""
    backends.check_installed(backend)
    if keras_backend() is None:
        # Keras is imported by the stage, on the backend it names.
        os.environ["KERAS_BACKEND"] = backend
    if _here(backend):
        return _stage(stage)(job, log)
    return (child or Child(stage, backend)).run(job, log)


def _stage(name: str) -> Callable[[Any, Log], Any]:
    module, function = STAGES[name]
    stage: Callable[[Any, Log], Any] = getattr(
        importlib.import_module(module), function
    )
    return stage


def _send(channel: BinaryIO, kind: str, value: Any) -> None:
    message = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
    channel.write(message)  # whole, or not at all: pickling fails before it
    channel.flush()


def _child(stage: str, fd: int) -> int:
    """A child's whole life: read the job, run the stage, send the outcome."""
    interrupts.install()
    with os.fdopen(fd, "wb") as channel:
        try:
            stage_function = _stage(stage)
            import_keras()  # on its backend, before the job
            interrupts.check()  # a signal that an import swallowed
            try:
                job = pickle.load(sys.stdin.buffer)
            except EOFError:
                return 0  # started, then not needed
            result = stage_function(job, lambda message: _send(channel, "log", message))
        except KeyboardInterrupt:
            return interrupts.EXIT_INTERRUPTED
        except BuildError as exc:
            _send(channel, "error", exc)  # l2compile's own: it reads back anywhere
            return 1
        except Exception as exc:
            # Any other error goes as words: its class may need a module (say
            # TensorFlow) that the parent cannot import.
            if os.environ.get(terminal.DEBUG_ENV):
                traceback.print_exc()
            _send(channel, "failed", (type(exc).__name__, str(exc)))
            return 1
        _send(channel, "result", result)
    return 0


class StageFailed(Exception):
    """An error in a child process that is not one of l2compile's own: its
    class's name (`kind`) and its message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message)
        self.kind, self.message = kind, message

    def __str__(self) -> str:
        return self.message


def _die_with(parent: int) -> None:
    """SIGTERM this process when `parent` dies (Linux; a build SIGKILLed in
    the middle of its export leaves no child working on), or end it now if
    the parent is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        terminal.exit_now(interrupts.EXIT_INTERRUPTED)


def _main() -> None:
    _die_with(int(sys.argv[3]))
    # As l2compile's command line does: the parent would wait for the
    # teardown of TensorFlow (about 1 s).
    terminal.exit_now(_child(sys.argv[1], int(sys.argv[2])))


if __name__ == "__main__":
    _main()
