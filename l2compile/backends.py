"""Keras' backends: which ones a build may train on, what each needs installed,
and the features that only TensorFlow has.

The generated module is backend-agnostic (`keras`, `keras.ops` and `numpy`)
unless its spec uses a TensorFlow-only feature; `train.backend` (or `build
--backend`) picks the backend the build trains on. Every build exports in a
TensorFlow process, from the saved `.keras` file (l2compile.processes).
"""

from __future__ import annotations

import importlib.machinery
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from l2compile.errors import BuildError

Backend = Literal["jax", "tensorflow", "torch"]
#: What train.backend and build --backend take: a backend, or `auto`.
Choice = Literal["auto", "jax", "tensorflow", "torch"]
#: In the order the spec's schema lists them.
NAMES: tuple[Backend, ...] = ("jax", "tensorflow", "torch")
CHOICES: tuple[Choice, ...] = ("auto", *NAMES)
DEFAULT: Choice = "auto"
Device = Literal["cpu", "gpu"]
#: The backend every export runs on: SavedModel and TFLite are TensorFlow's.
EXPORT: Backend = "tensorflow"


@dataclass(frozen=True)
class _Needs:
    module: str  #: what must be importable
    install: str  #: how to install it


_NEEDS: dict[str, _Needs] = {
    "jax": _Needs("jax", "pip install 'jax[cpu]' (part of l2compile's install)"),
    "tensorflow": _Needs("tensorflow", "pip install tensorflow"),
    "torch": _Needs("torch", "pip install 'l2compile[torch]'"),
}


@dataclass(frozen=True)
class TensorFlowOnly:
    """A spec setting that only Keras' TensorFlow backend can run."""

    field: tuple[str, ...]  #: where the spec sets it
    what: str  #: the setting, as the spec writes it
    why: str


@dataclass(frozen=True)
class Pick:
    """The backend a build trains on, and why (`reason` None: the spec or
    build --backend named it)."""

    backend: Backend
    reason: str | None = None


def device(devices: Path = Path("/dev")) -> Device:
    """Whether this machine has an NVIDIA GPU, from its device files (no
    import: planning stays free of TensorFlow and JAX)."""
    return "gpu" if any(devices.glob("nvidia[0-9]*")) else "cpu"


def pick(convolutions: str | None, tensorflow_only: str | None, on: Device) -> Pick:
    """`auto`'s choice, by the rule the specs' table in docs/benchmarks.md
    measures (docs/backends.md): TensorFlow where a setting needs it
    (`tensorflow_only`, what it is) or where the model convolves
    (`convolutions`, what does) on a CPU, where oneDNN's convolutions are
    about four times faster than XLA's; JAX otherwise, and on a GPU."""
    if tensorflow_only:
        return Pick("tensorflow", f"{tensorflow_only}, which needs TensorFlow")
    if on == "gpu":
        return Pick("jax", "a GPU")
    if convolutions:
        return Pick("tensorflow", f"{convolutions} on a CPU")
    return Pick("jax", "no convolutions")


def check_installed(backend: str) -> None:
    """Fail with the install command when `backend`'s package is missing."""
    needs = _NEEDS[backend]
    # On sys.path, whatever this process's sys.modules says (a process that
    # trains on JAX keeps TensorFlow out of it, l2compile.processes).
    if importlib.machinery.PathFinder.find_spec(needs.module) is None:
        raise BuildError(
            f"Keras' {backend} backend needs the {needs.module} package, which is "
            f"not installed: {needs.install}"
        )
