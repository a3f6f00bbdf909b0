"""Results a user can trust: a sweep's trials share one data split, every
build scores a trivial baseline beside its model and says whether the model
learned, and classifiers are scored class by class."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from l2compile import measure
from l2compile import sweep as sweep_
from l2compile.cli import main
from l2compile.contract import import_generated
from l2compile.overrides import parse
from l2compile.tasks import Binary, Classification, Multilabel, Regression

from .conftest import SHAPES, SMALL_SPEC, make_image_folder, plan_text

# --- class by class -------------------------------------------------------------


def _classification(classes: int) -> Classification:
    names = tuple(f"c{i}" for i in range(classes))
    return Classification(
        "sparse_categorical_crossentropy", ("accuracy",), classes, names
    )


@pytest.mark.unit
def test_per_class_scores_agree_with_scikit_learn() -> None:
    """Precision, recall, F1, support, the confusion matrix, balanced accuracy
    and macro-F1, with a class the model never predicts and one the test
    split never holds."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    truth = rng.choice([0, 1, 2], size=300)  # class 3 never true
    outputs = rng.random((300, 4)).astype(np.float32)
    outputs[:, 1] = 0.0  # class 1 never predicted
    task = _classification(4)
    found = task.breakdown(outputs, truth, task.names)
    predicted = outputs.argmax(axis=1)
    labels = [0, 1, 2, 3]
    report = metrics.classification_report(
        truth, predicted, labels=labels, output_dict=True, zero_division=0
    )
    for i, name in enumerate(task.names):
        for key in ("precision", "recall", "f1"):
            assert found["per_class"][name][key] == pytest.approx(
                report[str(i)][key if key != "f1" else "f1-score"]
            )
        assert found["per_class"][name]["support"] == report[str(i)]["support"]
    assert (
        found["confusion"]["counts"]
        == metrics.confusion_matrix(truth, predicted, labels=labels).tolist()
    )
    assert found["balanced_accuracy"] == pytest.approx(
        metrics.recall_score(truth, predicted, labels=[0, 1, 2], average="macro")
    )
    # Macro-F1 over the classes true or predicted (3 never is), as
    # scikit-learn's default counts them.
    assert found["macro_f1"] == pytest.approx(
        metrics.f1_score(truth, predicted, average="macro", zero_division=0)
    )


@pytest.mark.unit
def test_binary_and_multilabel_scores_agree_with_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    binary = Binary("binary_crossentropy", ("accuracy",), 1, ("no", "yes"))
    truth = rng.integers(0, 2, size=200)
    p = rng.random((200, 1))
    found = binary.breakdown(p, truth, binary.names)
    predicted = (p[:, 0] > 0.5).astype(int)
    assert (
        found["confusion"]["counts"]
        == metrics.confusion_matrix(truth, predicted).tolist()
    )
    assert found["per_class"]["yes"]["recall"] == pytest.approx(
        metrics.recall_score(truth, predicted)
    )
    assert found["balanced_accuracy"] == pytest.approx(
        metrics.balanced_accuracy_score(truth, predicted)
    )
    tags = Multilabel("binary_crossentropy", ("binary_accuracy",), 3, ("a", "b", "c"))
    truth = rng.integers(0, 2, size=(200, 3))
    p = rng.random((200, 3))
    found = tags.breakdown(p, truth, tags.names)
    predicted = (p > 0.5).astype(int)
    assert found["confusion"]["per_label"] is True
    assert found["confusion"]["counts"] == (
        metrics.multilabel_confusion_matrix(truth, predicted).tolist()
    )
    assert found["macro_f1"] == pytest.approx(
        metrics.f1_score(truth, predicted, average="macro")
    )
    f1 = metrics.f1_score(truth, predicted, average=None)
    assert [found["per_class"][n]["f1"] for n in "abc"] == pytest.approx(list(f1))


@pytest.mark.unit
def test_regression_is_scored_target_by_target() -> None:
    task = Regression("mse", ("mae",), 2, ("price", "area"))
    y = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    outputs = y + np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 3.0]])
    found = task.breakdown(outputs, y, task.names)
    assert found["per_target"]["price"]["mae"] == pytest.approx(1.0)
    assert found["per_target"]["area"]["mae"] == pytest.approx(1.0)
    assert found["per_target"]["area"]["rmse"] == pytest.approx(np.sqrt(3.0))
    assert found["residuals"]["area"] == {
        "true": [10.0, 20.0, 30.0],
        "predicted": [10.0, 20.0, 33.0],
    }
    assert task.summary(outputs, y) == {}


# --- the trivial baseline ---------------------------------------------------------


@pytest.mark.unit
def test_the_baseline_gives_every_sample_the_training_splits_shares() -> None:
    task = _classification(3)
    train = np.array([0, 0, 0, 1, 2, 2])
    test = np.array([0, 1, 1, 2])
    found = task.baseline(train, test, task.names)
    # Always class 0: right on 1 of 4; its loss is the cross-entropy of the shares.
    assert found["accuracy"] == 0.25
    shares = np.array([3, 1, 2]) / 6
    assert found["loss"] == pytest.approx(-np.mean(np.log(shares[test])))
    assert found["balanced_accuracy"] == pytest.approx(1 / 3)
    _, says = task.trivial(train, task.names)
    assert says == (
        "the training split's most frequent class for every sample, 'c0', 3 of 6 "
        "samples"
    )


@pytest.mark.unit
def test_a_binary_baseline_ranks_nothing_and_a_regression_one_is_the_mean() -> None:
    binary = Binary("binary_crossentropy", ("accuracy", "auc"), 1, ("no", "yes"))
    found = binary.baseline(
        np.array([1, 1, 1, 0]), np.array([0, 1, 0, 0]), ("no", "yes")
    )
    # Always yes, at 0.75: right once in four; its F1 is 0 for no, 0.4 for yes.
    assert found == pytest.approx(
        {
            "loss": -(np.log(0.25) * 3 + np.log(0.75)) / 4,
            "accuracy": 0.25,
            "auc": 0.5,
            "balanced_accuracy": 0.5,
            "macro_f1": 0.2,
        }
    )
    regression = Regression("mse", ("mae", "rmse"), 1, ("y",))
    train = np.array([1.0, 2.0, 3.0, 10.0])  # mean 4, median 2.5
    test = np.array([2.5, 4.0])
    found = regression.baseline(train, test, ("y",))
    assert found["rmse"] == pytest.approx(np.sqrt((1.5**2 + 0.0) / 2))
    assert found["loss"] == pytest.approx(1.5**2 / 2)  # mse, from the mean
    assert found["mae"] == pytest.approx((0.0 + 1.5) / 2)  # from the median
    by_mae = Regression("mae", ("mae",), 1, ("y",))
    assert by_mae.baseline(train, test, ("y",))["loss"] == found["mae"]


def _plan(*metrics: str) -> Any:
    return SimpleNamespace(task=SimpleNamespace(metric_names=metrics, summary_names=()))


@pytest.mark.unit
def test_a_model_learned_only_where_it_beats_the_baseline_by_the_margin() -> None:
    plan = _plan("accuracy")
    base = {"accuracy": 1 / 3}
    found = measure.learning(plan, {"accuracy": 0.35}, base)
    assert found["learned"] is False
    assert found["needed"] == pytest.approx(1 / 3 + 0.05 * 2 / 3)
    assert found["comparison"] == (
        "val accuracy 0.3500 against the trivial baseline's 0.3333 (it needs at "
        "least 0.3667)"
    )
    assert measure.learning(plan, {"accuracy": 0.4}, base)["learned"] is True
    # An error must fall below the baseline's by the margin.
    errors = _plan("mae")
    assert measure.learning(errors, {"mae": 9.6}, {"mae": 10.0})["learned"] is False
    assert measure.learning(errors, {"mae": 9.4}, {"mae": 10.0})["learned"] is True
    # Any metric will do: a model that ranks well at the majority's accuracy.
    both = _plan("accuracy", "auc")
    found = measure.learning(
        both, {"accuracy": 0.9, "auc": 0.8}, {"accuracy": 0.9, "auc": 0.5}
    )
    assert (found["learned"], found["metric"]) == (True, "auc")
    assert measure.learning(plan, {}, base)["learned"] is None
    # Rare classes: accuracy below always-the-majority's, but every class found.
    balanced = SimpleNamespace(
        task=SimpleNamespace(
            metric_names=("accuracy",), summary_names=("balanced_accuracy",)
        )
    )
    found = measure.learning(
        balanced,
        {"accuracy": 0.90, "balanced_accuracy": 0.85},
        {"accuracy": 0.95, "balanced_accuracy": 0.5},
    )
    assert (found["learned"], found["metric"]) == (True, "balanced_accuracy")
    # A baseline that is already perfect leaves nothing to judge by.
    perfect = measure.learning(plan, {"accuracy": 1.0}, {"accuracy": 1.0})
    assert perfect["learned"] is None


# --- warnings and notes in the plan -------------------------------------------------

FROZEN_RANDOM = """\
name: frozen_random
input: {shape: [32, 32, 3]}
layers:
  - {type: backbone, model: mobilenet_v3_small, weights: none}
  - {type: global_average_pooling2d}
  - {type: dense, units: 3, activation: softmax}
train:
  recipe: image_folder
  data: photos
  validation: test
  epochs: 2
  batch_size: 16
  optimizer: {learning_rate: 0.01}
export: {formats: [keras]}
"""


@pytest.mark.unit
def test_validate_warns_of_a_frozen_backbone_with_random_weights(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(FROZEN_RANDOM, encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(spec)])
    assert result.exit_code == 0
    assert result.stderr == (
        f"{spec}:4:58: warning: layers[0].weights: a frozen backbone with weights: "
        "none stays random: only the layers after it train, on features of random "
        "kernels, and such a model learns little or nothing; set trainable: true, "
        "or use weights: imagenet or a weights file\n"
    )
    trained = FROZEN_RANDOM.replace("weights: none}", "weights: none, trainable: true}")
    assert plan_text(trained, tmp_path).warnings == ()


@pytest.mark.unit
def test_a_default_export_that_leaves_int8_out_says_why(tmp_path: Path) -> None:
    text = """\
name: table
task: binary
input: {shape: [4]}
layers:
  - {type: normalization}
  - {type: dense, units: 1, activation: sigmoid}
train: {recipe: npz, data: t.npz, epochs: 1, batch_size: 8}
"""
    tflite = plan_text(text, tmp_path).export_plans.get("tflite")
    assert tflite is not None and "int8" not in tflite.quantize
    assert tflite.left_out is not None
    assert tflite.left_out.startswith(
        "no int8 file: int8 cannot quantize layers[0] (normalization): full-integer"
    )
    chosen = text + "export: {tflite: {quantize: [none, float16]}}\n"
    assert plan_text(chosen, tmp_path).export_plans["tflite"].left_out is None  # type: ignore[union-attr]


@pytest.mark.unit
def test_the_split_has_its_own_seed_in_the_generated_module(tmp_path: Path) -> None:
    from l2compile.render import render_module

    held = SMALL_SPEC.replace("validation: test", "validation: 0.2")
    assert "SPLIT_SEED = SEED  #" in render_module(plan_text(held, tmp_path))
    pinned = held.replace("seed: 7", "seed: 7\n  split_seed: 42")
    plan = plan_text(pinned, tmp_path)
    assert (plan.seed, plan.split_seed) == (7, 42)
    assert "SPLIT_SEED = 42  #" in render_module(plan)
    # Nothing is split where the test split validates: no SPLIT_SEED.
    assert "SPLIT_SEED" not in render_module(plan_text(SMALL_SPEC, tmp_path))


# --- sweeps -------------------------------------------------------------------------


def _sweep_plan(tmp_path: Path, *sets: str, **options: Any) -> sweep_.SweepPlan:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL_SPEC, encoding="utf-8")
    planned = sweep_.plan_sweep(spec, [parse(s) for s in sets], **options)
    assert isinstance(planned, sweep_.SweepPlan), planned
    return planned


@pytest.mark.unit
def test_every_trial_of_a_sweep_keeps_the_specs_split_seed(tmp_path: Path) -> None:
    planned = _sweep_plan(tmp_path, "l2=0,0.01", "train.seed=1,2")
    assert {t.split_seed for t in planned.trials} == {7}  # the spec's seed
    assert all("train.split_seed=7" in t.sets for t in planned.trials)
    assert len({t.seed for t in planned.trials}) == 2
    assert any("the same samples (train.split_seed 7)" in n for n in planned.notes)
    # Asked for, the split seed is swept like any field.
    swept = _sweep_plan(tmp_path, "train.split_seed=3,5")
    assert [t.split_seed for t in swept.trials] == [3, 5]
    assert all(" ".join(t.sets).count("train.split_seed") == 1 for t in swept.trials)


@pytest.mark.unit
def test_a_sweep_chooses_by_any_validation_score_it_has(tmp_path: Path) -> None:
    planned = _sweep_plan(tmp_path, "l2=0,0.01", choose="val_balanced_accuracy")
    assert (planned.choose, planned.higher_is_better) == ("val_balanced_accuracy", True)
    assert (
        _sweep_plan(tmp_path, "l2=0,0.01", choose="val_loss").higher_is_better is False
    )
    rows = [
        {"trial": "000", "status": "ok", "val_balanced_accuracy": 0.6, "val_loss": 1.0},
        {"trial": "001", "status": "ok", "val_balanced_accuracy": 0.7, "val_loss": 2.0},
    ]
    assert sweep_.best(planned, rows)["trial"] == "001"  # type: ignore[index]
    with pytest.raises(sweep_.SweepError) as refused:
        _sweep_plan(tmp_path, "l2=0,0.01", choose="val_mae")
    assert str(refused.value) == (
        "--choose val_mae: this spec's trials can be chosen by val_loss, "
        "val_accuracy, val_balanced_accuracy, val_macro_f1"
    )


@pytest.mark.unit
def test_a_sweep_page_shows_the_chosen_score_beside_the_tasks_metric() -> None:
    from l2compile import pages

    row = {
        "trial": "000",
        "l2": 0,
        "status": "ok",
        "val_balanced_accuracy": 0.61,
        "val_accuracy": 0.72,
        "train_accuracy": 0.75,
        "gap": 0.03,
        "test_accuracy": 0.7,
        "learned": True,
    }
    results = {
        "spec": "spec.yaml",
        "fields": ["l2"],
        "chosen_by": "val_balanced_accuracy",
        "metric": "accuracy",
        "best": "000",
        "notes": [],
        "trials": [row],
    }
    page = pages.sweep_page(results, {}, "name: t\n")
    header = page[page.index("<thead>") : page.index("</thead>")]
    assert re.findall(r"<th>(.*?)</th>", header)[:10] == [
        "trial",
        "l2",
        "status",
        "val_balanced_accuracy",
        "val_accuracy",
        "train_accuracy",
        "gap",
        "test_accuracy",
        "learned",
        "test_loss",
    ]
    assert "chosen by val_balanced_accuracy" in page


def _write_table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    lines = ["size,color,kind"]
    for _ in range(rows):
        kind = int(rng.integers(0, 3))
        color = ("red", "green", "blue")[kind] if rng.random() < 0.9 else "grey"
        lines.append(f"{(10, 20, 30)[kind] + rng.normal(0, 3):.2f},{color},k{kind}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


TABLE_SPEC = """\
name: kinds
input: {shape: [6]}  # size, and color one-hot: 4 colors and an unknown slot
layers:
  - {type: normalization}
  - {type: dense, units: 8, activation: relu}
  - {type: dropout, rate: 0.2}
  - {type: dense, units: 3, activation: softmax}
train:
  recipe: csv
  data: kinds.csv
  label: kind
  test_split: 0.25
  validation: 0.2
  epochs: 1
  batch_size: 16
"""


@pytest.mark.build
def test_every_trial_of_a_sweep_trains_validates_and_tests_on_the_same_rows(
    tmp_path: Path,
) -> None:
    _write_table(tmp_path / "kinds.csv", 200)
    (tmp_path / "spec.yaml").write_text(TABLE_SPEC, encoding="utf-8")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "l2compile", "sweep", "spec.yaml"),
            *("--set", "l2=0,0.01", "--save-split", "--choose", "val_macro_f1"),
            *("--jobs", "2", "--out", "out"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    splits = [
        json.loads((out / "trials" / trial / "split.json").read_text())
        for trial in ("000", "001")
    ]
    for part in ("train", "validation", "test"):
        assert splits[0][part] == splits[1][part], part
    rows = sorted([*splits[0]["train"], *splits[0]["validation"], *splits[0]["test"]])
    assert rows == list(range(200))
    assert len(splits[0]["test"]) == 50 and len(splits[0]["validation"]) == 30
    # The ids are the rows the trial's own module trained, validated and
    # tested on: their first column, as the module reads them.
    with (tmp_path / "kinds.csv").open(encoding="utf-8") as f:
        sizes = np.array([float(r["size"]) for r in csv.DictReader(f)], np.float32)
    module = import_generated(out / "trials" / "000" / "kinds.py", "kinds_trial")
    (x_train, y_train), (x_test, _), _ = module.load_data(str(tmp_path / "kinds.csv"))
    (x_train, _), (x_val, _) = module.validation_split(x_train, y_train)
    for part, x in (("train", x_train), ("validation", x_val), ("test", x_test)):
        np.testing.assert_array_equal(x[:, 0], sizes[splits[0][part]])
    with (out / "results.csv").open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["split_seed"] for r in table] == ["0", "0"]
    assert table[0]["seed"] != table[1]["seed"]
    assert all(r["learned"] in ("True", "False") for r in table)
    assert "val_balanced_accuracy" in table[0] and "test_macro_f1" in table[0]
    assert "Best by val_macro_f1: trial" in result.stdout
    assert result.stdout.endswith(
        "\nResults in out/: results.csv, results.json, plots/ (l2.png), "
        "report.html, trials/ (each trial's build and log)\n"
    )


# --- a model that learned nothing -----------------------------------------------


def _photos(root: Path) -> None:
    """Training images with one class twice as common, a balanced test folder."""
    make_image_folder(root, channels=3, split=True, per_class=24, size=32)
    for name in SHAPES[1:]:
        for file in sorted((root / "train" / name).iterdir())[12:]:
            file.unlink()


@pytest.mark.build
def test_a_frozen_random_backbone_learns_nothing_and_the_build_says_so(
    tmp_path: Path,
) -> None:
    """Its features are near zero whatever the image: the head can only learn
    the classes' shares. With --require-learning the build fails (exit 3),
    publishing nothing and keeping its epochs; resumed without it, the build
    publishes with a warning and "learned": false."""
    _photos(tmp_path / "photos")
    (tmp_path / "spec.yaml").write_text(FROZEN_RANDOM, encoding="utf-8")

    def build(*options: str) -> Any:
        spec, out = str(tmp_path / "spec.yaml"), str(tmp_path / "out")
        return CliRunner().invoke(main, ["build", spec, "--out", out, *options])

    failed = build("--require-learning")
    assert failed.exit_code == 3, failed.stderr
    assert "warning: layers[0].weights: a frozen backbone" in failed.stderr
    assert "error: the model did not learn: val " in failed.stderr
    assert "the trivial baseline's 0.3333" in failed.stderr
    assert "nothing was published" in failed.stderr
    assert "epochs 1-2 of 2 are saved" in failed.stderr
    assert not (tmp_path / "out").exists()
    resumed = build("--resume", "--save-split")
    assert resumed.exit_code == 0, resumed.stderr
    assert "l2compile: warning: the model did not learn: val accuracy" in resumed.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["learned"] is False
    assert metrics["test_accuracy"] < metrics["learning"]["needed"]
    assert metrics["baseline"]["test"]["accuracy"] == pytest.approx(1 / 3)
    counts = metrics["test_confusion"]["counts"]
    assert [sum(row) for row in counts] == [12, 12, 12]
    assert "The model did not learn" in (tmp_path / "out" / "report.html").read_text()
    # Its split: the image files, relative to the folder; the test split validated.
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    photos = tmp_path / "photos"
    assert split["test"] == [
        p.relative_to(photos).as_posix() for p in sorted(photos.glob("test/*/*"))
    ]
    assert split["train"] == [
        p.relative_to(photos).as_posix() for p in sorted(photos.glob("train/*/*"))
    ]
    assert split["validation"] == "test"
