"""Ctrl-C and SIGTERM at every phase of every command: one line, exit 130, and
`--out` byte for byte as it was (or, after publishing, the new build and a
message that says so).

Each phase is reached exactly, without sleeping: the program sends itself the
signal when it gets there (the L2COMPILE_TEST_SIGNAL_AT hook), or the test
sends it as soon as the build prints the line that starts the phase, so that
it lands inside TensorFlow's own work (conversion, LiteRT checks).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from l2compile import build as builder
from l2compile.errors import Interrupted
from l2compile.interrupts import HOOK_PHASE, HOOK_SIGNAL

from .conftest import ROOT, SMALL_SPEC, compiled, make_mnist_npz

SPEC = SMALL_SPEC + (
    "export:\n"
    "  formats: [keras, saved_model, tflite, onnx]\n"
    "  tflite: {quantize: [none, int8]}\n"
)
SIGNALS = [signal.SIGINT, signal.SIGTERM]


def _alternating(cases: list[str]) -> list[Any]:
    """Each case with one of the signals, in turn: both go through the one
    handler (l2compile.interrupts.SIGNALS), so each place a build can be
    stopped is tested with one of them and both signals are tested across
    the build, at half the cost of every case with each."""
    return [
        pytest.param(case, sig, id=f"{case}-{sig.name}")
        for case, sig in zip(cases, SIGNALS * len(cases), strict=False)
    ]


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A spec, its data, and an earlier build of it (to be left as it is)."""
    folder = tmp_path_factory.mktemp("earlier")
    data = make_mnist_npz(folder / "data" / "mnist.npz")
    spec = compiled(folder, SPEC)
    result = builder.build(spec.plan, spec.code, folder / "out", data=data, log=str)
    return folder / "small.yaml", data, result.out


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def _command(spec: Path, out: Path, data: Path, *more: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "l2compile",
        "build",
        str(spec),
        "--out",
        str(out),
        "--data",
        str(data),
        *more,
    ]


def _run(
    command: list[str], at: str | None = None, sig: str = "INT", **options: object
) -> subprocess.CompletedProcess[str]:
    """Run l2compile; with `at`, it sends itself SIG`sig` on reaching that phase."""
    hook = {HOOK_PHASE: at, HOOK_SIGNAL: sig} if at is not None else {}
    return subprocess.run(
        command,
        env=_env(**hook),
        capture_output=True,
        text=True,
        timeout=300,
        **options,
    )


def _setup(tmp_path: Path, earlier: tuple[Path, Path, Path]) -> tuple[Path, Path]:
    _, _, built = earlier
    out = tmp_path / "out"
    shutil.copytree(built, out)
    return out, tmp_path / ".out.partial"


def _errors(stderr: str) -> list[str]:
    """What the user reads besides l2compile's progress lines."""
    return [line for line in stderr.splitlines() if not line.startswith("l2compile:")]


# The phases, in order, and what an interrupt there leaves: before training
# nothing; once an epoch is saved, that epoch for --resume.
BEFORE_TRAINING = ["data", "import", "training"]
AFTER_TRAINING = [
    "evaluating",
    "keras",
    "saved_model",
    "tflite_source",
    "converting none",
    "checking none",
    "converting int8",
    "checking int8",
    "deploy_files",
    "onnx",
    "manifest",
    "publishing",
]


@pytest.mark.build
@pytest.mark.parametrize(
    ("phase", "sig"), _alternating(BEFORE_TRAINING + AFTER_TRAINING)
)
def test_an_interrupt_at_any_phase_of_a_build_changes_nothing(
    tmp_path: Path,
    earlier: tuple[Path, Path, Path],
    phase: str,
    sig: signal.Signals,
) -> None:
    spec, data, _ = earlier
    out, work = _setup(tmp_path, earlier)
    before = _files(out)
    result = _run(_command(spec, out, data), phase, sig.name[3:])
    assert result.returncode == 130, result.stderr[-3000:]
    if phase in BEFORE_TRAINING:
        expected = f"error: interrupted; {out} was not changed"
        assert not work.exists()
    else:
        expected = (
            f"error: interrupted; {out} was not changed. Epoch 1 of 1 is saved in "
            f"{work}: add --resume to continue"
        )
        assert sorted(p.name for p in work.iterdir()) == [".l2compile", "resume"]
    assert _errors(result.stderr) == [expected]
    assert _files(out) == before


@pytest.mark.build
@pytest.mark.parametrize(
    ("line", "sig"),
    _alternating(
        [
            "exporting the SavedModel that TFLite is converted from",
            "converting model.tflite (float32)",
            "checking model.tflite on the test split with the LiteRT interpreter",
            "converting model.int8.tflite (full integer, calibrated)",
        ]
    ),
)
def test_an_interrupt_inside_tensorflows_export_work_stops_the_build(
    tmp_path: Path, earlier: tuple[Path, Path, Path], line: str, sig: signal.Signals
) -> None:
    spec, data, _ = earlier
    out, work = _setup(tmp_path, earlier)
    before = _files(out)
    proc = subprocess.Popen(
        _command(spec, out, data),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for got in proc.stderr:  # the signal lands while TensorFlow works
        seen.append(got)
        if got.rstrip("\n") == f"l2compile: {line}":
            proc.send_signal(sig)
            break
    _, rest = proc.communicate(timeout=300)
    assert proc.returncode == 130, "".join(seen) + rest
    assert _errors(rest) == [
        f"error: interrupted; {out} was not changed. Epoch 1 of 1 is saved in "
        f"{work}: add --resume to continue"
    ]
    assert _files(out) == before


@pytest.mark.build
@pytest.mark.parametrize(
    ("phase", "sig"), _alternating(["moving", "published", "exiting"])
)
def test_an_interrupt_while_or_after_publishing_says_the_build_was_published(
    tmp_path: Path, earlier: tuple[Path, Path, Path], phase: str, sig: signal.Signals
) -> None:
    # Once published, the build has succeeded: exit 0 and a line that says
    # so. Exit 130 would say that nothing was replaced.
    spec, data, _ = earlier
    out, work = _setup(tmp_path, earlier)
    before = (out / "metrics.json").read_bytes()  # its training time differs
    result = _run(_command(spec, out, data), phase, sig.name[3:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == (
        "l2compile: interrupted after the command had finished"
        if phase == "exiting"
        else f"l2compile: interrupted after the build was published: {out} holds "
        "the new build"
    )
    assert _errors(result.stderr) == []
    assert (out / "metrics.json").read_bytes() != before
    assert not work.exists()


@pytest.mark.build
def test_an_interrupt_while_the_artifacts_are_listed_is_not_a_failure(
    tmp_path: Path, earlier: tuple[Path, Path, Path]
) -> None:
    # Before: a SIGINT while the build printed its artifact list gave
    # "error: interrupted" and exit 130 in 2 of 3 tries, with the new build in
    # --out. The signal lands on the first listed line, read from a pipe.
    spec, data, _ = earlier
    out, work = _setup(tmp_path, earlier)
    proc = subprocess.Popen(
        _command(spec, out, data),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for got in proc.stdout:
        if got.startswith("Artifacts in "):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert _errors(err) == []
    assert not work.exists()


@pytest.mark.build
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize(
    "command",
    [
        ["validate", "specs/mnist.yaml"],
        ["generate", "specs/mnist.yaml", "-o", "{tmp}/gen.py"],
        ["inspect", "specs/mnist.yaml"],
        ["build", "specs/mnist.yaml", "--out", "{tmp}/gen"],
        ["eval", "{tmp}/gen/model.tflite", "--spec", "specs/mnist.yaml"],
        ["sweep", "specs/mnist.yaml", "--set", "l2=0,0.1", "--out", "{tmp}/sw"],
    ],
    ids=lambda c: c[0],
)
@pytest.mark.parametrize("phase", ["startup", "spec"])
def test_an_interrupt_in_any_command_is_one_line_and_exit_130(
    tmp_path: Path, command: list[str], phase: str, sig: signal.Signals
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = _run(
        [sys.executable, "-m", "l2compile", *args], phase, sig.name[3:], cwd=ROOT
    )
    assert (result.returncode, result.stderr, result.stdout) == (
        130,
        "error: interrupted\n",
        "",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.build
def test_a_build_killed_while_publishing_is_rolled_back_by_the_next_one(
    tmp_path: Path, earlier: tuple[Path, Path, Path]
) -> None:
    spec, data, _ = earlier
    out, work = _setup(tmp_path, earlier)
    before = _files(out)
    killed = _run(_command(spec, out, data), "moving", "KILL")
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()  # between the two renames: the earlier build is aside
    assert (work / "previous").is_dir() and (work / "publishing").is_file()

    again = _run(_command(spec, out, data, "--resume"), "import", "INT")
    assert again.returncode == 130, again.stderr[-3000:]
    assert (
        f"l2compile: an earlier build of {out} was stopped while publishing; {out} "
        "is as it was before it"
    ) in again.stderr.splitlines()
    assert _files(out) == before  # rolled back, and the epochs are still saved
    assert sorted(p.name for p in work.iterdir()) == [".l2compile", "resume"]

    resumed = _run(_command(spec, out, data, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "l2compile: resuming after epoch 1 of 1" in resumed.stderr.splitlines()
    assert not work.exists()


@pytest.mark.build
def test_a_build_killed_after_its_publish_is_tidied_up_by_the_next_one(
    tmp_path: Path, earlier: tuple[Path, Path, Path]
) -> None:
    spec, data, _ = earlier
    out, work = _setup(tmp_path, earlier)
    before = (out / "metrics.json").read_bytes()  # its training time differs
    killed = _run(_command(spec, out, data), "tidying", "KILL")
    assert killed.returncode == -signal.SIGKILL
    assert (out / "metrics.json").read_bytes() != before  # the new build is in
    assert (work / "previous").is_dir() and (work / "publishing").is_file()
    published = _files(out)

    again = _run(_command(spec, out, data), "import", "INT")
    assert again.returncode == 130, again.stderr[-3000:]
    assert (
        f"l2compile: an earlier build of {out} was stopped while publishing, after "
        f"it was in place; {out} holds it"
    ) in again.stderr.splitlines()
    assert _files(out) == published
    assert not work.exists()  # tidied, and this build stopped before training


@pytest.mark.build
def test_an_interrupt_that_tensorflow_turns_into_another_error_still_stops(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2compile import interrupts
    from l2compile.formats import keras as keras_file

    # As the program does: the handlers record the signal, then raise.
    monkeypatch.setattr(interrupts, "_received", [])
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    hook = sys.unraisablehook
    interrupts.install()
    try:

        def swallowed(*args: object, **kwargs: object) -> None:
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                raise TypeError("an error TensorFlow made of it") from None

        monkeypatch.setattr(keras_file, "save_keras", swallowed)
        spec = compiled(tmp_path, SPEC)
        with pytest.raises(Interrupted) as stopped:
            builder.build(
                spec.plan, spec.code, tmp_path / "out", data=tiny_mnist, log=str
            )
        assert (stopped.value.epoch, stopped.value.epochs) == (1, 1)
        assert not (tmp_path / "out").exists()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        sys.unraisablehook = hook


@pytest.mark.unit
def test_a_library_caller_gets_the_signal_that_came_while_publishing() -> None:
    from l2compile import interrupts

    finished = False
    # Python's own SIGINT handler raises, once the block is done. (Set here:
    # a process started in the background, as `cmd &` in a script, inherits
    # SIGINT ignored, and Python then leaves it so.)
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            finished = True
    finally:
        signal.signal(signal.SIGINT, saved)
    assert finished


SWALLOWED = """
import os, signal, sys
from l2compile.formats import tflite

real = tflite.convert_tflite


class Interrupts:
    def __del__(self):
        # As TensorFlow's own objects do: a signal handled while a __del__
        # runs raises there, where Python can only print and ignore it.
        os.kill(os.getpid(), signal.SIG{sig})


def convert(*args, **kwargs):
    real(*args, **kwargs)
    Interrupts()  # collected at once


tflite.convert_tflite = convert
sys.argv[0] = "l2compile"
from l2compile.__main__ import run
run()
"""


@pytest.mark.build
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_an_interrupt_swallowed_inside_a_del_still_stops_the_build(
    tmp_path: Path, earlier: tuple[Path, Path, Path], sig: signal.Signals
) -> None:
    spec, data, _ = earlier
    out, work = _setup(tmp_path, earlier)
    before = _files(out)
    # On TensorFlow the build exports in this process, where the patch is.
    command = _command(spec, out, data, "--backend", "tensorflow")
    result = _run(
        [sys.executable, "-c", SWALLOWED.format(sig=sig.name[3:]), *command[3:]]
    )
    assert result.returncode == 130, result.stderr[-3000:]
    assert _errors(result.stderr) == [
        f"error: interrupted; {out} was not changed. Epoch 1 of 1 is saved in "
        f"{work}: add --resume to continue"
    ]
    assert "l2compile: checking model.tflite" not in result.stderr
    assert _files(out) == before


@pytest.mark.build
def test_an_interrupt_during_the_int8_fallback_changes_nothing(tmp_path: Path) -> None:
    """tests/specs/int8_fallback.yaml's full int8 file misses its budget, so
    its build searches: a signal there stops it as anywhere after training."""
    from .test_int8_fallback import _wide

    data = _wide(tmp_path / "wide.npz")
    out = tmp_path / "out"
    spec = ROOT / "tests" / "specs" / "int8_fallback.yaml"
    result = _run(_command(spec, out, data), "int8 fallback", "INT")
    assert result.returncode == 130, result.stderr[-3000:]
    work = tmp_path / ".out.partial"
    assert _errors(result.stderr) == [
        f"error: interrupted; {out} was not changed. Epochs 1-30 of 30 are saved "
        f"in {work}: add --resume to continue"
    ]
    assert not out.exists()
