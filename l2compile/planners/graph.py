"""The graph planner: the spec's layers as a graph of planned Keras layers."""

from __future__ import annotations

from dataclasses import dataclass, replace

from l2compile.errors import FieldPath, closest
from l2compile.layers import LayerSpec, MergeSpec
from l2compile.layers.base import (
    INPUT,
    Role,
    Shape,
    py_float,
    py_str,
    rank_error,
)
from l2compile.nodes import (
    LayerPlan,
)
from l2compile.planners.context import Context, Planner
from l2compile.sources import SOURCES
from l2compile.spec import Spec
from l2compile.text import DEFAULT_MAX_TOKENS, TextSettings

_Kind = type[LayerSpec]  # (LayerPlan.type shadows `type` in its class body)
#: Models larger than this are refused (4 GiB of float32 weights).
MAX_PARAMS = 2**30
#: How many unknown names in `inputs` get a suggestion (see GraphPlanner.closest).
_MAX_SUGGESTIONS = 5


def _seed(layer: LayerSpec, index: int) -> tuple[str, ...]:
    """The `seed` argument of an augmentation layer: build_augmentation's
    `seed` offset by the layer's index, so that no two layers share a stream
    (Augmenter.reseed restarts each at the epoch's seed plus that index)."""
    if not layer.augments:
        return ()
    return ("seed=seed" if index == 0 else f"seed=seed + {index}",)


def _coefficient(coefficient: float, global_l2: float) -> str:
    # The global coefficient is written as the module's L2 constant, so a
    # reader changes it in one place; an override is written as its number.
    return "L2" if coefficient == global_l2 else py_float(coefficient)


def _regularizer(coefficient: float, global_l2: float) -> str:
    return f"regularizers.L2({_coefficient(coefficient, global_l2)})"


def reached_by_l2(role: Role, spec: Spec) -> bool:
    """Whether the global `l2` (and weight decay) reach a weight of this role.

    Every kernel: dense and conv kernels, depthwise and pointwise kernels,
    embeddings, and the kernel and recurrent kernel of recurrent layers.
    Biases only with `l2_bias: true`, normalization gamma and beta only with
    `l2_norm: true` ("no bias decay" is the usual practice), and never the
    moving statistics, which are not trained.
    """
    if role == "kernel":
        return True
    if role == "bias":
        return spec.l2_bias
    if role == "norm":
        return spec.l2_norm
    return False


def _assign_l2(layer: LayerPlan, layer_l2: float | None, spec: Spec) -> LayerPlan:
    """Give each weight its L2 coefficient and weight decay; write the arguments."""
    coefficient = spec.l2 if layer_l2 is None else layer_l2
    decay = spec.train.optimizer.weight_decay
    weights = []
    args: dict[str, str] = {}
    for weight in layer.weights:
        # A frozen weight does not change: Keras adds no penalty for it.
        reached = reached_by_l2(weight.role, spec) and weight.trainable
        l2 = coefficient if reached else 0.0
        weights.append(replace(weight, l2=l2, weight_decay=decay if reached else 0.0))
        if l2 > 0 and weight.regularizer:
            args[weight.regularizer] = (
                f"{weight.regularizer}={_regularizer(l2, spec.l2)}"
            )
    return replace(layer, weights=tuple(weights), regularizers=tuple(args.values()))


@dataclass
class _Place:
    """Where a layer kind reports its errors: its own fields in the spec."""

    planner: Planner
    path: FieldPath

    def error(self, field: str | None, message: str) -> None:
        path = self.path if field is None else (*self.path, field)
        self.planner.error(path, message)


def _vocabulary(spec: Spec) -> int | None:
    """A text recipe's vocabulary size, which sizes embeddings that leave
    out input_dim (None: the recipe reads no text)."""
    train = spec.train
    kinds = [kind for kind in (train.columns or {}).values() if isinstance(kind, str)]
    if not SOURCES[train.recipe].reads_text(kinds):
        return None
    max_tokens = train.text.max_tokens if train.text else DEFAULT_MAX_TOKENS
    return TextSettings(max_tokens=max_tokens).capacity


def _nth(i: int, automatic: list[str]) -> str:
    """`the 3rd conv2d` for the layer whose automatic name is conv2d_3."""
    kind, n = automatic[i].rsplit("_", 1)
    suffix = {"1": "st", "2": "nd", "3": "rd"}.get(n[-1], "th")
    if n[-2:] in ("11", "12", "13"):
        suffix = "th"
    return f"the {n}{suffix} {kind}"


class GraphPlanner(Planner):
    """The layers: their names, their wiring into a graph, each layer planned
    by its kind from its inputs' shapes, and the L2 each weight gets."""

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self._names: list[str] = []
        self._automatic: list[str] = []  # <type>_<n> of each layer, named or not
        self._suggested = 0

    def names(self) -> list[str]:
        """Each layer's name: the spec's, else `<type>_<n>` for the n-th layer
        of its type. Where layers name their `inputs`, a name the spec gives
        may not be another layer's automatic name, so naming one layer never
        renames another that a reference means."""
        counts: dict[str, int] = {}
        for layer in self.spec.layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
            self._automatic.append(f"{layer.kind}_{counts[layer.kind]}")
        owners = {auto: i for i, auto in enumerate(self._automatic)}
        names = [
            layer.name or auto
            for layer, auto in zip(self.spec.layers, self._automatic, strict=True)
        ]
        graph = any(layer.inputs is not None for layer in self.spec.layers)
        seen: dict[str, int] = {}
        for i, layer in enumerate(self.spec.layers):
            owner = owners.get(names[i], i)
            where = ("layers", i, "name")
            if not layer.name:
                pass  # an automatic name is unique, and no given one takes it
            elif layer.name == INPUT:
                self.error(where, "layer name 'input' is already used by the input")
            elif owner != i and not self.spec.layers[owner].name and graph:
                self.error(
                    where,
                    f"layer name {layer.name!r} is the automatic name of "
                    f"layers[{owner}] ({_nth(owner, self._automatic)}); choose "
                    "another name, or name that layer too",
                )
            elif layer.name in seen:
                first = seen[layer.name]
                self.error(
                    where,
                    f"layer name {layer.name!r} is already used by layers[{first}]",
                )
            if layer.name:
                seen.setdefault(layer.name, i)
        return self.renamed(names) if not graph else names

    def renamed(self, names: list[str]) -> list[str]:
        """In a stack, which no layer refers to by name, an automatic name that
        the spec gave another layer moves to the next free number (as before
        graphs: such specs stay valid)."""
        given = {layer.name for layer in self.spec.layers if layer.name}
        taken = set(names)
        out = []
        for layer, name in zip(self.spec.layers, names, strict=True):
            if not layer.name and name in given:
                n = int(name.rsplit("_", 1)[1])
                while f"{layer.kind}_{n}" in taken:
                    n += 1
                name = f"{layer.kind}_{n}"
                taken.add(name)
            out.append(name)
        return out

    def wire(self, names: list[str]) -> list[tuple[str, ...] | None]:
        """Each layer's inputs by name (None where they are wrong): the layer
        before it unless it names its `inputs`, which must come before it."""
        self._names = names
        index = {name: i for i, name in reversed(list(enumerate(names)))}
        wired: list[tuple[str, ...] | None] = []
        for i, layer in enumerate(self.spec.layers):
            if layer.inputs is None:
                wired.append((names[i - 1] if i else INPUT,))
                continue
            ok = True
            for k, ref in enumerate(layer.inputs):
                if ref == INPUT or index.get(ref, i) < i:
                    continue
                ok = False
                where = ("layers", i, "inputs", k)
                if ref in index:
                    j = index[ref]
                    self.error(
                        where,
                        f"{ref!r} is this layer: a layer cannot take its own output"
                        if j == i
                        else f"{ref!r} is layers[{j}], after this one: a layer takes "
                        "only the outputs of layers listed before it, which "
                        "rules out cycles",
                    )
                elif ref in self._automatic[:i]:
                    j = self._automatic.index(ref)
                    self.error(
                        where,
                        f"no layer is named {ref!r}: layers[{j}] "
                        f"({_nth(j, self._automatic)}) is named {names[j]!r}",
                    )
                else:
                    self.error(
                        where, f"no layer is named {ref!r}", self.closest(ref, i)
                    )
            wired.append(tuple(layer.inputs) if ok else None)
        wired = [
            inputs if inputs is None or self.check_arity(i, inputs) else None
            for i, inputs in enumerate(wired)
        ]
        self.check_used(names, wired)
        return wired

    def closest(self, ref: str, i: int) -> str | None:
        """The name before layers[i] closest to `ref`, for the first few
        unknown names only: each search compares it with every earlier name,
        and a hostile spec may hold thousands of both."""
        if self._suggested >= _MAX_SUGGESTIONS:
            return None
        self._suggested += 1
        return closest(ref, (INPUT, *self._names[:i]))

    def check_arity(self, i: int, inputs: tuple[str, ...]) -> bool:
        """Whether layer `i` takes as many inputs as it names; say so if not."""
        layer = self.spec.layers[i]
        where = ("layers", i, "inputs") if layer.inputs else ("layers", i)
        errors = len(self.errors)
        if isinstance(layer, MergeSpec):
            if len(inputs) < 2:
                count = "two" if layer.max_inputs == 2 else "two or more"
                self.error(
                    where,
                    f"{layer.kind} joins {count} inputs, but it has one "
                    f"({inputs[0]}); name them, e.g. inputs: "
                    f"[{inputs[0]}, NAME]",
                )
            elif len(inputs) > layer.max_inputs:
                self.error(
                    where,
                    f"{layer.kind} takes {layer.max_inputs} inputs, but it has "
                    f"{len(inputs)}",
                )
        elif len(inputs) > 1:
            self.error(
                where,
                f"{layer.kind} takes one input, but inputs names {len(inputs)}; "
                "join them first with a merge layer (add, concatenate, ...)",
            )
        return len(self.errors) == errors

    def check_used(self, names: list[str], wired: list[tuple[str, ...] | None]) -> None:
        """Every layer but the last must feed another: only the last layer's
        output is the model's, so any other unused output is a dead branch."""
        used = {ref for inputs in wired if inputs for ref in inputs}
        if any(inputs is None for inputs in wired):
            return  # a wrong reference may be what was meant to use it
        for i, name in enumerate(names[:-1]):
            if name not in used:
                self.error(
                    ("layers", i),
                    f"the output of {name} is never used: only the last layer's "
                    "output is the model's; pass it to a later layer in its inputs, "
                    "or remove it",
                )

    def layer(
        self, i: int, layer: LayerSpec, name: str, inputs: list[tuple[str, Shape]]
    ) -> LayerPlan | None:
        """Plan one layer from its inputs' shapes, or report why it cannot be."""
        place = _Place(self, ("layers", i))
        if isinstance(layer, MergeSpec):
            shape = inputs[0][1]
            out = layer.merged_shape(inputs, place)
        else:
            ((source, shape),) = inputs
            rank = layer.input_rank
            if rank is not None and len(shape) != rank:
                named = "the model's input" if source == INPUT else source
                # Where it names its inputs, say where this one comes from.
                origin = "its input" if layer.inputs is None else named
                place.error("type", rank_error(layer.kind, shape, rank, origin))
                return None
            out = layer.output_shape(shape, place)
        if out is None:
            return None
        return LayerPlan(
            index=i,
            name=name,
            type=layer.kind,
            keras_class=layer.keras_class,
            args=(*layer.arguments(), *_seed(layer, i), f"name={py_str(name)}"),
            output_shape=out,
            weights=tuple(layer.weights(shape)),
            inputs=tuple(ref for ref, _ in inputs),
            final_activation=layer.final_activation(),
        )

    def layers(self) -> list[LayerPlan]:
        """Every layer planned, each from the shapes of its inputs; a layer
        whose input failed is left out (its error says why)."""
        names = self.names()
        wired = self.wire(names)
        shapes: dict[str, Shape] = {INPUT: self.spec.input.planned}
        planned: list[LayerPlan] = []
        for i, (layer, name, refs) in enumerate(
            zip(self.spec.layers, names, wired, strict=True)
        ):
            if refs is None or any(ref not in shapes for ref in refs):
                continue
            sized = layer.sized(_vocabulary(self.spec))
            if isinstance(sized, str):
                _Place(self, ("layers", i)).error(None, sized)
                continue
            layer = sized
            plan = self.layer(i, layer, name, [(ref, shapes[ref]) for ref in refs])
            if plan is None:
                continue
            shapes.setdefault(name, plan.output_shape)  # as wire(): the first
            pretrained = layer.pretrained()
            if pretrained is not None:
                file = pretrained.weights_file is not None
                call = "backbone(backbone_weights)" if file else "backbone()"
                plan = replace(plan, constructor=call)
            l2 = getattr(layer, "l2", None)
            planned.append(_assign_l2(plan, l2, self.spec))
        return planned

    def check_augmentation(self, layers: list[LayerPlan]) -> None:
        """Augmentation runs on the training batches, before the model (the
        generated build_augmentation): its layers come first, each reading
        the one before it (the first: the input), and the model reads the
        last of them alone, as its input."""
        if len(layers) != len(self.spec.layers):
            return  # a layer failed: its error says why
        leading = 0
        while leading < len(layers) and layers[leading].augments:
            before = INPUT if leading == 0 else layers[leading - 1].name
            if layers[leading].inputs != (before,):
                break
            leading += 1
        for layer in layers[leading:]:
            if layer.augments:
                self.error(
                    ("layers", layer.index, "type"),
                    f"{layer.type} augments the training images before the model "
                    "sees them (in the input pipeline), so it must come first: "
                    "before every other layer, each augmentation layer reading the "
                    "one before it (the first, the input)",
                )
        if leading == 0:
            return
        if leading == len(layers):
            self.error(
                ("layers",),
                "every layer augments the training images, so no model is left: "
                "augmentation runs before the model, in the input pipeline; add "
                "the model's own layers after it",
            )
            return
        if self.spec.train.distribute == "multi_worker":
            self.error(
                ("train", "distribute"),
                "augmentation runs in the input pipeline of Keras' fit, which "
                "multi_worker's custom training loop does not use; use "
                "distribute: mirrored or none, or remove the augmentation layers",
            )
        last = layers[leading - 1].name
        hidden = {INPUT, *(layer.name for layer in layers[: leading - 1])}
        for layer in layers[leading:]:
            for ref in layer.inputs:
                if ref in hidden:
                    self.error(
                        ("layers", layer.index, "inputs"),
                        f"reads {ref!r}, but the model's input is the images as "
                        f"the augmentation layers leave them: read {last!r}, the "
                        "last of them",
                    )

    def check_size(self, layers: list[LayerPlan]) -> None:
        """A model too large to build is a spec error, not a memory error."""
        total = 0
        for layer in layers:
            total += layer.params
            if total > MAX_PARAMS:
                self.error(
                    ("layers", layer.index),
                    f"the model is too large: {total:,} parameters up to this layer "
                    f"({total * 4 / 2**30:,.1f} GiB of float32 weights); l2compile "
                    f"builds at most {MAX_PARAMS:,}",
                )
                return
