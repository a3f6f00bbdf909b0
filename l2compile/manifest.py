"""manifest.json: what a build folder holds, and how l2compile knows its own.

A build writes it last into its folder (`write`): the layout's `format`, the
spec (its path as given, its path from the build folder, its sha256), the
seed, the data, the library versions, and every file's path, size and sha256.

It is read back, bounded and never through a pipe or a device (`read`), to
recognise an earlier build before replacing it (`foreign`: a folder is a
build only if its manifest is l2compile's and lists exactly the files in it,
unchanged), and by `l2compile eval` to find the spec an artifact came from.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from l2compile import __version__
from l2compile.datasets import Dataset
from l2compile.errors import some_of
from l2compile.files import NotAFile, NotJson, json_text, read_json
from l2compile.nodes import ModelPlan
from l2compile.resume import package_version

NAME = "manifest.json"
#: The build's scores, beside the manifest.
METRICS = "metrics.json"
#: The layout of manifest.json; with the fields below, what marks a build.
FORMAT = 1
#: A manifest lists a dozen files; anything this large is not one.
MAX_BYTES = 1 << 20
#: A csv model's columns and vocabularies (`{"columns": [...]}`), beside it.
COLUMNS = "columns.json"
#: The most bytes of a columns.json (or a model.json) eval reads.
MAX_COLUMNS_BYTES = 256 * 2**20
_FIELDS = {"name", "spec", "generated_module", "versions", "artifacts"}
#: The spec's path from the build folder, which still finds it when eval runs
#: from another folder than the build did.
FROM_BUILD = "from_build"


class Unreadable(Exception):
    """A manifest that cannot be read, or is not one; the message names it."""


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(
    folder: Path,
    out: Path,
    plan: ModelPlan,
    dataset: Dataset,
    module: str,
    packages: Sequence[str] = (),
) -> None:
    """Write `folder`'s manifest.json, listing every file in it; `out` is
    where the folder will be published (for the spec's path from it).
    `packages`: those whose versions it records beside l2compile's own (the
    export formats')."""
    if plan.recipe.encodes:
        # A csv model's columns, in the order it reads them, and each text
        # column's vocabulary: eval reads new data by these names. Their own
        # file, as a vocabulary may be large and the manifest is read small.
        columns = plan.recipe.input_json(plan.input_shape, dataset.columns)
        write_json(folder / COLUMNS, columns)
    for name, content in plan.recipe.files(dataset).items():
        (folder / name).write_text(content, encoding="utf-8", newline="\n")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != NAME)
    manifest = {
        "format": FORMAT,
        "name": plan.name,
        "spec": {
            "file": plan.source_file,
            FROM_BUILD: Path(
                os.path.relpath(Path(plan.source_file).resolve(), out.resolve())
            ).as_posix(),
            "sha256": plan.spec_sha256,
            # build --set: the fields overridden, as given.
            "set": list(plan.overrides),
        },
        "generated_module": module,
        "seed": plan.seed,
        "split_seed": plan.split_seed,
        "data": dataset.source,
        "backend": plan.backend,
        # Why train.backend: auto picked it (null: the spec or --backend named it).
        "backend_reason": plan.backend_reason,
        "versions": {
            "l2compile": __version__,
            "tensorflow": package_version("tensorflow"),
            "keras": package_version("keras"),
            plan.backend: package_version(plan.backend),
            "numpy": package_version("numpy"),
            # Each format's own (ai-edge-litert); those above keep their place.
            **{package: package_version(package) for package in packages},
            "python": platform.python_version(),
        },
        "artifacts": [
            {
                "path": p.relative_to(folder).as_posix(),
                "sha256": file_sha256(p),
                "size": p.stat().st_size,
            }
            for p in files
        ],
    }
    write_json(folder / NAME, manifest)


def write_json(path: Path, value: Any) -> None:
    """Strict JSON (l2compile.files.json_text)."""
    path.write_text(json_text(value), encoding="utf-8")


def read(path: Path) -> Any:
    """The parsed JSON of a manifest file, read without following it into a
    device, a pipe or a huge file.

    Raises FileNotFoundError where there is none, Unreadable otherwise.
    """
    try:
        return read_json(path, MAX_BYTES)
    except FileNotFoundError:
        raise
    except NotAFile as exc:
        raise Unreadable(f"{path} {exc}") from None
    except OSError as exc:
        raise Unreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    except NotJson as exc:
        raise Unreadable(f"{path} is not a build manifest ({exc})") from None


def listed(manifest: Any) -> dict[str, tuple[int, str]] | None:
    """The files an l2compile manifest lists: path -> (size, sha256); None
    where `manifest` is not l2compile's (its format and fields)."""
    if not isinstance(manifest, dict) or not set(manifest) >= _FIELDS:
        return None
    # A build of an l2compile from before manifests had a format is one too.
    if manifest.get("format", FORMAT) != FORMAT or manifest.get("format") is True:
        return None
    versions, artifacts = manifest["versions"], manifest["artifacts"]
    if not isinstance(versions, dict) or "l2compile" not in versions:
        return None
    if not isinstance(artifacts, list):
        return None
    files = {}
    for entry in artifacts:
        if not isinstance(entry, dict):
            return None
        path, size, sha = entry.get("path"), entry.get("size"), entry.get("sha256")
        if not (isinstance(path, str) and type(size) is int and isinstance(sha, str)):
            return None
        files[path] = (size, sha)
    return files


def foreign(folder: Path) -> str | None:
    """Why `folder` is not an earlier l2compile build; None if it is one, or
    is empty (no files, no folders, no links)."""
    files, folders, links = [], [], []
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(root, name)
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                links.append(relative)
            elif name in names:
                files.append(relative)
            else:
                folders.append(relative)
    if links:
        return f"it holds symbolic links ({some_of(sorted(links))})"
    if not files:
        return f"it holds folders ({some_of(sorted(folders))})" if folders else None
    try:
        files_listed = listed(read(folder / NAME))
    except (FileNotFoundError, Unreadable):
        files_listed = None
    if files_listed is None:
        return f"it holds {some_of(sorted(files))} and no manifest.json of l2compile's"
    unlisted = sorted(set(files) - {NAME} - set(files_listed))
    if unlisted:
        return f"it holds files its manifest.json does not list ({some_of(unlisted)})"
    # Folders a build writes without files (a SavedModel's assets/) lie inside
    # the folders of the files it lists; any other is someone else's.
    owned = {Path(name).parts[0] for name in files_listed}
    strays = sorted(f for f in folders if Path(f).parts[0] not in owned)
    if strays:
        return f"it holds folders its manifest.json does not list ({some_of(strays)})"
    changed = sorted(
        name
        for name, (size, sha) in files_listed.items()
        if name in files
        and (
            (folder / name).stat().st_size != size or file_sha256(folder / name) != sha
        )
    )
    if changed:
        return f"files were changed since l2compile wrote them ({some_of(changed)})"
    return None
