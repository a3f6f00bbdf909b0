"""Generated code as a product: formatted, lint- and type-clean, checkable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from l2compile import render
from l2compile.cli import EXIT_OK, EXIT_SPEC_ERROR, EXIT_STALE, main
from l2compile.spec import json_schema

from .conftest import GOLDEN, ROOT, SPECS
from .update_golden import all_specs

SCHEMA_FILE = SPECS / "l2compile.schema.json"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True
    )


# --- the golden records pass the project's own quality bar --------------------


@pytest.mark.build
def test_generated_code_is_ruff_formatted() -> None:
    result = tool("ruff", "format", "--check", "--no-cache", str(GOLDEN))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.build
def test_extreme_numbers_are_written_as_ruff_writes_them(tmp_path: Path) -> None:
    """repr(1e20) is `1e+20`, which ruff rewrites to `1e20`."""
    spec = tmp_path / "huge.yaml"
    spec.write_text(
        "name: huge\ninput: {shape: [4]}\nl2: 1.0e+20\n"
        "layers:\n"
        "  - {type: rescaling, scale: 1.0e+20, offset: -3.0e+300}\n"
        "  - {type: layer_normalization, epsilon: 1.0e+30}\n"
        "  - {type: dense, units: 3, activation: softmax, l2: 2.0e+20}\n"
        "train: {recipe: npz, num_classes: 3, epochs: 1, batch_size: 2,\n"
        "  optimizer: {learning_rate: 1.0e+16, weight_decay: 1.0e+17,\n"
        "  weight_decay_with_l2: true}}\n",
        encoding="utf-8",
    )
    code, _, err = run("generate", str(spec), "-o", str(tmp_path / "huge.py"))
    assert code == 0, err
    assert "1e20" in (tmp_path / "huge.py").read_text(encoding="utf-8")
    result = tool("ruff", "format", "--check", "--no-cache", str(tmp_path / "huge.py"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.build
def test_generated_code_is_ruff_clean() -> None:
    result = tool("ruff", "check", "--no-cache", str(GOLDEN))
    assert result.returncode == 0, result.stdout + result.stderr


def mypy_strict(tmp_path: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    """mypy --strict over generated files, with an empty config file: the
    user's strictest setting, not this project's."""
    (tmp_path / "none.ini").write_text("[mypy]\n")
    return tool(
        "mypy",
        "--strict",
        "--ignore-missing-imports",
        "--config-file",
        str(tmp_path / "none.ini"),
        "--cache-dir",
        str(tmp_path / "cache"),
        *paths,
    )


@pytest.mark.build
def test_generated_code_is_mypy_strict_clean(tmp_path: Path) -> None:
    result = mypy_strict(tmp_path, *sorted(str(p) for p in GOLDEN.glob("*.py")))
    assert result.returncode == 0, result.stdout + result.stderr


# --- check mode ----------------------------------------------------------------


@pytest.fixture
def checked_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository that has generated its modules from specs/ into gen/."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "gen"
    code, stdout, _ = run("generate", "specs", "-o", f"{out}/")
    assert code == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == [
        "breast_cancer.py",
        "diabetes_progression.py",
        "digit_attributes.py",
        "fashion_mlp.py",
        "mnist_cnn.py",
        "mnist_lstm.py",
        "mnist_mlp.py",
        "mnist_resnet.py",
        "phone_classifier.py",
        "text_classifier.py",
    ]
    assert stdout.count("wrote ") == 10
    return out


@pytest.mark.unit
def test_check_passes_when_every_module_is_current(checked_in: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in checked_in.iterdir()}
    code, out, _ = run("generate", "--check", "specs", "-o", str(checked_in))
    assert (code, out) == (EXIT_OK, "10 generated module(s) up to date\n")
    assert {p.name: p.stat().st_mtime_ns for p in checked_in.iterdir()} == before


@pytest.mark.unit
def test_check_reports_a_missing_module(checked_in: Path) -> None:
    (checked_in / "mnist_cnn.py").unlink()
    code, out, err = run("generate", "--check", "specs", "-o", str(checked_in))
    assert code == EXIT_STALE
    assert out == f"missing {checked_in / 'mnist_cnn.py'}\n"
    assert err == (
        "1 of 10 generated module(s) out of date; run the same command without "
        "--check to update them\n"
    )
    assert not (checked_in / "mnist_cnn.py").exists()


@pytest.mark.unit
def test_check_shows_a_unified_diff_for_a_changed_module(checked_in: Path) -> None:
    target = checked_in / "mnist_mlp.py"
    target.write_text(target.read_text().replace("EPOCHS = 10", "EPOCHS = 12"))
    code, out, _ = run("generate", "--check", "specs", "-o", str(checked_in))
    assert code == EXIT_STALE
    lines = out.splitlines()
    assert lines[0] == f"--- {target} (on disk)"
    assert lines[1] == f"+++ {target} (from specs/mnist.yaml)"
    assert "-EPOCHS = 12" in lines
    assert "+EPOCHS = 10" in lines
    assert "12" in target.read_text()  # check mode never writes


@pytest.mark.unit
def test_check_with_a_spec_error_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((SPECS / "mnist.yaml").read_text().replace("relu}", "rellu}", 1))
    code, out, err = run("generate", "--check", str(bad), "-o", str(tmp_path))
    assert code == EXIT_SPEC_ERROR
    assert out == ""
    assert "did you mean 'relu'?" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.unit
def test_one_bad_spec_means_no_module_is_written(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text((SPECS / "mnist.yaml").read_text())
    (specs / "b.yaml").write_text("name: b\n")
    code, _, _ = run("generate", str(specs), "-o", str(tmp_path / "gen/"))
    assert code == EXIT_SPEC_ERROR
    assert not (tmp_path / "gen").exists()


@pytest.mark.unit
def test_two_specs_with_one_name_are_refused(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yml"):
        (tmp_path / name).write_text((SPECS / "mnist.yaml").read_text())
    code, _, err = run("generate", str(tmp_path), "-o", str(tmp_path / "gen/"))
    assert code == EXIT_SPEC_ERROR
    assert err == (
        f"error: {tmp_path / 'a.yaml'} and {tmp_path / 'b.yml'} are both named "
        "'mnist_mlp'; each spec needs its own name to get its own module\n"
    )


@pytest.mark.unit
@pytest.mark.parametrize("command", ["generate", "validate"])
def test_a_folder_without_specs(tmp_path: Path, command: str) -> None:
    # Before: validate passed (exit 0, silent) having checked nothing.
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "notes.txt").write_text("name: x\n")
    code, out, err = run(command, str(SPECS / "mnist.yaml"), str(tmp_path / "specs"))
    assert (code, out) == (EXIT_SPEC_ERROR, "")
    assert err == (
        f"error: {tmp_path / 'specs'}: no spec files (*.yaml, *.yml) in this folder\n"
    )


@pytest.mark.unit
def test_without_the_version_line_an_upgrade_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "mnist_mlp.py"
    assert (
        run("generate", "--no-version-header", "specs/mnist.yaml", "-o", str(out))[0]
        == 0
    )
    assert "l2compile version" not in out.read_text()
    assert (
        out.read_text().splitlines()[2]
        == '"""mnist_mlp: 784-128-64-10 MLP with L2(0.01) on every kernel'
    )
    monkeypatch.setattr(render, "__version__", "99.0.0")
    args = ["generate", "--check", "specs/mnist.yaml", "-o", str(out)]
    assert run(*args[:2], "--no-version-header", *args[2:])[0] == EXIT_OK
    # With the version line, the same upgrade makes the file stale.
    code, diff, _ = run(*args)
    assert code == EXIT_STALE
    assert "+# l2compile version: 99.0.0" in diff.splitlines()


# --- the JSON Schema for editors -------------------------------------------------


@pytest.mark.unit
def test_committed_schema_is_current() -> None:
    """Regenerate with: l2compile schema > specs/l2compile.schema.json"""
    code, out, _ = run("schema")
    assert code == EXIT_OK
    assert json.loads(out) == json_schema()
    assert SCHEMA_FILE.read_text(encoding="utf-8") == out


@pytest.mark.unit
def test_every_spec_validates_against_the_schema_and_names_it() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in all_specs():
        text = path.read_text(encoding="utf-8")
        assert not list(validator.iter_errors(yaml.safe_load(text))), path
        first = text.splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        named = (path.parent / first.split("=", 1)[1]).resolve()
        assert named == SCHEMA_FILE.resolve(), path


@pytest.mark.unit
def test_schema_rejects_what_validate_rejects() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    spec = yaml.safe_load((SPECS / "mnist.yaml").read_text(encoding="utf-8"))
    for broken in (
        {**spec, "l2": -1},
        {**spec, "lr": 0.1},
        {**spec, "layers": [{"type": "dense_layer", "units": 3}]},
        {**spec, "layers": [{"type": "conv2d", "filters": 3, "kernel_size": [3]}]},
    ):
        assert list(validator.iter_errors(broken)), broken


@pytest.mark.build
def test_graph_variables_avoid_the_names_build_model_uses_and_stay_formatted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layers named like build_model's own variables, names too long for a
    line, and a merge of many inputs: variables that shadow nothing, and
    ruff-formatted code."""
    long = "b" * 64
    refs = ", ".join(["x", "layers", long, "inputs", "keras", "x_"] * 2)
    spec = tmp_path / "clash.yaml"
    spec.write_text(
        "name: clash\ninput: {shape: [4]}\nlayers:\n"
        "  - {type: dense, units: 3, name: x}\n"
        "  - {type: dense, units: 3, inputs: [input], name: layers}\n"
        f"  - {{type: dense, units: 3, inputs: [input], name: {long}}}\n"
        "  - {type: dense, units: 3, inputs: [input], name: inputs}\n"
        "  - {type: dense, units: 3, inputs: [input], name: keras}\n"
        "  - {type: dense, units: 3, inputs: [input], name: x_}\n"
        f"  - {{type: concatenate, inputs: [{refs}]}}\n"
        "  - {type: dense, units: 2, activation: softmax}\n"
        "train: {recipe: npz, num_classes: 2, epochs: 1, batch_size: 2}\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # a short spec path in the header's line
    code, _, err = run("generate", "clash.yaml", "-o", "clash.py")
    assert code == 0, err
    text = (tmp_path / "clash.py").read_text(encoding="utf-8")
    body = text.split("def build_model", 1)[1].split("\ndef ", 1)[0]
    targets = [
        line.split(" = ", 1)[0].strip()
        for line in body.splitlines()
        if " = layers." in line
    ]
    # x_ is a layer's name, so layer x's variable is x__; x_ itself, read by the
    # next layer alone, is x.
    assert targets == [
        "x__",
        "layers_",
        "bbbbbbbbbbbbbbbbbbbbbbbb_2",
        "inputs_",
        "keras_",
        "x",
        "x",  # the concatenate, read by the next layer alone
        "outputs",
    ]
    assert "    )(\n        [\n            x__,\n" in body  # the inputs, one a line
    for check in (("format", "--check"), ("check",)):
        result = tool("ruff", *check, "--no-cache", str(tmp_path / "clash.py"))
        assert result.returncode == 0, result.stdout + result.stderr
