"""Scoring, written once for the build, the TFLite checks and eval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from l2compile import scoring
from l2compile.tasks import LOSSES


@pytest.mark.unit
def test_accuracy_counts_the_most_probable_class() -> None:
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]])
    assert scoring.accuracy(probabilities, np.array([1, 1, 1])) == 2 / 3


@pytest.mark.build
def test_data_loss_is_keras_sparse_categorical_crossentropy() -> None:
    import keras

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 10)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 10, size=50)
    expected = float(
        np.mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
    )
    assert math.isclose(
        scoring.sparse_categorical_crossentropy(probabilities, labels),
        expected,
        rel_tol=1e-5,
    )


@pytest.mark.unit
def test_a_confident_mistake_costs_a_finite_loss() -> None:
    loss = scoring.sparse_categorical_crossentropy(
        np.array([[1.0, 0.0]]), np.array([1])
    )
    assert loss == -math.log(scoring.EPSILON)


@pytest.mark.unit
def test_predictions_come_in_chunks_and_in_order() -> None:
    sizes: list[int] = []

    def model(x: np.ndarray) -> np.ndarray:
        sizes.append(len(x))
        return x * 2

    x = np.arange(2 * scoring.CHUNK + 5, dtype=np.float32).reshape(-1, 1)
    out = scoring.predict(model, x)
    assert sizes == [scoring.CHUNK, scoring.CHUNK, 5]
    np.testing.assert_array_equal(out, x * 2)
    assert scoring.labels_of(np.array([[3], [1]])).tolist() == [3, 1]


def _probabilities(n: int, k: int, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.mark.build
@pytest.mark.parametrize(
    ("loss", "smoothing"),
    [
        ("categorical_crossentropy", 0.0),
        ("categorical_crossentropy", 0.2),
        ("binary_crossentropy", 0.0),
        ("binary_crossentropy", 0.1),
        ("binary_focal_crossentropy", 0.0),
        ("binary_focal_crossentropy", 0.1),
        ("mse", 0.0),
        ("mae", 0.0),
        ("huber", 0.0),
    ],
)
def test_every_loss_is_computed_as_keras_computes_it(
    loss: str, smoothing: float
) -> None:
    import keras

    rng = np.random.default_rng(1)
    if loss == "categorical_crossentropy":
        outputs = _probabilities(40, 4)
        targets = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=40)]
    elif loss.startswith("binary"):
        outputs = 1 / (1 + np.exp(-rng.normal(size=(40, 3)).astype(np.float32)))
        targets = rng.integers(0, 2, size=(40, 3)).astype(np.float32)
    else:
        outputs = rng.normal(size=(40, 2)).astype(np.float32) * 3
        targets = rng.normal(size=(40, 2)).astype(np.float32) * 3
    options = {"label_smoothing": smoothing} if smoothing else {}
    keras_loss = {
        "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
        "binary_crossentropy": keras.losses.BinaryCrossentropy,
        "binary_focal_crossentropy": keras.losses.BinaryFocalCrossentropy,
        "mse": keras.losses.MeanSquaredError,
        "mae": keras.losses.MeanAbsoluteError,
        "huber": keras.losses.Huber,
    }[loss](**options)
    expected = float(keras_loss(targets, outputs))
    score = LOSSES[loss].score
    assert score(outputs, targets, smoothing) == pytest.approx(expected, rel=1e-5)


@pytest.mark.unit
def test_auc_is_the_exact_area_under_the_roc_curve() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, size=(200, 3))
    scores = np.clip(truth * 0.3 + rng.random((200, 3)), 0, 1).round(2)  # ties
    assert scoring.roc_auc(scores[:, 0], truth[:, 0]) == pytest.approx(
        roc_auc_score(truth[:, 0], scores[:, 0])
    )
    assert scoring.auc(scores, truth, per_label=True) == pytest.approx(
        roc_auc_score(truth, scores, average="macro")
    )
    assert scoring.auc(scores, truth, per_label=False) == pytest.approx(
        roc_auc_score(truth.ravel(), scores.ravel())
    )


@pytest.mark.unit
def test_auc_of_one_class_only_is_undefined() -> None:
    assert np.isnan(scoring.roc_auc(np.array([0.2, 0.9]), np.array([1, 1])))
    # Per label, a label of one class is left out of the mean; all: undefined.
    p = np.array([[0.2, 0.1], [0.9, 0.8], [0.4, 0.3]])
    assert scoring.auc(p, np.array([[0, 1], [1, 1], [0, 1]]), per_label=True) == 1.0
    assert np.isnan(scoring.auc(p, np.ones((3, 2)), per_label=True))


@pytest.mark.build
def test_top_k_precision_and_recall_count_as_keras_does() -> None:
    import keras

    probabilities = _probabilities(60, 5, seed=3)
    labels = np.random.default_rng(4).integers(0, 5, size=60)
    top = keras.metrics.SparseTopKCategoricalAccuracy(k=2)
    top.update_state(labels, probabilities)
    assert scoring.top_k_accuracy(probabilities, labels, 2) == pytest.approx(
        float(top.result())
    )
    p = probabilities[:, :1]
    truth = (labels[:, None] == 0).astype(np.float32)
    for mine, theirs in (
        (scoring.precision, keras.metrics.Precision()),
        (scoring.recall, keras.metrics.Recall()),
        (scoring.binary_accuracy, keras.metrics.BinaryAccuracy()),
    ):
        theirs.update_state(truth, p)
        assert mine(p, truth) == pytest.approx(float(theirs.result()), abs=1e-6)


@pytest.mark.unit
def test_labels_of_reads_integers_and_one_hot_rows() -> None:
    assert scoring.labels_of(np.array([[0, 0, 1], [1, 0, 0]])).tolist() == [2, 0]
    assert scoring.labels_of(np.array([[1], [0]])).tolist() == [1, 0]


@pytest.mark.unit
def test_multilabel_parity_is_the_share_of_label_decisions_that_differ() -> None:
    from l2compile.tasks import Multilabel

    task = Multilabel("binary_crossentropy", ("auc",), 2, ("a", "b"))
    keras = np.array([[0.9, 0.1], [0.6, 0.4]])
    lite = np.array([[0.9, 0.6], [0.4, 0.4]])
    parity = task.compare(keras, lite, np.array([[1, 0], [1, 0]]))
    assert (parity.key, parity.difference) == ("label_disagreement", 0.5)
    assert parity.failure("m.tflite (int8)", 0.01, "") == (
        "m.tflite (int8) decides 0.5000 of the test split's labels (present or "
        "not) otherwise than the Keras model, more than the 0.01 allowed"
    )


@pytest.mark.unit
def test_regression_parity_is_the_largest_difference_over_the_targets_spread() -> None:
    from l2compile.tasks import Regression

    task = Regression("mse", ("mae",), 1, ("t",))
    targets = np.array([[0.0], [1.0], [2.0]])
    parity = task.compare(
        np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.1], [3.0]]), targets
    )
    assert parity.key == "relative_max_difference"
    assert parity.difference == pytest.approx(0.1 / np.std(targets))
