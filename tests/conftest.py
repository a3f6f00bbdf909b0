"""Shared test setup.

Hypothesis runs under the profile named by $HYPOTHESIS_PROFILE: "ci" (the
default where $CI is set) draws the same examples on every run and keeps no
example database, so a run passes or fails the same way on any machine;
"explore" (the default elsewhere) draws new examples each run and replays the
failures it found before, from .hypothesis/.

The real MNIST is found the way a user points l2compile at it: through
L2COMPILE_DATA. Where the workspace keeps a copy beside the repository
(../shared/datasets, as on CI), the tests use it unless the variable is set.
Tests marked `needs_mnist` are skipped where no copy is found.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable, Generator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from l2compile.datasets import candidates
from l2compile.generate import Compiled
from l2compile.plan import ModelPlan, plan_spec
from l2compile.sources import RECIPES
from l2compile.spec import load_spec

# Both profiles start from Hypothesis' defaults, not from whatever profile it
# loaded itself (it loads its own "ci" wherever $CI is set, even empty).
_DEFAULTS = settings.get_profile("default")
# CI sets no deadline: on a loaded machine (and with the suite's two workers)
# an example's time says nothing about the code, and speed is measured in
# benchmarks/, never in a test.
settings.register_profile(
    "ci",
    _DEFAULTS,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore", _DEFAULTS, deadline=timedelta(seconds=2), print_blob=True
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI") else "explore")
)

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
TEST_SPECS = ROOT / "tests" / "specs"
GOLDEN = Path(__file__).resolve().parent / "golden"

_SHARED_DATA = ROOT.parent / "shared" / "datasets"
# Keras picks its backend once, at its first import: the tests run on the
# default backend, JAX, and builds export in a TensorFlow child process
# (l2compile.processes), as `l2compile build` does.
os.environ.setdefault("KERAS_BACKEND", "jax")

if "L2COMPILE_DATA" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["L2COMPILE_DATA"] = str(_SHARED_DATA)

NEEDS_MNIST = "needs the real MNIST: set L2COMPILE_DATA to a folder holding mnist.npz"

#: The suite's tiers (pyproject.toml): every test is in exactly one.
TIERS = ("unit", "build", "training", "external")
#: What a `unit` test never imports, and the events of starting a process.
HEAVY = ("keras", "tensorflow", "jax")
SPAWNS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.exec",
    }
)
_UNIT: dict[str, list[str] | None] = {"spawned": None}


def _spawned(event: str, args: tuple[object, ...]) -> None:
    spawned = _UNIT["spawned"]
    if spawned is not None and event in SPAWNS:
        spawned.append(f"{event} {args[:2]!r:.200}")


sys.addaudithook(_spawned)


#: JAX's persistent compilation cache, shared by every build of one test run
#: (both workers and every process they start): the suite builds the same tiny
#: models again and again, and XLA's compilation is most of a tiny JAX build's
#: training time (CONTRIBUTING.md, "The tests"). One folder a run, made by the
#: process that starts the workers and removed when it ends: no entry outlives
#: the run that wrote it. A size bound turns on JAX's file lock, so that one
#: worker never reads an entry another is still writing.
JAX_CACHE = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    "JAX_COMPILATION_CACHE_MAX_SIZE": str(2**30),
}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return  # a worker inherits its folder; a caller's own cache is kept
    folder = tempfile.mkdtemp(prefix="l2compile-tests-jax-cache-")
    os.environ.update(JAX_CACHE, JAX_COMPILATION_CACHE_DIR=folder)
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse the run if a test has no tier marker or more than one (before
    -m deselects any, so `pytest -m unit` checks every test too)."""
    wrong = []
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            f"every test needs exactly one of the markers {', '.join(TIERS)}:\n  "
            + "\n  ".join(wrong)
        )
    items[:] = sorted(items, key=_slowest_tier_first)


#: The order the tiers run in: the slowest first, so that with pytest-xdist
#: (pyproject.toml: each file on one worker, files in this order) the minutes
#: of full-MNIST training start at once and the many short unit files fill the
#: end, instead of one long file running alone after every other has finished.
RUN_ORDER = ("training", "external", "build", "unit")


def _slowest_tier_first(item: pytest.Item) -> int:
    (tier,) = {m.name for m in item.iter_markers() if m.name in TIERS}
    return RUN_ORDER.index(tier)


def _guard_unit(item: pytest.Item) -> Generator[None, object, object]:
    """Run a phase of a `unit` test, then fail it if it started a process or
    imported Keras, TensorFlow or JAX (seen where none was imported before:
    in `pytest -m unit`, and in any run until the first build)."""
    if item.get_closest_marker("unit") is None:
        return (yield)
    before = [name for name in HEAVY if name in sys.modules]
    _UNIT["spawned"] = spawned = []
    try:
        result = yield
    finally:
        _UNIT["spawned"] = None
    imported = [n for n in HEAVY if n in sys.modules and n not in before]
    if spawned or imported:
        pytest.fail(
            "a unit test starts no process and imports none of "
            f"{', '.join(HEAVY)}; this one "
            + "; ".join(
                [f"imported {', '.join(imported)}"] * bool(imported)
                + [f"started {', '.join(spawned)}"] * bool(spawned)
            )
            + ": mark it build",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    _skip_without_mnist(item)
    return (yield from _guard_unit(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guard_unit(item))


def _skip_without_mnist(item: pytest.Item) -> None:
    """Skip a `needs_mnist` test, saying what to set, where MNIST is not found
    ($L2COMPILE_DATA, then the Keras cache), rather than fail it offline."""
    if item.get_closest_marker("needs_mnist") is None:
        return
    places = candidates(RECIPES["mnist"], None, os.environ)
    if not any(path.is_file() for _, path in places):
        pytest.skip(NEEDS_MNIST)


SMALL_SPEC = """\
name: small_mlp
description: a small MLP for fast tests
input: {shape: [28, 28]}
l2: 0.01
layers:
  - {type: flatten}
  - {type: dense, units: 16, activation: relu}
  - {type: dropout, rate: 0.1}
  - {type: dense, units: 10, activation: softmax}
train:
  recipe: mnist
  epochs: 1
  batch_size: 32
  seed: 7
  validation: test
"""
# SMALL_SPEC validates on the test split, as before validation had a default:
# one epoch on 256 samples leaves a model too unsure for its int8 file to keep
# parity on the other 90 %. The default (a held-out share) is built by
# tests/test_task_builds.py, the MNIST training tests and test_resume.py.


class StopAt:
    """Stands in for the penalty recorder and interrupts the build at an epoch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        from l2compile import callbacks

        self.real = callbacks.penalty_recorder

    def __call__(self, keras: Any, penalties: list[float]) -> Any:
        recorder = self.real(keras, penalties)
        stop = self.epoch

        def on_epoch_begin(epoch: int, logs: Any = None) -> None:
            if epoch == stop:
                raise KeyboardInterrupt

        recorder.on_epoch_begin = on_epoch_begin
        return recorder


def make_mnist_npz(
    path: Path, n_train: int = 256, n_test: int = 128, seed: int = 0
) -> Path:
    """A small file in Keras' mnist.npz layout, with learnable labels."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        x = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):  # a bright stripe per class: learnable
            x[i, label * 2 : label * 2 + 3, :] = 250
        return x, y

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    return make_mnist_npz(tmp_path / "data" / "mnist.npz")


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def make_fashion_idx(folder: Path, n_train: int = 64, n_test: int = 32) -> Path:
    """Keras' fashion-mnist/ folder of four gzip IDX files, small."""
    import gzip

    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        header = b"\x00\x00\x08\x01" + n.to_bytes(4, "big")
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(header + labels.tobytes())
        )
        header = b"\x00\x00\x08\x03" + b"".join(
            d.to_bytes(4, "big") for d in (n, 28, 28)
        )
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(header + images.tobytes())
        )
    return folder


def plan_file(path: Path, display: str | None = None) -> ModelPlan:
    """The plan of a spec file that must be valid."""
    loaded = load_spec(path, display)
    assert not isinstance(loaded, list), [str(e) for e in loaded]
    plan = plan_spec(loaded)
    assert not isinstance(plan, list), [str(e) for e in plan]
    return plan


def plan_text(text: str, tmp_path: Path) -> ModelPlan:
    """The plan of spec text that must be valid (shown as spec.yaml)."""
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return plan_file(path, "spec.yaml")


def compile_errors(text: str, tmp_path: Path) -> list[str]:
    """The messages of the whole compile (spec and plan) of spec text that must
    be rejected, as a user running from its folder sees them."""
    from l2compile.generate import compile_spec

    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = compile_spec(Path("spec.yaml"))
    finally:
        os.chdir(cwd)
    assert isinstance(result, list), "expected the spec to be rejected"
    return [str(e) for e in result]


def compiled(tmp_path: Path, text: str = SMALL_SPEC) -> Compiled:
    """A spec text that must be valid, compiled from tmp_path/small.yaml."""
    from l2compile.generate import compile_spec

    path = tmp_path / "small.yaml"
    path.write_text(text, encoding="utf-8")
    result = compile_spec(path)
    assert not isinstance(result, list), [str(e) for e in result]
    return result


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """A PNG file of 8-bit pixels (height, width, 1 or 3), written without an
    imaging library: zlib-compressed rows, each with filter byte 0."""
    height, width, channels = pixels.shape
    color = {1: 0, 3: 2}[channels]
    raw = b"".join(
        b"\x00" + pixels[row].astype(np.uint8).tobytes() for row in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def write_bmp(path: Path, pixels: np.ndarray) -> Path:
    """A 24-bit BMP file of RGB pixels (height, width, 3): rows bottom-up, BGR,
    each padded to 4 bytes."""
    height, width, _ = pixels.shape
    pad = (-3 * width) % 4
    rows = b"".join(
        pixels[row, :, ::-1].astype(np.uint8).tobytes() + b"\x00" * pad
        for row in range(height - 1, -1, -1)
    )
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(rows), 0, 0, 0, 0
    )
    head = struct.pack("<2sIHHI", b"BM", 54 + len(rows), 0, 0, 54)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + info + rows)
    return path


#: The classes of `make_image_folder`: a shape each, learnable in an epoch or two.
SHAPES = ("circle", "square", "stripes")


def shape_image(
    kind: int, size: int, channels: int, rng: np.random.Generator
) -> np.ndarray:
    """A noisy picture of SHAPES[kind], 8-bit, (size, size, channels)."""
    rows, cols = np.mgrid[:size, :size]
    centre = size / 2
    shape = (
        (rows - centre) ** 2 + (cols - centre) ** 2 < (size / 3) ** 2,
        (abs(rows - centre) < size / 4) & (abs(cols - centre) < size / 4),
        rows % 3 == 0,
    )[kind]
    image = np.clip(shape + rng.normal(0, 0.25, (size, size)), 0, 1)
    gray = (image * 255).astype(np.uint8)[..., None]
    if channels == 1:
        return gray
    return np.concatenate([gray, gray // 2, 255 - gray], axis=-1)


def make_image_folder(
    root: Path,
    *,
    channels: int = 1,
    split: bool = True,
    per_class: int = 40,
    size: int = 16,
    seed: int = 0,
) -> Path:
    """A folder of SHAPES images: root/train/<class>/ and root/test/<class>/
    (`split`), or root/<class>/ alone; RGB folders mix PNG and BMP files."""
    rng = np.random.default_rng(seed)
    parts = (
        (("train", per_class), ("test", per_class // 2))
        if split
        else (("", per_class),)
    )
    for part, count in parts:
        for kind, name in enumerate(SHAPES):
            for i in range(count):
                pixels = shape_image(kind, size, channels, rng)
                file = root / part / name / f"{i:03d}"
                if channels == 3 and i % 2:
                    write_bmp(file.with_suffix(".bmp"), pixels)
                else:
                    write_png(file.with_suffix(".png"), pixels)
    return root


def builds_offline(plan: ModelPlan) -> bool:
    """Whether the model builds without a network: a backbone with ImageNet
    weights needs them in Keras' cache (~/.keras/models/), which tests do not
    fill."""
    return plan.backbone is None or plan.backbone.weights != "imagenet"


def make_example_data(folder: Path) -> Path:
    """The example specs' data (specs/data/make_example_data.py: the tables
    scikit-learn ships), written into `folder`."""
    import importlib.util

    script = SPECS / "data" / "make_example_data.py"
    spec = importlib.util.spec_from_file_location("make_example_data", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(folder)
    return folder
