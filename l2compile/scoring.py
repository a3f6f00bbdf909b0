"""Scoring, written once: every loss and metric a task can name, computed
with numpy on a model's outputs and the preprocessed targets, and how a
whole split is predicted in chunks.

The build (the Keras model's data loss), the TFLite checks and `l2compile
eval` (TFLite files and SavedModels, which hold no L2 penalty) all score
through these functions, by way of the plan's task (`l2compile.tasks`), so
their figures are comparable. Each loss is computed as Keras computes it
(probabilities clipped to [EPSILON, 1 - EPSILON], the mean over a sample's
outputs, then over the samples); `auc` is the exact area under the ROC curve,
where Keras' `AUC` metric interpolates over 200 thresholds.

Targets are as the generated module's `preprocess` gives them: integer class
labels (n,), one-hot rows (n, N), or float rows (n, N).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

#: Predictions are made this many samples at a time.
CHUNK = 1000
#: A probability is clipped to [EPSILON, 1 - EPSILON] before its log is
#: taken, as Keras' cross-entropies do, so a confident mistake costs a finite loss.
EPSILON = 1e-7
#: A probability above this is a positive prediction (binary and multi-label).
THRESHOLD = 0.5

Array = npt.NDArray[Any]


def labels_of(y: Any) -> npt.NDArray[np.int64]:
    """Integer class labels, flat: as given, or the argmax of one-hot rows."""
    y = np.asarray(y)
    flat: npt.NDArray[np.int64] = (
        np.argmax(y, axis=-1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)
    ).astype(np.int64)
    return flat


def rows(y: Any) -> npt.NDArray[np.float64]:
    """Targets or outputs as rows of floats, (n, N)."""
    y = np.asarray(y, dtype=np.float64)
    out: npt.NDArray[np.float64] = y.reshape(len(y), -1)
    return out


def classes(probabilities: Array) -> npt.NDArray[np.int64]:
    """Each sample's most probable class."""
    found: npt.NDArray[np.int64] = np.argmax(probabilities, axis=-1)
    return found.astype(np.int64, copy=False)


def positives(probabilities: Array) -> npt.NDArray[np.int64]:
    """Each output above THRESHOLD is 1, else 0 (binary and multi-label)."""
    return (rows(probabilities) > THRESHOLD).astype(np.int64)


# --- losses ---------------------------------------------------------------------


def _clipped(p: Array) -> npt.NDArray[np.float64]:
    return np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1.0 - EPSILON)


def sparse_categorical_crossentropy(probabilities: Array, labels: Array) -> float:
    """The mean of -log p(label)."""
    labels = labels_of(labels)
    p = np.asarray(probabilities, dtype=np.float64)
    picked = p[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, EPSILON, 1.0))))


def categorical_crossentropy(
    probabilities: Array, onehot: Array, label_smoothing: float = 0.0
) -> float:
    """The mean of -Σ y log p over one-hot (smoothed) rows; Keras first scales
    each row of probabilities to sum to 1."""
    y = rows(onehot)
    y = y * (1.0 - label_smoothing) + label_smoothing / y.shape[1]
    p = rows(probabilities)
    p = p / np.sum(p, axis=-1, keepdims=True)
    return float(np.mean(-np.sum(y * np.log(_clipped(p)), axis=-1)))


def _binary_terms(p: Array, y: Array, label_smoothing: float) -> Any:
    y = rows(y)
    y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    p = _clipped(rows(p))
    return p, y, -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))


def binary_crossentropy(
    probabilities: Array, targets: Array, label_smoothing: float = 0.0
) -> float:
    """The mean over samples of the mean over outputs of -y log p - (1-y) log(1-p)."""
    _, _, terms = _binary_terms(probabilities, targets, label_smoothing)
    return float(np.mean(np.mean(terms, axis=-1)))


#: binary_focal_crossentropy's focusing parameter, as Keras' default.
FOCAL_GAMMA = 2.0


def binary_focal_crossentropy(
    probabilities: Array, targets: Array, label_smoothing: float = 0.0
) -> float:
    """Binary cross-entropy with each term scaled by (1 - p_t)^gamma, gamma = 2,
    where p_t is the probability given to the true value (Lin et al.; Keras'
    default, without class balancing)."""
    p, y, terms = _binary_terms(probabilities, targets, label_smoothing)
    p_true = y * p + (1.0 - y) * (1.0 - p)
    return float(np.mean(np.mean((1.0 - p_true) ** FOCAL_GAMMA * terms, axis=-1)))


def mean_squared_error(outputs: Array, targets: Array) -> float:
    return float(np.mean((rows(outputs) - rows(targets)) ** 2))


def mean_absolute_error(outputs: Array, targets: Array) -> float:
    return float(np.mean(np.abs(rows(outputs) - rows(targets))))


#: Huber's delta, as Keras' default: squared below it, linear above.
HUBER_DELTA = 1.0


def huber(outputs: Array, targets: Array) -> float:
    error = np.abs(rows(outputs) - rows(targets))
    quadratic = np.minimum(error, HUBER_DELTA)
    return float(np.mean(0.5 * quadratic**2 + HUBER_DELTA * (error - quadratic)))


# --- metrics --------------------------------------------------------------------


def accuracy(probabilities: Array, labels: Array) -> float:
    """The share of samples whose most probable class is their label."""
    return float(np.mean(classes(probabilities) == labels_of(labels)))


def top_k_accuracy(probabilities: Array, labels: Array, k: int) -> float:
    """The share of samples whose label is among their k most probable classes:
    fewer than k classes are more probable (a tie at the k-th place counts as
    a hit, as Keras' in_top_k counts it)."""
    p = np.asarray(probabilities)
    labels = labels_of(labels)
    own = p[np.arange(len(labels)), labels][:, None]
    return float(np.mean(np.sum(p > own, axis=-1) < k))


def binary_accuracy(probabilities: Array, targets: Array) -> float:
    """The share of outputs on the right side of THRESHOLD: for one output, the
    share of samples predicted right; for several, of labels."""
    return float(np.mean(positives(probabilities) == (rows(targets) > THRESHOLD)))


def _counts(probabilities: Array, targets: Array) -> tuple[int, int, int]:
    predicted = positives(probabilities).astype(bool)
    true = rows(targets) > THRESHOLD
    return (
        int(np.sum(predicted & true)),
        int(np.sum(predicted & ~true)),
        int(np.sum(~predicted & true)),
    )


def precision(probabilities: Array, targets: Array) -> float:
    """Of the outputs predicted positive, the share that are (0 where none is)."""
    hits, false_alarms, _ = _counts(probabilities, targets)
    return hits / (hits + false_alarms) if hits + false_alarms else 0.0


def recall(probabilities: Array, targets: Array) -> float:
    """Of the positive targets, the share predicted positive (0 where none is)."""
    hits, _, misses = _counts(probabilities, targets)
    return hits / (hits + misses) if hits + misses else 0.0


def roc_auc(scores: Array, truth: Array) -> float:
    """The area under the ROC curve of one output: the chance that a random
    positive scores above a random negative, ties counting half (NaN where
    one of the two is missing: it is undefined there, as in scikit-learn,
    where Keras' AUC metric gives 0)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth).reshape(-1) > THRESHOLD
    positive, negative = int(truth.sum()), int((~truth).sum())
    if not positive or not negative:
        return math.nan
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float(
        (ranks[truth].sum() - positive * (positive + 1) / 2.0) / (positive * negative)
    )


def every_label_defined(targets: Array) -> bool:
    """Whether each label (column) of `targets` holds both classes, so that
    its AUC is defined."""
    y = rows(targets) > THRESHOLD
    return bool(np.all(y.any(axis=0) & (~y).any(axis=0)))


def auc(probabilities: Array, targets: Array, per_label: bool) -> float:
    """ROC AUC: of each label, averaged (`per_label`, multi-label), or of every
    output at once (binary; classification's one-hot rows, as Keras' AUC).
    Per label, the labels it is undefined for are left out of the mean; NaN
    where it is undefined for all."""
    p, y = rows(probabilities), rows(targets)
    if not per_label:
        return roc_auc(p, y)
    found = [roc_auc(p[:, j], y[:, j]) for j in range(p.shape[1])]
    defined = [value for value in found if not math.isnan(value)]
    return float(np.mean(defined)) if defined else math.nan


def rmse(outputs: Array, targets: Array) -> float:
    return float(np.sqrt(mean_squared_error(outputs, targets)))


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


# --- per class ------------------------------------------------------------------


def confusion(truth: Array, predicted: Array, classes: int) -> npt.NDArray[np.int64]:
    """Counts of (true class, predicted class): row i, column j holds the
    samples of class i predicted as j (scikit-learn's confusion_matrix)."""
    truth = np.asarray(truth, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    counts = np.bincount(truth * classes + predicted, minlength=classes * classes)
    found: npt.NDArray[np.int64] = counts.reshape(classes, classes)
    return found


def _share(part: Array, whole: Array) -> npt.NDArray[np.float64]:
    """part / whole, 0 where whole is 0 (scikit-learn's zero_division=0)."""
    part = np.asarray(part, dtype=np.float64)
    whole = np.asarray(whole, dtype=np.float64)
    out: npt.NDArray[np.float64] = np.divide(
        part, whole, out=np.zeros_like(part), where=whole > 0
    )
    return out


def per_class(counts: Array) -> dict[str, npt.NDArray[Any]]:
    """Each class's precision, recall, F1 and support (its true samples) from
    a confusion matrix; 0 where a share is of nothing."""
    counts = np.asarray(counts)
    hits = np.diag(counts)
    support = counts.sum(axis=1)
    precision = _share(hits, counts.sum(axis=0))
    recall = _share(hits, support)
    f1 = _share(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def balanced_accuracy(counts: Array) -> float:
    """The mean recall over the classes that have true samples."""
    counts = np.asarray(counts)
    support = counts.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.diag(counts)[present] / support[present]))


def two_by_two(truth: Array, predicted: Array) -> npt.NDArray[np.int64]:
    """One label's confusion matrix, [[tn, fp], [fn, tp]]."""
    return confusion(
        np.asarray(truth).reshape(-1) > THRESHOLD,
        np.asarray(predicted).reshape(-1) > THRESHOLD,
        2,
    )
