"""The compiler's structure: each layer kind in one place, and the parts small.

Adding a layer kind is one registered class in one family module under
l2compile/layers/; the spec's union and the planner are made from the
registry, so nothing else lists the kinds.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from l2compile import layers
from l2compile.layers import KINDS, LAYER_TYPES
from l2compile.layers.base import LayerSpec, MergeSpec
from l2compile.spec import Spec

PACKAGE = Path(layers.__file__).resolve().parent.parent


def _layer_union() -> set[type]:
    annotation = Spec.model_fields["layers"].annotation
    (item,) = typing.get_args(annotation)
    union = typing.get_args(item)[0]
    return set(typing.get_args(union))


@pytest.mark.unit
def test_the_spec_accepts_exactly_the_registered_kinds() -> None:
    assert _layer_union() == set(KINDS.values())
    assert sorted(LAYER_TYPES) == sorted(KINDS)


@pytest.mark.unit
def test_each_kind_is_one_class_in_a_family_module_that_states_its_protocol() -> None:
    for name, kind in KINDS.items():
        assert kind.__module__.startswith("l2compile.layers."), name
        assert kind.__module__ != "l2compile.layers.base", name
        assert kind.keras_class, name
        assert kind.model_fields["type"].annotation == typing.Literal[name]
        if issubclass(kind, MergeSpec):
            assert kind.merged_shape is not MergeSpec.merged_shape, name
        else:
            assert issubclass(kind, LayerSpec)


@pytest.mark.unit
def test_no_other_module_names_a_layer_kind() -> None:
    """Only l2compile/layers/ holds the kinds' classes; the rest of the
    package reaches them through the registry."""
    classes = {kind.__name__ for kind in KINDS.values()}
    for path in PACKAGE.rglob("*.py"):
        if "layers" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        named = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        named |= {
            alias.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)
            for alias in n.names
        }
        assert not named & classes, (path.name, sorted(named & classes))


@pytest.mark.unit
def test_no_function_in_the_package_is_over_80_lines() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long.append(f"{path.name}:{node.name} ({length} lines)")
    assert long == []


@pytest.mark.unit
def test_the_build_only_orchestrates() -> None:
    lines = (PACKAGE / "build.py").read_text(encoding="utf-8").count("\n")
    assert lines < 300


@pytest.mark.build
def test_the_plan_imports_no_build_stage_code() -> None:
    """The plan is made without reading data or importing numpy/TensorFlow:
    validate, generate and inspect answer fast."""
    import subprocess
    import sys

    probe = (
        "import sys, l2compile.plan, l2compile.render; "
        "print(sorted(m for m in ('numpy', 'tensorflow', 'keras', "
        "'l2compile.datasets', 'l2compile.build') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.unit
def test_every_family_module_is_registered() -> None:
    """A family module that FAMILIES leaves out would register nothing."""
    modules = {
        path.stem
        for path in (PACKAGE / "layers").glob("*.py")
        if path.stem not in ("__init__", "base")
    }
    assert set(layers.FAMILIES) == modules
    assert {kind.__module__.rsplit(".", 1)[1] for kind in KINDS.values()} == modules


# --- data sources: one module and one template fragment each ------------------

from l2compile import sources  # noqa: E402
from l2compile.sources import SOURCES  # noqa: E402

TEMPLATES = PACKAGE.parent / "templates"


@pytest.mark.unit
def test_each_source_is_one_module_and_one_template_fragment() -> None:
    """A source is its module, l2compile/sources/<name>.py, holding its one
    registered class, and its fragment, templates/sources/<name>.py.jinja;
    no other module of the package or the templates holds one."""
    modules = {
        path.stem
        for path in (PACKAGE / "sources").glob("*.py")
        if path.stem not in ("__init__", "base")
    }
    fragments = {
        path.name.removesuffix(".py.jinja")
        for path in (TEMPLATES / "sources").glob("*.py.jinja")
    }
    assert set(sources.FAMILIES) == modules == fragments == set(SOURCES)
    for name, kind in SOURCES.items():
        assert kind.__module__ == f"l2compile.sources.{name}", name
        assert kind.template_folder is None, name
        assert kind().template == f"sources/{name}.py.jinja"


def compared_names(text: str, names: set[str]) -> list[tuple[int, str]]:
    """Where Python source `text` compares a value with one of `names`
    (==, !=, in, not in, is; a match case), where one is a literal string in
    the comparison (alone, or in a tuple, list, set or dict of them):
    (line, name). A test of `sys.modules` asks after a package (keras), not
    a kind."""

    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for element in node.elts for s in strings(element)]
        if isinstance(node, ast.Dict):
            return [s for key in node.keys if key is not None for s in strings(key)]
        return []

    found = []
    for node in ast.walk(ast.parse(text)):
        sides: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(ast.unparse(side) == "sys.modules" for side in sides):
                continue
        elif isinstance(node, ast.MatchValue):
            sides = [node.value]
        found += [
            (node.lineno, s) for side in sides for s in strings(side) if s in names
        ]
    return sorted(found)


@pytest.mark.unit
def test_the_name_check_finds_a_comparison() -> None:
    names = {"csv", "npz"}
    text = (
        "if recipe.name == 'csv':\n    pass\n"
        "ok = recipe.name in ('npz', 'mnist')\n"
        "match recipe.name:\n    case 'csv':\n        pass\n"
        "title = {'csv': 'CSV'}\n"
    )
    assert compared_names(text, names) == [(1, "csv"), (3, "npz"), (5, "csv")]


@pytest.mark.unit
def test_no_module_outside_sources_compares_a_source_name() -> None:
    names = set(SOURCES)
    found = [
        (str(path.relative_to(PACKAGE)), line, name)
        for path in sorted(PACKAGE.rglob("*.py"))
        if "sources" not in path.relative_to(PACKAGE).parts
        for line, name in compared_names(path.read_text(encoding="utf-8"), names)
    ]
    assert found == []


@pytest.mark.unit
def test_no_template_outside_sources_names_a_source() -> None:
    """The module template includes the source's fragment and asks its facts
    (encodes, streamed, own_data); it never tests which source it is."""
    pattern = "|".join(sorted(SOURCES))
    for path in TEMPLATES.rglob("*.jinja"):
        if "sources" in path.relative_to(TEMPLATES).parts:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            tags = [t for t in line.split("{%")[1:] if "%}" in t]
            for tag in tags:
                quoted = [f'"{n}"' for n in SOURCES] + [f"'{n}'" for n in SOURCES]
                assert not any(q in tag for q in quoted), (path.name, line, pattern)


# --- the import graph ------------------------------------------------------------


def import_graph(
    texts: dict[str, str], packages: frozenset[str] = frozenset()
) -> dict[str, set[str]]:
    """Module -> the package modules it imports, from each module's source
    (`texts`: dotted name -> source; `packages`: the names that are
    packages, whose source is their __init__'s).
    Every import counts: module-level, inside functions, and under
    TYPE_CHECKING; and a package's registry imports each of its FAMILIES."""
    graph: dict[str, set[str]] = {}
    for name, text in texts.items():
        tree = ast.parse(text)
        here = name.split(".") if name in packages else name.split(".")[:-1]
        wanted: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                wanted |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here[: len(here) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                wanted.add(base)
                wanted |= {f"{base}.{alias.name}" for alias in node.names}
            elif (
                isinstance(node, ast.Assign)
                and any(
                    isinstance(t, ast.Name) and t.id == "FAMILIES" for t in node.targets
                )
                and isinstance(node.value, ast.Tuple)
            ):
                wanted |= {
                    f"{name}.{e.value}"
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                }
        graph[name] = {m for m in wanted if m in texts and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: each strongly connected set of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def _package_texts() -> tuple[dict[str, str], frozenset[str]]:
    texts = {}
    packages = set()
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            packages.add(".".join(parts))
        texts[".".join(parts)] = path.read_text(encoding="utf-8")
    return texts, frozenset(packages)


@pytest.mark.unit
def test_the_cycle_check_finds_a_cycle_through_a_function_level_import() -> None:
    texts = {
        "p.a": "from p.b import thing\n",
        "p.b": "if TYPE_CHECKING:\n    from p import c\n",
        "p.c": "def f():\n    import p.a\n",
        "p.d": "import p.a\n",
    }
    assert cycles(import_graph(texts)) == [["p.a", "p.b", "p.c"]]
    texts["p.c"] = "def f():\n    import os\n"
    assert cycles(import_graph(texts)) == []


@pytest.mark.unit
def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph(*_package_texts())
    assert cycles(graph) == []


#: The modules that make the plan (validate, inspect and generate need
#: nothing else). A source's module belongs to both stages: its facts and
#: checks are the plan's, its `read` imports the readers when a build calls it.
PLAN_STAGE = (
    "l2compile.spec",
    "l2compile.plan",
    "l2compile.render",
    "l2compile.generate",
    "l2compile.recipes",
    "l2compile.schedules",
    "l2compile.fields",
    "l2compile.errors",
    "l2compile.source",
    "l2compile.overrides",
    "l2compile.sources",
    "l2compile.sources.base",
)
DATA_READERS = ("l2compile.datasets", "l2compile.tables", "l2compile.images")


@pytest.mark.unit
def test_no_plan_stage_module_imports_the_data_readers() -> None:
    graph = import_graph(*_package_texts())
    stage = [
        m
        for m in graph
        if m in PLAN_STAGE or m.startswith(("l2compile.layers", "l2compile.tasks"))
    ]
    assert {m for m in PLAN_STAGE if m in graph} == set(PLAN_STAGE)
    found = {
        m: sorted(graph[m] & set(DATA_READERS))
        for m in stage
        if graph[m] & set(DATA_READERS)
    }
    assert found == {}


@pytest.mark.unit
def test_no_class_in_the_package_is_over_300_lines() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 300:
                    long.append(f"{path.name}:{node.name} ({length} lines)")
    assert long == []


@pytest.mark.unit
def test_the_module_template_lays_out_and_does_not_decide() -> None:
    """Decisions are the plan's: the module template has at most 30 branches
    (`if`/`elif`), and none of them names a task, a loss or a metric."""
    import re

    text = (TEMPLATES / "module.py.jinja").read_text(encoding="utf-8")
    branches = re.findall(r"\{%-?\s*(?:if|elif)\b([^%]*)%\}", text)
    assert len(branches) <= 30
    for condition in branches:
        assert "accuracy" not in condition and "crossentropy" not in condition


# --- task kinds: each in one place ------------------------------------------------
#
# Adding a task kind is one registered class in one module under
# l2compile/tasks/; the rest of the package asks a task what it needs (its
# losses, metrics, label checks and scoring), never which kind it is.


@pytest.mark.unit
def test_each_task_is_one_registered_class_in_a_module_of_its_own() -> None:
    import importlib

    from l2compile import tasks
    from l2compile.tasks import TASKS, Task

    modules = {
        path.stem
        for path in (PACKAGE / "tasks").glob("*.py")
        if path.stem not in ("__init__", "base")
    }
    assert set(tasks.MODULES) == modules
    assert sorted(kind.__module__ for kind in TASKS.values()) == sorted(
        f"l2compile.tasks.{module}" for module in modules
    )
    for name, kind in TASKS.items():
        assert kind.name == name
        module = importlib.import_module(kind.__module__)
        own = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Task)
            and value.__module__ == module.__name__
        ]
        assert own == [kind], (name, own)


def _task_name_comparisons(source: str, names: typing.Collection[str]) -> list[int]:
    """The lines of `source` that compare a value with a task's name."""
    return sorted({line for line, _ in compared_names(source, set(names))})


@pytest.mark.unit
def test_the_task_name_check_finds_comparisons_with_a_task_name() -> None:
    source = (
        'if task.name == "binary":\n'  # 1
        "    pass\n"
        'if spec.task in ("classification", "binary"):\n'  # 3
        "    pass\n"
        'label = "regression"\n'  # a name, not compared
        'if "multilabel" != kind:\n'  # 6
        "    pass\n"
        "match task.name:\n"
        '    case "regression":\n'  # 9
        "        pass\n"
        'if task.loss_name == "mse":\n'  # not a task's name
        "    pass\n"
    )
    names = ("classification", "binary", "multilabel", "regression")
    assert _task_name_comparisons(source, names) == [1, 3, 6, 9]


@pytest.mark.unit
def test_no_module_outside_the_tasks_compares_a_task_name() -> None:
    """Code that needs to know something of a task asks the task (an attribute
    or a method it owns), so a new kind changes no module but its own."""
    import re

    from l2compile.tasks import TASKS

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tasks" in path.relative_to(PACKAGE).parts:
            continue
        source = path.read_text(encoding="utf-8")
        found += [f"{path.name}:{n}" for n in _task_name_comparisons(source, TASKS)]
    named = "|".join(TASKS)
    compared = re.compile(rf"""(==|!=|\bin)\s*[(\[]?\s*["']({named})["']""")
    for path in sorted((PACKAGE.parent / "templates").glob("*.jinja")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if compared.search(line):
                found.append(f"{path.name}:{n}")
    assert found == []


# --- export formats: one registered class each, in l2compile/formats/ -------------


def _format_names() -> frozenset[str]:
    from l2compile.formats import FORMATS

    return frozenset(FORMATS)


def _compared_names(source: str, names: frozenset[str]) -> list[str]:
    """The format names that `source` compares something with, as `line: name`."""
    return [f"{line}: {name}" for line, name in compared_names(source, set(names))]


@pytest.mark.unit
def test_each_format_is_one_registered_class_in_one_module_of_the_package() -> None:
    import sys

    from l2compile import formats
    from l2compile.formats.base import ExportFormat

    modules = {
        path.stem
        for path in (PACKAGE / "formats").glob("*.py")
        if path.stem not in ("__init__", "base")
    }
    assert set(formats.MODULES) == modules
    owners = [type(f).__module__ for f in formats.FORMATS.values()]
    assert sorted(owners) == sorted(f"l2compile.formats.{m}" for m in modules)
    for name, exported in formats.FORMATS.items():
        cls = type(exported)
        assert issubclass(cls, ExportFormat) and cls.name == name
        module = ast.parse(Path(sys.modules[cls.__module__].__file__ or "").read_text())
        classes = [
            n.name
            for n in module.body
            if isinstance(n, ast.ClassDef)
            and any(getattr(b, "id", None) == "ExportFormat" for b in n.bases)
        ]
        assert classes == [cls.__name__], (name, classes)
        for method in ("files", "recognizes", "open"):
            assert getattr(cls, method) is not getattr(ExportFormat, method), name
    # The spec accepts exactly the registered names, and each format's options.
    export = Spec.model_fields["export"].annotation
    assert export is not None
    (listed,) = typing.get_args(export.model_fields["formats"].annotation)
    assert set(typing.get_args(listed)) == set(formats.FORMATS)
    options = {f.name for f in formats.FORMATS.values() if f.options is not None}
    assert set(export.model_fields) == {"formats", *options}


@pytest.mark.unit
def test_no_module_outside_the_formats_compares_a_format_name() -> None:
    """Only l2compile/formats/ tells the formats apart; the rest of the
    package iterates over the registry."""
    names = _format_names()
    found = {
        path.relative_to(PACKAGE).as_posix(): compared
        for path in PACKAGE.rglob("*.py")
        if "formats" not in path.relative_to(PACKAGE).parts
        and (compared := _compared_names(path.read_text(encoding="utf-8"), names))
    }
    assert found == {}


@pytest.mark.unit
def test_the_format_name_checker_finds_a_comparison() -> None:
    names = _format_names()
    source = """
if "tflite" in plan.export_formats:
    pass
if kind == 'keras' or kind != "other":
    pass
if name in ("saved_model", "x"):
    pass
match kind:
    case "keras":
        pass
used = plan.options["tflite"]  # not a comparison
imported = "keras" in sys.modules  # the package
"""
    assert _compared_names(source, names) == [
        "2: tflite",
        "4: keras",
        "6: saved_model",
        "9: keras",
    ]
