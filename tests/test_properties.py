"""Property tests: whatever the spec, validate and generate answer with the
project's own errors, and every spec that validates builds the model it
describes."""

from __future__ import annotations

import importlib.util
import keyword
import math
import pkgutil
import re
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2compile.contract import GeneratedModule, import_generated
from l2compile.errors import SpecError
from l2compile.plan import ModelPlan, plan_spec
from l2compile.render import render_module
from l2compile.source import parse_yaml
from l2compile.spec import validate_document

ACTIVATIONS = ["relu", "tanh", "linear", "sigmoid", "gelu"]
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def is_taken(name: str) -> bool:
    """A Python keyword, or the name of a module Python can import here (the
    standard library, a builtin or an installed one): not a model's name."""
    if keyword.iskeyword(name) or name in sys.stdlib_module_names:
        return True
    if name in sys.builtin_module_names:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return True


#: Names a model may take: of the name's form, and not taken.
model_names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda name: not is_taken(name)
)

dense = st.fixed_dictionaries(
    {"type": st.just("dense"), "units": st.integers(1, 64)},
    optional={
        "activation": st.sampled_from(ACTIVATIONS),
        "use_bias": st.booleans(),
        "l2": st.sampled_from([0, 0.001, 0.01]),
    },
)
dropout = st.fixed_dictionaries(
    {"type": st.just("dropout"), "rate": st.floats(0, 0.9, allow_nan=False)}
)
norm = st.fixed_dictionaries({"type": st.sampled_from(["layer_normalization"])})
hidden = st.one_of(dense, dropout, norm)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.sampled_from([[784], [28, 28], [28, 28, 1]]))
    layers: list[dict[str, Any]] = []
    if len(shape) > 1:
        layers.append({"type": "flatten"})
    layers += draw(st.lists(hidden, max_size=4))
    layers.append({"type": "dense", "units": 10, "activation": "softmax"})
    return {
        "name": draw(model_names),
        "input": {"shape": shape},
        "l2": draw(st.sampled_from([0, 0.0001, 0.01])),
        "l2_bias": draw(st.booleans()),
        "l2_norm": draw(st.booleans()),
        "layers": layers,
        "train": {"recipe": "mnist", "epochs": 1, "batch_size": 32},
    }


def mutate(spec: dict[str, Any], data: st.DataObject) -> Any:
    """Break one thing: drop, retype or add a field anywhere in the tree."""
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )
    node: Any = spec
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys))
        if not isinstance(node[key], (dict, list)) or data.draw(st.booleans()):
            action = data.draw(st.sampled_from(["drop", "retype", "add"]))
            if action == "drop" and isinstance(node, dict):
                del node[key]
            elif action == "add" and isinstance(node, dict):
                node[data.draw(st.text(min_size=1, max_size=12))] = data.draw(junk)
            else:
                node[key] = data.draw(junk)
            return spec
        node = node[key]
    return data.draw(junk) if data.draw(st.booleans()) else spec


def compile_text(text: str) -> ModelPlan | list[SpecError]:
    doc = parse_yaml(text, "spec.yaml")
    if isinstance(doc, list):
        return doc
    loaded = validate_document(doc)
    if isinstance(loaded, list):
        return loaded
    return plan_spec(loaded)


@pytest.mark.unit
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), data=st.data())
def test_broken_specs_get_spec_errors_never_exceptions(
    spec: dict[str, Any], data: st.DataObject
) -> None:
    result = compile_text(yaml.safe_dump(mutate(spec, data)))
    if isinstance(result, list):
        assert result and all(isinstance(e, SpecError) for e in result)
        assert all(str(e).startswith("spec.yaml") for e in result)
    else:
        compile(render_module(result), "generated.py", "exec")


@pytest.mark.unit
@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_gets_spec_errors_never_exceptions(text: str) -> None:
    result = compile_text(text)
    if isinstance(result, list):
        assert all(isinstance(e, SpecError) for e in result)


@pytest.mark.build
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
def test_every_valid_spec_builds_the_model_it_describes(
    spec: dict[str, Any], tmp_path_factory: Any
) -> None:
    plan = compile_text(yaml.safe_dump(spec))
    assert not isinstance(plan, list), [str(e) for e in plan]
    folder = tmp_path_factory.mktemp("gen")
    path = folder / f"{plan.name}.py"
    path.write_text(render_module(plan))
    module: GeneratedModule = import_generated(path, f"property_{plan.name}")
    model = module.build_model()
    assert model.count_params() == plan.params
    regularized = sum(1 for lay in plan.layers for w in lay.weights if w.l2 > 0)
    assert len(model.losses) == regularized
    sample = np.zeros((1, *spec["input"]["shape"]), dtype="float32")
    assert math.prod(np.asarray(model(sample)).shape[1:]) == 10


def _installed_names() -> list[str]:
    """Top-level modules and regular packages installed beside l2compile's
    dependencies, of a model name's form (none from the standard library)."""
    folders = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(
        {
            module.name
            for module in pkgutil.iter_modules(sorted(folders))
            if NAME.fullmatch(module.name)
            and module.name not in sys.stdlib_module_names
        }
    )


KEYWORDS = sorted(k for k in keyword.kwlist if NAME.fullmatch(k))
STDLIB = sorted(n for n in sys.stdlib_module_names if NAME.fullmatch(n))
INSTALLED = _installed_names()
#: The modules the generated code imports itself.
IMPORTED = {"keras", "numpy", "tensorflow"}


@pytest.mark.unit
def test_the_installed_names_include_the_dependencies() -> None:
    assert {"keras", "numpy", "tensorflow", "urllib3", "yaml"} <= set(INSTALLED)


@pytest.mark.unit
@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(KEYWORDS + STDLIB + INSTALLED))
def test_keywords_and_module_names_are_refused_as_model_names(name: str) -> None:
    text = yaml.safe_dump(
        {
            "name": name,
            "input": {"shape": [784]},
            "layers": [{"type": "dense", "units": 10, "activation": "softmax"}],
            "train": {"recipe": "mnist", "epochs": 1, "batch_size": 32},
        },
        sort_keys=False,
    )
    if name in KEYWORDS:
        message = f"{name!r} is a Python keyword"
    elif name in STDLIB or name in IMPORTED:
        message = (
            f"{name!r} would shadow the Python module of the same name "
            "in the generated code; choose another name"
        )
    else:
        message = (
            f"{name!r} would shadow the installed Python module of the same name "
            "when the generated code runs; choose another name"
        )
    errors = compile_text(text)
    assert isinstance(errors, list)
    assert [str(e) for e in errors] == [f"spec.yaml:1:7: error: name: {message}"]


@pytest.mark.unit
@settings(max_examples=100, deadline=None)
@given(name=model_names)
def test_names_that_no_module_takes_are_accepted(name: str) -> None:
    text = yaml.safe_dump(
        {
            "name": name,
            "input": {"shape": [784]},
            "layers": [{"type": "dense", "units": 10, "activation": "softmax"}],
            "train": {"recipe": "mnist", "epochs": 1, "batch_size": 32},
        },
        sort_keys=False,
    )
    assert not isinstance(compile_text(text), list)


def _name_errors(name: str) -> list[str]:
    text = yaml.safe_dump(
        {
            "name": name,
            "input": {"shape": [784]},
            "layers": [{"type": "dense", "units": 10, "activation": "softmax"}],
            "train": {"recipe": "mnist", "epochs": 1, "batch_size": 32},
        },
        sort_keys=False,
    )
    result = compile_text(text)
    return [str(e) for e in result] if isinstance(result, list) else []


@pytest.mark.unit
def test_a_namespace_package_that_a_distribution_installs_is_refused() -> None:
    # protobuf (a TensorFlow dependency) installs google/ without __init__.py.
    assert _name_errors("google") == [
        "spec.yaml:1:7: error: name: 'google' would shadow the installed Python "
        "module of the same name when the generated code runs; choose another name"
    ]


@pytest.mark.unit
def test_modules_on_the_path_are_refused_but_folders_and_the_working_folder_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra, work = tmp_path / "extra", tmp_path / "work"
    (extra / "plain_folder").mkdir(parents=True)
    (extra / "a_module_here.py").write_text("")
    work.mkdir()
    (work / "generated_before.py").write_text("")
    monkeypatch.syspath_prepend(str(extra))
    monkeypatch.syspath_prepend(str(work))
    monkeypatch.chdir(work)
    assert _name_errors("plain_folder") == []
    assert _name_errors("generated_before") == []
    assert _name_errors("a_module_here") == [
        "spec.yaml:1:7: error: name: 'a_module_here' would shadow the installed "
        "Python module of the same name when the generated code runs; choose "
        "another name"
    ]
