"""The generated module's contract: what l2compile and its tests use of a
module rendered from templates/module.py.jinja (the build calls set_seeds,
preprocess, build_model, compile_model, make_strategy, train and evaluate; the
tests also load_data, Batches and SEED), and the import that holds a module
to it.

The build, `l2compile eval` and the tests reach the generated code only through
`GeneratedModule`; a template change that drops or renames one of its members
breaks `import_generated` with the member's name, not a later AttributeError.
The module's `main()` (its command line) is the user's, and not part of it.

TensorFlow and Keras are never imported here: their types appear as `Any`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol, TypeAlias, cast

import numpy.typing as npt

from l2compile.errors import BuildError

#: keras.Model: Keras is imported only where training happens.
Model: TypeAlias = Any
#: Samples or labels, as the data arrives and as the model is fed.
Array: TypeAlias = npt.NDArray[Any]


class GeneratedModule(Protocol):
    """A generated module, as the build and `l2compile eval` use it."""

    SEED: int
    #: The training batches: a keras.utils.PyDataset of (x, y), whose
    #: `shuffle(epoch)` orders the samples for an epoch (not multi_worker).
    Batches: Any

    def set_seeds(self) -> None:
        """Seed Python, NumPy and Keras' backend (and, asked, determinism)."""

    def load_data(self, path: str) -> tuple[Any, ...]:
        """The train and test splits from `path` (a recipe's also takes None;
        a csv's also gives its model inputs, as model.json lists them)."""

    def preprocess(self, x: Array, y: Array) -> tuple[Any, Array]:
        """Raw samples and labels as the model is fed them (an image folder's
        x is the files' paths, and its samples an `Images` sequence that
        gives the images of a slice, decoded once or when it is taken)."""

    def build_model(self, *columns: Any, **backbone_weights: str) -> Model:
        """The uncompiled model (a csv's: for its inputs, as load_data gives
        them)."""

    def compile_model(self, model: Model, *schedule: int) -> Model:
        """`model` with its optimizer, loss and metrics attached (where the
        learning rate has a schedule: over `steps_per_epoch, epochs`)."""

    def make_strategy(self) -> Any:
        """The tf.distribute.Strategy to build the model in (distribute only)."""

    def distribution(self) -> Any:
        """keras.distribution.DataParallel over every device of every process,
        the processes joined first (data_parallel only)."""

    def train(
        self,
        model: Model,
        x_train: Array,
        y_train: Array,
        x_val: Array,
        y_val: Array,
        epochs: int = ...,
        initial_epoch: int = 0,
        verbose: str | int = "auto",
        callbacks: list[Any] | None = None,
    ) -> Any:
        """Train, validating each epoch; Keras' History (multi_worker: no
        initial_epoch, as its loop cannot resume)."""

    def early_stopping(self) -> Any:
        """keras.callbacks.EarlyStopping as the spec configures it (only where
        it stops early)."""

    def evaluate(self, model: Model, x: Array, y: Array) -> dict[str, float]:
        """The loss and accuracy computed on this worker (multi_worker only)."""

    def validation_split(
        self, x: Array, y: Array
    ) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
        """The training data less a seeded share, and that share (where
        train.validation is a share)."""

    def adapt(self, model: Model, x: Array) -> None:
        """Learn the normalization layers' statistics from `x` (where the
        model has one)."""

    def class_weights(self, y: Array) -> dict[int, float]:
        """Each class's weight in the training loss (class_weight: balanced)."""

    def recompute_batchnorm_statistics(self, model: Model, x: Array, y: Array) -> None:
        """Set the trained batch normalization layers' statistics to the
        training data's under the final weights (train.batchnorm_statistics)."""


#: Members that only some modules have, and the train.distribute that have them.
ONLY_WITH = {
    "make_strategy": ("mirrored", "multi_worker"),
    "distribution": ("data_parallel",),
    "Batches": ("none", "mirrored", "data_parallel"),
    "evaluate": ("multi_worker",),
}
#: Members that only some plans' modules have (ModelPlan.optional_members).
OPTIONAL = (
    "validation_split",
    "adapt",
    "class_weights",
    "early_stopping",
    "recompute_batchnorm_statistics",
)
#: Every member of the contract, in the order it is declared.
MEMBERS = tuple(GeneratedModule.__annotations__) + tuple(
    name for name in vars(GeneratedModule) if not name.startswith("_")
)


def members(distribute: str | None = None) -> tuple[str, ...]:
    """The members a module of `distribute` has; None: those every module has."""
    return tuple(
        name
        for name in MEMBERS
        if (name not in ONLY_WITH or distribute in ONLY_WITH[name])
        and name not in OPTIONAL
    )


def import_generated(
    path: Path,
    name: str,
    distribute: str | None = None,
    optional: tuple[str, ...] = (),
) -> GeneratedModule:
    """Import a generated module from its file, without touching sys.path, and
    check that it has every member of the contract (for `distribute`, if given,
    and the `optional` members its plan gives it).
    """
    spec = importlib.util.spec_from_file_location(f"l2compile_generated_{name}", path)
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot import the generated module {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wanted = (*members(distribute), *optional)
    missing = [m for m in wanted if not hasattr(module, m)]
    if missing:
        raise BuildError(
            f"the generated module {path} lacks {', '.join(missing)}, which "
            "l2compile relies on (l2compile/contract.py): was it edited by hand?"
        )
    return cast(GeneratedModule, module)
