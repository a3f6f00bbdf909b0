"""Every input is read with a bound: a spec, a manifest, a resume state.

These are cases from the adversarial review (issue 27): each failed before
its fix. The image and CSV bounds are in test_image_bounds.py and
test_table_bounds.py, the sweep's in test_sweep_bounds.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from l2compile import build as builder
from l2compile.files import NotAFile, TooLarge, read_bounded
from l2compile.spec import load_spec

from .conftest import SMALL_SPEC, compiled


def _eval(artifact: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`l2compile eval ARTIFACT`, as a user runs it (the spec from its build)."""
    return subprocess.run(
        [sys.executable, "-m", "l2compile", "eval", str(artifact)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _load_errors(path: Path) -> list[str]:
    result = load_spec(path, path.name)
    assert isinstance(result, list), "expected the spec to be rejected"
    return [str(e) for e in result]


@pytest.mark.build
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_validate_refuses_a_device_at_once(device: str) -> None:
    # Before: st_size is 0 for a device, so the whole "file" was read, until
    # memory ran out (23.5 GB in 46 s). The timeout only ends a test that
    # would otherwise never end.
    done = subprocess.run(
        [sys.executable, "-m", "l2compile", "validate", device],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"{device}: error: is a character device, not a regular file\n"
        f"1 error in {device}\n"
    )


@pytest.mark.unit
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_spec_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    assert _load_errors(fifo) == ["spec.yaml: error: is a FIFO, not a regular file"]


@pytest.mark.unit
def test_a_folder_is_not_a_spec(tmp_path: Path) -> None:
    (tmp_path / "specs.yaml").mkdir()
    assert _load_errors(tmp_path / "specs.yaml") == [
        "specs.yaml: error: is a folder, not a spec file"
    ]


@pytest.mark.build
@pytest.mark.parametrize("command", ["validate", "build", "generate"])
def test_a_spec_symlink_loop_is_named(tmp_path: Path, command: str) -> None:
    # Before: a RuntimeError traceback from Path.resolve(), exit 1.
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "l2compile", command, "a.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0] == (
        "a.yaml: error: is a symbolic link loop (ELOOP: too many levels of "
        "symbolic links)"
    )


@pytest.mark.unit
def test_a_spec_too_large_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * ((1 << 20) + 1))
    assert _load_errors(path) == [
        "big.yaml: error: the file is 1,048,577 bytes; a spec is at most 1,048,576"
    ]


@pytest.mark.unit
def test_read_bounded_never_reads_past_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_bounded(path, 10) == b"x" * 10
    with pytest.raises(TooLarge, match="the file is 10 bytes; the most is 9"):
        read_bounded(path, 9)
    link = tmp_path / "link"
    link.symlink_to(path)
    assert read_bounded(link, 10) == b"x" * 10
    with pytest.raises(OSError) as err:
        read_bounded(link, 10, follow_links=False)
    assert not isinstance(err.value, NotAFile)  # ELOOP, from the open itself
    with pytest.raises(NotAFile, match="is a character device"):
        read_bounded(Path("/dev/zero"), 10)


@pytest.mark.build
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_build_never_reads_its_spec_again(tmp_path: Path, tiny_mnist: Path) -> None:
    # Before: the report read the spec file again after training, so a spec
    # replaced by a FIFO meanwhile hung the build after "saving model.keras".
    text = SMALL_SPEC + "export: {formats: [keras]}\n"
    spec = compiled(tmp_path, text)
    source = tmp_path / "small.yaml"
    source.unlink()
    os.mkfifo(source)
    rescued = threading.Event()

    def rescue() -> None:  # ends a hung read with EOF, so the test cannot hang
        if not done.wait(120):
            rescued.set()
            with open(source, "wb"):
                pass

    done = threading.Event()
    threading.Thread(target=rescue, daemon=True).start()
    out = tmp_path / "out"
    try:
        builder.build(spec.plan, spec.code, out, data=tiny_mnist, log=lambda m: None)
    finally:
        done.set()
    assert not rescued.is_set(), "the build waited on the FIFO"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "description: a small MLP for fast tests" in page


@pytest.mark.build
def test_auc_of_a_test_split_of_one_class_is_undefined_not_zero(
    tmp_path: Path,
) -> None:
    # Before: labels all 0 gave test_auc 0.0 (Keras' AUC metric there).
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    np.savez(
        tmp_path / "t.npz",
        x_train=x,
        y_train=y,
        x_test=x[:16],
        y_test=np.zeros(16, dtype="int64"),
    )
    spec = compiled(
        tmp_path,
        "name: one_class\ntask: binary\ninput: {shape: [3]}\nlayers:\n"
        "  - {type: dense, units: 1, activation: sigmoid}\n"
        "train: {recipe: npz, data: t.npz, epochs: 1, batch_size: 8, "
        "metrics: [accuracy, auc]}\nexport: {formats: [keras]}\n",
    )
    out = tmp_path / "out"
    builder.build(spec.plan, spec.code, out, log=lambda m: None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_auc"] is None
    assert isinstance(metrics["test_accuracy"], float)
    # eval of the .keras file says the same (it printed Keras' 0.0 before).
    done = _eval(out / "model.keras", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        "auc:       undefined (AUC is undefined where the split holds one class only)"
        in done.stdout.splitlines()
    )


@pytest.mark.unit
def test_an_auc_is_reported_only_where_it_is_defined() -> None:
    import numpy as np

    from l2compile import measure
    from l2compile.tasks import Multilabel

    task = Multilabel("binary_crossentropy", ("binary_accuracy", "auc"), 2, ("a", "b"))
    auc = measure.METRIC_KINDS["auc"]
    outputs = np.array([[0.2, 0.1], [0.9, 0.8], [0.4, 0.3]])
    # Every label of both classes: Keras' own value.
    assert auc.reported(task, outputs, np.array([[0, 1], [1, 0], [0, 1]]), 0.7) == 0.7
    # Label b of one class: Keras counts it as 0; l2compile leaves it out.
    assert auc.reported(task, outputs, np.array([[0, 1], [1, 1], [0, 1]]), 0.5) == 1.0
    assert auc.reported(task, outputs, np.ones((3, 2)), 0.0) is None


@pytest.mark.unit
def test_a_validation_split_of_one_class_has_no_auc(tmp_path: Path) -> None:
    import numpy as np

    from l2compile import measure

    from .conftest import plan_text

    plan = plan_text(
        "name: one_class\ntask: binary\ninput: {shape: [3]}\nlayers:\n"
        "  - {type: dense, units: 1, activation: sigmoid}\n"
        "train: {recipe: npz, data: t.npz, epochs: 1, batch_size: 8, "
        "metrics: [accuracy, auc]}\n",
        tmp_path,
    )
    x = np.zeros((4, 3), dtype="float32")
    scores = {"loss": 0.5, "accuracy": 1.0, "auc": 0.0}

    class Model:  # Keras' model, as the scoring calls it
        def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
            return np.full((len(x), 1), 0.3, dtype="float32")

    model = Model()
    found = measure.defined_validation(plan, model, x, np.zeros(4), scores)
    assert found == {"loss": 0.5, "accuracy": 1.0, "auc": None}
    both = measure.defined_validation(plan, model, x, np.array([0, 1, 0, 1]), scores)
    assert both == scores


@pytest.mark.unit
def test_the_limits_table_states_each_limit_the_code_enforces() -> None:
    import importlib
    import re

    from .conftest import ROOT

    text = (ROOT / "docs" / "limits.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| [^|]+ \| ([^|]+) \| `([\w.]+)` \|", text, re.MULTILINE)
    assert len(rows) >= 15
    for limit, constant in rows:
        module, name = constant.rsplit(".", 1)
        value = getattr(importlib.import_module(f"l2compile.{module}"), name)
        assert limit.startswith((f"{value:,}", f"{value:,g}")), (constant, limit)


@pytest.mark.build
def test_a_build_stage_process_dies_with_its_build() -> None:
    # A build SIGKILLed while its export child worked left the child working
    # on. The stand-in build here starts a stage process's own guard and is
    # then killed; the stage process must end with it.
    import signal
    import time

    child = (
        "import os, time\n"
        "from l2compile.processes import _die_with\n"
        "_die_with(os.getppid())\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(120)\n"
    )
    build = (
        f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {child!r}])\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", build], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    stage = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=60)
    ends = time.monotonic() + 60
    while time.monotonic() < ends:
        try:
            os.kill(stage, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(stage, signal.SIGKILL)
    raise AssertionError("the stage process outlived its build")


@pytest.mark.build
def test_a_table_of_large_vocabularies_keeps_its_manifest_small(
    tmp_path: Path,
) -> None:
    # Before: the columns and vocabularies went into manifest.json, which a
    # text column of 40 distinct 45 kB values took past the manifest's own
    # bound: eval without --spec refused the build it came from.
    import json

    rows = [f"{i},{chr(97 + i % 26) * 45_000}{i},{i % 2}" for i in range(40)]
    (tmp_path / "t.csv").write_text("n,word,y\n" + "\n".join(rows) + "\n")
    spec = compiled(
        tmp_path,
        "name: wide_words\ntask: binary\ninput: {shape: [32]}\nlayers:\n"
        "  - {type: dense, units: 1, activation: sigmoid}\n"
        "train: {recipe: csv, data: t.csv, label: y, test_split: 0.25, "
        "epochs: 1, batch_size: 8}\nexport: {formats: [keras]}\n",
    )
    out = tmp_path / "out"
    builder.build(spec.plan, spec.code, out, log=lambda m: None)
    assert (out / "manifest.json").stat().st_size < 100_000
    columns = json.loads((out / "columns.json").read_text())["columns"]
    assert [c["name"] for c in columns] == ["n", "word"]
    done = _eval(out / "model.keras", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr


@pytest.mark.unit
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_among_images_or_as_an_npz_is_refused_without_waiting(
    tmp_path: Path,
) -> None:
    # Before: each was checked by a stat, then opened: a FIFO put there in
    # between was waited on. Now each is refused from its open descriptor.
    from l2compile import datasets, images
    from l2compile.errors import BuildError

    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    with pytest.raises(BuildError) as err:
        images._check_headers([str(fifo)])
    assert str(err.value) == f"{fifo}: is a FIFO, not a regular file"
    with pytest.raises(OSError, match="is a FIFO"):
        datasets._not_npz(fifo)
