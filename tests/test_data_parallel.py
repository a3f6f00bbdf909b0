"""train.distribute: data_parallel, Keras' DataParallel on JAX: on two forced
CPU devices, on two processes joined on 127.0.0.1, killed and resumed; each
against the same build on one device."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from l2compile.cli import main
from l2compile.plan import plan_spec
from l2compile.spec import load_spec

from .conftest import ROOT, SMALL_SPEC, make_mnist_npz

#: The test loss of a data_parallel build and of the same build on one
#: device agree within this (docs/backends.md states it): every batch splits
#: evenly here, so the sums differ only in their order.
TOLERANCE = 1e-5

#: Three epochs, held-out validation (230 of 256 samples train: 7 full
#: batches and one of 6, which splits evenly between two devices).
SPEC = (
    SMALL_SPEC.replace("epochs: 1", "epochs: 3").replace("  validation: test\n", "")
    + "  distribute: data_parallel\nexport: {formats: [keras]}\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_DIST")}
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return {**env, **more}


def _build(
    tmp_path: Path, out: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "l2compile", "build", "spec.yaml"]
    command += ["--data", "mnist.npz", "--out", out, *args]
    return subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(process: subprocess.Popen[str]) -> str:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return stderr


def _metrics(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "metrics.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_mnist_npz(tmp_path / "mnist.npz")
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    return tmp_path


def _one_device(folder: Path) -> dict[str, Any]:
    _finish(_build(folder, "one", "--set", "train.distribute=none"))
    return _metrics(folder / "one")


# --- planning -------------------------------------------------------------------


@pytest.mark.unit
def test_data_parallel_trains_on_jax_and_refuses_tensorflow(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC, encoding="utf-8")
    loaded = load_spec(path)
    assert not isinstance(loaded, list)
    plan = plan_spec(loaded, tmp_path, device="cpu")
    assert not isinstance(plan, list)
    assert (plan.backend, plan.backend_reason) == (
        "jax",
        "distribute: data_parallel, which needs JAX",
    )
    refused = plan_spec(loaded, tmp_path, backend="tensorflow")
    assert isinstance(refused, list)
    (error,) = refused
    assert error.path == ("train", "distribute")
    assert "data_parallel is Keras' JAX distribution" in error.message


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--coordinator", "127.0.0.1:1234"], "go together"),
        (
            ["--coordinator", "nowhere", "--num-processes", "2", "--process-id", "0"],
            "expected HOST:PORT",
        ),
        (
            ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
            "numbered 0 to 1",
        ),
    ],
)
def test_the_options_that_join_processes_are_checked(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    none = tmp_path / "none.yaml"
    none.write_text(SPEC.replace("data_parallel", "none"), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["build", str(tmp_path / "spec.yaml"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    joined = ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "0"]
    result = runner.invoke(main, ["build", str(none), *joined])
    assert result.exit_code == 2, result.output
    assert "this spec's distribute is none" in result.output


# --- builds -----------------------------------------------------------------------


@pytest.mark.build
def test_two_cpu_devices_train_as_one_device_does(folder: Path) -> None:
    stderr = _finish(_build(folder, "two", env=_env(JAX_NUM_CPU_DEVICES="2")))
    assert "data_parallel: 2 devices in 1 process" in stderr
    two, one = _metrics(folder / "two"), _one_device(folder)
    assert two["replicas"] == 2 and one["replicas"] == 1
    assert abs(two["test_loss"] - one["test_loss"]) <= TOLERANCE
    assert two["history"]["val_loss"] == pytest.approx(
        one["history"]["val_loss"], abs=TOLERANCE
    )
    # Validated on every held-out sample, as on one device.
    assert two["validation"]["samples"] == one["validation"]["samples"] == 26


@pytest.mark.build
def test_a_batch_size_that_does_not_split_between_the_devices_is_refused(
    folder: Path,
) -> None:
    process = _build(folder, "three", env=_env(JAX_NUM_CPU_DEVICES="3"))
    _, stderr = process.communicate(timeout=600)
    assert process.returncode != 0
    assert "BATCH_SIZE 32 does not split evenly between 3 devices" in stderr
    assert "set train.batch_size to a multiple of the number of devices" in stderr
    assert not (folder / "three").exists()


def _two_processes(
    folder: Path, out: str, *more: str
) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    port = str(_free_port())
    joined = ("--coordinator", f"127.0.0.1:{port}", "--num-processes", "2")
    return (
        _build(folder, out, *joined, "--process-id", "0", *more),
        _build(folder, out, *joined, "--process-id", "1", *more),
    )


@pytest.mark.build
def test_two_processes_on_this_machine_train_as_one_device_does(
    folder: Path,
) -> None:
    first, second = _two_processes(folder, "two")
    said = _finish(first), _finish(second)
    assert "data_parallel: 2 devices in 2 processes (this is process 0)" in said[0]
    assert "not the chief worker: nothing published" in said[1]
    two, one = _metrics(folder / "two"), _one_device(folder)
    assert two["replicas"] == 2
    assert abs(two["test_loss"] - one["test_loss"]) <= TOLERANCE
    # One publish, by process 0; process 1 leaves nothing behind.
    assert sorted(p.name for p in folder.iterdir() if "two" in p.name) == ["two"]


def _saved_epoch(work: Path) -> int:
    try:
        return int(json.loads((work / "resume" / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.build
def test_a_killed_two_process_build_resumes_to_the_same_end(tmp_path: Path) -> None:
    make_mnist_npz(tmp_path / "mnist.npz", n_train=2048)
    text = SPEC.replace("epochs: 3", "epochs: 30")
    (tmp_path / "spec.yaml").write_text(text, encoding="utf-8")
    unbroken = _two_processes(tmp_path, "unbroken")
    for process in unbroken:
        _finish(process)

    killed = _two_processes(tmp_path, "out")
    works = (tmp_path / ".out.partial", tmp_path / ".out.partial-process1")
    ends = time.monotonic() + 300
    while min(_saved_epoch(w) for w in works) < 2:
        assert all(p.poll() is None for p in killed), "ended before the kill"
        assert time.monotonic() < ends
        time.sleep(0.05)
    for process in killed:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    saved = [_saved_epoch(w) for w in works]
    assert all(2 <= epoch < 30 for epoch in saved), saved
    assert not (tmp_path / "out").exists()

    resumed = _two_processes(tmp_path, "out", "--resume")
    said = _finish(resumed[0])
    _finish(resumed[1])
    assert "resuming after epoch" in said
    end, again = _metrics(tmp_path / "unbroken"), _metrics(tmp_path / "out")
    assert again["resumed_after_epoch"] is not None
    assert abs(again["test_loss"] - end["test_loss"]) <= TOLERANCE
    assert again["history"]["loss"] == pytest.approx(
        end["history"]["loss"], abs=TOLERANCE
    )
    assert not any(w.exists() for w in works)


@pytest.mark.build
def test_the_module_runs_data_parallel_on_its_own(folder: Path) -> None:
    """The generated module's main() trains data-parallel without l2compile."""
    from l2compile.generate import compile_spec

    compiled = compile_spec(folder / "spec.yaml")
    assert not isinstance(compiled, list)
    (folder / "dp.py").write_text(compiled.code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "dp.py", "--data", "mnist.npz", "--out", "m.keras"],
        cwd=folder,
        env=_env(JAX_NUM_CPU_DEVICES="2", PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Test loss:" in done.stdout and (folder / "m.keras").is_file()
