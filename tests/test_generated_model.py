"""The generated module builds the planned model and runs on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from l2compile import contract
from l2compile.contract import GeneratedModule, import_generated
from l2compile.errors import BuildError
from l2compile.plan import plan_spec
from l2compile.spec import load_spec

from .conftest import GOLDEN, SPECS, builds_offline, plan_file
from .update_golden import all_specs


@pytest.fixture(scope="module")
def article_module() -> GeneratedModule:
    return import_generated(GOLDEN / "mnist_mlp.py", "mnist_mlp_golden")


@pytest.mark.build
def test_built_model_matches_the_plan(article_module: GeneratedModule) -> None:
    loaded = load_spec(SPECS / "mnist.yaml")
    assert not isinstance(loaded, list)
    plan = plan_spec(loaded)
    assert not isinstance(plan, list)
    model = article_module.build_model()
    assert model.count_params() == plan.params == 109_386
    assert [layer.name for layer in model.layers] == ["dense_1", "dense_2", "dense_3"]
    assert [tuple(w.shape) for w in model.weights] == [
        w.shape for layer in plan.layers for w in layer.weights
    ]


@pytest.mark.build
def test_regularization_losses_are_l2_of_every_kernel(
    article_module: GeneratedModule,
) -> None:
    model = article_module.build_model()
    kernels = [np.asarray(layer.kernel) for layer in model.layers]
    expected = sum(0.01 * float(np.sum(k.astype(np.float64) ** 2)) for k in kernels)
    losses = [float(loss) for loss in model.losses]
    assert len(losses) == 3
    assert sum(losses) == pytest.approx(expected, rel=1e-5)


@pytest.mark.build
def test_compiled_model_uses_the_recipe(article_module: GeneratedModule) -> None:
    model = article_module.compile_model(article_module.build_model())
    assert type(model.optimizer).__name__ == "Adam"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    assert model.loss == "sparse_categorical_crossentropy"


@pytest.mark.build
def test_preprocess_scales_to_unit_range_and_flattens(
    article_module: GeneratedModule,
) -> None:
    x = np.full((3, 28, 28), 255, dtype=np.uint8)
    y = np.array([1, 2, 3], dtype=np.uint8)
    px, py = article_module.preprocess(x, y)
    assert px.shape == (3, 784)
    assert px.dtype == np.float32
    assert float(px.max()) == 1.0
    assert list(py) == [1, 2, 3]


@pytest.mark.build
def test_every_golden_module_holds_the_contract_of_its_distribute() -> None:
    plans = {plan.name: plan for plan in map(plan_file, all_specs())}
    for path in sorted(GOLDEN.glob("*.py")):
        distribute = plans[path.stem].distribute
        module = import_generated(path, f"contract_{path.stem}", distribute)
        for name, only in contract.ONLY_WITH.items():
            assert hasattr(module, name) == (distribute in only), (path.name, name)


@pytest.mark.build
def test_a_module_without_a_member_of_the_contract_is_refused_by_name(
    tmp_path: Path,
) -> None:
    edited = (GOLDEN / "mnist_mlp.py").read_text()
    edited = edited.replace("def build_model(", "def make_model(")
    edited = edited.replace("class Batches(", "class Shuffled(")
    path = tmp_path / "mnist_mlp.py"
    path.write_text(edited)
    for distribute, missing in (
        (None, "build_model"),
        ("none", "Batches, build_model"),
    ):
        with pytest.raises(BuildError) as err:
            import_generated(path, f"edited_{distribute}", distribute)
        assert str(err.value) == (
            f"the generated module {path} lacks {missing}, which l2compile relies "
            "on (l2compile/contract.py): was it edited by hand?"
        )


# Run Python isolated (-I: no cwd, PYTHONPATH or user site on sys.path), from a
# folder holding only the generated file, with a guard that fails on any import
# of l2compile: the environment of a repository that has only TensorFlow.
_ISOLATED = (
    "import runpy, sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] == 'l2compile':\n"
    "            raise ImportError('the generated code imported l2compile')\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.path.insert(0, '.')\n"
)


def _isolated(
    tmp_path: Path, code: str, *args: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "isolated.py").write_text(_ISOLATED + code)
    return subprocess.run(
        [sys.executable, "-I", "isolated.py", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )


@pytest.mark.build
def test_generated_modules_build_their_models_without_l2compile(
    tmp_path: Path,
) -> None:
    plans = {plan.name: plan for plan in map(plan_file, all_specs())}
    names = sorted(p.stem for p in GOLDEN.glob("*.py") if builds_offline(plans[p.stem]))
    for name in names:
        (tmp_path / f"{name}.py").write_text((GOLDEN / f"{name}.py").read_text())
    result = _isolated(
        tmp_path,
        "import json, importlib\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    module = importlib.import_module(name)\n"
        "    # A csv model is built for its columns: here all numeric.\n"
        "    # derived from the data (None): planned with one input\n"
        "    width = module.INPUT_SHAPE[0] if module.INPUT_SHAPE else 1\n"
        "    numeric = {'name': 'x', 'kind': 'number', 'fill': 0.0}\n"
        "    args = ([numeric] * width,) if hasattr(module, 'encode') else ()\n"
        "    # A scheduled learning rate counts an epoch's batches: any will do.\n"
        "    steps = (10,) if hasattr(module, 'learning_rate') else ()\n"
        "    model = module.compile_model(module.build_model(*args), *steps)\n"
        "    found[name] = [model.count_params(), len(model.losses)]\n"
        "print(json.dumps(found))\n",
        *names,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {
        name: [
            plans[name].params,
            sum(1 for lay in plans[name].layers for w in lay.weights if w.l2 > 0),
        ]
        for name in names
    }


@pytest.mark.build
def test_generated_file_trains_as_a_script(tmp_path: Path, tiny_mnist: Path) -> None:
    (tmp_path / "mnist_mlp.py").write_text((GOLDEN / "mnist_mlp.py").read_text())
    result = _isolated(
        tmp_path,
        "sys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n",
        "mnist_mlp.py",
        "--data",
        str(tiny_mnist),
        "--epochs",
        "1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("Test loss: ") for line in lines)
    assert any(line.startswith("Test accuracy: ") for line in lines)
    # main() saves to <name>.keras in the working folder by default.
    assert lines[-1] == "Saved mnist_mlp.keras"
    assert (tmp_path / "mnist_mlp.keras").stat().st_size > 0


def _package_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def keras_jax_venv(venv: Path) -> Path:
    """A new virtual environment holding keras, jax[cpu] and numpy (the
    versions installed here) and what they need, and no TensorFlow: its
    python. Skips where they cannot be installed, except in CI."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    wanted = [f"{name}=={_package_version(name)}" for name in ("keras", "numpy")]
    wanted.append(f"jax[cpu]=={_package_version('jax')}")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *wanted],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if installed.returncode != 0 and not os.environ.get("CI"):
        pytest.skip(f"cannot install keras and jax: {installed.stderr[-500:]}")
    assert installed.returncode == 0, installed.stderr[-2000:]
    return python


@pytest.mark.external
@pytest.mark.network
def test_a_module_runs_as_its_docstring_says_beside_only_keras_jax_and_numpy(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    """In a virtual environment holding keras, jax[cpu] and numpy (and what
    they need) and no TensorFlow, with KERAS_BACKEND unset, the command the
    module's docstring gives trains it: the module sets the backend it was
    built for, since Keras would otherwise choose TensorFlow."""
    python = keras_jax_venv(tmp_path / "venv")
    module = (GOLDEN / "mnist_mlp.py").read_text()
    (tmp_path / "mnist_mlp.py").write_text(module)
    usage = next(line for line in module.splitlines() if "python mnist_mlp.py" in line)
    command = usage.split()
    assert command[:3] == ["python", "mnist_mlp.py", "--data"]
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [str(python), *command[1:3], str(tiny_mnist), "--epochs", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Test accuracy: " in result.stdout
    assert "tensorflow" not in result.stderr.lower()
    assert (tmp_path / "mnist_mlp.keras").is_file()


@pytest.mark.build
def test_an_image_modules_reader_is_converted_without_an_autograph_warning(
    tmp_path: Path,
) -> None:
    """read_images is a tf.function of a named function, which AutoGraph can
    convert in a module the build imports from its file; a lambda made
    TensorFlow warn on every image build ("AutoGraph could not transform
    <function <lambda>> ... Please report this to the TensorFlow team")."""
    from .conftest import make_image_folder

    photos = make_image_folder(tmp_path / "images", channels=3, per_class=2)
    files = [str(p) for p in sorted(photos.glob("train/*/*"))]
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from l2compile.contract import import_generated\n"
        "module = import_generated(Path(sys.argv[1]), 'photos')\n"
        "print(module.read_images(np.array(sys.argv[2:])).shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(GOLDEN / "augmented_photos.py"), *files],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == f"({len(files)}, 32, 32, 3)"
    assert "AutoGraph" not in result.stderr


@pytest.mark.build
def test_image_sets_share_the_memory_budget_and_both_reads_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sets of images share IN_MEMORY_BYTES: one that fits what is left
    is decoded once and kept, the next one that does not is read a batch at
    a time, and both give the same pixels."""
    from .conftest import make_image_folder

    photos = make_image_folder(tmp_path / "images", channels=3, per_class=3)
    files = np.array(sorted(str(p) for p in photos.glob("train/*/*")))
    module = import_generated(GOLDEN / "augmented_photos.py", "photos")
    size = len(files) * int(np.prod(module.INPUT_SHAPE))
    # Room for one set, not two (given back after, for the module's next user).
    monkeypatch.setattr(module.Images, "unheld", size + size // 2)
    kept, streamed = module.Images(files), module.Images(files)
    assert (kept.kept, streamed.kept, module.Images.unheld) == (True, False, size // 2)
    order = np.random.default_rng(0).permutation(len(files))
    np.testing.assert_array_equal(kept[order], streamed[order])
    assert kept.pixels is not None and streamed.pixels is None
    assert kept[order].dtype == np.float32 and kept[order].min() >= 0
    assert kept[order].max() <= 1 and kept[order].max() > 0.5
