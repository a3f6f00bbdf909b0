"""What a build measures of its trained model, for metrics.json: the test
scores as Keras reports them (`test_<metric>` for each of the task's metrics),
the validation scores apart from them, the losses split into the data loss and the L2
penalty (on the test split and at every epoch), and the norms of the weights
the penalty reaches."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from l2compile import scoring
from l2compile.contract import GeneratedModule
from l2compile.nodes import TF_DISTRIBUTE, ModelPlan
from l2compile.tasks import METRIC_KINDS


def inference(plan: ModelPlan, model: Any) -> Callable[[Any], Any]:
    """The model in inference mode, for `scoring.predict`'s chunks: Keras'
    compiled predict step (an eager call dispatches every op on its own:
    10 s against 1 s for 64 images through a MobileNetV3Small on JAX); a
    strategy's model is called as it is."""
    if plan.distribute in TF_DISTRIBUTE:
        return lambda x: model(x, training=False)
    return model.predict_on_batch  # type: ignore[no-any-return]


def penalty(model: Any) -> float:
    """The L2 penalty of `model`'s weights as they are now."""
    return float(sum(float(loss) for loss in model.losses))


def scores(
    plan: ModelPlan,
    generated: GeneratedModule,
    model: Any,
    x_test: Any,
    y_test: Any,
    names: Sequence[str] = (),
) -> dict[str, Any]:
    """The test loss and accuracy, as Keras reports them (and the article
    prints them), the loss split into the data loss and the L2 penalty, and
    the scores class by class (or target by target) of the classes `names`."""
    if plan.distribute == "multi_worker":
        keras_scores = generated.evaluate(model, x_test, y_test)  # evaluate() fails
    elif plan.recipe.streamed:  # images read from their files
        keras_scores = model.evaluate(
            generated.Batches(x_test, y_test), verbose=0, return_dict=True
        )
    else:
        keras_scores = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    outputs = scoring.predict(inference(plan, model), x_test)
    targets = plan.task.targets(y_test)
    found: dict[str, float | None] = {"test_loss": float(keras_scores["loss"])}
    print("Test loss:", found["test_loss"])
    for metric, value in reported(plan, keras_scores, outputs, targets).items():
        found[f"test_{metric}"] = value
        why = f"undefined ({METRIC_KINDS[metric].undefined})"
        print(f"Test {metric}:", why if value is None else value)
    data_loss = plan.task.data_loss(outputs, targets)
    breakdown = plan.task.breakdown(outputs, targets, names or plan.task.names)
    return {
        **found,
        "test_loss_split": {"data_loss": data_loss, "l2_penalty": penalty(model)},
        **{f"test_{key}": value for key, value in breakdown.items()},
    }


def reported(
    plan: ModelPlan, keras_scores: dict[str, Any], outputs: Any, targets: Any
) -> dict[str, float | None]:
    """Each of the task's metrics as Keras scored it, where it is defined on
    these targets (`Metric.reported`: None where it is not; auc of one class)."""
    return {
        m: METRIC_KINDS[m].reported(plan.task, outputs, targets, float(keras_scores[m]))
        for m in plan.task.metric_names
        if m in keras_scores
    }


def summary(plan: ModelPlan, model: Any, x: Any, y: Any) -> dict[str, float]:
    """The task's summary scores (balanced accuracy, macro-F1) of `model` on
    a split, which Keras' metrics do not give."""
    if not plan.task.summary_names:
        return {}
    outputs = scoring.predict(inference(plan, model), x)
    return plan.task.summary(outputs, plan.task.targets(y))


#: The training samples the model is scored on in inference mode, and how
#: far below its score while training that score may fall before a warning.
INFERENCE_CHECK_SAMPLES = 2_000
INFERENCE_GAP = 0.2
#: The training samples the score before the batch-norm recomputation is
#: measured on: it is only reported (an accuracy near 0.5 is within about
#: 0.04 of the whole training data's, 19 times in 20).
BEFORE_RECOMPUTE_SAMPLES = 512


def inference_score(
    plan: ModelPlan,
    generated: GeneratedModule,
    model: Any,
    x: Any,
    y: Any,
    samples: int = INFERENCE_CHECK_SAMPLES,
) -> float | None:
    """The task's first metric of the model in inference mode (as it is
    scored, saved and exported) on up to `samples` of the training data
    (None: not measured: a metric where lower is better, or a distributed
    run)."""
    metric = plan.task.metric_names[0]
    if plan.distribute != "none" or not METRIC_KINDS[metric].higher_is_better:
        return None
    batches = generated.Batches(x, y)  # seeded, as epoch 0's order
    steps = min(len(batches), math.ceil(samples / plan.batch_size))
    found = model.evaluate(batches, steps=steps, verbose=0, return_dict=True)
    return float(found[metric])


def inference_gap(
    plan: ModelPlan, inference: float | None, history: dict[str, list[float]]
) -> str | None:
    """A warning, naming both numbers, where the model in inference mode
    scores far below what it scored on the training data while it trained:
    batch normalization's moving statistics that never caught up with the
    weights do that (None: no such gap)."""
    metric = plan.task.metric_names[0]
    if inference is None or not history.get(metric):
        return None
    training = history[metric][-1]
    if training - inference <= INFERENCE_GAP:
        return None
    return (
        f"warning: in inference mode the model scores {metric} {inference:.4f} "
        f"on training data, against {training:.4f} while it trained: its scores "
        "and exported files are of the inference mode"
        + (
            "; its batch normalization statistics are as training left them "
            "(train.batchnorm_statistics: recompute matches them to the weights)"
            if plan.trains_batch_norm and not plan.batchnorm_statistics
            else ""
        )
    )


def defined_validation(
    plan: ModelPlan, model: Any, x: Any, y: Any, scores: dict[str, Any]
) -> dict[str, Any]:
    """`scores` (the validation split's, from Keras' history) with each metric
    that can be undefined (auc) reported as on the test split."""
    kinds = [m for m in plan.task.metric_names if METRIC_KINDS[m].undefined]
    if not kinds or not all(isinstance(scores.get(m), float | int) for m in kinds):
        return scores
    outputs = scoring.predict(inference(plan, model), x)
    targets = plan.task.targets(y)
    found = reported(plan, {m: scores[m] for m in kinds}, outputs, targets)
    return {**scores, **found}


#: A model learned where one of its validation scores closes at least this
#: share of the gap between the trivial baseline's score and a perfect one
#: (for an error, such as mae: is at least this share below the baseline's).
MARGIN = 0.05


def baseline(
    plan: ModelPlan, y_train: Any, splits: dict[str, Any], names: Sequence[str]
) -> dict[str, Any]:
    """The trivial model's scores on each split (`splits`: name -> labels):
    it gives every sample the training split's class shares (regression: the
    mean of each target), whatever the input."""
    task = plan.task
    train = task.targets(y_train)
    _, predicts = task.trivial(train, names)
    found: dict[str, Any] = {"predicts": predicts}
    for split, y in splits.items():
        found[split] = task.baseline(train, task.targets(y), names)
    return found


def learning(
    plan: ModelPlan, validated: dict[str, Any], trivial: dict[str, Any]
) -> dict[str, Any]:
    """Whether the model beats the trivial baseline on the validation data by
    MARGIN in any of the task's metrics or summary scores (balanced accuracy
    judges a classifier of rare classes that accuracy would not); a score the
    baseline already has perfect judges nothing. `comparison` says how."""
    checks = []
    task = plan.task
    for name in (*task.metric_names, *task.summary_names):
        model, base = _finite(validated.get(name)), _finite(trivial.get(name))
        if model is None or base is None:
            continue  # undefined on this split (auc of one class)
        kind = METRIC_KINDS.get(name)
        higher = kind.higher_is_better if kind is not None else True
        if (1.0 - base if higher else base) <= 1e-12:
            continue  # nothing is left to beat it by
        needed = base + MARGIN * (1.0 - base) if higher else base * (1.0 - MARGIN)
        passed = model >= needed if higher else model <= needed
        checks.append((passed, name, model, base, needed, higher))
    if not checks:
        return {
            "learned": None,
            "comparison": "no validation score the trivial baseline leaves room "
            "to beat",
        }
    passed, name, model, base, needed, higher = next(
        (check for check in checks if check[0]), checks[0]
    )
    comparison = f"val {name} {model:.4f} against the trivial baseline's {base:.4f}"
    if not passed:
        comparison += f" (it needs at {'least' if higher else 'most'} {needed:.4f})"
    return {
        "learned": passed,
        "metric": name,
        "higher_is_better": higher,
        "val": model,
        "baseline_val": base,
        "needed": needed,
        "comparison": comparison,
    }


def _finite(value: Any) -> float | None:
    """A score as a float; None where it is missing or not finite."""
    if isinstance(value, float | int) and math.isfinite(value):
        return float(value)
    return None


def validation(
    plan: ModelPlan, history: dict[str, Any], samples: int, epoch: int | None = None
) -> dict[str, Any]:
    """What validated the model, and its scores there after the epoch whose
    weights it ends with (`epoch`, from 1; None: the last), kept apart from
    the test scores, which nothing was chosen on."""
    if plan.validation is None:
        data = "test: the test split, as the article does"
    else:
        data = f"{plan.validation:g} of the training split, seeded and never trained on"
    last = {
        key[len("val_") :]: values[-1 if epoch is None else epoch - 1]
        for key, values in history.items()
        if key.startswith("val_") and values
    }
    return {"data": data, "samples": samples, "scores": last}


def history_split(history: dict[str, Any], penalties: list[float]) -> dict[str, Any]:
    """Per epoch: the L2 penalty at the epoch's end and the losses without it.

    The validation split is exact (the weights are fixed while validating);
    the training loss is a mean over the epoch's batches, so its split uses
    the end-of-epoch penalty and is approximate.
    """
    split: dict[str, Any] = {"l2_penalty": penalties}
    for key, name in (("val_loss", "val_data_loss"), ("loss", "data_loss")):
        if key in history:
            split[name] = [
                float(v) - p for v, p in zip(history[key], penalties, strict=True)
            ]
    return split


def l2_norms(model: Any, plan: ModelPlan) -> dict[str, float]:
    """The L2 norm of the plan's `normed_weights` at the end of training."""
    wanted = plan.normed_weights
    return {
        v.path: float(np.linalg.norm(np.asarray(v, dtype=np.float64)))
        for v in model.weights
        if v.path in wanted
    }
