"""The command line: output, exit codes, and no TensorFlow where none is needed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from l2compile import __version__
from l2compile.cli import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SPEC_ERROR,
    main,
)

from .conftest import GOLDEN, ROOT, SPECS

BAD = (SPECS / "mnist.yaml").read_text(encoding="utf-8").replace("relu}", "rellu}", 1)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.unit
def test_validate_reports_ok_with_the_model_size() -> None:
    code, out, err = run("validate", str(SPECS / "mnist.yaml"))
    assert code == EXIT_OK
    assert err == ""
    assert out.endswith(
        "mnist.yaml: ok (mnist_mlp: 3 layers, 109,386 parameters, 109,184 with L2)\n"
    )


@pytest.mark.unit
def test_validate_reports_every_file_and_fails_on_any(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    code, out, err = run("validate", str(SPECS / "mnist.yaml"), str(bad))
    assert code == EXIT_SPEC_ERROR
    assert "ok (mnist_mlp" in out
    assert err == (
        f"{bad}:10:43: error: layers[0].activation: unknown value 'rellu'; "
        "did you mean 'relu'?\n"
        f"1 error in {bad}\n"
    )


@pytest.mark.unit
def test_exit_codes_are_documented_in_help() -> None:
    for args in ([], ["validate"], ["generate"], ["build"]):
        code, out, _ = run(*args, "--help")
        assert code == 0
        assert "Exit codes" in out
        assert f"{EXIT_SPEC_ERROR}    a spec" in out
        assert f"{EXIT_FAILURE}    anything else failed" in out


@pytest.mark.build
def test_generate_writes_the_golden_module(tmp_path: Path) -> None:
    target = tmp_path / "out" / "model.py"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "l2compile",
            "generate",
            "specs/mnist.yaml",
            "-o",
            str(target),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout == f"wrote {target}\n"
    assert target.read_bytes() == (GOLDEN / "mnist_mlp.py").read_bytes()


@pytest.mark.unit
def test_generate_into_a_folder_names_the_file_after_the_spec(tmp_path: Path) -> None:
    code, out, _ = run("generate", str(SPECS / "mnist.yaml"), "-o", str(tmp_path))
    assert code == EXIT_OK
    assert out == f"wrote {tmp_path / 'mnist_mlp.py'}\n"
    assert (tmp_path / "mnist_mlp.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist_mlp.py"]


@pytest.mark.unit
def test_generate_with_a_bad_spec_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    out_dir = tmp_path / "gen"
    out_dir.mkdir()
    code, _, err = run("generate", str(bad), "-o", str(out_dir))
    assert code == EXIT_SPEC_ERROR
    assert "unknown value 'rellu'" in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.unit
def test_build_with_a_bad_spec_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    code, _, _ = run("build", str(bad), "--out", str(tmp_path / "b"))
    assert code == EXIT_SPEC_ERROR
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.unit
def test_build_without_data_fails_cleanly(tmp_path: Path) -> None:
    code, _, err = run(
        "build",
        str(SPECS / "mnist.yaml"),
        "--out",
        str(tmp_path / "b"),
        "--data",
        str(tmp_path / "none.npz"),
    )
    assert code == EXIT_FAILURE
    assert err == f"error: --data {tmp_path / 'none.npz'}: no such file\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.unit
def test_build_refuses_to_replace_a_folder_that_is_not_a_build(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    code, _, err = run("build", str(SPECS / "mnist.yaml"), "--out", str(precious))
    assert code == EXIT_FAILURE
    assert err == (
        f"error: --out {precious}: is not an earlier l2compile build, so the build "
        "will not replace it: it holds notes.txt and no manifest.json of "
        "l2compile's. Name another folder, or empty this one yourself\n"
    )
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.unit
def test_missing_spec_file_is_a_spec_error(tmp_path: Path) -> None:
    code, _, err = run("validate", str(tmp_path / "nope.yaml"))
    assert code == EXIT_SPEC_ERROR
    assert err.startswith(f"{tmp_path / 'nope.yaml'}: error: no such file\n")


@pytest.mark.build
@pytest.mark.parametrize("command", ["validate", "generate", "inspect", "schema"])
def test_validate_generate_inspect_and_schema_never_import_tensorflow(
    tmp_path: Path, command: str
) -> None:
    args = "" if command == "schema" else "'specs/mnist.yaml', "
    probe = (
        "import sys\n"
        "from l2compile.cli import main\n"
        "try:\n"
        f"    main([{command!r}, {args}*sys.argv[1:]])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'ai_edge_litert') "
        "if m in sys.modules)\n"
        "print('heavy modules:', ','.join(heavy))\n"
    )
    extra = ["-o", str(tmp_path)] if command == "generate" else []
    result = subprocess.run(
        [sys.executable, "-c", probe, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "heavy modules: "


@pytest.mark.unit
def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert out == f"l2compile, version {__version__}\n"


@pytest.mark.build
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_build_changes_nothing_and_keeps_its_epochs(
    tmp_path: Path, tiny_mnist: Path, sig: signal.Signals
) -> None:
    out = tmp_path / "build"
    work = tmp_path / ".build.partial"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "l2compile",
            "build",
            "specs/mnist.yaml",
            "--out",
            str(out),
            "--data",
            str(tiny_mnist),
            "--epochs",
            "100000",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until it is training
        if line.startswith("l2compile: training"):
            break
    while not (work / "resume" / "state.json").is_file():  # and an epoch is saved
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED
    (last,) = [line for line in rest.splitlines() if line.startswith("error: ")]
    assert re.fullmatch(
        f"error: interrupted; {re.escape(str(out))} was not changed. (Epoch 1 of "
        f"100000 is|Epochs 1-[0-9]+ of 100000 are) saved in {re.escape(str(work))}: "
        "add --resume to continue",
        last,
    ), last
    assert rest.splitlines()[-1] == last
    assert sorted(p.name for p in tmp_path.iterdir()) == [".build.partial", "data"]
    assert sorted(p.name for p in work.iterdir()) == [".l2compile", "resume"]


@pytest.mark.unit
def test_inspect_json_totals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run("inspect", "--json", "tests/specs/every_recurrent_layer.yaml")
    assert code == EXIT_OK
    data = json.loads(out)
    assert data["totals"] == {
        "params": 1592,
        "regularized_params": 1592,
        "weight_decay_params": 0,
    }
    gru = [w for w in data["weights"] if w["layer"] == "gru_1"]
    assert [(w["weight"], w["shape"], w["l2"]) for w in gru] == [
        ("kernel", [8, 18], 0.001),
        ("recurrent_kernel", [6, 18], 0.001),
        ("bias", [2, 18], 0.001),
    ]


@pytest.mark.build
def test_offline_without_mnist_the_training_tests_skip_saying_what_to_set(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "L2COMPILE_DATA": str(tmp_path / "empty"),
        "KERAS_HOME": str(tmp_path / "keras"),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/test_reproduction.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIP")]
    (line,) = skipped  # all five, for one reason
    assert line.startswith("SKIPPED [5] tests/conftest.py:")
    assert line.endswith(
        ": needs the real MNIST: set L2COMPILE_DATA to a folder holding mnist.npz"
    )
    assert "5 skipped" in result.stdout.splitlines()[-1]


@pytest.mark.unit
def test_inspect_json_lists_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run("inspect", "--json", "tests/specs/residual_cnn.yaml")
    assert code == EXIT_OK
    data = json.loads(out)
    assert data["model"] == "functional"
    add = next(layer for layer in data["layers"] if layer["type"] == "add")
    assert add == {
        "name": "block1",
        "type": "add",
        "inputs": ["stem", "conv2d_3"],
        "output_shape": [28, 28, 16],
        "params": 0,
    }
    code, out, _ = run("inspect", "--json", "specs/mnist.yaml")
    assert json.loads(out)["model"] == "sequential"
