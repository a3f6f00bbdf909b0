"""Generating modules: specs in, one module per spec out, or a check of them.

Like `sqlc diff` or `black --check`, check mode renders in memory and compares
with what is on disk, so another repository's CI can tell when the code it
checked in no longer matches its specs.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from l2compile import interrupts
from l2compile import overrides as overrides_
from l2compile.backends import Choice
from l2compile.errors import BuildError, SpecError
from l2compile.nodes import ModelPlan
from l2compile.overrides import Override, place
from l2compile.plan import plan_spec
from l2compile.render import render_module
from l2compile.spec import load_spec

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Compiled:
    """A spec compiled to a plan and the generated module's source."""

    plan: ModelPlan
    code: str


@dataclass(frozen=True)
class Output:
    """One module to write (or check): where, and from which spec."""

    spec: Path
    target: Path
    code: str


def display_path(path: Path) -> str:
    """How a spec is named in messages and headers: relative to the cwd if inside."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):  # elsewhere; a symbolic link loop
        return path.as_posix()


def compile_spec(
    path: Path,
    *,
    version_header: bool = True,
    backend: Choice | None = None,
    overrides: Sequence[Override] = (),
) -> Compiled | list[SpecError]:
    """Spec file -> spec -> plan -> source; every error of the file otherwise.
    `backend` (build --backend) overrides the spec's train.backend, and
    `overrides` (--set) its fields; an error at an overridden field is placed
    at its --set."""
    interrupts.phase("spec")
    loaded = load_spec(path, display_path(path), overrides)
    if isinstance(loaded, list):
        return place(loaded, overrides)
    plan = plan_spec(loaded, path.absolute().parent, backend=backend)
    if isinstance(plan, list):
        return place(plan, overrides)
    if plan.derived_input:
        plan = dataclasses.replace(plan, spec_path=str(path.absolute()))
    return Compiled(plan, render_module(plan, version_header=version_header))


def derive_input(
    plan: ModelPlan, width: int, *, version_header: bool = True
) -> Compiled:
    """The spec planned again with the input.shape its data gave (`width`:
    a csv table's width after encoding), where the spec left it out."""
    derived = overrides_.parse(f"input.shape=[{width}]")
    # The backend as first chosen: auto picks the same again.
    backend: Choice = "auto" if plan.backend_reason else _choice(plan.backend)
    found = compile_spec(
        Path(plan.spec_path or plan.source_file),
        version_header=version_header,
        backend=backend,
        overrides=(*map(overrides_.parse, plan.overrides), derived),
    )
    if isinstance(found, list):
        raise BuildError(
            f"input.shape [{width}], derived from the data, does not fit the "
            "spec: " + "; ".join(str(error) for error in found)
        )
    return found


def _choice(backend: str) -> Choice:
    for choice in get_args(Choice):
        if choice == backend:
            return choice  # type: ignore[no-any-return]
    raise AssertionError(backend)


def spec_files(paths: list[Path]) -> list[Path] | str:
    """The spec files named, with folders expanded to their *.yaml and *.yml;
    a message where a folder holds none (a check of nothing must not pass)."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(
            p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file()
        )
        if not found:
            return f"{path}: no spec files (*.yaml, *.yml) in this folder"
        files += found
    return files


def plan_outputs(
    compiled: list[tuple[Path, Compiled]], output: str | None
) -> list[Output] | str:
    """Where each module goes; a message if that cannot be decided cleanly.

    One spec and an `output` that is not a folder: that file. Otherwise a
    folder (`output`, default the working folder) with one `<name>.py` each.
    """
    folder_given = output is not None and (
        Path(output).is_dir() or output.endswith(("/", "\\"))
    )
    if len(compiled) == 1 and output is not None and not folder_given:
        spec, result = compiled[0]
        if Path(output).resolve() == spec.resolve():
            return f"-o {output} is the spec itself; write the module elsewhere"
        return [Output(spec, Path(output), result.code)]
    if len(compiled) > 1 and output is not None and Path(output).is_file():
        return f"-o {output}: several specs need a folder, not a file"
    folder = Path(output) if output is not None else Path()
    outputs: list[Output] = []
    seen: dict[str, Path] = {}
    for spec, result in compiled:
        name = result.plan.name
        if name in seen:
            return (
                f"{display_path(seen[name])} and {display_path(spec)} are both named "
                f"{name!r}; each spec needs its own name to get its own module"
            )
        seen[name] = spec
        outputs.append(Output(spec, folder / f"{name}.py", result.code))
    return outputs


def difference(output: Output) -> str | None:
    """None when the file on disk is current; else `missing PATH` or a diff."""
    try:
        current = output.target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"missing {output.target}"
    if current == output.code:
        return None
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        output.code.splitlines(keepends=True),
        fromfile=f"{output.target} (on disk)",
        tofile=f"{output.target} (from {display_path(output.spec)})",
    )
    return "".join(diff).rstrip("\n")
