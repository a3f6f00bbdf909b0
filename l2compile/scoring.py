"""Scoring, written once: how a model's class probabilities are scored
against integer labels, and how a whole split is predicted in chunks.

The build (the Keras model's data loss), the TFLite checks and `l2compile
eval` (TFLite files and SavedModels, which hold no L2 penalty) all score
through these functions, by way of the plan's task (the classification task,
`l2compile.tasks.Classification`), so their figures are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

#: Predictions are made this many samples at a time.
CHUNK = 1000
#: A probability is clipped to at least this before its log is taken, as
#: Keras' cross-entropy does, so a confident mistake costs a finite loss.
EPSILON = 1e-7


def labels_of(y: Any) -> npt.NDArray[np.int64]:
    """Integer class labels, flat."""
    return np.asarray(y).reshape(-1).astype(np.int64)


def classes(probabilities: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Each sample's most probable class."""
    found: npt.NDArray[np.int64] = np.argmax(probabilities, axis=-1)
    return found.astype(np.int64, copy=False)


def accuracy(probabilities: npt.NDArray[Any], labels: npt.NDArray[np.int64]) -> float:
    """The share of samples whose most probable class is their label."""
    return float(np.mean(classes(probabilities) == labels))


def data_loss(probabilities: npt.NDArray[Any], labels: npt.NDArray[np.int64]) -> float:
    """Sparse categorical cross-entropy: the mean of -log p(label)."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, EPSILON, 1.0))))


def predict(
    model: Callable[[npt.NDArray[Any]], Any], x: npt.NDArray[Any]
) -> npt.NDArray[np.float32]:
    """`model` applied to `x` in chunks of CHUNK samples, as one array."""
    return np.concatenate(
        [
            np.asarray(model(x[start : start + CHUNK]), dtype=np.float32)
            for start in range(0, len(x), CHUNK)
        ]
    )
