"""`l2compile import`: a spec written from a Keras model file.

A `.keras` file is a zip archive whose `config.json` describes the model:
its layers, each with its class and arguments, and how they are wired. The
import reads that description as data (no code from the file runs, and no
layer is built from it) and writes the spec that plans to the same model:

1. `read_model`: the archive's config, bounded, as a `ModelGraph` of `Node`s
   (one per layer, with the names of the layers it reads);
2. `spec_layers`: each node as a spec layer, by the kind that builds its
   Keras class (a kind reads its own fields: `LayerSpec.from_keras`), a
   keras.applications model as a `backbone`; every layer that no kind can
   express is a `Problem`, and the import stops with all of them;
3. `spec_text`: the spec's YAML, with the file's regularizers as `l2` and
   per-layer overrides, and its optimizer and loss where the spec has them;
4. `l2compile.import_check`: the spec is planned, and the model it builds is
   compared with the file's, layer by layer and argument by argument.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from l2compile.errors import BuildError
from l2compile.fields import is_identifier
from l2compile.layers import KINDS, LayerSpec
from l2compile.layers.backbone import bare, scales_raw_pixels
from l2compile.layers.base import INPUT
from l2compile.sources.csv import encodes_table

#: The most bytes of config.json read (a model of thousands of layers holds a
#: few MB): a larger one is refused before it is read.
MAX_CONFIG_BYTES = 64 * 1024 * 1024
#: Keras' layer module, where every layer class l2compile knows lives.
_KERAS_LAYERS = "keras.layers"
#: Each Keras class l2compile has a kind for, by its name.
_KIND_OF = {
    kind.keras_class: name for name, kind in KINDS.items() if not kind.keras_model
}
#: The classes of a model inside the model (a keras.applications backbone).
_MODELS = ("Functional", "Sequential", "Model")
#: The kind a model inside the model is read as (a backbone).
_NESTED = next(kind for kind in KINDS.values() if kind.keras_model)
#: The regularizer arguments, by the role of the weight they regularize.
KERNEL_REGULARIZERS = (
    "kernel_regularizer",
    "depthwise_regularizer",
    "pointwise_regularizer",
    "recurrent_regularizer",
    "embeddings_regularizer",
)
BIAS_REGULARIZERS = ("bias_regularizer",)
NORM_REGULARIZERS = ("gamma_regularizer", "beta_regularizer")
REGULARIZERS = KERNEL_REGULARIZERS + BIAS_REGULARIZERS + NORM_REGULARIZERS


@dataclass(frozen=True)
class Problem:
    """One layer of the file that the spec cannot express, and why."""

    layer: str
    keras_class: str
    why: str

    def __str__(self) -> str:
        return f"{self.layer} ({self.keras_class}): {self.why}"


class ImportFailed(BuildError):
    """The file cannot become a spec: every reason, one per line."""

    def __init__(self, path: Path, problems: list[Problem] | str) -> None:
        self.problems = [] if isinstance(problems, str) else problems
        if isinstance(problems, str):
            message = f"{path}: {problems}"
        else:
            count = len(problems)
            lines = "\n".join(f"  - {problem}" for problem in problems)
            message = (
                f"{path}: {count} layer{'s' if count > 1 else ''} the spec cannot "
                f"express, so nothing was written:\n{lines}"
            )
        super().__init__(message)


@dataclass
class Node:
    """One layer of the file's model, and the layers whose outputs it reads."""

    name: str
    keras_class: str
    config: dict[str, Any]
    inputs: list[str]
    module: str = _KERAS_LAYERS
    registered: str | None = None
    #: What the spec cannot express in how the layer is called (None: nothing).
    call_problem: str | None = None
    #: Keras' record of the shape it was built for (None: not built).
    build_config: dict[str, Any] | None = None


@dataclass
class ModelGraph:
    """The file's model: its name, its input's shape and its layers in order."""

    name: str
    input_name: str
    input_shape: tuple[int | None, ...]
    nodes: list[Node]
    compile_config: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)
    #: What the spec does differently, for its comments.
    notes: list[str] = field(default_factory=list)
    #: It encodes a table's columns itself, as a csv recipe's model does:
    #: its first nodes are that encoding, which the spec's recipe makes.
    reads_table: bool = False


def read_model(path: Path) -> ModelGraph:
    """The model in a `.keras` file, read from its config.json."""
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo("config.json")
            except KeyError:
                raise ImportFailed(
                    path, "not a Keras 3 model file: it holds no config.json"
                ) from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise ImportFailed(
                    path,
                    f"its config.json is {info.file_size:,} bytes, more than the "
                    f"{MAX_CONFIG_BYTES:,} any model of supported layers needs",
                )
            raw = archive.read(info)
    except (zipfile.BadZipFile, OSError) as error:
        legacy = path.suffix.lower() in (".h5", ".hdf5")
        hint = (
            ": a legacy HDF5 model; load it with Keras and save it as .keras"
            if legacy
            else f": not a .keras file (a zip archive): {error}"
        )
        raise ImportFailed(path, hint.lstrip(": ")) from None
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ImportFailed(path, f"its config.json is not JSON: {error}") from None
    return graph_of(path, config)


def graph_of(path: Path, config: Any) -> ModelGraph:
    """A model config (`model.get_config()` with its class) as a ModelGraph."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ImportFailed(path, "its config.json does not describe a model")
    kind = config.get("class_name")
    body = config["config"]
    compiled = config.get("compile_config")
    compiled = compiled if isinstance(compiled, dict) else None
    if kind not in ("Sequential", "Functional", "Model"):
        raise ImportFailed(
            path,
            f"its model is a {kind!s} (a subclassed model, whose call() is Python "
            "code): only Sequential and functional models describe their layers",
        )
    layers = body.get("layers")
    if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
        raise ImportFailed(path, "its config.json lists no layers")
    name = str(body.get("name", "model"))
    if kind == "Sequential":
        return _sequential(path, name, layers, body, compiled)
    if kind in ("Functional", "Model"):
        return _without_encoding(_functional(path, name, layers, body, compiled))
    raise ImportFailed(
        path,
        f"its model is a {kind!s} (a subclassed model, whose call() is Python "
        "code): only Sequential and functional models describe their layers",
    )


def _shape(batch_shape: Any) -> tuple[int | None, ...] | None:
    if not isinstance(batch_shape, list) or len(batch_shape) < 2:
        return None
    dims = batch_shape[1:]
    if not all(d is None or (isinstance(d, int) and d > 0) for d in dims):
        return None
    return tuple(dims)


def _node(entry: dict[str, Any], inputs: list[str]) -> Node:
    config = entry.get("config")
    return Node(
        name=str(entry.get("name") or (config or {}).get("name") or "?"),
        keras_class=str(entry.get("class_name", "?")),
        config=config if isinstance(config, dict) else {},
        inputs=inputs,
        module=str(entry.get("module") or ""),
        registered=entry.get("registered_name"),
        build_config=built
        if isinstance(built := entry.get("build_config"), dict)
        else None,
    )


def _sequential(
    path: Path,
    name: str,
    layers: list[dict[str, Any]],
    body: dict[str, Any],
    compiled: dict[str, Any] | None,
) -> ModelGraph:
    shape = _shape(body.get("build_input_shape"))
    first = layers[0] if layers else {}
    if first.get("class_name") == "InputLayer":
        shape = _shape(first.get("config", {}).get("batch_shape")) or shape
        layers = layers[1:]
    if shape is None:
        raise ImportFailed(path, "its Sequential model was never built: no input shape")
    nodes: list[Node] = []
    previous = INPUT
    for entry in layers:
        node = _node(entry, [previous])
        nodes.append(node)
        previous = node.name
    return ModelGraph(name, INPUT, shape, nodes, compiled)


def _tensors(value: Any) -> Iterator[Any]:
    """Every Keras tensor an inbound node's arguments hold."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        yield value.get("config", {}).get("keras_history")
    elif isinstance(value, list):
        for item in value:
            yield from _tensors(item)


def _call(entry: dict[str, Any]) -> tuple[list[str], str | None]:
    """The layers an entry's call reads, and what the spec cannot express in
    the call (None: nothing)."""
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) != 1 or not isinstance(nodes[0], dict):
        return [], f"called {len(nodes)} times: the spec calls each layer once"
    call = nodes[0]
    kwargs = {
        k: v
        for k, v in (call.get("kwargs") or {}).items()
        if v is not None and (k, v) != ("training", False)
    }
    problem = f"called with {', '.join(sorted(kwargs))}" if kwargs else None
    sources: list[str] = []
    for history in _tensors(call.get("args", [])):
        if not isinstance(history, list) or len(history) != 3:
            return [], "reads a tensor the file does not name"
        source, node_index, tensor_index = history
        if node_index != 0 or tensor_index != 0:
            problem = f"reads output {tensor_index} of {source}, a layer with several"
        sources.append(str(source))
    return sources, problem


def _functional(
    path: Path,
    name: str,
    layers: list[dict[str, Any]],
    body: dict[str, Any],
    compiled: dict[str, Any] | None,
) -> ModelGraph:
    inputs = [e for e in layers if e.get("class_name") == "InputLayer"]
    outputs = body.get("output_layers")
    if len(inputs) != 1:
        raise ImportFailed(
            path, f"its model has {len(inputs)} inputs: a spec's model reads one"
        )
    if not (isinstance(outputs, list) and len(outputs) >= 1):
        raise ImportFailed(path, "its config names no output")
    if isinstance(outputs[0], list) and len(outputs) > 1:
        raise ImportFailed(
            path, f"its model has {len(outputs)} outputs: a spec's model has one"
        )
    input_name = str(inputs[0].get("name", INPUT))
    shape = _shape(inputs[0].get("config", {}).get("batch_shape"))
    if shape is None:
        raise ImportFailed(path, "its input has no shape")
    nodes = []
    for entry in layers:
        if entry is inputs[0]:
            continue
        sources, problem = _call(entry)
        node = _node(entry, [INPUT if s == input_name else s for s in sources])
        node.call_problem = problem
        nodes.append(node)
    graph = ModelGraph(name, input_name, shape, nodes, compiled)
    last = outputs[0] if isinstance(outputs[0], list) else outputs
    if nodes and last and last[0] != nodes[-1].name:
        graph.problems.append(
            Problem(
                str(last[0]),
                "output",
                "the model's output is not its last layer: the spec's output is",
            )
        )
    return graph


def _without_encoding(graph: ModelGraph) -> ModelGraph:
    """The graph without the table encoding its first nodes make, where they
    make one (the layers that read it read the input instead)."""
    encoding: set[str] = set()
    for node in graph.nodes:
        if encodes_table(node.keras_class, node.module, node.name) and all(
            source == INPUT or source in encoding for source in node.inputs
        ):
            encoding.add(node.name)
    rest = [node for node in graph.nodes if node.name not in encoding]
    read = {source for node in rest for source in node.inputs if source in encoding}
    if len(read) != 1 or any(INPUT in node.inputs for node in rest):
        return graph
    (features,) = read
    reader = next(node for node in rest if features in node.inputs)
    shape = _shape((reader.build_config or {}).get("input_shape"))
    if shape is None:
        return graph
    graph.input_shape = shape  # the spec's input: the encoded row
    for node in rest:
        node.inputs = [INPUT if s == features else s for s in node.inputs]
    graph.nodes = rest
    graph.reads_table = True
    return graph


# --- layers --------------------------------------------------------------------


def _unsupported(node: Node) -> str | None:
    """Why a node's class has no spec kind (None: it has one, or is a model)."""
    cls = node.keras_class
    if cls == "Lambda":
        return (
            "a Lambda layer runs Python code, which a spec cannot hold and "
            "l2compile never runs from a file"
        )
    if cls in _MODELS and node.module.startswith(("keras.src.models", "keras")):
        return None
    if node.module.startswith("keras.src.ops"):
        return (
            f"an operation (keras.ops, {cls}) called on a tensor: the spec has "
            "layers, not operations"
        )
    if node.registered or node.module != _KERAS_LAYERS:
        name = node.registered or f"{node.module}.{cls}"
        return (
            f"a custom layer ({name}): its code is not in the file, and the "
            "spec has no kind for it"
        )
    if cls not in _KIND_OF:
        return "a Keras layer the spec has no kind for (docs/layers.md lists them)"
    return None


def _validated(
    node: Node, kind: type[LayerSpec], fields: dict[str, Any]
) -> Problem | None:
    """A problem where the kind refuses a value the file gives."""
    try:
        kind.model_validate({"type": kind_name(kind), **fields})
    except ValidationError as error:
        found = []
        for detail in error.errors():
            where = ".".join(str(p) for p in detail["loc"])
            value = fields.get(str(detail["loc"][0]), "?") if detail["loc"] else "?"
            found.append(f"{where}={json.dumps(value)} ({detail['msg']})")
        return Problem(node.name, node.keras_class, "; ".join(found))
    return None


def kind_name(kind: type[LayerSpec]) -> str:
    """A kind's `type` in a spec."""
    return next(name for name, k in KINDS.items() if k is kind)


@dataclass
class Imported:
    """A node as a spec layer: its fields, and the file's regularizers."""

    node: Node
    fields: dict[str, Any]
    #: Each regularizer argument the file sets, with its L2 coefficient.
    coefficients: dict[str, float]
    #: Its name in the spec, and its inputs' (spec_names).
    name: str
    inputs: list[str]


def spec_layers(
    graph: ModelGraph, *, any_penalty: bool = False
) -> list[Imported | Problem]:
    """Each node of the graph as a spec layer, and every problem
    (any_penalty: the file's penalties are set aside, whatever they are)."""
    problems: list[Imported | Problem] = list(graph.problems)
    names = spec_names([node.name for node in graph.nodes])
    found: list[Imported | Problem] = []
    for node in graph.nodes:
        why = _unsupported(node)
        if why is None and node.call_problem is not None:
            why = node.call_problem
        if why is not None:
            problems.append(Problem(node.name, node.keras_class, why))
            continue
        imported = _imported(node, names, any_penalty)
        if isinstance(imported, Problem):
            problems.append(imported)
        else:
            found.append(imported)
    layers = [x for x in found if isinstance(x, Imported)]
    graph.notes += _before_backbone(layers, problems)
    return problems + [x for x in found if x in layers]


def _before_backbone(layers: list[Imported], problems: list[Any]) -> list[str]:
    """An application alone reads its own pixel range, and a spec's backbone
    reads [0, 1] images (l2compile's) and scales them itself. So a layer
    between the input and such an application is the file's preprocessing
    for it: a Rescaling of [0, 255] pixels to its range is left out (with a
    note), any other is refused. Notes on what changed."""
    notes = []
    for layer in layers:
        if not (KINDS[layer.fields["type"]].keras_model and bare(layer.node.config)):
            continue
        model = str(layer.fields["model"])
        source = next((x for x in layers if x.name in layer.inputs), None)
        if source is None:
            notes.append(
                f"The file's {model} read images in its own range; the spec's "
                "backbone reads [0, 1] (l2compile's image data) and scales them."
            )
            continue
        if (
            source.node.keras_class == "Rescaling"
            and source.inputs == [INPUT]
            and scales_raw_pixels(model, source.node.config)
        ):
            layers.remove(source)
            layer.inputs = [INPUT]
            notes.append(
                f"The file's model read [0, 255] pixels and scaled them for {model} "
                f"({quoted(source.node.name, 80)}); the spec's backbone reads [0, 1] "
                "(l2compile's image data) and scales them itself."
            )
            continue
        problems.append(
            Problem(
                source.node.name,
                source.node.keras_class,
                f"it prepares the input of {model}, which the spec's backbone "
                "prepares itself from [0, 1] images: only a Rescaling of [0, 255] "
                "pixels to its range can be left out; remove it from the model",
            )
        )
    return notes


def spec_names(names: list[str]) -> dict[str, str]:
    """Each layer's name in the spec: its own where a spec can give it, else
    one made from it (lowercase letters, digits and underscores), unique."""
    taken = {INPUT} | {name for name in names if is_identifier(name)}
    found = {INPUT: INPUT}
    for name in names:
        if is_identifier(name) and name != INPUT:
            found[name] = name
            continue
        base = module_name(name)[:56]
        made, n = base, 1
        while made in taken:
            n += 1
            made = f"{base}_{n}"
        taken.add(made)
        found[name] = made
    return found


def _imported(
    node: Node, names: Mapping[str, str], any_penalty: bool
) -> Imported | Problem:
    if node.keras_class in _MODELS:
        kind: type[LayerSpec] = _NESTED
        try:
            fields = kind.from_keras(node.config)
        except ValueError as why:
            return Problem(node.name, node.keras_class, str(why))
        coefficients = _nested_coefficients(node.config)
    else:
        kind = KINDS[_KIND_OF[node.keras_class]]
        fields = kind.from_keras(node.config)
        coefficients = {}
        for argument in REGULARIZERS:
            value = _coefficient(node.config.get(argument))
            if isinstance(value, str) and any_penalty:
                continue  # import --l2 puts its own in its place
            if isinstance(value, str):
                return Problem(
                    node.name,
                    node.keras_class,
                    f"{argument}: {value} (import --l2 VALUE sets the file's "
                    "penalties aside)",
                )
            if value:
                coefficients[argument] = value
        if node.config.get("activity_regularizer") is not None:
            return Problem(
                node.name,
                node.keras_class,
                "activity_regularizer: the spec regularizes weights, not outputs",
            )
    problem = _validated(node, kind, fields)
    if problem is not None:
        return problem
    return Imported(
        node,
        {"type": kind_name(kind), **fields},
        coefficients,
        names[node.name],
        [names.get(source, source) for source in node.inputs],
    )


def _coefficient(regularizer: Any) -> float | str | None:
    """An L2 regularizer's coefficient (None: no regularizer), or why the
    spec cannot hold it."""
    if regularizer is None:
        return None
    if not isinstance(regularizer, dict):
        return f"{regularizer!r} is not a regularizer the file describes"
    cls = regularizer.get("class_name")
    config = regularizer.get("config") or {}
    if cls in ("L2", "l2") and isinstance(config.get("l2"), int | float):
        return float(config["l2"])
    if (
        cls == "L1L2"
        and not config.get("l1")
        and isinstance(config.get("l2"), int | float)
    ):
        return float(config["l2"])
    return (
        f"{cls} is not an L2 penalty: the spec's l2 puts L2 on every weight, "
        "and has no other regularizer"
    )


def _nested_coefficients(config: Mapping[str, Any]) -> dict[str, float]:
    """The coefficients a nested model's layers set, by argument: the
    common one of each (a backbone has one coefficient)."""
    seen: dict[str, Counter[float]] = {}
    for entry in _nested_layers(config):
        for argument in REGULARIZERS:
            value = _coefficient((entry.get("config") or {}).get(argument))
            if isinstance(value, float) and value > 0:
                seen.setdefault(argument, Counter())[value] += 1
    return {arg: counts.most_common(1)[0][0] for arg, counts in seen.items()}


def _nested_layers(config: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in config.get("layers") or []:
        if isinstance(entry, dict):
            yield entry
            inner = entry.get("config")
            if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
                yield from _nested_layers(inner)


_NAME = re.compile(r"[^a-z0-9_]+")


def module_name(text: str) -> str:
    """A name a spec can give, made from a model's or a layer's name."""
    name = _NAME.sub("_", text.lower()).strip("_")[:64] or "model"
    return name if name[0].isalpha() else f"model_{name}"[:64]


def spec_name(text: str) -> str:
    """A spec's name (a Python module name that shadows none) from a
    model's name: `test` becomes `test_model`."""
    from l2compile.spec import module_name_problem

    name = module_name(text)
    return name if module_name_problem(name) is None else f"{name[:58]}_model"


def quoted(text: object, limit: int = 120) -> str:
    """Text from the file as a comment may hold it: one line of ASCII,
    quoted (json escapes every control and non-ASCII character)."""
    return json.dumps(str(text)[:limit], ensure_ascii=True)
