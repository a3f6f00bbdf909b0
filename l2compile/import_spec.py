"""The spec text an import writes: layers, l2, task, training fields.

What the file decides (the layers, their wiring and arguments, the
regularizers, the optimizer and loss) is written as the spec's fields. What
it cannot know (the data, and how long it trained) is a placeholder that
passes `validate`, under a comment that marks it as the part to fill in.
Nothing of the file's text is written but values the spec validated, and
names made safe: comments hold only ASCII, quoted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import yaml

from l2compile.importing import (
    BIAS_REGULARIZERS,
    NORM_REGULARIZERS,
    Imported,
    ModelGraph,
    quoted,
)
from l2compile.layers import KINDS
from l2compile.layers.base import INPUT
from l2compile.spec import Spec
from l2compile.tasks import LOSSES, TASKS

T = TypeVar("T")

#: The placeholder data part, and the training length the file cannot give.
PLACEHOLDER_DATA = {"recipe": "npz", "data": "data.npz"}
PLACEHOLDER_EPOCHS = 10
PLACEHOLDER_BATCH = 32
_OPTIMIZERS = {"Adam": "adam", "AdamW": "adam", "SGD": "sgd", "RMSprop": "rmsprop"}
#: The task a spec has unless it names one.
_DEFAULT_TASK = Spec.model_fields["task"].default


def _flow(value: Any) -> str:
    """A value as one line of YAML, quoted where it needs to be."""
    text = yaml.safe_dump(
        value,
        default_flow_style=True,
        width=1_000_000,
        allow_unicode=False,
        sort_keys=False,
    )
    return text.strip().removesuffix("...").strip()


@dataclass
class Draft:
    """The spec as data, before it is text; `notes` become comments."""

    name: str
    description: str
    input_shape: list[int]
    layers: list[dict[str, Any]]
    l2: float = 0.0
    l2_bias: bool = False
    l2_norm: bool = False
    task: str = _DEFAULT_TASK
    train: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    train_notes: list[str] = field(default_factory=list)
    #: The file's loss, as its compile config names it (None: none).
    loss: object = None
    #: The placeholder data part, and whether the spec says how many labels
    #: the output has (a table's label column says it itself).
    data_part: dict[str, Any] = field(default_factory=lambda: dict(PLACEHOLDER_DATA))
    says_labels: bool = True

    def data(self) -> dict[str, Any]:
        """The spec as a mapping (what validate reads)."""
        return {
            "name": self.name,
            "description": self.description,
            **({"task": self.task} if self.task != _DEFAULT_TASK else {}),
            "input": {"shape": self.input_shape},
            "l2": self.l2,
            **({"l2_bias": True} if self.l2_bias else {}),
            **({"l2_norm": True} if self.l2_norm else {}),
            "layers": self.layers,
            "train": self.train,
        }

    def text(self, header: list[str]) -> str:
        """The spec file: the header and notes as comments, then the fields."""
        lines = [f"# {line}" for line in header + self.notes]
        data = self.data()
        for key in ("name", "description", "task", "input", "l2", "l2_bias", "l2_norm"):
            if key in data:
                lines.append(f"{key}: {_flow(data[key])}")
        lines.append("layers:")
        lines += [f"  - {_flow(layer)}" for layer in self.layers]
        lines.append("train:")
        lines.append(
            "  # The data: a placeholder to fill in, as the import cannot know"
        )
        lines.append("  # it (docs/data.md lists the recipes and their fields).")
        if len(self.input_shape) == 3 and self.input_shape[-1] == 3:
            lines.append(
                "  # Photos, a folder per class: recipe: image_folder, data: photos/"
            )
        for key, value in self.train.items():
            if key == "optimizer":
                lines += [f"  # {note}" for note in self.train_notes]
            if key == "epochs":
                lines.append("  # How long to train: the file does not say; set these.")
            lines.append(f"  {key}: {_flow(value)}")
        return "\n".join(lines) + "\n"


def layer_entries(layers: list[Imported]) -> list[dict[str, Any]]:
    """Each layer as the spec writes it: its type, its name and inputs where
    they are not what the spec would give anyway, and the fields that are
    not their defaults."""
    counts: Counter[str] = Counter()
    automatic = []
    for layer in layers:
        counts[layer.fields["type"]] += 1
        automatic.append(f"{layer.fields['type']}_{counts[layer.fields['type']]}")
    given = {
        layer.name
        for layer, auto in zip(layers, automatic, strict=True)
        if layer.name != auto
    }
    # A given name that is another layer's automatic name would take it from
    # that layer (the planner refuses it in a graph): then every layer is named.
    name_all = bool(given & set(automatic))
    entries = []
    previous = INPUT
    for layer, auto in zip(layers, automatic, strict=True):
        kind = KINDS[layer.fields["type"]]
        valid = kind.model_validate(layer.fields)
        fields = valid.model_dump(
            mode="json",
            by_alias=True,
            exclude_defaults=True,
            exclude={"type", "name", "inputs", "l2"},
        )
        entry: dict[str, Any] = {"type": layer.fields["type"]}
        if name_all or layer.name != auto:
            entry["name"] = layer.name
        if layer.inputs != [previous]:
            entry["inputs"] = list(layer.inputs)
        entries.append({**entry, **fields})
        previous = layer.name
    return entries


def regularization(
    layers: list[Imported], l2: float | None
) -> tuple[float, bool, bool]:
    """The spec's l2, l2_bias and l2_norm from the file's regularizers (l2:
    the one --l2 gives, for every layer)."""
    found = Counter(
        max(layer.coefficients.values()) for layer in layers if layer.coefficients
    )
    if l2 is None:
        l2 = found.most_common(1)[0][0] if found else 0.0
    bias = any(a in BIAS_REGULARIZERS for x in layers for a in x.coefficients)
    norm = any(a in NORM_REGULARIZERS for x in layers for a in x.coefficients)
    return l2, bias, norm


def overrides(
    layers: list[Imported],
    entries: list[dict[str, Any]],
    planned: Mapping[str, float],
) -> bool:
    """Give each layer whose planned coefficient is not the file's its own
    `l2` (0 where the file has none); whether any was given. `planned`: each
    layer's largest coefficient in the plan of the entries as they are."""
    changed = False
    for layer, entry in zip(layers, entries, strict=True):
        theirs = max(layer.coefficients.values(), default=0.0)
        if planned.get(layer.name, 0.0) != theirs and "l2" not in entry:
            entry["l2"] = theirs
            changed = True
    return changed


def _learning_rate(config: Mapping[str, Any]) -> float | None:
    """The optimizer's constant rate, as written (Keras keeps it in float32:
    0.002 is saved as 0.0020000000949949026)."""
    rate = config.get("learning_rate")
    if not isinstance(rate, int | float) or not rate > 0:
        return None
    return float(str(np.float32(rate)))


def training(
    graph: ModelGraph,
    defaults: Callable[[str], dict[str, Any]],
    data_part: Mapping[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """The train section (data placeholder, optimizer, loss, length), and
    notes on what of the file's compile config it could not keep.
    `defaults(cls)`: a Keras optimizer's config as constructed."""
    train: dict[str, Any] = dict(data_part)
    notes: list[str] = []
    compiled = graph.compile_config or {}
    optimizer = compiled.get("optimizer")
    if isinstance(optimizer, dict):
        cls = str(optimizer.get("class_name"))
        config = optimizer.get("config") or {}
        if cls in _OPTIMIZERS:
            chosen: dict[str, Any] = {"type": _OPTIMIZERS[cls]}
            rate = _learning_rate(config)
            if rate is not None:
                chosen["learning_rate"] = rate
            else:
                notes.append("The file's learning rate is a schedule: set one.")
            decay = config.get("weight_decay")
            if cls == "AdamW" and isinstance(decay, int | float) and decay > 0:
                chosen["weight_decay"] = float(decay)
                notes.append(
                    "The file's AdamW decays every weight; the spec's weight_decay "
                    "decays the"
                )
                notes.append("weights the l2 rules reach (docs/spec.md: weight decay).")
            train["optimizer"] = chosen
            notes += _optimizer_notes(cls, config, defaults(cls))
        else:
            notes.append(
                f"The file's optimizer {quoted(cls, 40)} is not one the spec has."
            )
    loss = compiled.get("loss")
    if isinstance(loss, str) and loss in LOSSES:
        train["loss"] = loss
    elif loss is not None:
        notes.append(f"The file's loss {quoted(loss, 60)} is not one the spec has.")
    if "optimizer" not in train and not isinstance(optimizer, dict):
        notes.append("The file was saved without compile(): the optimizer is a choice.")
    train.setdefault("optimizer", {"type": "adam"})
    train["epochs"] = PLACEHOLDER_EPOCHS
    train["batch_size"] = PLACEHOLDER_BATCH
    return train, notes


#: Optimizer arguments the spec sets itself (or Keras' bookkeeping).
_OWN_ARGUMENTS = frozenset({"name", "learning_rate", "weight_decay"})


def _optimizer_notes(
    cls: str, config: Mapping[str, Any], default: Mapping[str, Any]
) -> list[str]:
    """A note for each optimizer argument the file sets that the spec lacks."""
    kept = [
        f"{key}={json.dumps(config[key])}"
        for key in sorted(config)
        if key not in _OWN_ARGUMENTS and key in default and config[key] != default[key]
    ]
    if not kept:
        return []
    return [
        f"The file's {quoted(cls, 40)} also sets {', '.join(kept)}"[:200],
        "which the spec cannot: it trains with Keras' defaults for them.",
    ]


def task_candidates(activation: str | None, loss: object) -> tuple[str, ...]:
    """The tasks whose output ends with `activation` (a linear one's where
    none does), the ones that take the file's `loss` first."""
    fitting = [name for name, task in TASKS.items() if task.activation == activation]
    if not fitting:
        fitting = [name for name, task in TASKS.items() if task.activation == "linear"]
    fitting.sort(key=lambda name: loss not in TASKS[name].losses)
    return tuple(fitting)


def first_planned(
    draft: Draft,
    tasks: tuple[str, ...],
    units: int,
    plan: Callable[[Draft], T],
) -> T:
    """The plan of the first task that plans (else the first task's errors)."""
    first: T | None = None
    base = dict(draft.train)
    for task in (*tasks, tasks[0]):
        draft.task = task
        labels = TASKS[task].spec_labels(units) if draft.says_labels else {}
        draft.train = {**draft.data_part, **labels, **base}
        result = plan(draft)
        if not isinstance(result, list):
            return result
        first = result if first is None else first
    assert first is not None, "no task to plan with"
    return first
