"""Learning-rate schedules: a spec's `train.optimizer.learning_rate` schedule
as the Keras LearningRateSchedule the generated `learning_rate()` returns.

Keras schedules count optimizer steps (batches), and the spec counts epochs,
so the generated function takes the number of batches in an epoch and the
epochs of the run. Resuming a build restores the optimizer's step count with
its other variables, so a resumed schedule goes on where it stopped.
"""

from __future__ import annotations

from l2compile.layers.base import py_float
from l2compile.nodes import SchedulePlan
from l2compile.spec import ScheduleSpec


def plan_schedule(spec: ScheduleSpec) -> SchedulePlan | None:
    """The schedule's plan (None: a constant rate, LEARNING_RATE)."""
    if spec.schedule == "constant":
        return None
    if spec.schedule == "step":
        return SchedulePlan(
            kind="step",
            constants=(
                ("DROP", py_float(spec.drop), "what each drop multiplies the rate by"),
                ("DROP_EVERY", repr(spec.every_epochs), "epochs between drops"),
            ),
            docstring="LEARNING_RATE, multiplied by DROP every DROP_EVERY epochs.",
            cls="ExponentialDecay",
            args=(
                "LEARNING_RATE",
                "decay_steps=DROP_EVERY * steps_per_epoch",
                "decay_rate=DROP",
                "staircase=True",
            ),
        )
    constants = [
        ("ALPHA", py_float(spec.alpha), "the final rate, as a share of LEARNING_RATE")
    ]
    if not spec.warmup_epochs:
        return SchedulePlan(
            kind="cosine",
            constants=tuple(constants),
            docstring="A cosine decay from LEARNING_RATE to ALPHA times it, over "
            "the run.",
            cls="CosineDecay",
            args=(
                "LEARNING_RATE",
                "decay_steps=epochs * steps_per_epoch",
                "alpha=ALPHA",
            ),
        )
    constants.insert(
        0, ("WARMUP_EPOCHS", repr(spec.warmup_epochs), "epochs the rate rises over")
    )
    return SchedulePlan(
        kind="cosine",
        constants=tuple(constants),
        docstring="A linear rise from 0 to LEARNING_RATE over WARMUP_EPOCHS, then "
        "a cosine\n    decay to ALPHA times it over the other epochs.",
        cls="CosineDecay",
        warmup_epochs=spec.warmup_epochs,
        args=(
            "0.0",
            "decay_steps=(epochs - WARMUP_EPOCHS) * steps_per_epoch",
            "alpha=ALPHA",
            "warmup_target=LEARNING_RATE",
            "warmup_steps=WARMUP_EPOCHS * steps_per_epoch",
        ),
    )
