"""course_lib.paths: the repository in a checkout, the working directory and the user cache when
installed; the offline switches of ``import course_lib``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib import paths

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = '[build-system]\nrequires = ["setuptools"]\n\n[project]\nname = "{name}"\nversion = "0"\n'
PATH_ENV = ("COURSE_HOME", "COURSE_CACHE", "COURSE_RESULTS", "ASSETS_DIR", "XDG_CACHE_HOME")


@pytest.fixture
def clean_env(monkeypatch):
    for name in PATH_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def fake_package(root: Path, *, name: str | None = "kd-course", notebooks: bool = True) -> Path:
    """``root/course_lib`` with ``root`` made to look like a checkout (or not)."""
    (root / "course_lib").mkdir(parents=True)
    if name is not None:
        (root / "pyproject.toml").write_text(PYPROJECT.format(name=name))
    if notebooks:
        (root / "notebooks").mkdir()
    return root / "course_lib"


def test_this_checkout_is_the_repository(clean_env):
    assert paths.repo_root() == REPO
    assert paths.project_root() == REPO
    assert paths.build_dir() == REPO / "build"
    assert paths.cache_dir() == REPO / ".cache" / "course"
    assert paths.assets_dir() == REPO / ".cache" / "assets"       # where scripts/install_assets.sh puts them
    assert paths.exercises_dir() == REPO / "exercises" and paths.solutions_dir() == REPO / "solutions"
    assert 'ASSETS="${ASSETS_DIR:-$ROOT/.cache/assets}"' in (REPO / "scripts" / "install_assets.sh").read_text()


def test_checkout_detection(tmp_path):
    assert paths._checkout_of(fake_package(tmp_path / "ok")) == tmp_path / "ok"
    assert paths._checkout_of(fake_package(tmp_path / "other", name="something-else")) is None
    assert paths._checkout_of(fake_package(tmp_path / "no_notebooks", notebooks=False)) is None
    assert paths._checkout_of(fake_package(tmp_path / "no_pyproject", name=None)) is None
    broken = fake_package(tmp_path / "broken", name=None)
    (broken.parent / "pyproject.toml").write_text("[project\nname = 'kd-course'")
    assert paths._checkout_of(broken) is None
    # a name elsewhere in the file is not the project's name
    tool = fake_package(tmp_path / "tool", name=None)
    (tool.parent / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.other]\nname = "kd-course"\n')
    assert paths._checkout_of(tool) is None


def test_installed_package_uses_cwd_and_user_cache(tmp_path, clean_env):
    site = tmp_path / "site-packages"
    clean_env.setattr(paths, "_PACKAGE_DIR", fake_package(site, name=None, notebooks=False))
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    clean_env.chdir(work)
    clean_env.setenv("HOME", str(home))
    clean_env.setattr(sys, "platform", "linux")
    assert paths.repo_root() is None and paths.project_root() == work
    assert paths.build_dir() == work / "build"
    assert paths.exercises_dir() == work / "exercises" and paths.solutions_dir() == work / "solutions"
    assert paths.user_cache_dir() == home / ".cache" / "kd-course"
    assert paths.cache_dir() == home / ".cache" / "kd-course" / "course"
    assert paths.assets_dir() == home / ".cache" / "kd-course" / "assets"
    assert paths.downloads_dir() == home / ".cache" / "kd-course" / "data"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "kd-course" / "course"
    clean_env.setattr(sys, "platform", "win32")
    clean_env.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert paths.user_cache_dir() == tmp_path / "local" / "kd-course"
    from course_lib import results
    assert results.results_path() == work / "build" / "results.json"
    clean_env.setenv("COURSE_HOME", str(tmp_path / "clone"))       # what the Colab setup cell sets
    assert paths.project_root() == tmp_path / "clone" and paths.exercises_dir() == tmp_path / "clone" / "exercises"


def test_environment_overrides(tmp_path, clean_env):
    clean_env.setenv("COURSE_CACHE", str(tmp_path / "c"))
    clean_env.setenv("ASSETS_DIR", str(tmp_path / "a"))
    clean_env.setenv("COURSE_RESULTS", str(tmp_path / "r.json"))
    assert paths.cache_dir() == tmp_path / "c" and paths.assets_dir() == tmp_path / "a"
    from course_lib import results
    assert results.results_path() == tmp_path / "r.json"


def test_results_defaults_follow_paths(clean_env):
    from course_lib import results
    assert results.results_path() == paths.build_dir() / "results.json"


def _run(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _base_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in PATH_ENV + ("COURSE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                   "HF_DATASETS_OFFLINE", "PYTHONPATH")}
    env.update(extra)
    return env


def test_offline_switch_sets_hugging_face_offline(tmp_path):
    code = ("import course_lib, os, course_lib.netguard as g; "
            "print(os.environ.get('HF_HUB_OFFLINE'), os.environ.get('TRANSFORMERS_OFFLINE'), "
            "os.environ.get('HF_DATASETS_OFFLINE'), g.network_blocked())")
    done = _run(code, _base_env(COURSE_OFFLINE="1"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "1", "True"]
    done = _run(code, _base_env(COURSE_OFFLINE="1", HF_HUB_OFFLINE="0"), tmp_path)  # an explicit choice stays
    assert done.stdout.split() == ["0", "1", "1", "True"]
    done = _run(code, _base_env(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None", "None", "False"]


def _install(site: Path, tmp_path: Path) -> str:
    """A non-editable install of the repository into ``site`` (what Colab's setup cell does).

    pip builds from a copy of the sources, so nothing is written into this checkout (an in-tree
    setuptools build would write build/ and *.egg-info here). Without a working pip, copying the
    package folder simulates the same layout.
    """
    src = tmp_path / "src"
    shutil.copytree(REPO / "course_lib", src / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(src)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if done.returncode == 0 and (site / "course_lib" / "paths.py").exists():
        return "pip"
    shutil.copytree(src / "course_lib", site / "course_lib")
    return "copy"


def _snapshot(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*")}


@pytest.mark.slow
def test_non_editable_install_writes_nothing_into_site_packages(tmp_path):
    site, work, home = tmp_path / "site", tmp_path / "work", tmp_path / "home"
    work.mkdir()
    how = _install(site, tmp_path)
    before = _snapshot(site)
    code = """
import json, course_lib
from pathlib import Path
from course_lib import artifacts, paths, results, teachers
results.record("00_probe", "value", 1)
results.write_report()
folder = artifacts.cached_artifact("probe", {"v": 1}, lambda d: (d / "x.txt").write_text("x"))
print(json.dumps({"file": course_lib.__file__, "repo": str(paths.repo_root()), "cache": str(paths.cache_dir()),
                  "assets": str(paths.assets_dir()),
                  "build": str(paths.build_dir()), "results": str(results.results_path()),
                  "exercises": str(paths.exercises_dir()), "artifact": str(folder)}))
"""
    env = _base_env(PYTHONPATH=str(site), HOME=str(home), PYTHONDONTWRITEBYTECODE="1", COURSE_OFFLINE="1")
    done = _run(code, env, work)
    assert done.returncode == 0, f"({how}) {done.stderr}"
    got = {k: Path(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    user_cache = home / ".cache" / "kd-course"
    assert got["file"].parent == site / "course_lib", how
    assert str(got["repo"]) == "None"
    assert got["cache"] == user_cache / "course"
    assert got["assets"] == user_cache / "assets"
    assert got["build"] == work / "build" and got["results"] == work / "build" / "results.json"
    assert got["exercises"] == work / "exercises"
    assert got["artifact"].parent == user_cache / "course" and (got["artifact"] / "x.txt").exists()
    assert json.loads((work / "build" / "results.json").read_text()) == {"00_probe": {"value": 1}}
    assert (work / "build" / "report.md").exists()
    assert _snapshot(site) == before, f"({how}) something was written into site-packages"


@pytest.mark.slow
def test_colab_like_install_finds_the_clones_exercises(tmp_path):
    """What the Colab setup cell does: a clone, a non-editable install of it, COURSE_HOME set to the
    clone, and the notebook's kernel running somewhere else: exercises and grading are found in the
    clone, results go to the clone's build/, and nothing is written into site-packages."""
    site, work, home, clone = tmp_path / "site", tmp_path / "work", tmp_path / "home", tmp_path / "clone"
    work.mkdir()
    shutil.copytree(REPO / "exercises", clone / "exercises")
    shutil.copytree(REPO / "solutions", clone / "solutions")
    how = _install(site, tmp_path)
    before = _snapshot(site)
    code = """
import json
from course_lib import paths, results
results.record("00_probe", "value", 1)
print(json.dumps({"exercises": str(paths.exercises_dir()), "results": str(results.results_path()),
                  "cache": str(paths.cache_dir()),
                  "ex01": (paths.exercises_dir() / "ex01_dark_knowledge.py").is_file()}))
"""
    env = _base_env(PYTHONPATH=str(site), HOME=str(home), PYTHONDONTWRITEBYTECODE="1", COURSE_OFFLINE="1",
                    COURSE_HOME=str(clone))
    done = _run(code, env, work)
    assert done.returncode == 0, f"({how}) {done.stderr}"
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(got["exercises"]) == clone / "exercises" and got["ex01"]
    assert Path(got["results"]) == clone / "build" / "results.json"
    assert Path(got["cache"]) == home / ".cache" / "kd-course" / "course"
    assert _snapshot(site) == before, f"({how}) something was written into site-packages"
    assert not (work / "build").exists()
