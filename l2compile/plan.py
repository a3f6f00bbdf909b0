"""The plan: a spec resolved into everything the generated code needs.

This module is the compiler's intermediate model; reading it explains the
compiler. A `ModelPlan` is the whole tree:

    ModelPlan                     one generated module
    ├── constants: Constant       named hyperparameters at the top of the module
    ├── layers: LayerPlan         one Keras layer each, in spec order: a graph
    │   ├── inputs                the layers whose outputs it takes, all earlier
    │   │                         (`input`: the model's input)
    │   ├── args                  its constructor arguments, as Python source
    │   ├── output_shape          inferred without TensorFlow
    │   ├── final_activation      what its output ends with, for the task's check
    │   ├── kind                  its class in l2compile.layers, and the flags it
    │   │                         states (passthrough, reads_ids, TFLite limits)
    │   └── weights: WeightPlan   each weight: shape, role, L2 coefficient, decay
    ├── optimizer                 compile()'s optimizer, as Python source
    ├── task: Task                what the output means (l2compile.tasks): the
    │                             loss and metrics as source, the history keys,
    │                             the output's shape and name, its check against
    │                             the model, and how a prediction is scored
    ├── recipe: Recipe            the data (l2compile.recipes): where it comes
    │                             from, its shape and classes, and which loader
    │                             the module gets, with the strings it prints
    ├── data_path: SpecPath       the spec's data file, resolved against its folder
    └── export_plans              what each export format plans of its options
                                  (l2compile.formats: TFLitePlan, the TFLite files)

How the layers are planned (`_Planner.layers`): `names` gives each layer its
name (the spec's, else `<type>_<n>` for the n-th of its type); `wire` resolves
each layer's `inputs` (default: the layer before it) to earlier layers, and
with `check_arity` and `check_used` refuses unknown or later names, a wrong
number of inputs and dead branches; then each layer is planned in order from
its inputs' shapes by its kind, and `_assign_l2` gives its weights their L2.
Where each layer takes the one before it (`is_stack`), the module builds a
`keras.Sequential`, else a functional model. Each layer kind is one class in
`l2compile.layers`, the task one class in `l2compile.tasks`, the data one
`Recipe`: a new kind of any of them is one class, not edits here.

Everything a template prints is decided here, as a ready string: names are
validated identifiers, numbers are Python literals (`py_float` writes floats
as ruff does), and text goes through `py_str`. A spec's text never reaches the
code any other way.

`plan_spec` also checks what depends on several fields at once (the wiring,
shapes, the model's output against its task and data, names, TFLite limits)
and returns every problem, placed in the spec, in file order.

Which weights the global `l2` (and decoupled weight decay) reach is decided in
one place, `reached_by_l2`; `_assign_l2` applies it to every weight.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from l2compile.errors import FieldPath, SpecError, closest
from l2compile.formats import FORMATS, chosen
from l2compile.formats.tflite import TFLitePlan
from l2compile.layers import LayerSpec, MergeSpec
from l2compile.layers.backbone import role_of
from l2compile.layers.base import (
    INPUT,
    Role,
    Shape,
    WeightPlan,
    py_float,
    py_str,
    rank_error,
    shape_text,
)
from l2compile.nodes import (
    BackbonePlan,
    Constant,
    LayerPlan,
    ModelPlan,
    SchedulePlan,
    scope_name,
)
from l2compile.recipes import SpecPath
from l2compile.schedules import plan_schedule
from l2compile.sources import source_for
from l2compile.sources.base import Source as Recipe
from l2compile.spec import LoadedSpec, ScheduleSpec, Spec, SplitFiles
from l2compile.tasks import Task, plan_task

__all__ = [
    "INPUT",
    "MAX_PARAMS",
    "Constant",
    "LayerPlan",
    "ModelPlan",
    "Role",
    "Shape",
    "TFLitePlan",
    "WeightPlan",
    "plan_spec",
    "py_str",
    "reached_by_l2",
    "shape_text",
]

_Kind = type[LayerSpec]  # (LayerPlan.type shadows `type` in its class body)
_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}
#: Models larger than this are refused (4 GiB of float32 weights).
MAX_PARAMS = 2**30
#: How many unknown names in `inputs` get a suggestion (see _Planner.closest).
_MAX_SUGGESTIONS = 5


def _seed(layer: LayerSpec, index: int) -> tuple[str, ...]:
    """The `seed` argument of a layer that draws random numbers: the module's
    SEED offset by the layer's index, so that no two layers share a stream."""
    if not layer.seeded:
        return ()
    return ("seed=SEED" if index == 0 else f"seed=SEED + {index}",)


def _coefficient(coefficient: float, global_l2: float) -> str:
    # The global coefficient is written as the module's L2 constant, so a
    # reader changes it in one place; an override is written as its number.
    return "L2" if coefficient == global_l2 else py_float(coefficient)


def _regularizer(coefficient: float, global_l2: float) -> str:
    return f"regularizers.L2({_coefficient(coefficient, global_l2)})"


# --- the l2 pass ----------------------------------------------------------------


def _held_out(validation: float | str) -> float | None:
    """The share of the training split held out; None: validation: test."""
    return None if isinstance(validation, str) else validation


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

    planner: _Planner
    path: FieldPath

    def error(self, field: str | None, message: str) -> None:
        path = self.path if field is None else (*self.path, field)
        self.planner.error(path, message)


class _Planner:
    def __init__(
        self, loaded: LoadedSpec, folder: Path | None, backend: str | None = None
    ) -> None:
        self.spec = loaded.spec
        self.source = loaded.source
        self.backend_option = backend  # build --backend, which overrides the spec
        # Paths in a spec are relative to its folder. Without one given, the
        # folder of the name the spec was loaded under, from the working folder
        # (generate.display_path names it so).
        self.folder = os.path.abspath(
            folder if folder is not None else Path(loaded.source.file).parent
        )
        self.errors: list[SpecError] = []
        self.warnings: list[SpecError] = []
        self._names: list[str] = []
        self._automatic: list[str] = []  # <type>_<n> of each layer, named or not
        self._suggested = 0

    def error(
        self, path: FieldPath, message: str, suggestion: str | None = None
    ) -> None:
        self.errors.append(self.source.error(path, message, suggestion=suggestion))

    def warn(self, path: FieldPath, message: str) -> None:
        """A warning at `path`: the spec is valid, but likely not what it means."""
        self.warnings.append(replace(self.source.error(path, message), level="warning"))

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

    # --- the graph --------------------------------------------------------------

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

    # --- one layer --------------------------------------------------------------

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
        shapes: dict[str, Shape] = {INPUT: tuple(self.spec.input.shape)}
        planned: list[LayerPlan] = []
        for i, (layer, name, refs) in enumerate(
            zip(self.spec.layers, names, wired, strict=True)
        ):
            if refs is None or any(ref not in shapes for ref in refs):
                continue
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

    def check_data(self, recipe: Recipe, task: Task, layers: list[LayerPlan]) -> None:
        """The model against its data and its task: the input must hold the
        recipe's samples, and the output be the task's."""
        spec = self.spec
        recipe.check_input(spec.input.shape, self.error)
        if not layers or len(layers) != len(spec.layers):
            return  # an earlier layer failed; its error says why
        task.check_output(layers, recipe, self.error)
        recipe.check_layers(layers, self.error)
        for layer in layers:
            if layer.kind.adapted and INPUT not in layer.inputs:
                self.error(
                    ("layers", layer.index, "type"),
                    f"a {layer.type} layer learns the mean and variance of the "
                    "training data before training, so it must read the model's "
                    "input (as the first layer of a stack, or with inputs: [input])",
                )

    def check_multi_worker(self, recipe: Recipe, task: Task) -> None:
        """multi_worker's custom loop (see the template) trains and scores
        integer-label classification alone, on arrays in memory."""
        train = self.spec.train
        if train.distribute != "multi_worker":
            return
        if recipe.streamed or recipe.encodes:
            self.error(
                ("train", "distribute"),
                f"multi_worker's custom training loop reads arrays in memory, not "
                f"recipe {train.recipe!r}; use distribute: mirrored or none",
            )
        elif not task.fits_custom_loop:
            self.error(
                ("train", "distribute"),
                "multi_worker's custom training loop trains task 'classification' "
                "with loss sparse_categorical_crossentropy and metric accuracy "
                "alone, without class_weight; use distribute: mirrored or none",
            )

    def check_exports(self, layers: list[LayerPlan]) -> None:
        """What each export format cannot make of the spec, before any
        training (TFLite's converter refuses some layers)."""
        for exported in FORMATS.values():
            exported.check(self.spec.export, layers, self.error)

    def steps_per_execution(self) -> int:
        """The spec's, except under MirroredStrategy, where Keras 3's multi-step
        loop fails ('You must feed a value for placeholder tensor',
        keras-team/keras issue 19246): there it is 1."""
        train = self.spec.train
        if train.distribute == "none":
            return train.steps_per_execution
        if "steps_per_execution" in train.model_fields_set and (
            train.steps_per_execution > 1
        ):
            self.error(
                ("train", "steps_per_execution"),
                f"distribute: {train.distribute} needs steps_per_execution: 1; Keras "
                "3's multi-step loop fails under tf.distribute (keras-team/keras "
                "issue 19246)",
            )
        return 1

    def backend(self) -> str:
        """The backend to train on; TensorFlow-only settings refused on others."""
        train = self.spec.train
        backend = self.backend_option or train.backend
        if backend == "tensorflow":
            return backend
        fix = "set train.backend: tensorflow"
        if self.backend_option:
            asked = f"build --backend {backend} trains on {backend}"
            fix = "build with --backend tensorflow"
        elif "backend" in train.model_fields_set:
            asked = f"train.backend is {backend}"
        else:
            asked = f"train.backend is {backend} (the default)"
        settings = []
        if train.distribute != "none":
            settings.append(("distribute", f"{train.distribute} is tf.distribute"))
        if train.deterministic_ops:
            settings.append(
                (
                    "deterministic_ops",
                    "true makes TensorFlow's kernels deterministic",
                )
            )
        for name, what in settings:
            self.error(
                ("train", name),
                f"{what}, which only Keras' TensorFlow backend has, but {asked}: {fix}",
            )
        return backend

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

    def check_weight_decay(self, layers: list[LayerPlan]) -> None:
        opt = self.spec.train.optimizer
        if opt.weight_decay == 0 or opt.weight_decay_with_l2:
            return
        both = [
            w.path(None, lay.name)
            for lay in layers
            for w in lay.weights
            if w.l2 > 0 and w.weight_decay > 0
        ]
        if both:
            shown = ", ".join(both[:3]) + (
                f" and {len(both) - 3} more" if len(both) > 3 else ""
            )
            self.error(
                ("train", "optimizer", "weight_decay"),
                f"weight decay and an L2 penalty would both reach {shown}; use one "
                "(set l2: 0), or set weight_decay_with_l2: true to use both",
            )

    def recipe(self, split: SplitFiles | None) -> Recipe:
        """The data node: the spec's recipe and its fields."""
        train = self.spec.train
        return source_for(
            train.recipe,
            train.num_classes,
            data=split.train if split else train.data,
            test_data=split.test if split else None,
            label=train.label_columns,
            features=tuple(train.features) if train.features is not None else None,
            test_split=train.test_split,
        )

    def plan(self) -> ModelPlan | list[SpecError]:
        spec = self.spec
        train = spec.train
        split = train.data if isinstance(train.data, SplitFiles) else None
        recipe = self.recipe(split)
        layers = self.layers()
        complete = bool(layers) and len(layers) == len(spec.layers)
        output = layers[-1].output_shape if complete else None
        task = plan_task(spec, recipe, output, self.error)
        self.check_multi_worker(recipe, task)
        self.check_size(layers)
        self.check_data(recipe, task, layers)
        self.check_weight_decay(layers)
        self.check_exports(layers)
        self.check_schedule()
        self.check_early_stopping(task)
        backbone = self.backbone(layers, recipe)
        steps_per_execution = self.steps_per_execution()
        backend = self.backend()
        tensorflow_only = train.distribute != "none" or train.deterministic_ops
        if self.errors:
            # In the order of the file, as a reader goes through it.
            return sorted(self.errors, key=lambda e: (e.line or 0, e.column or 0))
        optimizer = self.optimizer(layers, recipe)
        return ModelPlan(
            name=spec.name,
            description=spec.description,
            source_file=self.source.file,
            spec_sha256=self.source.sha256,
            spec_text=self.source.text,
            overrides=self.source.overrides,
            input_shape=tuple(spec.input.shape),
            l2=spec.l2,
            l2_bias=spec.l2_bias,
            layers=tuple(layers),
            optimizer=optimizer.cls,
            optimizer_args=optimizer.args,
            task=task,
            recipe=recipe,
            epochs=spec.train.epochs,
            batch_size=spec.train.batch_size,
            seed=spec.train.seed,
            split_seed=spec.train.seeds_split,
            require_learning=spec.train.require_learning,
            export_formats=tuple(spec.export.formats),
            constants=self.constants(
                recipe, layers, optimizer, steps_per_execution, task, backbone
            ),
            export_plans={
                f.name: f.plan(spec.export, layers) for f in chosen(spec.export.formats)
            },
            distribute=spec.train.distribute,
            deterministic_ops=spec.train.deterministic_ops,
            backend=backend,
            # A TensorFlow-only module needs TensorFlow, whatever trains it.
            module_backend="tensorflow" if tensorflow_only else train.backend,
            weight_decay=spec.train.optimizer.weight_decay,
            no_weight_decay=optimizer.no_decay,
            validation=_held_out(spec.train.validation),
            data=recipe.data,
            data_path=self.spec_path(
                "train.data.train" if split else "train.data", recipe.data
            ),
            test_path=self.spec_path("train.data.test", split.test if split else None),
            backbone=backbone,
            schedule=self.schedule(),
            early_stopping=self.early_stopping(),
            warnings=tuple(self.warnings),
        )

    def spec_path(self, field_name: str, written: str | None) -> SpecPath | None:
        """A path the spec writes at `field_name`, resolved against its folder."""
        if written is None:
            return None
        return SpecPath(field_name, self.source.file, written, self.folder)

    def backbone(self, layers: list[LayerPlan], recipe: Recipe) -> BackbonePlan | None:
        """The model's pretrained backbone, if it has one (one at most); its
        weights file must exist and hold that model's weights."""
        found = [
            (i, layer, pretrained)
            for i, layer in enumerate(self.spec.layers)
            if (pretrained := layer.pretrained()) is not None
        ]
        for i, _, _ in found[1:]:
            self.error(
                ("layers", i, "type"),
                f"a model takes one backbone, and layer {found[0][0]} is one",
            )
        planned = {layer.index: layer for layer in layers}
        if not found or found[0][0] not in planned:
            return None
        i, spec_layer, pretrained = found[0]
        layer = planned[i]
        if recipe.encodes:
            self.error(
                ("layers", i, "type"),
                f"a backbone reads images, and recipe {recipe.name!r} gives table rows",
            )
            return None
        path = None
        if pretrained.weights_file is not None:
            path = SpecPath(
                f"layers[{i}].weights",
                self.source.file,
                pretrained.weights_file,
                self.folder,
            )
            problem = (
                pretrained.check_file(path.path)
                if path.path.is_file()
                else f"{path.path} is not a file (paths are relative to the "
                "spec's folder); write weights: imagenet for Keras' own"
            )
            if problem is not None:
                self.error(("layers", i, "weights"), problem)
        (source,) = layer.inputs
        shape = (
            tuple(self.spec.input.shape)
            if source == INPUT
            else next(lay.output_shape for lay in layers if lay.name == source)
        )
        if pretrained.weights == "none" and pretrained.trained_from is None:
            self.warn(
                ("layers", i, "weights"),
                "a frozen backbone with weights: none stays random: only the "
                "layers after it train, on features of random kernels, and such "
                "a model learns little or nothing; set trainable: true, or use "
                "weights: imagenet or a weights file",
            )
        layer_l2 = getattr(spec_layer, "l2", None)
        coefficient = self.spec.l2 if layer_l2 is None else layer_l2
        return BackbonePlan(
            layer=layer.name,
            model=pretrained.model,
            keras_class=pretrained.keras_class,
            input_shape=shape,
            weights=pretrained.weights,
            weights_path=path,
            rescaling=pretrained.rescaling,
            reads=pretrained.reads,
            own_preprocessing=pretrained.own_preprocessing,
            l2=_coefficient(coefficient, self.spec.l2) if coefficient > 0 else None,
            regularized=tuple(
                name
                for name in ("kernel", "bias", "gamma", "beta")
                if reached_by_l2(role_of(name), self.spec)
            ),
            trained_from=pretrained.trained_from,
        )

    def schedule(self) -> SchedulePlan | None:
        rate = self.spec.train.optimizer.learning_rate
        return plan_schedule(rate) if isinstance(rate, ScheduleSpec) else None

    def check_schedule(self) -> None:
        """A warmup leaves epochs to decay over."""
        rate = self.spec.train.optimizer.learning_rate
        epochs = self.spec.train.epochs
        if isinstance(rate, ScheduleSpec) and rate.warmup_epochs >= epochs:
            self.error(
                ("train", "optimizer", "learning_rate", "warmup_epochs"),
                f"the warmup takes {rate.warmup_epochs} of the {epochs} epochs; "
                "it must leave at least one to decay over",
            )

    def early_stopping(self) -> tuple[str, ...] | None:
        """EarlyStopping's arguments, where the spec stops early."""
        stop = self.spec.train.early_stopping
        if stop is None:
            return None
        return (
            f"monitor={py_str(stop.monitor)}",
            "patience=PATIENCE",
            *([f"min_delta={py_float(stop.min_delta)}"] if stop.min_delta else []),
            f"restore_best_weights={stop.restore_best_weights!r}",
        )

    def check_early_stopping(self, task: Task) -> None:
        """Early stopping watches the validation split, on a loop that stops."""
        train = self.spec.train
        stop = train.early_stopping
        if stop is None:
            return
        where = ("train", "early_stopping")
        if train.validation == "test":
            self.error(
                where,
                "early stopping watches the validation split, and validation: "
                "test would pick the epoch by the test data it then reports; "
                "hold out a share instead (validation: 0.1)",
            )
        elif train.distribute == "multi_worker":
            self.error(
                where,
                "distribute multi_worker trains in its own loop, which does not "
                "stop early; use mirrored or none",
            )
        watched = [key for key in task.history_keys if key.startswith("val_")]
        if stop.monitor not in watched:
            self.error(
                (*where, "monitor"),
                f"{stop.monitor!r} is not a validation score this task logs "
                f"({', '.join(watched)})",
                suggestion=closest(stop.monitor, watched),
            )

    def optimizer(self, layers: list[LayerPlan], recipe: Recipe) -> _Optimizer:
        """The optimizer, and the weights its decoupled weight decay skips."""
        opt = self.spec.train.optimizer
        cls = f"keras.optimizers.{_OPTIMIZERS[opt.type]}"
        if self.schedule() is not None:
            rate = "learning_rate=learning_rate(steps_per_epoch, epochs)"
        else:
            rate = "learning_rate=LEARNING_RATE"
        if opt.weight_decay == 0:
            return _Optimizer(cls, (rate,), ())
        if opt.type == "adam":
            cls = "keras.optimizers.AdamW"
        scope = scope_name(self.spec.name, layers, recipe)
        no_decay = tuple(
            w.path(scope, lay.name)
            for lay in layers
            for w in lay.weights
            if w.role != "statistic" and w.trainable and w.weight_decay == 0
        )
        args = (rate, "weight_decay=WEIGHT_DECAY")
        return _Optimizer(cls, args, no_decay)

    def constants(
        self,
        recipe: Recipe,
        layers: list[LayerPlan],
        optimizer: _Optimizer,
        steps_per_execution: int,
        task: Task,
        backbone: BackbonePlan | None,
    ) -> tuple[Constant, ...]:
        """The module's named hyperparameters, in the order they are printed."""
        spec = self.spec
        opt = spec.train.optimizer
        jit = spec.train.jit_compile
        constants = [
            Constant("INPUT_SHAPE", shape_text(tuple(spec.input.shape))),
            *(Constant(*constant) for constant in recipe.constants()),
            Constant("L2", py_float(spec.l2), _l2_comment(spec, layers)),
            *_backbone_constants(backbone),
            *_rate_constants(opt.learning_rate),
        ]
        if opt.weight_decay > 0:
            constants.append(
                Constant(
                    "WEIGHT_DECAY",
                    py_float(opt.weight_decay),
                    "decoupled weight decay (Loshchilov & Hutter)",
                )
            )
        if optimizer.no_decay:
            paths = "".join(f"    {py_str(p)},\n" for p in optimizer.no_decay)
            constants.append(
                Constant(
                    "NO_WEIGHT_DECAY",
                    "(\n" + paths + ")",
                    "trainable weights that weight decay leaves alone",
                )
            )
        constants += task_constants(spec, task)
        constants += [
            Constant("EPOCHS", repr(spec.train.epochs)),
            *(
                [
                    Constant(
                        "PATIENCE",
                        repr(spec.train.early_stopping.patience),
                        "epochs without improvement before training stops",
                    )
                ]
                if spec.train.early_stopping
                else []
            ),
            Constant("BATCH_SIZE", repr(spec.train.batch_size)),
            Constant("SEED", repr(spec.train.seed)),
            *_split_seed_constant(spec, recipe),
            Constant(
                "STEPS_PER_EXECUTION",
                repr(steps_per_execution),
                "steps per compiled call: same math, less overhead",
            ),
            Constant(
                "JIT_COMPILE",
                py_str(jit) if isinstance(jit, str) else repr(jit),
                "compile the training step with XLA"
                + (" (auto: as Keras chooses)" if jit == "auto" else ""),
            ),
            Constant(
                "OUT", py_str(f"{spec.name}.keras"), "where main() saves the model"
            ),
        ]
        return tuple(constants)


def _split_seed_constant(spec: Spec, recipe: Recipe) -> list[Constant]:
    """SPLIT_SEED, where the module splits its data (a test share or a
    validation share): SEED unless train.split_seed sets its own."""
    if _held_out(spec.train.validation) is None and recipe.test_split is None:
        return []
    seed = spec.train.split_seed
    return [
        Constant(
            "SPLIT_SEED",
            "SEED" if seed is None else repr(seed),
            "which samples test and validate",
        )
    ]


@dataclass(frozen=True)
class _Optimizer:
    cls: str
    args: tuple[str, ...]
    no_decay: tuple[str, ...]


def _rate_constants(rate: float | ScheduleSpec) -> list[Constant]:
    """LEARNING_RATE, and its schedule's constants."""
    if not isinstance(rate, ScheduleSpec):
        return [Constant("LEARNING_RATE", py_float(rate))]
    schedule = plan_schedule(rate)
    first = "the learning rate after warmup" if rate.warmup_epochs else ""
    return [
        Constant("LEARNING_RATE", py_float(rate.initial), first),
        *(Constant(*c) for c in (schedule.constants if schedule else ())),
    ]


def _backbone_constants(backbone: BackbonePlan | None) -> list[Constant]:
    """The constants of the generated backbone()."""
    if backbone is None:
        return []
    constants = []
    if backbone.weights_path is not None:
        constants.append(
            Constant(
                "BACKBONE_WEIGHTS",
                py_str(backbone.weights_path.written),
                f"{backbone.model}'s weights file, without its top",
            )
        )
    if backbone.l2 is not None:
        names = ", ".join(py_str(name) for name in backbone.regularized)
        constants.append(
            Constant(
                "REGULARIZED",
                f"({names},)" if len(backbone.regularized) == 1 else f"({names})",
                "the backbone's weights the l2 rules reach, by variable name",
            )
        )
    if backbone.trained_from:
        constants.append(
            Constant(
                "FINE_TUNE_FROM",
                repr(backbone.trained_from),
                "the backbone trains its layers from this index on",
            )
        )
    return constants


def task_constants(spec: Spec, task: Task) -> list[Constant]:
    """The constants the task's options and the validation split add."""
    constants = []
    if task.one_hot:
        constants.append(
            Constant("NUM_CLASSES", repr(task.outputs), "labels are one-hot encoded")
        )
    if task.label_smoothing:
        constants.append(Constant("LABEL_SMOOTHING", py_float(task.label_smoothing)))
    if isinstance(task.class_weight, tuple):
        weights = ", ".join(
            f"{i}: {py_float(w)}" for i, w in enumerate(task.class_weight)
        )
        constants.append(
            Constant(
                "CLASS_WEIGHT",
                "{" + weights + "}",
                "each class's weight in the training loss",
            )
        )
    validation = spec.train.validation
    if validation != "test":
        constants.append(
            Constant(
                "VALIDATION",
                py_float(float(validation)),
                "share of the training data held out to validate, never trained on",
            )
        )
    return constants


def _nth(i: int, automatic: list[str]) -> str:
    """`the 3rd conv2d` for the layer whose automatic name is conv2d_3."""
    kind, n = automatic[i].rsplit("_", 1)
    suffix = {"1": "st", "2": "nd", "3": "rd"}.get(n[-1], "th")
    if n[-2:] in ("11", "12", "13"):
        suffix = "th"
    return f"the {n}{suffix} {kind}"


def _l2_comment(spec: Spec, layers: list[LayerPlan]) -> str:
    if spec.l2 == 0:
        return "no global L2 penalty"
    roles = {w.role for lay in layers for w in lay.weights}
    reached: list[str] = ["kernel"]
    left_out: list[str] = []
    for role, flag, what in (
        ("bias", spec.l2_bias, "bias"),
        ("norm", spec.l2_norm, "normalization"),
    ):
        if role in roles:
            (reached if flag else left_out).append(what)
    text = "L2 coefficient of every " + " and ".join(reached)
    if left_out:
        text += f" ({' and '.join(w + 'es' if w == 'bias' else w for w in left_out)}"
        text += " not regularized)"
    return text


def plan_spec(
    loaded: LoadedSpec, folder: Path | None = None, *, backend: str | None = None
) -> ModelPlan | list[SpecError]:
    """Resolve a valid spec into a plan, or every cross-field error in it.

    `folder` is the spec file's folder, which paths in the spec are relative
    to; by default the folder of the spec's display name, from the working
    folder. `backend` (build --backend) overrides train.backend.
    """
    return _Planner(loaded, folder, backend).plan()
