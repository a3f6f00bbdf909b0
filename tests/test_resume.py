"""Resuming interrupted builds: killed or interrupted builds continue from their
last finished epoch and end where an uninterrupted build ends."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2compile import build as builder
from l2compile import callbacks, resume
from l2compile.contract import GeneratedModule, import_generated
from l2compile.errors import BuildError, Interrupted
from l2compile.generate import Compiled

from .conftest import GOLDEN, ROOT, SMALL_SPEC, StopAt, compiled, make_mnist_npz

#: Enough epochs of enough data that a kill lands well inside training; it
#: validates on a held-out share of the training data (the default), which a
#: resumed build must hold out alike.
KILL_SPEC = SMALL_SPEC.replace("epochs: 1", "epochs: 40").replace(
    "  validation: test\n", ""
) + ("export: {formats: [keras]}\n")


#: The builds here check training, its saved state and resuming: they export
#: the Keras file alone, with no TensorFlow child process (the other formats
#: are exported and checked by test_build.py and test_interrupts.py).
KERAS_ONLY = "export: {formats: [keras]}\n"


def _cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "l2compile", "build", *map(str, args)]


def _run(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cli(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def _build(
    spec: Compiled, out: Path, data: Path, **options: Any
) -> builder.BuildResult:
    """Build `spec` into `out`, quietly unless given a log."""
    options.setdefault("log", lambda message: None)
    return builder.build(spec.plan, spec.code, out, data=data, **options)


def _state(work: Path) -> dict[str, Any] | None:
    try:
        return json.loads((work / "resume" / "state.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        abs(x - y) <= 1e-4 for x, y in zip(a, b, strict=True)
    )


@pytest.mark.build
def test_each_epochs_order_depends_on_the_seed_and_the_epoch_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    generated: GeneratedModule = import_generated(
        GOLDEN / "mnist_mlp.py", "mnist_mlp_order"
    )
    x = np.arange(100, dtype="float32").reshape(100, 1) * np.ones((1, 784), "float32")
    y = np.arange(100)
    batches = generated.Batches(x, y)

    def order(epoch: int) -> list[list[int]]:
        batches.shuffle(epoch)
        passes = [batches[i] for i in range(len(batches))]
        for features, labels in passes:  # features follow their labels
            assert (np.asarray(features)[:, 0] == np.asarray(labels)).all()
        return [[int(v) for v in labels] for _, labels in passes]

    first = order(0)
    import keras

    keras.utils.set_random_seed(99)  # no other random state changes the order
    second = order(1)
    assert [len(b) for b in first] == [32, 32, 32, 4]
    flat = [i for batch in first for i in batch]
    assert sorted(flat) == list(range(100)) != flat  # each sample once, shuffled
    assert sorted(i for batch in second for i in batch) == list(range(100))
    assert first != second  # a new order every epoch
    assert order(0) == first and order(1) == second  # the same at every pass
    monkeypatch.setattr(generated, "SEED", generated.SEED + 1)
    assert order(0) != first  # the seed decides it


@pytest.mark.build
def test_a_build_killed_mid_training_resumes_to_the_same_metrics(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "kill.yaml"
    spec.write_text(KILL_SPEC)
    data = make_mnist_npz(tmp_path / "data" / "mnist.npz", n_train=3000)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    # The uninterrupted build, and a copy of it standing for an earlier build.
    full = tmp_path / "full"
    done = _run(env, spec, "--out", full, "--data", data)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    shutil.copytree(full, out)
    before = _files(out)

    # The same build into `out`, killed with SIGKILL once two epochs are saved.
    work = tmp_path / ".out.partial"
    proc = subprocess.Popen(
        _cli(spec, "--out", out, "--data", data),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while ((_state(work) or {}).get("epoch", 0)) < 2:
        assert proc.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed = _state(work)
    assert killed is not None and 2 <= killed["epoch"] < 40, killed
    assert _files(out) == before  # the earlier build is intact

    resumed = _run(env, spec, "--out", out, "--data", data, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first = re.search(r"resuming after epoch (\d+) of 40", resumed.stderr)
    assert first is not None, resumed.stderr[-3000:]
    assert int(first.group(1)) >= killed["epoch"]
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert b["resumed_after_epoch"] == int(first.group(1))
    assert abs(a["test_loss"] - b["test_loss"]) <= 1e-4
    assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 1e-4
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert _close(a["history"][name], b["history"][name]), name
    assert _close(a["history_split"]["l2_penalty"], b["history_split"]["l2_penalty"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data",
        "full",
        "kill.yaml",
        "out",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert not any(a["path"].startswith("resume/") for a in manifest["artifacts"])


@pytest.mark.build
def test_ctrl_c_keeps_the_finished_epochs_and_resume_ends_the_same(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = compiled(tmp_path, SMALL_SPEC.replace("epochs: 1", "epochs: 4") + KERAS_ONLY)
    full = _build(spec, tmp_path / "full", tiny_mnist).metrics

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(callbacks, "penalty_recorder", StopAt(2))
        with pytest.raises(Interrupted) as stopped:
            _build(spec, out, tiny_mnist)
    work = tmp_path / ".out.partial"
    assert (stopped.value.work, stopped.value.epoch, stopped.value.epochs) == (
        work,
        2,
        4,
    )
    assert not out.exists()
    assert sorted(p.name for p in work.iterdir()) == [".l2compile", "resume"]
    assert sorted(p.name for p in (work / "resume").iterdir()) == [
        "epoch-0002.npz",
        "state.json",
    ]

    before = resume.read(work)
    assert before is not None
    messages: list[str] = []
    again = _build(spec, out, tiny_mnist, resume=True, log=messages.append).metrics
    assert "resuming after epoch 2 of 4" in messages
    assert again["timing"]["train_seconds"] > before.train_seconds > 0
    assert again["resumed_after_epoch"] == 2 and full["resumed_after_epoch"] is None
    assert abs(again["test_loss"] - full["test_loss"]) <= 1e-4
    assert again["test_accuracy"] == pytest.approx(full["test_accuracy"], abs=1e-4)
    assert _close(again["history"]["loss"], full["history"]["loss"])
    assert len(again["history_split"]["l2_penalty"]) == 4
    assert not work.exists()


@pytest.mark.build
def test_an_interrupt_before_the_first_epoch_ends_leaves_nothing(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = compiled(tmp_path)
    monkeypatch.setattr(callbacks, "penalty_recorder", StopAt(0))
    with pytest.raises(KeyboardInterrupt) as stopped:
        _build(spec, tmp_path / "out", tiny_mnist)
    assert not isinstance(stopped.value, Interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "small.yaml"]


THREE_EPOCHS = SMALL_SPEC.replace("epochs: 1", "epochs: 3")


@pytest.fixture(scope="module")
def interrupted_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work folder of a THREE_EPOCHS build of `out`, on the data of
    `tiny_mnist`, interrupted as its second epoch began: made once, copied by
    `_interrupted` for each test that reads or edits it."""
    folder = tmp_path_factory.mktemp("interrupted")
    data = make_mnist_npz(folder / "data" / "mnist.npz")
    spec = compiled(folder, THREE_EPOCHS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(callbacks, "penalty_recorder", StopAt(1))
        with pytest.raises(Interrupted):
            _build(spec, folder / "out", data)
    return folder / ".out.partial"


def _interrupted(tmp_path: Path, work: Path) -> Path:
    """A copy of `interrupted_work` beside tmp_path/out: its saved state names
    no path (resume.build_key hashes the data and the code, not their files)."""
    shutil.copytree(work, tmp_path / ".out.partial")
    return tmp_path / ".out.partial"


@pytest.mark.build
def test_resume_refuses_state_of_another_build_and_keeps_it(
    tmp_path: Path, tiny_mnist: Path, interrupted_work: Path
) -> None:
    work = _interrupted(tmp_path, interrupted_work)
    saved = _files(work)
    spec = compiled(tmp_path, THREE_EPOCHS.replace("units: 16", "units: 17"))
    with pytest.raises(BuildError) as err:
        _build(spec, tmp_path / "out", tiny_mnist, epochs=5, resume=True)
    assert str(err.value) == (
        f"--resume: the interrupted build in {work} cannot be continued, because "
        "these changed since: the generated code (the spec's model or training); "
        "the number of epochs (3 then, 5 now; --epochs 3 continues it). Build "
        "without --resume to start over."
    )
    assert _files(work) == saved


@pytest.mark.build
def test_a_build_without_resume_replaces_saved_epochs_once_it_has_its_own(
    tmp_path: Path,
    tiny_mnist: Path,
    interrupted_work: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = _interrupted(tmp_path, interrupted_work)
    spec = compiled(tmp_path, THREE_EPOCHS + KERAS_ONLY)
    notice = (
        f"an interrupted build's saved epochs are in {work}; this build starts "
        "over and replaces them when its first epoch ends (stop it now and add "
        "--resume to continue them instead)"
    )

    # Stopped before its own first epoch ends, it leaves the old state as it was.
    saved = _files(work)
    messages: list[str] = []
    with monkeypatch.context() as patch:
        patch.setattr(callbacks, "penalty_recorder", StopAt(0))
        with pytest.raises(Interrupted) as stopped:
            _build(spec, tmp_path / "out", tiny_mnist, log=messages.append)
    assert notice in messages
    assert stopped.value.epoch == 1
    assert _files(work) == saved

    result = _build(spec, tmp_path / "out", tiny_mnist)
    assert result.metrics["resumed_after_epoch"] is None
    assert len(result.metrics["history"]["loss"]) == 3
    assert not work.exists()


@pytest.mark.build
def test_resume_without_saved_state_trains_from_the_first_epoch(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    spec = compiled(tmp_path, SMALL_SPEC + KERAS_ONLY)
    out = tmp_path / "out"
    messages: list[str] = []
    result = _build(spec, out, tiny_mnist, resume=True, log=messages.append)
    assert f"--resume: no saved state for {out}; training from the first epoch" in (
        messages
    )
    assert result.metrics["resumed_after_epoch"] is None


@pytest.mark.unit
def test_a_saved_state_that_cannot_be_read_is_said_so(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "resume").mkdir(parents=True)
    assert resume.read(work) is None  # no state.json: nothing saved
    state = work / "resume" / "state.json"
    good = {
        "format": 1,
        "epoch": 2,
        "epochs": 3,
        "key": {},
        "variables": [],
        "file": "epoch-0002.npz",
        "history": {},
        "penalties": [0.5, 0.25],
        "train_seconds": 1.0,
    }
    for text, reason in [
        ('{"epoch": 2', "cannot be read: state.json: JSONDecodeError: "),
        (json.dumps({**good, "format": 0}), "is of another format (0; this "),
        (json.dumps({**good, "epoch": "two"}), "cannot be read: state.json: "),
        (json.dumps(good), "cannot be read: its epoch-0002.npz is missing"),
    ]:
        state.write_text(text)
        with pytest.raises(resume.UnreadableState, match=re.escape(reason)):
            resume.read(work)
    (work / "resume" / "epoch-0002.npz").write_bytes(b"")
    saved = resume.read(work)
    assert saved is not None and (saved.epoch, saved.epochs) == (2, 3)


@pytest.mark.build
def test_resume_refuses_an_unreadable_state_and_a_build_replaces_it(
    tmp_path: Path, tiny_mnist: Path, interrupted_work: Path
) -> None:
    work = _interrupted(tmp_path, interrupted_work)
    (work / "resume" / "state.json").write_text("{")
    spec = compiled(tmp_path, THREE_EPOCHS + KERAS_ONLY)
    out = tmp_path / "out"
    with pytest.raises(BuildError) as err:
        _build(spec, out, tiny_mnist, resume=True)
    assert str(err.value).startswith(
        f"--resume: the saved state in {work / 'resume'} cannot be read: "
    )
    assert str(err.value).endswith(". Build without --resume to start over")
    assert (work / "resume" / "state.json").read_text() == "{"
    messages: list[str] = []
    _build(spec, out, tiny_mnist, log=messages.append)
    assert any(
        m.startswith("an interrupted build's saved epochs are in ") for m in messages
    )
    assert not work.exists()


@pytest.mark.unit
def test_out_may_not_be_the_working_folder_or_hold_it(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = compiled(tmp_path)
    monkeypatch.chdir(tmp_path)
    for out in (".", "..", "data/.."):
        with pytest.raises(BuildError) as err:
            _build(spec, Path(out), tiny_mnist)
        assert str(err.value).endswith(
            ": is the folder you are in, or holds it; name a folder of its own for "
            "the build, such as build/NAME"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "small.yaml"]


@pytest.mark.unit
def test_two_builds_cannot_write_one_out_folder_at_once(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    import fcntl

    spec = compiled(tmp_path)
    work = tmp_path / ".out.partial"
    work.mkdir()
    holder = os.open(work, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(BuildError) as err:
            _build(spec, tmp_path / "out", tiny_mnist)
    finally:
        os.close(holder)
    assert str(err.value) == (
        f"--out {tmp_path / 'out'}: another l2compile build is writing it now (its "
        f"work folder {work} is locked); wait for that build to end"
    )
    assert work.is_dir()  # the other build's folder is left alone


@pytest.mark.unit
def test_resume_is_refused_for_multi_worker_training(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    spec = compiled(
        tmp_path,
        SMALL_SPEC.replace(
            "  seed: 7\n",
            "  seed: 7\n  backend: tensorflow\n  distribute: multi_worker\n",
        ),
    )
    with pytest.raises(BuildError, match=r"^--resume is not available with "):
        _build(spec, tmp_path / "out", tiny_mnist, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "small.yaml"]


@pytest.mark.build
def test_resume_refuses_saved_variables_that_do_not_fit_the_model(
    tmp_path: Path, tiny_mnist: Path, interrupted_work: Path
) -> None:
    work = _interrupted(tmp_path, interrupted_work)
    state = json.loads((work / "resume" / "state.json").read_text())
    assert state["variables"][:3] == [
        "small_mlp/dense_1/kernel",
        "small_mlp/dense_1/bias",
        "seed_generator/seed_generator_state",
    ]
    state["variables"][2] = "another/variable"
    (work / "resume" / "state.json").write_text(json.dumps(state))
    spec = compiled(tmp_path, THREE_EPOCHS)
    with pytest.raises(BuildError) as err:
        _build(spec, tmp_path / "out", tiny_mnist, resume=True)
    assert str(err.value) == (
        f"--resume: the state saved in {work / 'resume'} does not fit this model: "
        "its variable 3 is another/variable, the model's is "
        "seed_generator/seed_generator_state. Build without --resume to start over"
    )


@pytest.mark.build
def test_a_build_interrupted_after_training_resumes_without_training_again(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2compile.formats import keras as keras_file

    spec = compiled(tmp_path, THREE_EPOCHS + KERAS_ONLY)
    full = _build(spec, tmp_path / "full", tiny_mnist).metrics

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(keras_file, "save_keras", interrupted)
        with pytest.raises(Interrupted) as stopped:
            _build(spec, out, tiny_mnist)
    assert (stopped.value.epoch, stopped.value.epochs) == (3, 3)

    messages: list[str] = []
    again = _build(spec, out, tiny_mnist, resume=True, log=messages.append).metrics
    assert "resuming after epoch 3 of 3" in messages
    assert again["resumed_after_epoch"] == 3
    assert again["history"] == full["history"]
    assert again["history_split"] == full["history_split"]
    assert abs(again["test_loss"] - full["test_loss"]) <= 1e-4
    assert (out / "model.keras").is_file()


@pytest.mark.build
@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("add evil", "history holds 'evil', which this training does not log"),
        ("drop val_loss", "history lacks 'val_loss', which this training logs"),
    ],
)
def test_resume_refuses_a_history_of_other_values_than_this_training_logs(
    tmp_path: Path,
    tiny_mnist: Path,
    interrupted_work: Path,
    change: str,
    problem: str,
) -> None:
    work = _interrupted(tmp_path, interrupted_work)
    state = json.loads((work / "resume" / "state.json").read_text())
    action, name = change.split()
    if action == "add":
        state["history"][name] = [1.0]
    else:
        del state["history"][name]
    (work / "resume" / "state.json").write_text(json.dumps(state))
    spec = compiled(tmp_path, THREE_EPOCHS)
    with pytest.raises(BuildError) as err:
        _build(spec, tmp_path / "out", tiny_mnist, resume=True)
    assert str(err.value) == (
        f"--resume: the saved state in {work / 'resume'} cannot be read: "
        f"state.json: {problem}. Build without --resume to start over"
    )
    assert not (tmp_path / "out").exists()


SCHEDULED = """\
name: scheduled
input: {shape: [20]}
l2: 0.001
layers:
  - {type: dense, units: 64, activation: relu}
  - {type: dense, units: 3, activation: softmax}
train:
  recipe: npz
  data: data.npz
  num_classes: 3
  epochs: 10
  batch_size: 16
  validation: 0.2
  optimizer:
    learning_rate: {schedule: cosine, initial: 0.05, warmup_epochs: 1}
  early_stopping: {monitor: val_loss, patience: 3}
export: {formats: [keras]}
"""


@pytest.mark.build
def test_a_build_with_a_schedule_and_early_stopping_resumes_to_the_same_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random labels: the validation loss is best early, and training stops
    `patience` epochs later, ending with the best epoch's weights. A build
    stopped in between (early stopping's count half done, its best weights
    held) and resumed stops at the same epoch with the same weights; the
    schedule goes on from the optimizer's restored step count."""
    from l2compile.generate import compile_spec

    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "data.npz",
        x_train=rng.normal(size=(400, 20)).astype("float32"),
        y_train=rng.integers(0, 3, 400),
        x_test=rng.normal(size=(100, 20)).astype("float32"),
        y_test=rng.integers(0, 3, 100),
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(SCHEDULED)
    compiled = compile_spec(spec)
    assert not isinstance(compiled, list), [str(e) for e in compiled]

    def run(out: Path, **options: Any) -> dict[str, Any]:
        result = builder.build(
            compiled.plan, compiled.code, out, log=lambda m: None, **options
        )
        return result.metrics

    full = run(tmp_path / "full")
    trained = full["epochs_trained"]
    assert 3 < trained < 10  # it stopped early
    stopped = full["early_stopping"]
    assert stopped["stopped_after_epoch"] == trained
    assert stopped["weights_of_epoch"] == stopped["best_epoch"] < trained
    # The validation scores are the kept epoch's, not the last one's.
    kept = full["history"]["val_loss"][stopped["best_epoch"] - 1]
    assert full["validation"]["scores"]["loss"] == kept
    # A run too short for the warmup is refused before it trains.
    with pytest.raises(BuildError, match="warmup takes 1 epochs"):
        run(tmp_path / "short", epochs=1)
    for stop in (2, trained - 1):  # early stopping's count begun, and nearly done
        out = tmp_path / f"out{stop}"
        with monkeypatch.context() as patch:
            patch.setattr(callbacks, "penalty_recorder", StopAt(stop))
            with pytest.raises(Interrupted):
                run(out)
        again = run(out, resume=True)
        assert again["resumed_after_epoch"] == stop
        assert again["epochs_trained"] == trained
        assert again["history"]["val_loss"] == pytest.approx(
            full["history"]["val_loss"], abs=1e-5
        )
        assert again["test_loss"] == pytest.approx(full["test_loss"], abs=1e-5)
        assert again["early_stopping"] == stopped
