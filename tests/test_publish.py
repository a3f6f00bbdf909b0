"""A build replaces only what it owns: `--out` when it is empty or an earlier
l2compile build, its own work folder, never through a link; and publishing
either happens or leaves everything as it was, found out before training
where it can be."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from l2compile import build as builder
from l2compile import manifest as manifest_
from l2compile.errors import BuildError

from .conftest import SMALL_SPEC, compiled

KERAS_ONLY = SMALL_SPEC + "export: {formats: [keras]}\n"


def _build(
    tmp_path: Path, out: Path, data: Path, resume: bool = False
) -> builder.BuildResult:
    spec = compiled(tmp_path, KERAS_ONLY)
    return builder.build(spec.plan, spec.code, out, data=data, log=str, resume=resume)


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build of KERAS_ONLY on the data of `tiny_mnist`, made once: the
    earlier build that a test's `out` holds is a copy of it (`_earlier`)."""
    from .conftest import make_mnist_npz

    folder = tmp_path_factory.mktemp("earlier")
    data = make_mnist_npz(folder / "data" / "mnist.npz")
    return _build(folder, folder / "out", data).out


def _earlier(tmp_path: Path, earlier: Path) -> Path:
    """tmp_path/out, holding a copy of the `earlier` build (its manifest names
    the spec relative to it, ../small.yaml, as in tmp_path)."""
    shutil.copytree(earlier, tmp_path / "out", symlinks=True)
    return tmp_path / "out"


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _refused(tmp_path: Path, out: Path, data: Path) -> str:
    with pytest.raises(BuildError) as err:
        _build(tmp_path, out, data)
    return str(err.value)


@pytest.mark.unit
def test_a_folder_that_merely_holds_a_manifest_is_not_replaced(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    app = tmp_path / "webapp"
    (app / "src").mkdir(parents=True)
    (app / "manifest.json").write_text('{"name": "my extension", "version": "1"}')
    (app / "src" / "main.js").write_text("console.log(1)\n")
    (app / "README.md").write_text("# app\n")
    before = _files(app)
    assert _refused(tmp_path, app, tiny_mnist) == (
        f"--out {app}: is not an earlier l2compile build, so the build will not "
        "replace it: it holds README.md, manifest.json, src/main.js and no "
        "manifest.json of l2compile's. Name another folder, or empty this one "
        "yourself"
    )
    assert _files(app) == before
    assert not (tmp_path / ".webapp.partial").exists()


@pytest.mark.build
def test_an_earlier_build_with_a_file_it_does_not_list_is_not_replaced(
    tmp_path: Path, tiny_mnist: Path, earlier: Path
) -> None:
    out = _earlier(tmp_path, earlier)
    (out / "notes.txt").write_text("mine")
    assert _refused(tmp_path, out, tiny_mnist) == (
        f"--out {out}: is not an earlier l2compile build, so the build will not "
        "replace it: it holds files its manifest.json does not list (notes.txt). "
        "Name another folder, or empty this one yourself"
    )
    (out / "notes.txt").unlink()
    (out / "stray" / "empty").mkdir(parents=True)
    assert _refused(tmp_path, out, tiny_mnist).endswith(
        "replace it: it holds folders its manifest.json does not list (stray, "
        "stray/empty). Name another folder, or empty this one yourself"
    )
    (out / "stray" / "empty").rmdir()
    (out / "stray").rmdir()
    labels = (out / "model.keras").read_bytes()
    edited = labels[:-1] + bytes([labels[-1] ^ 1])  # the same size, edited
    (out / "model.keras").write_bytes(edited)
    assert _refused(tmp_path, out, tiny_mnist).endswith(
        "replace it: files were changed since l2compile wrote them (model.keras). "
        "Name another folder, or empty this one yourself"
    )


@pytest.mark.unit
def test_a_folder_of_empty_folders_is_not_taken_for_an_empty_one(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    project = tmp_path / "proj"
    (project / "src" / "components").mkdir(parents=True)
    (project / "docs").mkdir()
    assert _refused(tmp_path, project, tiny_mnist) == (
        f"--out {project}: is not an earlier l2compile build, so the build will "
        "not replace it: it holds folders (docs, src, src/components). Name another "
        "folder, or empty this one yourself"
    )
    assert (project / "src" / "components").is_dir()


@pytest.mark.build
def test_an_earlier_build_and_an_empty_folder_are_replaced(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _build(tmp_path, out, tiny_mnist)  # empty: nothing to lose
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == manifest_.FORMAT
    assert manifest["spec"]["from_build"] == "../small.yaml"
    # A build of an l2compile from before manifests had a format is its own too.
    del manifest["format"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    _build(tmp_path, out, tiny_mnist)
    assert json.loads((out / "manifest.json").read_text())["format"] == 1


@pytest.mark.unit
def test_links_are_never_followed_or_replaced(tmp_path: Path, tiny_mnist: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")

    planted = tmp_path / ".out.partial"
    planted.symlink_to(elsewhere)
    assert _refused(tmp_path, tmp_path / "out", tiny_mnist) == (
        f"--out {tmp_path / 'out'}: its work folder {planted} is a symbolic link (to "
        f"{elsewhere}); l2compile works only in a folder it made itself. Remove the "
        "link"
    )
    assert _files(elsewhere) == {"precious.txt": b"keep me"}
    assert not (tmp_path / "out").exists()

    link = tmp_path / "linked"
    link.symlink_to(elsewhere)
    assert _refused(tmp_path, link, tiny_mnist) == (
        f"--out {link}: is a symbolic link (to {elsewhere}); the build replaces "
        "--out, so name the folder itself"
    )
    assert _files(elsewhere) == {"precious.txt": b"keep me"}


@pytest.mark.unit
def test_a_work_folder_l2compile_did_not_make_is_left_alone(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    work = tmp_path / ".out.partial"
    work.mkdir()
    (work / "thesis.tex").write_text("years of work")
    assert _refused(tmp_path, tmp_path / "out", tiny_mnist) == (
        f"--out {tmp_path / 'out'}: {work}, where the build works, was not made by "
        "l2compile (it holds thesis.tex and no .l2compile); move it away"
    )
    assert _files(work) == {"thesis.tex": b"years of work"}


@pytest.mark.build
def test_an_out_that_cannot_be_replaced_is_found_before_training(
    tmp_path: Path,
    tiny_mnist: Path,
    earlier: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _earlier(tmp_path, earlier)
    locked = out
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path) != locked and real(path, mode)
    )
    assert _refused(tmp_path, out, tiny_mnist) == (
        f"--out {out}: cannot be replaced: {locked} is not writable, so the "
        "earlier build in it could not be removed"
    )
    assert not (tmp_path / ".out.partial").exists()  # nothing was trained


@pytest.mark.build
def test_a_publish_that_fails_keeps_the_trained_epochs(
    tmp_path: Path,
    tiny_mnist: Path,
    earlier: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _earlier(tmp_path, earlier)
    before = _files(out)
    real = os.replace

    def full(source: object, target: object) -> None:
        if Path(str(source)).name == "artifacts":
            raise OSError(28, "No space left on device", str(out))
        real(source, target)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(BuildError) as err:
        _build(tmp_path, out, tiny_mnist)
    work = tmp_path / ".out.partial"
    assert str(err.value) == (
        f"cannot write {out}: No space left on device. {out} was not changed; "
        f"epoch 1 of 1 is saved in {work}: add --resume to continue"
    )
    assert _files(out) == before
    assert sorted(p.name for p in work.iterdir()) == [".l2compile", "resume"]
    monkeypatch.undo()
    result = _build(tmp_path, out, tiny_mnist, resume=True)
    assert result.metrics["resumed_after_epoch"] == 1
    assert not work.exists()


@pytest.mark.unit
def test_metrics_json_is_strict_json_even_for_values_that_are_not_finite(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metrics.json"
    manifest_.write_json(path, {"loss": float("nan"), "x": [1.0, float("inf")]})
    assert json.loads(path.read_text()) == {"loss": None, "x": [1.0, None]}


@pytest.mark.build
def test_an_out_that_changes_while_the_build_trains_is_not_replaced(
    tmp_path: Path,
    tiny_mnist: Path,
    earlier: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from l2compile.formats import keras as keras_file

    out = _earlier(tmp_path, earlier)
    real = keras_file.save_keras

    def meanwhile(model: object, path: Path) -> None:
        (out / "notes.txt").write_text("written while the build trained")
        real(model, path)

    monkeypatch.setattr(keras_file, "save_keras", meanwhile)
    with pytest.raises(BuildError) as err:
        _build(tmp_path, out, tiny_mnist)
    assert str(err.value) == (
        f"--out {out}: is not an earlier l2compile build, so the build will not "
        "replace it: it holds files its manifest.json does not list (notes.txt). "
        "Name another folder, or empty this one yourself (it changed while the "
        "build ran)"
    )
    assert (out / "notes.txt").read_text() == "written while the build trained"
    work = tmp_path / ".out.partial"
    assert sorted(p.name for p in work.iterdir()) == [".l2compile", "resume"]


@pytest.mark.unit
def test_a_work_folder_with_more_than_a_saved_state_is_not_taken_over(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    work = tmp_path / ".out.partial"
    (work / "resume" / "photos").mkdir(parents=True)
    (work / "resume" / "state.json").write_text("{}")
    assert _refused(tmp_path, tmp_path / "out", tiny_mnist) == (
        f"--out {tmp_path / 'out'}: {work}, where the build works, was not made by "
        "l2compile (it holds resume and no .l2compile); move it away"
    )
    assert (work / "resume" / "photos").is_dir()
