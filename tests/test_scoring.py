"""Scoring, written once for the build, the TFLite checks and eval."""

from __future__ import annotations

import math

import numpy as np

from l2compile import scoring


def test_accuracy_counts_the_most_probable_class() -> None:
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]])
    assert scoring.accuracy(probabilities, np.array([1, 1, 1])) == 2 / 3


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
        scoring.data_loss(probabilities, labels), expected, rel_tol=1e-5
    )


def test_a_confident_mistake_costs_a_finite_loss() -> None:
    loss = scoring.data_loss(np.array([[1.0, 0.0]]), np.array([1]))
    assert loss == -math.log(scoring.EPSILON)


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
