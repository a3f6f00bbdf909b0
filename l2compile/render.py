"""Render: lay a `ModelPlan` out as Python source through jinja2 templates.

The templates get ready-made strings only. This module turns the plan into
the template's context (line layout, the docstring, the header) and never
looks at the spec.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from l2compile import __version__
from l2compile.layers.base import INPUT, py_str, shape_text
from l2compile.nodes import (
    TF_DISTRIBUTE,
    BackbonePlan,
    Constant,
    LayerPlan,
    ModelPlan,
)
from l2compile.sources import SOURCES

#: The module template, and the width its lines are kept to (ruff's default).
MODULE_TEMPLATE = "module.py.jinja"
LINE_LENGTH = 88
_LAYER_INDENT = 12


def templates_dir() -> Path:
    """The templates: inside the installed package, else the repository's."""
    here = Path(__file__).resolve().parent
    packaged = here / "templates"
    return packaged if packaged.is_dir() else here.parent / "templates"


def _outside_fragment(name: str) -> str | None:
    """The fragment of a source whose fragment lives outside l2compile's
    templates (Source.template_folder), by its template name."""
    for kind in SOURCES.values():
        folder = kind.template_folder
        if folder is not None and name == f"sources/{kind.name}.py.jinja":
            return (folder / f"{kind.name}.py.jinja").read_text(encoding="utf-8")
    return None


def environment(directory: Path | None = None) -> jinja2.Environment:
    """The jinja2 environment: strict about undefined names, no autoescape."""
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(directory or templates_dir()),
                jinja2.FunctionLoader(_outside_fragment),
            ]
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


@dataclass(frozen=True)
class _LayerView:
    keras_class: str
    args: tuple[str, ...]
    one_line: bool
    #: The whole constructor, where the layer is not built by `layers.<class>`.
    expression: str | None = None


def _fits(indent: int, line: str) -> bool:
    return indent + len(line) <= LINE_LENGTH


def _layer_view(layer: LayerPlan) -> _LayerView:
    if layer.constructor is not None:
        return _LayerView("", (), True, layer.constructor)
    args = layer.all_args
    line = f"layers.{layer.keras_class}({', '.join(args)}),"
    return _LayerView(layer.keras_class, args, _fits(_LAYER_INDENT, line))


@dataclass(frozen=True)
class _CallView:
    """One line (or block) of a functional model: `target = Layer(args)(source)`."""

    target: str
    keras_class: str
    args: tuple[str, ...]
    source: str
    one_line: bool
    #: Where the call's arguments are split one a line: its inputs, one a
    #: line too where `)([a, b])` is too long (as ruff lays them out).
    sources: tuple[str, ...] | None
    #: The whole call, where the layer is not built by `layers.<class>`.
    expression: str | None = None


#: Names build_model() itself uses, which a layer's variable must not take.
_RESERVED = frozenset(
    {
        "inputs",
        "outputs",
        "x",
        "layers",
        "keras",
        "regularizers",
        "np",
        "tf",
        "features",
        "backbone",  # the generated backbone(), and build_model's parameter
        "backbone_weights",
    }
)
_LONGEST_VARIABLE = 32


def _variables(plan: ModelPlan) -> dict[str, str]:
    """The variable holding each layer's output in a functional model.

    As keras.io examples write it: `x` where the next layer alone reads it,
    `outputs` for the last layer, and the layer's own name where it is read
    further on (a residual's start, a branch).
    """
    names = {layer.name for layer in plan.layers}
    readers: dict[str, list[int]] = {}
    for layer in plan.layers:
        for ref in layer.inputs:
            readers.setdefault(ref, []).append(layer.index)
    variables = {INPUT: "features" if plan.recipe.encodes else "inputs"}
    # The model's input is the images as the augmentation leaves them.
    variables |= {layer.name: variables[INPUT] for layer in plan.augmentation}
    for layer in plan.model_layers:
        if layer is plan.layers[-1]:
            variables[layer.name] = "outputs"
        elif set(readers.get(layer.name, ())) == {layer.index + 1}:
            variables[layer.name] = "x"
        else:
            # A long name would make lines no formatter can split.
            variable = layer.name
            if len(variable) > _LONGEST_VARIABLE:
                variable = f"{variable[: _LONGEST_VARIABLE - 8]}_{layer.index}"
            while variable in _RESERVED or (
                variable != layer.name and variable in names
            ):
                variable += "_"
            variables[layer.name] = variable
    return variables


def _calls(plan: ModelPlan) -> list[_CallView]:
    variables = _variables(plan)
    calls = []
    for layer in plan.model_layers:
        sources = [variables[ref] for ref in layer.inputs]
        source = f"[{', '.join(sources)}]" if len(sources) > 1 else sources[0]
        target = variables[layer.name]
        if layer.constructor is not None:
            expression = f"{layer.constructor}({source})"
            calls.append(_CallView(target, "", (), source, True, None, expression))
            continue
        args = layer.all_args
        line = f"{target} = layers.{layer.keras_class}({', '.join(args)})({source})"
        one_line = _fits(4, line)
        split = None if one_line or _fits(4, f")({source})") else tuple(sources)
        calls.append(
            _CallView(target, layer.keras_class, args, source, one_line, split)
        )
    return calls


def docstring(text: str) -> str:
    """A triple-quoted literal whose value is exactly `text`, and inert.

    Backslashes and double quotes are escaped, so no text can close the
    literal early; characters that are not printable are escaped too.
    """
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n" or char.isprintable():
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    literal = '"""' + "".join(out) + '"""'
    assert ast.literal_eval(literal) == text  # the literal is the text, nothing more
    return literal


def comment_text(text: str) -> str:
    """Text safe to put after `#`: printable on one line, else its repr."""
    return text if text.isprintable() else repr(text)


def _module_docstring(plan: ModelPlan) -> str:
    summary = f"{plan.name}: {plan.description}" if plan.description else plan.name
    # Keep lines within LINE_LENGTH (the first one also holds the quotes); a
    # word longer than that stays whole, on a line of its own. Tabs stay tabs.
    summary = "\n".join(
        "\n".join(
            textwrap.wrap(
                line,
                LINE_LENGTH - 4,
                break_long_words=False,
                expand_tabs=False,
                replace_whitespace=False,
            )
            or [""]
        )
        for line in summary.split("\n")
    )
    data = plan.recipe.data_example
    command = f"    python {plan.name}.py --data {data}"
    if not _fits(0, command):
        command = f"    python {plan.name}.py \\\n        --data {data}"
    usage = (
        "Generated by l2compile from a model spec. Import this module and call\n"
        "build_model(), or run it to train the model:\n\n"
        f"{command}\n\n{_backend_note(plan)}\n"
    )
    return docstring(f"{summary.rstrip()}\n\n{usage}")


def _backend_note(plan: ModelPlan) -> str:
    """Which Keras backends the module runs on."""
    if plan.distribute == "data_parallel":
        return (
            "It trains with keras.distribution.DataParallel, which only Keras' jax\n"
            "backend has, so it sets KERAS_BACKEND to jax unless it is set already."
        )
    if not plan.tensorflow_only:
        backend = plan.module_backend
        others = [b for b in ("jax", "tensorflow", "torch") if b != backend]
        return (
            f"It was built for Keras' {backend} backend, which it sets unless\n"
            f"KERAS_BACKEND names another: it runs on {others[0]} and {others[1]} too."
            + (
                "\nIt reads the images with TensorFlow's image ops, so it needs\n"
                "TensorFlow installed."
                if plan.recipe.streamed
                else "\nIt augments the images as a TensorFlow graph, so it needs\n"
                "TensorFlow installed."
                if plan.augmentation
                else ""
            )
        )
    uses = " and ".join(
        what
        for what, used in (
            ("tf.distribute", plan.distribute in TF_DISTRIBUTE),
            ("TensorFlow's deterministic kernels", plan.deterministic_ops),
        )
        if used
    )
    return (
        f"It uses {uses}, so it sets KERAS_BACKEND to tensorflow\n"
        "unless it is set already."
    )


def _constant_text(constant: Constant) -> str:
    """A constant's assignment: its comment after it when the line fits, else
    above it."""
    assignment = f"{constant.name} = {constant.value}"
    if not constant.comment:
        return assignment
    line = f"{assignment}  # {constant.comment}"
    if "\n" in constant.value or not _fits(0, line):
        comment = constant.comment
        return f"# {comment[:1].upper()}{comment[1:]}:\n{assignment}"
    return line


def _uses_regularizers(plan: ModelPlan) -> bool:
    return any(layer.regularizers for layer in plan.layers) or bool(
        plan.backbone and plan.backbone.l2
    )


def _optimizer_call(plan: ModelPlan) -> str:
    """The optimizer's constructor, on one line where it fits."""
    args = ", ".join(plan.optimizer_args)
    if _fits(4, f"optimizer = {plan.optimizer}({args})"):
        return f"{plan.optimizer}({args})"
    return f"{plan.optimizer}(\n        {args}\n    )"


def context(plan: ModelPlan, *, version_header: bool = True) -> dict[str, Any]:
    """Everything the module template prints, as ready strings."""
    return {
        "source_file": comment_text(plan.source_file),
        "spec_sha256": plan.spec_sha256,
        "overrides": [comment_text(o) for o in plan.overrides],
        "version": __version__ if version_header else None,
        "docstring": _module_docstring(plan),
        "backend": py_str(plan.module_backend),
        "name": plan.name,
        "model_name": py_str(plan.name),
        "constants": [_constant_text(constant) for constant in plan.constants],
        "sequential": plan.is_stack,
        "layers": [_layer_view(layer) for layer in plan.model_layers],
        "augmentation": [_layer_view(layer) for layer in plan.augmentation],
        "calls": [] if plan.is_stack else _calls(plan),
        "optimizer_call": _optimizer_call(plan),
        "no_weight_decay": bool(plan.no_weight_decay),
        "keras_import": "from keras import layers"
        + (", regularizers" if _uses_regularizers(plan) else ""),
        "backbone": _backbone_view(plan.backbone) if plan.backbone else None,
        "schedule": plan.schedule,
        "early_stopping": plan.early_stopping,
        "compile_args": ", steps_per_epoch, args.epochs" if plan.schedule else "",
        "parser_one_line": _fits(
            4, f'parser = argparse.ArgumentParser(description="Train {plan.name}.")'
        ),
        "loss": plan.task.loss,
        "metrics": plan.task.metrics,
        "metrics_one_line": _fits(8, f"metrics=[{', '.join(plan.task.metrics)}],"),
        "metric_names": plan.task.metric_names,
        "per_sample_loss": plan.task.per_sample_loss,
        "label_source": plan.task.label_source,
        "labels_note": _labels_note(plan),
        "validation": plan.validation is not None,
        "adapted": [py_str(name) for name in plan.adapted],
        "balanced": plan.task.class_weight == "balanced",
        "class_weight": _class_weight(plan),
        "class_count": plan.task.class_count,
        # What the module defines and main() calls after training, if anything.
        "after_training_parts": ["parts/batchnorm.py.jinja"]
        if plan.batchnorm_statistics
        else [],
        "after_training": [
            *(_ONE_DEVICE if plan.distribute == "data_parallel" else ()),
            *(
                ["recompute_batchnorm_statistics(model, x_train, y_train)"]
                if plan.batchnorm_statistics
                else []
            ),
        ],
        # What main() does first, and before it saves the model.
        "setup": _JOIN if plan.distribute == "data_parallel" else (),
        "before_save": _FIRST_SAVES if plan.distribute == "data_parallel" else (),
        "source_template": plan.recipe.template,
        "imports": _imports(plan),
        "tensorflow": plan.imports_tensorflow,
        "encodes": plan.recipe.encodes,
        "vocabulary": plan.recipe.vocabulary_size,
        "streamed": plan.recipe.streamed,
        "own_data": plan.recipe.own_data,
        "test_data": plan.recipe.test_data is not None,
        "test_split": plan.recipe.test_split is not None,
        "channels": plan.input_shape[-1],
        "model_args": "columns" if plan.recipe.encodes else "",
        "model_params": _model_params(plan),
        "initial_weights": plan.initial_weights is not None,
        "samples_type": "np.ndarray | Images" if plan.recipe.streamed else "np.ndarray",
        "table_labels": plan.task.table_labels,
        "data_title": plan.recipe.title,
        "keras_dataset": plan.recipe.keras_dataset,
        "data_help": plan.recipe.data_help,
        "data_default": plan.data is not None,
        "integer_input": plan.integer_input,
        "distribute": plan.distribute,
        "deterministic_ops": plan.deterministic_ops,
    }


#: main()'s lines for distribute: data_parallel: the processes join before
#: anything runs on JAX; scoring and saving are on one device, by process 0.
_JOIN = (
    "# Before anything runs on JAX: the processes join, and BATCH_SIZE is the",
    "# global batch, split between every device.",
    "keras.distribution.set_distribution(distribution())",
)
_ONE_DEVICE = (
    "# Score every test sample on one device (an even split would drop some);",
    "# the processes part here, together (one that ended first would stop the",
    "# others).",
    "keras.distribution.set_distribution(None)",
    "if jax.distributed.is_initialized():",
    "    jax.distributed.shutdown()  # type: ignore[no-untyped-call]",
)
_FIRST_SAVES = ("if jax.process_index() != 0:", "    return  # the first process saves")


def _imports(plan: ModelPlan) -> list[str]:
    """The module's standard-library imports, sorted as isort sorts them: the
    module's own, and its data source's."""
    lines = {"import argparse", "import os", *plan.recipe.imports}
    if plan.distribute in ("none", "mirrored") or plan.schedule:
        lines.add("import math")  # Batches' length, the schedule's steps
    if plan.batchnorm_statistics:  # training_forward's annotations
        lines |= {"from collections.abc import Callable", "from typing import Any"}
    if plan.recipe.encodes:  # build_model's columns
        lines.add("from typing import Any")
    return sorted(lines, key=lambda line: (line.startswith("from "), line))


def _model_params(plan: ModelPlan) -> str:
    """build_model()'s parameters, as its `def` line writes them."""
    params = []
    if plan.recipe.encodes:
        params.append("columns: list[dict[str, Any]]")
    elif plan.backbone is not None and plan.backbone.weights == "file":
        params.append("backbone_weights: str = BACKBONE_WEIGHTS")
    if plan.initial_weights is not None:
        params.append("initial_weights: str | None = INITIAL_WEIGHTS")
    return ", ".join(params)


_WEIGHTS_TEXT = {
    "file": "its pretrained weights from the file `weights`",
    "imagenet": "Keras' ImageNet weights (from ~/.keras/models/, else downloaded)",
    "none": "random weights (weights: none)",
}


def _backbone_view(backbone: BackbonePlan) -> dict[str, Any]:
    """What the generated backbone() and regularize() print."""
    weights = {"file": "None", "none": "None", "imagenet": py_str("imagenet")}
    summary = (
        f"{backbone.keras_class} from keras.applications without its top (its "
        f"ImageNet classifier), with {_WEIGHTS_TEXT[backbone.weights]}. It reads "
        f"pixels in {backbone.reads}: the Rescaling before it takes this model's "
        "[0, 1] there."
    )
    # Within LINE_LENGTH with the indent and the quotes on either end.
    text = "\n    ".join(textwrap.wrap(summary, LINE_LENGTH - 7))
    return {
        "keras_class": backbone.keras_class,
        "name": py_str(backbone.layer),
        "file": backbone.weights == "file",
        "weights": backbone.weights,
        "docstring": docstring(text),
        "weights_arg": weights[backbone.weights],
        "input_shape": shape_text(backbone.input_shape),
        "reads": backbone.reads,
        "rescaling": backbone.rescaling,
        "l2": backbone.l2,
        "trained_from": backbone.trained_from,
    }


def _labels_note(plan: ModelPlan) -> str:
    """What preprocess() does to the labels, where it does anything."""
    task = plan.task
    if task.one_hot:
        return "\n    One-hot encode the labels."
    if task.label_source == "y":
        return ""
    return "\n    The labels as float32 rows, one column per output."


def _class_weight(plan: ModelPlan) -> str | None:
    """fit()'s class_weight, as source (None: none)."""
    weight = plan.task.class_weight
    if weight is None:
        return None
    return "class_weights(y_train)" if weight == "balanced" else "CLASS_WEIGHT"


def render_module(
    plan: ModelPlan,
    env: jinja2.Environment | None = None,
    *,
    version_header: bool = True,
) -> str:
    """The generated module's source for a plan; the same plan, the same bytes."""
    env = env or environment()
    return env.get_template(MODULE_TEMPLATE).render(
        context(plan, version_header=version_header)
    )
