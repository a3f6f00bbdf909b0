"""`l2compile import`, end to end: the spec is planned, the model it builds is
compared with the file's, and only then is anything written.

The comparison is the import's proof: the generated `build_model()` builds
the spec's model, and each of its layers must have the config of the file's
layer of that name (every argument, regularizers included), the same
weights, and the model the same parameter count. Anything that differs is an
argument the spec lacks, and the import stops, listing every one.

The file's model is loaded with `safe_mode=True` only once its config has
passed `l2compile.importing` (no Lambda, custom or unknown layer), so no code
of the file runs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2compile import interrupts
from l2compile.errors import SpecError
from l2compile.files import write_atomically
from l2compile.import_spec import (
    PLACEHOLDER_DATA,
    Draft,
    first_planned,
    layer_entries,
    overrides,
    regularization,
    task_candidates,
    training,
)
from l2compile.importing import (
    REGULARIZERS,
    Imported,
    ImportFailed,
    ModelGraph,
    Problem,
    quoted,
    read_model,
    spec_layers,
    spec_name,
)
from l2compile.layers import KINDS
from l2compile.nodes import ModelPlan
from l2compile.sources.csv import Csv

#: Config keys that are not the model's: its names and random seeds (the
#: spec's train.seed seeds a build), and Keras' bookkeeping.
_NOT_COMPARED = frozenset({"name", "seed", "shared_object_id"})


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote."""

    spec: Path
    weights: Path | None
    plan: ModelPlan


def _cleaned(value: Any) -> Any:
    """A config as it is compared: without names and seeds, and a dtype
    policy as its name."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy":
            return (value.get("config") or {}).get("name")
        config = value.get("config") or {}
        if value.get("class_name") == "L1L2" and not config.get("l1"):
            # L1L2(l1=0) is an L2 penalty.
            value = {**value, "class_name": "L2", "config": {"l2": config.get("l2")}}
        return {k: _cleaned(v) for k, v in value.items() if k not in _NOT_COMPARED}
    if isinstance(value, list | tuple):
        return [_cleaned(v) for v in value]
    return value


def _config(layer: Any) -> dict[str, Any]:
    from keras import saving

    serialized = saving.serialize_keras_object(layer)
    config = json.loads(json.dumps(serialized.get("config", {}), default=str))
    return dict(_cleaned(config))


def _application(layer: Any) -> Any:
    """The keras.applications model of a backbone layer (l2compile's is a
    Sequential of its Rescaling and the application)."""
    inner = [x for x in getattr(layer, "layers", []) if hasattr(x, "layers")]
    return inner[-1] if inner and len(getattr(layer, "layers", [])) == 2 else layer


def _weights(model: Any) -> list[tuple[str, tuple[int, ...], bool, float]]:
    return [
        (
            variable.path.rsplit("/", 1)[-1],
            tuple(variable.shape),
            bool(variable.trainable),
            float(getattr(variable.regularizer, "l2", 0.0) or 0.0),
        )
        for variable in model.weights
    ]


def _reference(layer: Imported) -> Any:
    """The Keras layer the spec's fields make (kinds name their fields as
    Keras names its arguments), regularized as the file's is."""
    import keras

    kind = KINDS[layer.fields["type"]]
    fields = {k: v for k, v in layer.fields.items() if k != "type"}
    regularizers = {
        arg: keras.regularizers.L2(value) for arg, value in layer.coefficients.items()
    }
    cls = getattr(keras.layers, kind.keras_class)
    made = cls(**fields, **regularizers, name=layer.name)
    # Built as the file's was: some arguments take their final form then
    # (a normalization's axis -1 becomes [-1]).
    shape = (layer.node.build_config or {}).get("input_shape")
    if shape is not None:
        # A shape it refuses leaves it unbuilt, compared as constructed.
        with contextlib.suppress(Exception):
            made.build(shape)
    return made


def argument_problems(layers: list[Imported]) -> list[Problem]:
    """Each argument of the file's layers that the spec's layer of the same
    fields would not have: what the spec lacks (an initializer, a
    constraint, a data format, a frozen layer, ...)."""
    problems = []
    for layer in layers:
        if KINDS[layer.fields["type"]].keras_model:
            continue  # known by its layers' names and places (read_application)
        ours = _config(_reference(layer))
        theirs = dict(_cleaned(layer.node.config))
        for key in sorted(set(ours) | set(theirs)):
            # Penalties are compared on the whole spec (compare), where the
            # spec's l2 and each layer's own are known.
            if key not in REGULARIZERS and ours.get(key) != theirs.get(key):
                problems.append(
                    _differs(layer.node.name, layer.node.keras_class, key, ours, theirs)
                )
    return problems


def _differs(
    layer: str, cls: str, key: str, ours: dict[str, Any], theirs: dict[str, Any]
) -> Problem:
    if key not in ours:
        why = f"{key}: an argument this Keras's {cls} does not have"
    else:
        why = (
            f"{key}={_shown(theirs.get(key))}, which the spec cannot give (its "
            f"layer has {_shown(ours.get(key))})"
        )
    if key in REGULARIZERS:
        why += (
            "; the spec has one coefficient per layer for its kernels (and the "
            "same for biases and normalization, or none): import --l2 VALUE "
            "sets the file's penalties aside"
        )
    return Problem(layer, cls, why)


def _shown(value: Any) -> str:
    """A config value in a message: a Keras object by its class name (a
    penalty with its coefficient)."""
    if isinstance(value, dict) and "class_name" in value:
        coefficient = (value.get("config") or {}).get("l2")
        shown = f"({coefficient:g})" if isinstance(coefficient, int | float) else ""
        return f"{value['class_name']}{shown}"
    return json.dumps(value)


def _compare_backbone(
    name: str, mine: Any, found: Any, *, own_l2: bool
) -> list[Problem]:
    """A problem where the backbone's application differs from the file's:
    in its weights, which train, or (unless own_l2) their penalties."""
    a, b = _weights(_application(mine)), _weights(_application(found))
    if own_l2:
        a = [(*w[:3], 0.0) for w in a]
        b = [(*w[:3], 0.0) for w in b]
    if a == b:
        return []
    return [
        Problem(
            name,
            type(found).__name__,
            "its weights (which train, which are penalized) are not what the "
            "spec's backbone builds",
        )
    ]


def compare(
    ours: Any, theirs: Any, plan: ModelPlan, names: dict[str, str], *, own_l2: bool
) -> list[Problem]:
    """Every difference between the spec's model and the file's, by layer
    (own_l2: the spec sets its own l2, so regularizers are not compared;
    `names`: each layer's name in the file, by its name in the spec)."""
    problems: list[Problem] = []
    for planned in plan.layers:
        if planned.augments:
            continue
        mine = ours.get_layer(planned.name)
        found = theirs.get_layer(names[planned.name])
        if planned.constructor is not None:  # a backbone, built by backbone()
            problems += _compare_backbone(planned.name, mine, found, own_l2=own_l2)
            continue
        cls = type(found).__name__
        a, b = _config(mine), _config(found)
        for key in sorted(set(a) | set(b)):
            if own_l2 and key in REGULARIZERS:
                continue
            if a.get(key) != b.get(key):
                problems.append(_differs(planned.name, cls, key, a, b))
    if not problems and ours.count_params() != theirs.count_params():
        problems.append(
            Problem(
                theirs.name,
                "model",
                f"{theirs.count_params():,} parameters, and the spec's model "
                f"has {ours.count_params():,}",
            )
        )
    return problems


def _plan_text(text: str, display: str, folder: Path) -> ModelPlan | list[SpecError]:
    from l2compile.plan import plan_spec
    from l2compile.source import parse_yaml
    from l2compile.spec import validate_document

    doc = parse_yaml(text, display)
    if isinstance(doc, list):
        return doc
    loaded = validate_document(doc)
    if isinstance(loaded, list):
        return loaded
    return plan_spec(loaded, folder)


def _refused(path: Path, errors: list[SpecError]) -> ImportFailed:
    lines = "; ".join(str(e) for e in errors[:5])
    return ImportFailed(path, f"the spec written from it does not validate: {lines}")


def _optimizer_defaults(cls: str) -> dict[str, Any]:
    """A Keras optimizer's config as constructed with no arguments."""
    import keras

    config: dict[str, Any] = getattr(keras.optimizers, cls)().get_config()
    return config


def _load(path: Path) -> Any:
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many kinds on a bad file
        raise ImportFailed(path, f"Keras cannot load it: {error}") from None


def _output(layers: list[Imported]) -> str | None:
    """The activation the model's output ends with (None: none said)."""
    for layer in reversed(layers):
        activation = layer.node.config.get("activation")
        if isinstance(activation, str):
            return activation
    return None


def _header(
    path: Path, graph: ModelGraph, plan: ModelPlan, l2: float | None
) -> list[str]:
    lines = [
        f"Written by `l2compile import` from {quoted(path.name)} (its model "
        f"{quoted(graph.name, 60)}:",
        f"{len(plan.layers)} layers, {plan.params:,} parameters). It plans to that "
        "model: the same",
        "layers, wiring, arguments and weights (checked when it was written).",
    ]
    if l2 is not None:
        lines.append(
            "l2 is import --l2's, on every layer: the file's regularizers are "
            "set aside."
        )
    for note in graph.notes:
        lines += textwrap.wrap(note, 76)
    return lines


def read_layers(
    path: Path, *, any_penalty: bool = False
) -> tuple[ModelGraph, list[Imported]]:
    """The file's model and its layers as spec layers, or ImportFailed with
    every layer the spec cannot express, in the file's order."""
    graph = read_model(path)
    found = spec_layers(graph, any_penalty=any_penalty)
    imported = [x for x in found if isinstance(x, Imported)]
    problems = [x for x in found if isinstance(x, Problem)]
    problems += argument_problems(imported)
    if problems:
        order = {node.name: i for i, node in enumerate(graph.nodes)}
        problems.sort(key=lambda p: order.get(p.layer, -1))
        raise ImportFailed(path, problems)
    if not imported:
        raise ImportFailed(path, "its model has no layers")
    if any(d is None for d in graph.input_shape):
        raise ImportFailed(
            path,
            f"its input's shape {list(graph.input_shape)} has sizes left open: a "
            "spec's input has a fixed shape",
        )
    return graph, imported


def _draft(
    path: Path,
    graph: ModelGraph,
    imported: list[Imported],
    name: str | None,
    l2: float | None,
) -> Draft:
    l2_, bias, norm = regularization(imported, l2)
    data_part = dict(Csv.placeholder if graph.reads_table else PLACEHOLDER_DATA)
    train, notes = training(graph, _optimizer_defaults, data_part)
    return Draft(
        data_part=data_part,
        says_labels=not graph.reads_table,
        loss=(graph.compile_config or {}).get("loss"),
        name=name or spec_name(graph.name),
        description=f"Imported from {quoted(path.name, 160)}",
        input_shape=[int(d) for d in graph.input_shape if d is not None],
        layers=layer_entries(imported),
        l2=l2_,
        l2_bias=bias,
        l2_norm=norm,
        train=train,
        train_notes=notes,
    )


def _planned(
    path: Path,
    draft: Draft,
    imported: list[Imported],
    outputs: int,
    plan: Callable[[Draft], ModelPlan | list[SpecError]],
    *,
    own_l2: bool,
) -> ModelPlan:
    """The draft's plan: its task the first that plans, and each layer whose
    coefficient the file sets apart its own l2."""
    tasks = task_candidates(_output(imported), draft.loss)
    result = first_planned(draft, tasks, outputs, plan)
    if isinstance(result, list):
        raise _refused(path, result)
    if own_l2:
        return result
    planned = {
        layer.name: max((w.l2 for w in layer.weights), default=0.0)
        for layer in result.layers
    }
    if overrides(imported, draft.layers, planned):
        result = plan(draft)
        if isinstance(result, list):
            raise _refused(path, result)
    return result


def import_model(
    path: Path,
    out: Path,
    *,
    name: str | None = None,
    l2: float | None = None,
    with_weights: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> ImportResult:
    """Write the spec of the model in `path` to `out` (and, with_weights,
    its weights beside it), or raise ImportFailed having written nothing.
    `log` is told each step, as it begins."""
    graph, imported = read_layers(path, any_penalty=l2 is not None)
    log(f"read {len(imported)} layers from {path}; loading it (safe_mode)")
    theirs = _load(path)
    draft = _draft(path, graph, imported, name, l2)
    outputs = int(theirs.compute_output_shape((1, *graph.input_shape))[-1])
    with tempfile.TemporaryDirectory(
        prefix=".l2compile-import-", dir=out.parent
    ) as tmp:
        folder = Path(tmp)

        def plan(d: Draft) -> ModelPlan | list[SpecError]:
            return _plan_text(d.text([]), str(out), folder)

        result = _planned(path, draft, imported, outputs, plan, own_l2=l2 is not None)
        log("building the spec's model to compare it with the file's")
        ours = _built(result, folder)
        names = {layer.name: layer.node.name for layer in imported}
        problems = compare(ours, theirs, result, names, own_l2=l2 is not None)
        if problems:
            raise ImportFailed(path, problems)
        weights = None
        if with_weights:
            weights = weights_beside(out)
            _copy_weights(ours, theirs, result, names)
            ours.save_weights(folder / weights.name)
            draft.train["initial_weights"] = weights.name
        text = draft.text(_header(path, graph, result, l2))
        final = _plan_text(text, str(out), folder)
        if isinstance(final, list):
            raise _refused(path, final)
        with interrupts.deferred():  # the spec and its weights, or neither
            if weights is not None:
                shutil.move(folder / weights.name, weights)
            write_atomically(out, text)
    return ImportResult(out, weights, final)


def weights_beside(spec: Path) -> Path:
    """Where --weights-from-model writes the weights: beside the spec."""
    return spec.with_name(f"{spec.name.split('.')[0]}.weights.h5")


def _built(plan: ModelPlan, folder: Path) -> Any:
    """The model the spec's generated build_model() builds (a table's, for
    numbers only: as wide as the file's encoded rows, the layers after its
    encoding are the same)."""
    from l2compile.contract import import_generated
    from l2compile.render import render_module

    module_path = folder / f"{plan.name}.py"
    module_path.write_text(render_module(plan))
    module = import_generated(module_path, f"import_{plan.name}")
    width = plan.input_shape[0]
    number = {"name": "x", "kind": "number", "fill": 0.0}
    return module.build_model(*([[number] * width] if plan.recipe.encodes else []))


def _copy_weights(
    ours: Any, theirs: Any, plan: ModelPlan, names: dict[str, str]
) -> None:
    """Give the spec's model the file's weights, layer by layer."""
    for planned in plan.layers:
        if planned.augments:
            continue
        mine = ours.get_layer(planned.name)
        found = theirs.get_layer(names[planned.name])
        if planned.type == "backbone":
            mine, found = _application(mine), _application(found)
        mine.set_weights(found.get_weights())
