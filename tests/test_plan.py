"""The plan: which weight gets which L2 coefficient, shapes and parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from l2compile.plan import ModelPlan, plan_spec
from l2compile.recipes import ModelInput, SpecPath
from l2compile.render import render_module
from l2compile.spec import load_spec

from .conftest import SMALL_SPEC, SPECS, TEST_SPECS, plan_text

pytestmark = pytest.mark.unit


def coefficients(plan: ModelPlan) -> dict[str, float]:
    return {f"{lay.name}/{w.name}": w.l2 for lay in plan.layers for w in lay.weights}


ARTICLE = (SPECS / "mnist.yaml").read_text(encoding="utf-8")


def test_article_model_has_the_articles_parameters(tmp_path: Path) -> None:
    plan = plan_text(ARTICLE, tmp_path)
    assert [lay.output_shape for lay in plan.layers] == [(128,), (64,), (10,)]
    # 784*128+128 + 128*64+64 + 64*10+10
    assert plan.params == 109_386
    assert plan.regularized_params == 784 * 128 + 128 * 64 + 64 * 10


def test_global_l2_reaches_every_kernel_and_no_bias(tmp_path: Path) -> None:
    assert coefficients(plan_text(ARTICLE, tmp_path)) == {
        "dense_1/kernel": 0.01,
        "dense_1/bias": 0.0,
        "dense_2/kernel": 0.01,
        "dense_2/bias": 0.0,
        "dense_3/kernel": 0.01,
        "dense_3/bias": 0.0,
    }


def test_l2_bias_brings_biases_in(tmp_path: Path) -> None:
    plan = plan_text(ARTICLE.replace("l2: 0.01", "l2: 0.01\nl2_bias: true"), tmp_path)
    assert set(coefficients(plan).values()) == {0.01}
    assert render_module(plan).count("bias_regularizer=regularizers.L2(L2)") == 3


def test_per_layer_l2_overrides_and_zero_turns_it_off(tmp_path: Path) -> None:
    text = ARTICLE.replace("units: 128,", "units: 128, l2: 0.001,").replace(
        "units: 64,", "units: 64, l2: 0,"
    )
    plan = plan_text(text, tmp_path)
    assert coefficients(plan) == {
        "dense_1/kernel": 0.001,
        "dense_1/bias": 0.0,
        "dense_2/kernel": 0.0,
        "dense_2/bias": 0.0,
        "dense_3/kernel": 0.01,
        "dense_3/bias": 0.0,
    }
    code = render_module(plan)
    assert "kernel_regularizer=regularizers.L2(0.001)" in code
    assert code.count("kernel_regularizer") == 2
    assert plan.regularized_params == 784 * 128 + 64 * 10


def test_no_global_l2_means_no_regularizer(tmp_path: Path) -> None:
    plan = plan_text(ARTICLE.replace("l2: 0.01", "l2: 0"), tmp_path)
    assert set(coefficients(plan).values()) == {0.0}
    assert "regularizers.L2" not in render_module(plan)


def test_dense_without_bias_has_only_a_kernel(tmp_path: Path) -> None:
    plan = plan_text(
        ARTICLE.replace("units: 64,", "units: 64, use_bias: false,"), tmp_path
    )
    assert [w.name for w in plan.layers[1].weights] == ["kernel"]
    assert "use_bias=False" in render_module(plan)


def test_flatten_dropout_reshape_shapes(tmp_path: Path) -> None:
    text = SMALL_SPEC.replace(
        "  - {type: flatten}\n",
        "  - {type: reshape, target_shape: [-1, 4]}\n  - {type: flatten}\n",
    )
    plan = plan_text(text, tmp_path)
    assert [(lay.name, lay.output_shape) for lay in plan.layers] == [
        ("reshape_1", (196, 4)),
        ("flatten_1", (784,)),
        ("dense_1", (16,)),
        ("dropout_1", (16,)),
        ("dense_2", (10,)),
    ]
    assert plan.params == 784 * 16 + 16 + 16 * 10 + 10


def test_explicit_names_are_kept_and_defaults_avoid_them(tmp_path: Path) -> None:
    text = ARTICLE.replace("units: 64,", "units: 64, name: dense_1,")
    plan = plan_text(text, tmp_path)
    assert [lay.name for lay in plan.layers] == ["dense_2", "dense_1", "dense_3"]


EMBEDDING = (TEST_SPECS / "embedding.yaml").read_text(encoding="utf-8")


def test_the_specs_data_path_is_resolved_against_the_specs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project" / "specs"
    folder.mkdir(parents=True)
    spec = folder / "tokens.yaml"
    spec.write_text(EMBEDDING.replace("data: tokens.npz", "data: ../data/t.npz"))
    monkeypatch.chdir(tmp_path)
    loaded = load_spec(spec, "project/specs/tokens.yaml")
    assert not isinstance(loaded, list)
    for given in (folder, None):  # None: the display name's folder, from here
        plan = plan_spec(loaded, given)
        assert not isinstance(plan, list)
        assert plan.data_path == SpecPath(
            "train.data", "project/specs/tokens.yaml", "../data/t.npz", str(folder)
        )
        assert plan.data_path.path == Path("project/data/t.npz")
        assert plan.data == "../data/t.npz"  # the generated module's DATA
        assert 'DATA = "../data/t.npz"  # the data file' in render_module(plan)
    monkeypatch.chdir(folder / "..")
    plan = plan_spec(loaded, folder)
    assert not isinstance(plan, list) and plan.data_path is not None
    assert plan.data_path.path == Path("data/t.npz")


def test_a_plan_without_a_data_file_has_no_data_path(tmp_path: Path) -> None:
    assert plan_text(ARTICLE, tmp_path).data_path is None


def test_the_model_input_names_the_embeddings_ids(tmp_path: Path) -> None:
    embedding = plan_text(EMBEDDING, tmp_path)
    assert embedding.model_input == ModelInput((12,), ids=50, task=embedding.task)
    article = plan_text(ARTICLE, tmp_path)
    assert article.model_input == ModelInput((784,), task=article.task)
