"""course_lib.artifacts: keyed, atomically built, reused artifacts and the fingerprints of their inputs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import artifacts as A


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("COURSE_CACHE", str(root))
    return root


class Builder:
    """A trivial build function that counts its calls."""

    def __init__(self, text="built"):
        self.calls, self.text = 0, text

    def __call__(self, folder: Path) -> None:
        self.calls += 1
        assert folder.is_dir() and not any(folder.iterdir())  # an empty temporary folder
        (folder / "payload.txt").write_text(self.text)


def test_key_is_canonical_short_and_input_sensitive():
    key = A.artifact_key(a=1, b={"x": [1, 2], "y": "z"})
    assert len(key) == 16 and int(key, 16) >= 0
    assert A.artifact_key(b={"y": "z", "x": [1, 2]}, a=1) == key          # order does not matter
    assert A.artifact_key(b={"y": "z", "x": (1, 2)}, a=1) == key          # tuples are lists
    assert A.artifact_key(a=2, b={"x": [1, 2], "y": "z"}) != key
    assert A.artifact_key(a=1.0) != A.artifact_key(a=1)                 # a type change is a change
    assert A.artifact_key(a="1") != A.artifact_key(a=1)


def test_key_rejects_what_json_cannot_say_exactly():
    with pytest.raises(TypeError, match="paths"):
        A.artifact_key(root=Path("/x"))                                   # differs between clones
    with pytest.raises(TypeError, match="JSON values"):
        A.artifact_key(x=object())
    with pytest.raises(TypeError, match="strings"):
        A.artifact_key(x={1: 2})
    with pytest.raises(ValueError, match="finite"):
        A.artifact_key(x=float("nan"))


def test_builds_once_then_reuses(cache):
    build = Builder()
    folder = A.cached_artifact("probe", {"n": 200, "epochs": 1}, build)
    assert folder.parent == cache and folder.name == f"probe-{A.artifact_key(n=200, epochs=1)}"
    assert (folder / "payload.txt").read_text() == "built" and build.calls == 1
    meta = json.loads((folder / A.METADATA_FILE).read_text())
    assert meta["name"] == "probe" and meta["inputs"] == {"n": 200, "epochs": 1}
    assert meta["key"] == folder.name.rsplit("-", 1)[1] and meta["build_seconds"] >= 0
    assert A.artifact_metadata(folder) == meta
    # what built it: the machine, the threads and the libraries (results differ across these, not keys)
    env = meta["environment"]
    assert env["torch_threads"] == torch.get_num_threads() and env["cores"] == os.cpu_count()
    assert env["versions"]["torch"] == torch.__version__.split("+")[0] and env["cpu"]

    again = A.cached_artifact("probe", {"epochs": 1, "n": 200}, build)
    assert again == folder and build.calls == 1                           # reused, not rebuilt
    assert A.artifact_dir("probe", {"n": 200, "epochs": 1}) == folder

    changed = A.cached_artifact("probe", {"n": 200, "epochs": 2}, build)
    assert changed != folder and changed.parent == cache and build.calls == 2
    assert folder.exists()                                                # the old one is kept
    # only the two artifacts (and the lock folder) are left: no temporary folders
    assert sorted(p.name for p in cache.iterdir()) == sorted([".locks", folder.name, changed.name])


def test_rebuild_replaces_in_place(cache):
    folder = A.cached_artifact("probe", {"v": 1}, Builder("first"))
    again = A.cached_artifact("probe", {"v": 1}, Builder("second"), rebuild=True)
    assert again == folder and (folder / "payload.txt").read_text() == "second"
    assert sorted(p.name for p in cache.iterdir()) == [".locks", folder.name]


def test_failed_build_leaves_nothing_and_a_half_built_folder_is_rebuilt(cache):
    def broken(folder: Path) -> None:
        (folder / "partial.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        A.cached_artifact("probe", {"v": 1}, broken)
    target = A.artifact_dir("probe", {"v": 1})
    assert not target.exists() and [p.name for p in cache.iterdir()] == [".locks"]

    target.mkdir()                                    # a folder without artifact.json is not finished
    (target / "stale.txt").write_text("?")
    build = Builder()
    assert A.artifact_metadata(target) is None
    assert A.cached_artifact("probe", {"v": 1}, build) == target and build.calls == 1
    assert sorted(p.name for p in target.iterdir()) == [A.METADATA_FILE, "payload.txt"]


def test_explicit_cache_argument_and_bad_names(tmp_path):
    folder = A.cached_artifact("probe", {"v": 1}, Builder(), cache=tmp_path / "elsewhere")
    assert folder.parent == tmp_path / "elsewhere"
    for bad in ("", "a/b", ".hidden", "c:d"):
        with pytest.raises(ValueError, match="folder-name"):
            A.artifact_dir(bad, {})


def test_tensor_fingerprint():
    x = torch.arange(12, dtype=torch.float32).view(3, 4)
    fp = A.tensor_fingerprint(x)
    assert fp == A.tensor_fingerprint(x.clone()) == A.tensor_fingerprint(x.numpy())
    assert fp == A.tensor_fingerprint(x.t().contiguous().t())             # layout does not matter
    y = x.clone()
    y[2, 3] += 1e-6
    assert A.tensor_fingerprint(y) != fp                                  # one value
    assert A.tensor_fingerprint(x.view(4, 3)) != fp                       # the shape
    assert A.tensor_fingerprint(x.double()) != fp                         # the dtype
    assert A.tensor_fingerprint(x, torch.tensor([1])) != fp               # more tensors
    assert A.tensor_fingerprint(np.zeros((2, 0))) != A.tensor_fingerprint(np.zeros((0, 2)))


def test_files_fingerprint_names_and_sizes_not_location(tmp_path):
    for root in (tmp_path / "a" / "texts", tmp_path / "b" / "texts"):
        (root / "sub").mkdir(parents=True)
        (root / "hamlet.txt").write_text("to be")
        (root / "sub" / "lear.txt").write_text("nothing")
    fp = A.files_fingerprint(tmp_path / "a" / "texts")
    assert fp == A.files_fingerprint(tmp_path / "b" / "texts")            # another clone, same files
    (tmp_path / "b" / "texts" / "hamlet.txt").write_text("not to be")
    assert A.files_fingerprint(tmp_path / "b" / "texts") != fp            # a size changed
    (tmp_path / "a" / "texts" / "sub" / "lear.txt").rename(tmp_path / "a" / "texts" / "sub" / "king_lear.txt")
    assert A.files_fingerprint(tmp_path / "a" / "texts") != fp            # a name changed
    assert A.files_fingerprint(tmp_path / "a" / "texts" / "hamlet.txt") != fp  # a single file works
    with pytest.raises(FileNotFoundError):
        A.files_fingerprint(tmp_path / "missing")


def _one():
    return 1


def _two():
    return 2


class _Model:
    width = 3


def test_source_fingerprint_and_torch_version():
    assert A.source_fingerprint(_one) == A.source_fingerprint(_one)
    assert A.source_fingerprint(_one) != A.source_fingerprint(_two)
    assert A.source_fingerprint(_one, _Model) != A.source_fingerprint(_one)
    with pytest.raises(TypeError):
        A.source_fingerprint(len)                                         # a builtin has no source
    major, minor = A.torch_version().split(".")
    assert torch.__version__.startswith(f"{major}.{minor}")


def test_tensor_fingerprint_other_dtypes():
    assert A.tensor_fingerprint(torch.ones(3, dtype=torch.bfloat16)) != A.tensor_fingerprint(torch.ones(3))
    assert A.tensor_fingerprint(torch.tensor([True, False])) == A.tensor_fingerprint(np.array([True, False]))
    assert A.tensor_fingerprint(torch.arange(3)) == A.tensor_fingerprint(np.arange(3, dtype=np.int64))
    with pytest.raises(TypeError, match="objects"):
        A.tensor_fingerprint(np.array([object()]))



def test_source_fingerprint_sees_code_not_docstrings_or_comments():
    """Editing what code says about itself keeps an artifact; editing what it does rebuilds it."""
    documented = 'def f(x):\n    """A docstring that says something."""\n    # a comment\n    return x + 1\n'
    reflowed = "def f(x):\n    return (x +\n            1)  # another comment\n"
    changed = 'def f(x):\n    """A docstring that says something."""\n    return x + 2\n'
    renamed = "def g(x):\n    return x + 1\n"
    assert A._code_of(documented) == A._code_of(reflowed)
    assert A._code_of(documented) != A._code_of(changed)
    assert A._code_of(documented) != A._code_of(renamed)
    assert A._code_of('class C:\n    """doc"""\n') == A._code_of("class C:\n    pass\n")
    assert A._code_of('"""module doc"""\nX = 1\n') == A._code_of("X = 1\n")
    assert A._code_of('X = "a string that is not a docstring"\n') != A._code_of("X = 1\n")


def test_experiment_keys_see_every_module_their_runs_call():
    """Each experiment's key fingerprints the course_lib modules its code imports, followed through
    their own imports (derived, not listed by hand): the LLM losses and the KD loss under them, the
    trainer, the decoder, the quantizer, the encoder helpers."""
    from course_lib.encoder import experiment as distilbert_experiment
    from course_lib.llm import experiment as llm_experiment, speculative_experiment

    def names(module):
        return {m.__name__.removeprefix("course_lib.") for m in A.package_modules(module)}

    assert {"llm.experiment", "llm.teacher", "llm.students", "llm.losses", "losses", "llm.trainer",
            "trainers"} <= names(llm_experiment)
    assert {"llm.speculative_experiment", "llm.speculative", "llm.acceptance", "llm.kv_cache", "llm.experiment",
            "compress"} <= names(speculative_experiment)
    assert {"encoder.experiment", "encoder.students", "encoder.distillation", "encoder.reviews",
            "encoder.baselines", "losses", "timing", "trainers"} <= names(distilbert_experiment)
    for experiment in (llm_experiment, speculative_experiment, distilbert_experiment):
        assert not names(experiment) & set(A.NOT_CODE_OF_A_RUN)
        assert experiment.experiment_key_inputs()["code"] == A.source_fingerprint(*A.package_modules(experiment))


def test_package_modules_follows_every_import_form(tmp_path, monkeypatch):
    """from . import x, from .x import y, from course_lib.x import y, import course_lib.x, inside
    functions too, transitively; infrastructure modules left out."""
    import sys
    import types

    pkg = tmp_path / "kdpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n\ndef f():\n    from .c import g\n    return g\n")
    (pkg / "b.py").write_text("import kdpkg.d\nfrom kdpkg.paths import x\n")
    (pkg / "c.py").write_text("def g():\n    return 1\n")
    (pkg / "d.py").write_text("from .e import h\n")
    (pkg / "e.py").write_text("h = 2\n")
    (pkg / "paths.py").write_text("x = 3\n")
    (pkg / "lonely.py").write_text("y = 4\n")
    (pkg / "sub").mkdir()                                 # a subpackage: relative imports one and two levels up
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "s.py").write_text("from .. import c\nfrom ..paths import x\nfrom .t import z\n")
    (pkg / "sub" / "t.py").write_text("from ..e import h\nz = 5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    a = importlib.import_module("kdpkg.a")
    found = [m.__name__ for m in A.package_modules(a, package="kdpkg")]
    assert found == ["kdpkg.a", "kdpkg.b", "kdpkg.c", "kdpkg.d", "kdpkg.e"]
    s = importlib.import_module("kdpkg.sub.s")
    assert [m.__name__ for m in A.package_modules(s, package="kdpkg")] == ["kdpkg.c", "kdpkg.e", "kdpkg.sub.s",
                                                                             "kdpkg.sub.t"]
    for name in [n for n in sys.modules if n == "kdpkg" or n.startswith("kdpkg.")]:
        monkeypatch.delitem(sys.modules, name)
    assert isinstance(a, types.ModuleType)


def test_a_module_run_as_main_has_the_key_of_its_import_name():
    """`python -m course_lib.llm.experiment` (make setup) must build the artifact that `import` finds:
    the module's __name__ is then "__main__", its __spec__ still names it."""
    import types

    from course_lib.llm import experiment as llm_experiment

    as_main = types.ModuleType("__main__")
    as_main.__file__, as_main.__spec__ = llm_experiment.__file__, llm_experiment.__spec__
    assert A.source_fingerprint(as_main) == A.source_fingerprint(llm_experiment)
    assert A.package_modules(as_main) == A.package_modules(llm_experiment)


@pytest.mark.parametrize("experiment, helper", [("llm.experiment", "llm.losses"), ("llm.experiment", "llm.students"),
                                                ("llm.experiment", "llm.trainer"), ("llm.experiment", "trainers"),
                                                ("llm.speculative_experiment", "llm.speculative"),
                                                ("llm.speculative_experiment", "llm.acceptance"),
                                                ("llm.speculative_experiment", "llm.losses"),
                                                ("llm.speculative_experiment", "compress"),
                                                ("encoder.experiment", "encoder.distillation"),
                                                ("encoder.experiment", "losses")])
def test_editing_code_an_experiment_runs_changes_its_key(monkeypatch, experiment, helper):
    """A line of code added to a module the experiment calls (a loss, the trainer, the decoder) must
    give a new key, so no stale artifact is reused; the same edit as a comment must not."""
    import importlib
    import inspect

    exp, mod = (importlib.import_module(f"course_lib.{name}") for name in (experiment, helper))
    key = lambda: A.artifact_key(**exp.experiment_key_inputs())
    before, real = key(), inspect.getsource

    def edited(text):
        def getsource(obj):
            source = real(obj)
            return source + text if obj is mod or getattr(obj, "__module__", None) == mod.__name__ else source
        return getsource

    monkeypatch.setattr(inspect, "getsource", edited("\n# only a comment\n"))
    assert key() == before
    monkeypatch.setattr(inspect, "getsource", edited("\n_EDITED = 1\n"))
    assert key() != before
